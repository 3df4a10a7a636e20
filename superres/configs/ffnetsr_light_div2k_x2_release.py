# FFNet-SR-light x2 on DIV2K, the authors' option-file recipe.
_base_ = ["./_base_/default_runtime.py", "./_base_/data_div2k.py", "./_base_/schedule_release.py"]
scale = 2
model = dict(type="FFNetSRModel", generator=dict(variant="ffnet_sr_light", scale=scale), fft_weight=0.02)
train_dataloader = dict(dataset=dict(scale=scale, patch_size=192 // scale))  # release gt_size 192 (HR patch)
val_dataloader = dict(dataset=dict(scale=scale))
test_dataloader = dict(dataset=dict(scale=scale))
