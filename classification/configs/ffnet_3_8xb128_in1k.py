# FFNet-3 on ImageNet-1k at 256x256, 8 GPUs x 128 (the authors' ImageNet recipe; README: --drop-path 0.35, default mixup 0.8).
# Paper: 83.9 top-1, 48.3M params (deployed), 10.1 GMACs.
_base_ = ['./_base_in1k.py']

model = dict(model=dict(model_name='ffnet_3', drop_path_rate=0.35), batch_augment=dict(mixup_alpha=0.8))
val_dataloader = dict(dataset=dict(transform=dict(crop_pct=0.95)))
test_dataloader = val_dataloader
