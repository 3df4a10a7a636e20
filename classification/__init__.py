"""ffnet.classification: FFNet-1..4 ImageNet classifiers registered as timm models.

Importing this package registers ``ffnet_1`` … ``ffnet_4`` with ``timm.create_model``.
"""
from ffnet.classification.ffnet import (
    VARIANTS,
    FFNet,
    FFNetStage,
    FFNetStem,
    PatchMerging,
    checkpoint_filter_fn,
    create_ffnet,
    ffnet_1,
    ffnet_2,
    ffnet_3,
    ffnet_4,
)

__all__ = [
    "VARIANTS", "FFNet", "FFNetStage", "FFNetStem", "PatchMerging", "checkpoint_filter_fn", "create_ffnet",
    "ffnet_1", "ffnet_2", "ffnet_3", "ffnet_4",
]
