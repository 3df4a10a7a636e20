# FFNet-2 on ImageNet-1k at 256x256, 8 GPUs x 128 (the authors' ImageNet recipe; README: --drop-path 0.15 --mixup 0.2).
# Paper: 82.9 top-1, 26.9M params (deployed), 6.0 GMACs.
_base_ = ['./_base_in1k.py']

model = dict(model=dict(model_name='ffnet_2', drop_path_rate=0.15), batch_augment=dict(mixup_alpha=0.2))
val_dataloader = dict(dataset=dict(transform=dict(crop_pct=0.9)))
test_dataloader = val_dataloader
