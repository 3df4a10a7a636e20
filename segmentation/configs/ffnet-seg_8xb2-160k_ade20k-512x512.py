# FFNet-seg (system-level segmentor), ADE20K 512x512, 160k iterations (paper: 50.1 mIoU single-scale, 68M
# params) (the authors' FFNet-seg configs): head depth 3, FFN expansion 4, head drop path 0.1, backbone drop path 0.3.
#
# Data: ADEChallengeData2016 under data_root; set ADE20K_ROOT or override the dataloaders' data_root.
# The authors wrap the training set in RepeatDataset(times=50), which only changed mmseg 0.x's epoch
# boundaries; mmseg 1.x's iteration-based loop with an infinite sampler needs no repeat.
_base_ = ['./_ffnet-seg_8xb2-160k.py', 'mmseg::_base_/datasets/ade20k.py']

data_root = '{{$ADE20K_ROOT:data/ade/ADEChallengeData2016}}'
crop_size = (512, 512)

model = dict(data_preprocessor=dict(size=crop_size))
# 8 GPUs x 2 images = batch 16.
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
