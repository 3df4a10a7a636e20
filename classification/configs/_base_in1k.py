# ImageNet-1k recipe shared by the FFNet configs (the authors' ImageNet recipe: the authors' timm train.py as launched).
# Model-specific files set the model name, drop-path, mixup alpha and eval crop.
#
# Paths come from environment variables, read when the config is parsed:
#   IMAGENET_ROOT  folder with train/ and val/ (one sub-folder per class); default data/imagenet
# (--cfg-options data_root=... would not reach the dataloaders below, which copied it at parse time;
#  override train_dataloader.dataset.data_root / val_dataloader.dataset.data_root instead).
default_scope = 'mmengine'
custom_imports = dict(imports=['ffnet.classification.training'], allow_failed_imports=False)

data_root = '{{$IMAGENET_ROOT:data/imagenet}}'
img_size = 256
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)

# 8 GPUs x 128 images = 1024 per step; lr is NOT rescaled by batch size in the release
# (``ffnet train --auto-scale-lr`` rescales linearly from base_batch_size).
batch_size = 128
auto_scale_lr = dict(enable=False, base_batch_size=1024)

# Epochs: the paper says 300; timm's scheduler adds its default 20 cool-down epochs at min-lr, and
# the release's loop runs all of them, so the reported models trained for 320 epochs.
cosine_epochs = 300
warmup_epochs = 5
cooldown_epochs = 20
max_epochs = cosine_epochs + cooldown_epochs

model = dict(
    type='TimmImageClassifier',
    model=dict(model_name='ffnet_1', num_classes=1000, drop_path_rate=0.1),
    # timm Mixup/CutMix, per batch; label smoothing 0.1 goes into the mixed targets.
    batch_augment=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch'),
    label_smoothing=0.1,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='TimmImageFolder',
        data_root=data_root,
        split='train',
        transform=dict(
            input_size=img_size,
            is_training=True,
            scale=(0.08, 1.0),
            ratio=(3 / 4, 4 / 3),
            hflip=0.5,
            color_jitter=0.4,  # ignored by timm when RandAugment is on, as in the release
            auto_augment='rand-m9-mstd0.5-inc1',
            interpolation='bicubic',
            re_prob=0.25,
            re_mode='pixel',
            re_count=1,
            mean=mean,
            std=std,
        ),
    ),
)

val_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='TimmImageFolder',
        data_root=data_root,
        split='val',
        # resize to img_size / crop_pct, centre-crop img_size
        transform=dict(input_size=img_size, is_training=False, crop_pct=0.9, crop_mode='center',
                       interpolation='bicubic', mean=mean, std=std),
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='TopKAccuracy', topk=(1, 5))
test_evaluator = val_evaluator

# AdamW, lr 1e-3, wd 0.05; 1-D parameters (norms, biases) get no weight decay, as timm's
# optimizer factory does. LayerScale tensors are (C, 1, 1) and therefore decayed, also as in timm.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0),
)

# Per-epoch steps like timm's epoch-based scheduler: linear warm-up from 1e-6 over 5 epochs (the
# same values as timm's), cosine to 1e-5 at epoch 300, then 1e-5 for the cool-down epochs. timm's
# cosine phase starts at epoch 0 (warm-up overrides its first 5 values), this one at epoch 5: the
# two curves differ by at most 3% of the lr.
param_scheduler = [
    # (mmengine's LinearLR reaches end_factor at step end - begin - 1, hence the + 1)
    dict(type='LinearLR', start_factor=1e-6 / 1e-3, end_factor=1.0, by_epoch=True, begin=0, end=warmup_epochs + 1),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs, end=cosine_epochs + 1,
         T_max=cosine_epochs - warmup_epochs),
]

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

custom_hooks = [
    # timm ModelEmaV2(decay=0.9995): mmengine's momentum is 1 - decay; BN buffers averaged too.
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=1 - 0.9995, update_buffers=True,
         priority='ABOVE_NORMAL'),
    # timm's --dist-bn reduce: average BN statistics across processes after every epoch.
    dict(type='SyncBuffersHook'),
]

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='accuracy/top1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
randomness = dict(seed=42, diff_rank_seed=True)
log_processor = dict(by_epoch=True, window_size=50)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
