# FFNet-1 with DeiT hard distillation from a RegNetY-16GF teacher (the authors' DeiT distillation recipe; README:
# --distillation-type hard --drop-path 0.02; the README omits --mixup, so mixup is the default 0.8).
# Paper: 82.1 top-1. Single head: loss = 0.5 * soft-target CE + 0.5 * CE(student, argmax teacher).
#
# Teacher weights are read from a local file (DeiT's regnety_160-a5fe301d.pth, key 'model'):
#   TEACHER_CHECKPOINT=/path/to/regnety_160-a5fe301d.pth ffnet train ...
_base_ = ['./ffnet_1_8xb128_in1k.py']

teacher_checkpoint = '{{$TEACHER_CHECKPOINT:checkpoints/regnety_160-a5fe301d.pth}}'

model = dict(
    model=dict(drop_path_rate=0.02),
    batch_augment=dict(mixup_alpha=0.8),
    distillation=dict(teacher='regnety_160', checkpoint=teacher_checkpoint, alpha=0.5, tau=1.0, kind='hard'),
)
