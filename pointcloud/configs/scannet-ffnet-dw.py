# Ablation (not in the release): the released layout with depthwise submanifold convs, as the 2D FFNet
# uses -- depthwise 5x5x5 token-mixer convs and a depthwise 3x3x3 channel-mixer conv. spconv has no
# grouped convs, so these run on ffnet's PyTorch sparse backend ("auto" picks it). 11,929,684 parameters.
_base_ = ["scannet-ffnet.py"]

model = dict(
    backbone=dict(enc_ks=5, dec_ks=5, channel_ks=3, depthwise=True),
)
