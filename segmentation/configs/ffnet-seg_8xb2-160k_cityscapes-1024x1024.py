# FFNet-seg (system-level segmentor), Cityscapes 1024x1024 crops, 160k iterations (paper: 83.2 mIoU
# single-scale) (the authors' FFNet-seg configs). Differences from ADE20K: head depth 5 with FFN expansion 1 and no head drop path,
# backbone drop path 0.35, weight decay 0.02, 19 classes, sliding-window test (1024x1024, stride 768).
#
# The authors' config names the backbone 'ffnet_seg_3', which their code never registers (a quirk of the authors' config); it
# is the one FFNet-seg backbone here. Data: Cityscapes (leftImg8bit/, gtFine/ with *_labelTrainIds.png)
# under data_root; set CITYSCAPES_ROOT or override the dataloaders' data_root.
_base_ = ['./_ffnet-seg_8xb2-160k.py', 'mmseg::_base_/datasets/cityscapes_1024x1024.py']

data_root = '{{$CITYSCAPES_ROOT:data/cityscapes/}}'
crop_size = (1024, 1024)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.35),
    decode_head=dict(head_depth=5, expansion_ratio=1, drop_path=0.0, num_classes=19),
    test_cfg=dict(_delete_=True, mode='slide', crop_size=crop_size, stride=(768, 768)))

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(weight_decay=0.02))
