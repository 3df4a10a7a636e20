# Cascade Mask R-CNN with FPN on an FFNet backbone, COCO, 3x schedule with multi-scale training
# (the authors' detection configs: the authors' mmdet 2.28 configs, written for mmdet 3.x). The FFNet-2/3/4 configs set the
# backbone variant, its drop path and its ImageNet checkpoint.
#
# Data: COCO 2017 in mmdet's layout under data_root (annotations/instances_{train,val}2017.json,
# train2017/, val2017/). Set it with the environment variable COCO_ROOT (read when the config is
# parsed), or override train_dataloader.dataset.data_root, val_dataloader.dataset.data_root,
# test_dataloader.dataset.data_root and val_evaluator.ann_file / test_evaluator.ann_file.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['ffnet.detection'], allow_failed_imports=False)

data_root = '{{$COCO_ROOT:data/coco/}}'

# Every BatchNorm becomes a SyncBatchNorm under distributed training (the authors' use_sync_bn=True).
sync_bn = 'torch'

bbox_head = dict(
    type='ConvFCBBoxHead',
    num_shared_convs=4,
    num_shared_fcs=1,
    in_channels=256,
    conv_out_channels=256,
    fc_out_channels=1024,
    roi_feat_size=7,
    num_classes=80,
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2]),
    reg_class_agnostic=False,
    reg_decoded_bbox=True,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))

model = dict(
    backbone=dict(
        _delete_=True,
        type='FFNet',
        arch='ffnet_2',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.35),
    neck=dict(in_channels=[88, 176, 352, 704], out_channels=256, num_outs=5),
    roi_head=dict(bbox_head=[
        bbox_head,
        dict(bbox_head, bbox_coder=dict(bbox_head['bbox_coder'], target_stds=[0.05, 0.05, 0.1, 0.1])),
        dict(bbox_head, bbox_coder=dict(bbox_head['bbox_coder'], target_stds=[0.033, 0.033, 0.067, 0.067])),
    ]))

# DETR-style multi-scale training: short side 480..800 (step 32), or 400/500/600 → random crop
# 384..600 → 480..800. Padding to a multiple of 32 is the data preprocessor's (pad_size_divisor=32).
multi_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333),
                (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True)],
        [
            dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
            dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
            dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True),
        ],
    ]),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# 8 GPUs x 2 images = batch 16.
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', metric=['bbox', 'segm'],
                     classwise=True)
test_evaluator = val_evaluator

# 3x schedule: 36 epochs, x0.1 at epochs 27 and 33, linear warm-up over 500 iterations from 0.001.
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
# AdamW with FFNet's layer-wise lr decay (0.8 over 12 layers); no gradient clipping.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FFNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise', num_layers=12),
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Keep the best box-AP checkpoint (save_best='auto' would pick the first metric, which with classwise=True is a
# per-class precision).
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=5, save_last=True,
                                     save_best='coco/bbox_mAP', rule='greater'))
