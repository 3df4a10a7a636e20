# FFNet-3 Cascade Mask R-CNN, COCO 3x multi-scale (paper: 52.8 AP box / 45.6 AP mask).
# Backbone from the distilled ImageNet checkpoint, drop path 0.6; LayerScale built at 1.0 as in the
# authors' config (the checkpoint overwrites it) (the authors' detection configs).
_base_ = ['./_cascade-mask-rcnn_ffnet_fpn_4conv1fc-giou_ms-crop-3x_coco.py']

model = dict(
    backbone=dict(
        arch='ffnet_3',
        drop_path_rate=0.6,
        layer_scale_init_value=1.0,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/ysj9909/FFNet/releases/download/v1.0/ffnet_3_distillation.pth.tar')),
    neck=dict(in_channels=[96, 192, 384, 768]))
