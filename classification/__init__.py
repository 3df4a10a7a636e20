"""ffnet.classification: FFNet-1..4 ImageNet classifiers registered as timm models.

Importing this package registers ``ffnet_1`` … ``ffnet_4`` with ``timm.create_model``, and with
:mod:`ffnet.engine.checkpoints` the authors' ImageNet key layout (converted automatically when a
checkpoint is loaded) and a describer that names the FFNet variant and form of a state dict.
"""
from ffnet.classification.ffnet import (
    AUTHORS_LAYOUT,
    VARIANTS,
    FFNet,
    FFNetStage,
    FFNetStem,
    PatchMerging,
    authors_to_own,
    checkpoint_filter_fn,
    create_ffnet,
    describe_checkpoint,
    ffnet_1,
    ffnet_2,
    ffnet_3,
    ffnet_4,
    is_authors_layout,
    own_to_authors,
)
from ffnet.engine.checkpoints import register_describer, register_layout

__all__ = [
    "VARIANTS", "FFNet", "FFNetStage", "FFNetStem", "PatchMerging", "checkpoint_filter_fn", "create_ffnet",
    "ffnet_1", "ffnet_2", "ffnet_3", "ffnet_4", "AUTHORS_LAYOUT", "authors_to_own", "own_to_authors",
    "is_authors_layout", "describe_checkpoint",
]

register_layout(AUTHORS_LAYOUT, is_authors_layout, authors_to_own)
register_describer("FFNet classifier", describe_checkpoint)
