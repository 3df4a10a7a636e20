# FFNet-2 Cascade Mask R-CNN, COCO 3x multi-scale (paper: 51.8 AP box / 44.9 AP mask).
# Backbone from the distilled ImageNet checkpoint, drop path 0.35 (the authors' detection configs).
_base_ = ['./_cascade-mask-rcnn_ffnet_fpn_4conv1fc-giou_ms-crop-3x_coco.py']

model = dict(
    backbone=dict(
        arch='ffnet_2',
        drop_path_rate=0.35,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/ysj9909/FFNet/releases/download/v1.0/ffnet_2_distillation.pth.tar')),
    neck=dict(in_channels=[88, 176, 352, 704]))
