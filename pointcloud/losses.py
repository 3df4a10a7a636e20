"""The release's loss pair: cross-entropy + Lovász-softmax, both ignoring label -1, summed with weights.

Lovász-softmax comes from ``segmentation-models-pytorch`` (``smp.losses.LovaszLoss``, the
pytorch-toolbelt implementation that Pointcept's own copy credits): multiclass mode, classes present
in the batch, computed over the whole batch (not per scene), as in the release.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over the points not labelled ``ignore_index``; ``logits`` ``(N, K)``, ``target`` ``(N,)``."""

    def __init__(self, loss_weight: float = 1.0, ignore_index: int = -1, label_smoothing: float = 0.0):
        super().__init__()
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        loss = F.cross_entropy(logits, target.long(), ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing)
        return loss * self.loss_weight


class LovaszLoss(nn.Module):
    """Lovász-softmax (``mode="multiclass"``) on ``logits`` ``(N, K)``; labels ``ignore_index`` are dropped."""

    def __init__(self, mode: str = "multiclass", loss_weight: float = 1.0, ignore_index: int = -1,
                 per_image: bool = False):
        super().__init__()
        if mode != "multiclass":
            raise ValueError(f"only mode='multiclass' (softmax over classes) is used for segmentation, got {mode!r}")
        try:
            from segmentation_models_pytorch.losses import LovaszLoss as SmpLovaszLoss
        except ImportError as err:
            raise ImportError(
                "LovaszLoss needs segmentation-models-pytorch: pip install 'segmentation-models-pytorch>=0.3'"
            ) from err
        self.loss = SmpLovaszLoss("multiclass", per_image=per_image, ignore_index=ignore_index, from_logits=True)
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        return self.loss(logits.float(), target.long()) * self.loss_weight


LOSS_TYPES = {"CrossEntropyLoss": CrossEntropyLoss, "LovaszLoss": LovaszLoss}


class Criteria(nn.Module):
    """Sum of losses built from Pointcept-style configs, e.g. ``[dict(type="CrossEntropyLoss", ...), ...]``."""

    def __init__(self, configs: Sequence[Mapping] = ()):
        super().__init__()
        losses = []
        for config in configs:
            config = dict(config)
            kind = config.pop("type", None)
            if kind not in LOSS_TYPES:
                raise ValueError(f"unknown loss type {kind!r}: available {sorted(LOSS_TYPES)}")
            losses.append(LOSS_TYPES[kind](**config))
        if not losses:
            raise ValueError("criteria is empty: give at least one loss config")
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        valid = target[target != -1]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
            raise ValueError(
                f"labels must lie in [0, {num_classes}) or be -1 (ignored); "
                f"found {int(valid.min())}..{int(valid.max())}"
            )
        return sum(loss(logits, target) for loss in self.losses)
