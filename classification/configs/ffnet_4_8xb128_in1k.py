# FFNet-4 on ImageNet-1k at 256x256, 8 GPUs x 128. The release gives no 256 command for FFNet-4
# (a difference between the authors' README and their model code): this uses the model definition's drop-path 0.4 and the default mixup 0.8. The
# reported FFNet-4 (85.3 top-1, 79.2M params) is the 384 fine-tune of such a model
# (ffnet_4_384_finetune.py).
_base_ = ['./_base_in1k.py']

model = dict(model=dict(model_name='ffnet_4', drop_path_rate=0.4), batch_augment=dict(mixup_alpha=0.8))
val_dataloader = dict(dataset=dict(transform=dict(crop_pct=0.95)))
test_dataloader = val_dataloader
