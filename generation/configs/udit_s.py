# U-DiT-S (spec section 2): downsampled cosine attention with 2D RoPE at every level.
_base_ = ["./_runtime.py"]
model = dict(backbone=dict(arch="U-DiT-S"))
