# FFNet-4 Cascade Mask R-CNN, COCO 3x multi-scale (paper: 53.4 AP box / 45.9 AP mask).
# Backbone from the 384-fine-tuned ImageNet checkpoint, drop path 0.6, LayerScale built at 1.0, and an
# exponential-momentum EMA of the weights (the authors' ExpMomentumEMAHook, momentum 1e-4) (the authors' detection configs and hooks).
_base_ = ['./_cascade-mask-rcnn_ffnet_fpn_4conv1fc-giou_ms-crop-3x_coco.py']

model = dict(
    backbone=dict(
        arch='ffnet_4',
        drop_path_rate=0.6,
        layer_scale_init_value=1.0,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/ysj9909/FFNet/releases/download/v1.0/ffnet_4_384.pth.tar')),
    neck=dict(in_channels=[128, 256, 512, 1024]))

custom_hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49)]
