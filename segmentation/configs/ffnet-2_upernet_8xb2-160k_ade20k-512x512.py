# UperNet + FFNet-2, ADE20K 512x512 160k (paper: 47.1 mIoU single-scale). Distilled ImageNet checkpoint,
# drop path 0.2, no layer-wise decay (decay rate 1.0 over 9 layers) (the authors' UperNet configs).
_base_ = ['./_ffnet_upernet_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        arch='ffnet_2',
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/ysj9909/FFNet/releases/download/v1.0/ffnet_2_distillation.pth.tar')),
    decode_head=dict(in_channels=[88, 176, 352, 704]),
    auxiliary_head=dict(in_channels=352))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=1.0, num_layers=9))
