"""Deployment of trained OpenMMLab models with FFNet parts: fold every re-parameterizable unit, check, save.

``ffnet.core.reparameterize`` folds the train-time branches (BN, small/strip kernels, LayerScale) of
every FFNet part of an OpenMMLab model in place. :func:`deploy_checkpoint` does it for a trained
checkpoint and writes a checkpoint plus a config (``deploy=True`` on the FFNet parts) that
``ffnet test`` / mmdet / mmseg load directly. The FFNet parts are named by their registry type
(``deployable``): ``FFNet`` here; ``ffnet.segmentation`` adds ``FFNetSeg`` and ``FFNetHead``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Collection, List, Optional, Tuple

import torch
from torch import nn

from ffnet.core import is_reparameterized, reparameterize
from ffnet.engine.files import save_atomic, write_atomic

# registry types of the FFNet parts that take ``deploy=True`` (the shared mm backbone)
DEPLOYABLE: Tuple[str, ...] = ("FFNet",)


def reparameterize_model(model: nn.Module, deployable: Collection[str] = DEPLOYABLE) -> nn.Module:
    """Fold ``model`` in place (eval-mode outputs are preserved) and mark its ``deployable`` parts ``deploy=True``."""
    reparameterize(model, fold_scales=True)
    for module in model.modules():
        if type(module).__name__ in deployable:
            module.deploy = True
    return model


def deployed_config(cfg, deployable: Collection[str] = DEPLOYABLE) -> List[str]:
    """Set ``deploy=True`` on every ``deployable`` part of ``cfg.model`` in place; returns the dotted keys changed."""
    changed = []

    def visit(node, path):
        if isinstance(node, dict):
            if node.get("type") in deployable:
                node["deploy"] = True
                changed.append(path)
            for key, value in node.items():
                visit(value, f"{path}.{key}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f"{path}.{i}")

    visit(cfg.model, "model")
    return changed


@torch.no_grad()
def deploy_checkpoint(config: str, checkpoint: str, out: str, input_size: Tuple[int, int] = (256, 256),
                      atol: float = 1e-3, default_scope: Optional[str] = None,
                      deployable: Collection[str] = DEPLOYABLE) -> Tuple[Path, Path, float]:
    """Fold a trained detector/segmentor and write ``out`` (weights) and ``<out stem>.py`` (config).

    The models are built in the config's ``default_scope`` (else ``default_scope``; ``'mmdet'`` /
    ``'mmseg'``), whatever registry scope is current. The folded model's backbone features (and a
    segmentor's logits) are compared with the train-time model's on a random ``(1, 3, *input_size)``
    batch; a difference above ``atol`` raises ``RuntimeError``.
    Returns ``(checkpoint path, config path, max abs difference)``.
    """
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from ffnet.engine.openmmlab.scope import build_model, config_scope

    cfg = Config.fromfile(config)
    scope = config_scope(cfg, default_scope)
    if not deployed_config(cfg, deployable):
        raise ValueError(f"{config} has no FFNet part (type {', '.join(sorted(deployable))}) to re-parameterize")
    model = build_model(Config.fromfile(config), scope).eval()
    load_checkpoint(model, checkpoint, map_location="cpu", strict=True)
    inputs = torch.randn(1, 3, *input_size)
    before = _outputs(model, inputs)
    reparameterize_model(model, deployable)
    if not is_reparameterized(model):
        raise RuntimeError("some re-parameterizable units were not folded")
    after = _outputs(model, inputs)
    diff = max(float((a - b).abs().max()) for a, b in zip(before, after))
    if diff > atol:
        raise RuntimeError(f"the folded model differs from the train-time one by {diff:.3g} (> atol {atol})")
    if not cfg.get("default_scope"):
        cfg.default_scope = scope  # the written config then builds in the same scope under ffnet test
    deployed = build_model(cfg, scope)
    deployed.load_state_dict(model.state_dict(), strict=True)
    out = save_atomic({"state_dict": model.state_dict(),
                       "meta": dict(deployed_from=str(checkpoint), config=cfg.pretty_text)}, out)
    cfg_path = out.with_suffix(".py")
    write_atomic(cfg_path, cfg.pretty_text)
    return out, cfg_path, diff


def _outputs(model: nn.Module, inputs: torch.Tensor) -> list:
    outputs = list(model.extract_feat(inputs))
    if hasattr(model, "decode_head"):
        outputs.append(model.encode_decode(inputs, [dict(img_shape=inputs.shape[2:], pad_shape=inputs.shape[2:])]))
    return outputs
