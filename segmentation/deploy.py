"""Re-parameterization of a whole FFNet segmentor (backbone and FFNetHead) for deployment."""
from __future__ import annotations

from torch import nn

from ffnet.detection.deploy import deploy_checkpoint, reparameterize_model

__all__ = ["reparameterize_segmentor", "deploy_checkpoint"]


def reparameterize_segmentor(segmentor: nn.Module) -> nn.Module:
    """Fold every train-time branch, BatchNorm and LayerScale of ``segmentor`` in place.

    Eval-mode outputs are unchanged; the FFNet parts are marked ``deploy=True`` so that a config
    with ``model.backbone.deploy=True`` (and ``model.decode_head.deploy=True`` for FFNet-seg)
    builds the same structure to load the folded weights.
    """
    return reparameterize_model(segmentor)
