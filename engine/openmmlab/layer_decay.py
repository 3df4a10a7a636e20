"""Layer-wise learning-rate decay for FFNet backbones (the authors' optimizer constructor and UperNet configs), as an mmengine optimizer-wrapper constructor.

The authors adapted ConvNeXt's rule to FFNet's layout (``backbone.stages.S.B`` with B the element
index inside a stage; B=0 is the downsampler for S ≥ 1). With ``num_layers = L``:

* ``stages.0`` → id 1, ``stages.1`` → id 2, ``stages.2`` element B → id ``3 + B // 3``,
  ``stages.3`` → id L;
* everything else (the stem, the output norms, neck and heads) → id L + 1.

A parameter's lr is ``base_lr * decay_rate ** (L + 1 - id)``. Weight decay is 0 for 1-D tensors and
names ending in ``.bias``, except LayerScale: the authors' (C,1,1) LayerScale was decayed, so ours,
stored as (C,), is too (the authors' optimizer constructor). Mmengine's own ``LearningRateDecayOptimizerConstructor`` only
knows ConvNeXt, hence this one.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List

from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

_STAGE_PARAM = re.compile(r"backbone\.stages\.(\d+)\.(downsample|blocks\.(\d+))\.")


def layer_id(name: str, num_layers: int) -> int:
    """The layer id of parameter ``name`` of a model whose ``backbone`` is the FFNet mm backbone."""
    match = _STAGE_PARAM.match(name)
    if match is None:
        return num_layers + 1
    stage = int(match[1])
    if match[2] == "downsample":
        element = 0
    else:
        element = int(match[3]) + (1 if stage > 0 else 0)  # the authors' index counts the downsampler
    if stage == 0:
        return 1
    if stage == 1:
        return 2
    if stage == 2:
        layer = 3 + element // 3
        if layer > num_layers:
            raise ValueError(f"{name}: layer id {layer} exceeds num_layers={num_layers}; the third stage is too deep "
                             f"for this setting, raise paramwise_cfg.num_layers to at least {layer}")
        return layer
    return num_layers


class FFNetLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise', num_layers=12)``.

    Param groups carry ``lr``, ``lr_scale`` and ``weight_decay``; mmengine's parameter schedulers
    scale each group's lr from its own initial value, so warm-up and steps keep the decay ratios.
    The model's ``backbone`` must be one of ``BACKBONES`` (registry type names; the FFNet mm backbone
    of :mod:`ffnet.classification.openmmlab.backbone`), whose parameters follow the layout above.
    """

    BACKBONES = ("FFNet",)

    def add_params(self, params: List[Dict[str, Any]], module: nn.Module, **kwargs: Any) -> None:
        cfg = self.paramwise_cfg
        missing = [k for k in ("decay_rate", "num_layers") if k not in cfg]
        if missing:
            raise KeyError(f"FFNetLayerDecayOptimizerConstructor needs paramwise_cfg keys {missing} "
                           "(e.g. dict(decay_rate=0.8, decay_type='layer_wise', num_layers=12))")
        decay_type = cfg.get("decay_type", "layer_wise")
        if decay_type != "layer_wise":
            raise ValueError(f"decay_type {decay_type!r} is not supported: FFNet configs use 'layer_wise'")
        found = type(getattr(module, "backbone", None)).__name__
        if found not in self.BACKBONES:
            raise TypeError(f"FFNetLayerDecayOptimizerConstructor needs a model whose backbone is the FFNet mm "
                            f"backbone (type='FFNet'), got {found}; use another optimizer constructor for it")
        num_layers = int(cfg["num_layers"])
        decay_rate = float(cfg["decay_rate"])
        groups: Dict[str, Dict[str, Any]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = (param.ndim == 1 and not name.endswith("layer_scale.gamma")) or name.endswith(".bias")
            layer = layer_id(name, num_layers)
            group_name = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
            if group_name not in groups:
                scale = decay_rate ** (num_layers + 1 - layer)
                groups[group_name] = dict(
                    params=[], param_names=[], group_name=group_name, lr_scale=scale,
                    lr=scale * self.base_lr, weight_decay=0.0 if no_decay else self.base_wd,
                )
            groups[group_name]["params"].append(param)
            groups[group_name]["param_names"].append(name)
        rank, _ = get_dist_info()
        if rank == 0:
            summary = {k: dict(lr_scale=g["lr_scale"], weight_decay=g["weight_decay"], num_params=len(g["params"]))
                       for k, g in sorted(groups.items())}
            MMLogger.get_current_instance().info(f"FFNet layer-wise lr decay groups: {json.dumps(summary)}")
        params.extend(groups.values())
