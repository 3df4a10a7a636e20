"""Deployment of a trained FFNet detector: :func:`deploy_checkpoint` in mmdet's registry scope."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

from ffnet.engine.openmmlab import deploy as openmmlab_deploy


def deploy_checkpoint(config: str, checkpoint: str, out: str, input_size: Tuple[int, int] = (256, 256),
                      atol: float = 1e-3) -> Tuple[Path, Path, float]:
    """Fold a trained detector (its ``FFNet`` backbone) and write ``out`` and ``<out stem>.py`` (``deploy=True``).

    :func:`ffnet.engine.openmmlab.deploy.deploy_checkpoint` with the ``'mmdet'`` scope unless
    the config names another; the backbone features of the folded and train-time models on a
    ``(1, 3, *input_size)`` batch must agree within ``atol``. Returns ``(checkpoint, config, max difference)``.
    """
    return openmmlab_deploy.deploy_checkpoint(config, checkpoint, out, input_size, atol, default_scope="mmdet")
