# UperNet + FFNet-4, ADE20K 512x512 160k (paper: 50.7 mIoU single-scale). 384-fine-tuned ImageNet checkpoint,
# drop path 0.3, LayerScale built at 1.0 (overwritten by the checkpoint), layer decay 0.9 over 12 layers (the authors' UperNet configs).
_base_ = ['./_ffnet_upernet_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        arch='ffnet_4',
        drop_path_rate=0.3,
        layer_scale_init_value=1.0,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/ysj9909/FFNet/releases/download/v1.0/ffnet_4_384.pth.tar')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9, num_layers=12))
