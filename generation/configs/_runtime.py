# Shared recipe (U-DiT's, spec section 3): AdamW lr 1e-4 constant, no weight decay, EMA 0.9999
# every step, label dropout 0.1 (in the backbone), global batch 256 = 8 GPUs x 32 via torchrun.
custom_imports = dict(imports=["ffnet.generation.training"], allow_failed_imports=False)

model = dict(type="LatentDiffusion", backbone=dict(arch="U-DiT-B"), vae_path=None, sample_size=32,
             num_train_timesteps=1000)

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="DiffusionImageFolder", root=None, image_size=256, hflip=True),
)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=400_000)
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.0))

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=100),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=50_000, max_keep_ckpts=3),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [dict(type="EMAHook", momentum=1e-4, update_buffers=False)]
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl"), mp_cfg=dict(mp_start_method="fork"))
randomness = dict(seed=0, diff_rank_seed=True)  # per-rank noise and timesteps under DDP
launcher = "none"
resume = False
load_from = None
