# FFNet-SR x3 on DF2K, the paper's recipe.
_base_ = ["./_base_/default_runtime.py", "./_base_/data_df2k.py", "./_base_/schedule_paper.py"]
scale = 3
model = dict(type="FFNetSRModel", generator=dict(variant="ffnet_sr", scale=scale), fft_weight=0.05)
train_dataloader = dict(dataset=dict(scale=scale, patch_size=64))  # paper: 64x64 LR patches
val_dataloader = dict(dataset=dict(scale=scale))
test_dataloader = dict(dataset=dict(scale=scale))
