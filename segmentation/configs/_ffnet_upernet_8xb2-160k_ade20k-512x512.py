# UperNet on an FFNet-1..4 backbone, ADE20K 512x512, 160k iterations (the authors' UperNet configs: the authors' mmseg 0.27
# configs, written for mmseg 1.x). The FFNet-2/3/4 configs set the variant, drop path, checkpoint and lr decay.
#
# Data: ADEChallengeData2016 (images/{training,validation}, annotations/{training,validation}) under
# data_root. Set it with the environment variable ADE20K_ROOT (read when the config is parsed), or
# override train_dataloader.dataset.data_root, val_dataloader.dataset.data_root, test_dataloader.dataset.data_root.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['ffnet.segmentation'], allow_failed_imports=False)

data_root = '{{$ADE20K_ROOT:data/ade/ADEChallengeData2016}}'
crop_size = (512, 512)
# Every BatchNorm becomes a SyncBatchNorm under distributed training (the authors' use_sync_bn=True).
sync_bn = 'torch'

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='FFNet',
        arch='ffnet_2',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2),
    decode_head=dict(in_channels=[88, 176, 352, 704], num_classes=150),
    auxiliary_head=dict(in_channels=352, num_classes=150),
    test_cfg=dict(mode='whole'))

# Test: short side 512 (long side <= 2048), then resized to a multiple of 32, whole-image inference.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# 8 GPUs x 2 images = batch 16.
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW with FFNet's layer-wise lr decay; poly decay (power 1) after a 1500-iteration linear warm-up from 1e-6.
max_iters = 160000
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FFNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=1.0, decay_type='layer_wise', num_layers=9),
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
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
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000, max_keep_ckpts=20, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
