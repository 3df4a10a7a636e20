# The variant the paper's text describes (Sec. 4.3 / App. F.3; not released): four encoder stages
# (64, 128, 256, 512) x (2, 2, 6, 2), stem 6 -> 64, decoder (64, 128, 256) with one block per level.
# 94,552,532 parameters with the 20-class head. Training settings as scannet-ffnet.py.
_base_ = ["scannet-ffnet.py"]

model = dict(
    backbone=dict(
        stride=(2, 2, 2),
        enc_depths=(2, 2, 6, 2),
        enc_channels=(64, 128, 256, 512),
        dec_depths=(1, 1, 1),
        dec_channels=(64, 128, 256),
    ),
)
