"""Deployment of a whole FFNet segmentor (backbone and FFNetHead): fold, check, save in mmseg's scope."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

from torch import nn

from ffnet.engine.openmmlab import deploy as openmmlab_deploy

__all__ = ["DEPLOYABLE", "reparameterize_segmentor", "deploy_checkpoint"]

# registry types of the FFNet parts of a segmentor that take ``deploy=True``
DEPLOYABLE = openmmlab_deploy.DEPLOYABLE + ("FFNetSeg", "FFNetHead")


def reparameterize_segmentor(segmentor: nn.Module) -> nn.Module:
    """Fold every train-time branch, BatchNorm and LayerScale of ``segmentor`` in place.

    Eval-mode outputs are unchanged; the FFNet parts are marked ``deploy=True`` so that a config
    with ``model.backbone.deploy=True`` (and ``model.decode_head.deploy=True`` for FFNet-seg)
    builds the same structure to load the folded weights.
    """
    return openmmlab_deploy.reparameterize_model(segmentor, DEPLOYABLE)


def deploy_checkpoint(config: str, checkpoint: str, out: str, input_size: Tuple[int, int] = (256, 256),
                      atol: float = 1e-3) -> Tuple[Path, Path, float]:
    """Fold a trained segmentor and write ``out`` (weights) and ``<out stem>.py`` (its ``deploy=True`` config).

    :func:`ffnet.engine.openmmlab.deploy.deploy_checkpoint` for the FFNet, FFNetSeg and FFNetHead
    parts, in the ``'mmseg'`` scope unless the config names another; the backbone features and logits of
    the folded and train-time models on a ``(1, 3, *input_size)`` batch must agree within ``atol``.
    Returns ``(checkpoint, config, max difference)``.
    """
    return openmmlab_deploy.deploy_checkpoint(config, checkpoint, out, input_size, atol, default_scope="mmseg",
                                              deployable=DEPLOYABLE)
