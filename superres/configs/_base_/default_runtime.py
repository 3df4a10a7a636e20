# Runtime shared by every FFNet-SR config (mmengine Runner).
custom_imports = dict(imports=["ffnet.superres.engine"], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=100),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # `ffnet train` / `ffnet superres train` write checkpoints atomically (temporary file, then rename).
    checkpoint=dict(type="CheckpointHook", interval=5000, by_epoch=False, max_keep_ckpts=5,
                    save_best="PSNR", rule="greater"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
log_processor = dict(by_epoch=False)
log_level = "INFO"
randomness = dict(seed=0)  # release: manual_seed 0
load_from = None
resume = False
