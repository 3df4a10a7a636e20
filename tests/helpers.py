"""Helpers shared by several test files (import as ``from helpers import ...``; pytest puts tests/ on the path)."""
from __future__ import annotations

import pathlib
from pathlib import Path

import torch
from torch import nn


def randomize_bn(model: nn.Module, seed: int = 0, shift_std: float | None = None) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folding is actually exercised.

    Scales (running variance, weight) are uniform in [0.5, 1.5); shifts (running mean, bias) are
    uniform in [-0.5, 0.5), or normal with ``shift_std`` when it is given.
    """
    gen = torch.Generator().manual_seed(seed)

    def shift(n: int) -> torch.Tensor:
        if shift_std is None:
            return torch.rand(n, generator=gen) - 0.5
        return torch.randn(n, generator=gen) * shift_std

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(shift(m.num_features))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(shift(m.num_features))
    return model


class _Planted:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def write_malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint whose state dict looks ordinary but whose unpickling creates ``marker``."""
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "meta": _Planted(marker)}, path)
    return path
