# FFNet-seg (system-level segmentor): model, optimizer and 160k schedule shared by the ADE20K and Cityscapes
# configs, which add the dataset (the authors' FFNet-seg configs; the authors trained it in the SegNeXt codebase).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['ffnet.segmentation'], allow_failed_imports=False)

# Every BatchNorm becomes a SyncBatchNorm under distributed training (the authors' use_sync_bn=True).
sync_bn = 'torch'

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255),  # the dataset configs add size=crop_size
    backbone=dict(
        type='FFNetSeg',
        arch='ffnet_seg',
        drop_path_rate=0.3,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/ysj9909/FFNet/releases/download/v1.0/ffnet_seg.pth.tar')),
    decode_head=dict(
        type='FFNetHead',
        in_channels=[192, 384, 768],
        in_index=[0, 1, 2],
        spatial_ks=9,
        channel_ks=9,
        head_width=256,
        head_depth=3,
        expansion_ratio=4,
        final_expansion_ratio=4,
        channels=1024,
        dropout_ratio=0.1,
        drop_path=0.1,
        num_classes=150,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# AdamW lr 6e-5: decode head x10 lr. The 'norm' key (decay_mult 0) matches no FFNet-seg parameter (its BNs are
# named 'bn'), so BatchNorm weights are decayed, as in the authors' runs (as in the authors' configs).
max_iters = 160000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
        'head': dict(lr_mult=10.0),
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
