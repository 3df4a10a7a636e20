# FFNet-4 fine-tuned at 384x384 from a 256x256 ImageNet-1k checkpoint (the authors' 384 fine-tune recipe; paper: 85.3 top-1, 43.1 GMACs).
# 8 GPUs x 64, 30 epochs, constant lr 5e-6 (no warm-up, no schedule), weight decay 1e-8,
# drop-path 0.5; other augmentation as in pre-training (mixup 0.8). Like timm's --finetune, only
# the weights are loaded (no optimizer state) and the EMA restarts from them; evaluation resizes
# straight to 384 (crop_pct 1.0).
#
# The starting checkpoint (a timm/release file or one written by ffnet train) is read from:
#   PRETRAINED_CHECKPOINT=/path/to/ffnet_4.pth ffnet train ...
_base_ = ['./ffnet_4_8xb128_in1k.py']

pretrained_checkpoint = '{{$PRETRAINED_CHECKPOINT:checkpoints/ffnet_4.pth.tar}}'
img_size = 384
batch_size = 64
max_epochs = 30

model = dict(model=dict(drop_path_rate=0.5, checkpoint=pretrained_checkpoint), batch_augment=dict(mixup_alpha=0.8))
train_dataloader = dict(batch_size=batch_size, dataset=dict(transform=dict(input_size=img_size)))
val_dataloader = dict(batch_size=batch_size, dataset=dict(transform=dict(input_size=img_size, crop_pct=1.0)))
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=512)

optim_wrapper = dict(optimizer=dict(lr=5e-6, weight_decay=1e-8))
param_scheduler = []
train_cfg = dict(max_epochs=max_epochs)
