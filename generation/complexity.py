"""Parameter and MAC counts, with attention matmuls counted the way U-DiT's MAC figures count them.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2, one fused multiply-add =
one MAC): convolutions, linears and both attention matmuls count; element-wise ops (norms,
activations, RoPE, softmax) do not. The CPU flash-attention kernel is added to the counter's
table so the count is the same on every device.
"""
from __future__ import annotations

import copy
import re
from collections import defaultdict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ffnet.core import reparameterize


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM_FLOPS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def profile_forward(model: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, int]]:
    """One forward pass: its output and the MACs per module name (``''`` is the whole model)."""
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS)
    with counter:
        output = model(*inputs)
    totals: dict[str, int] = defaultdict(int)
    prefix = type(model).__name__
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            key = ""
        elif name == prefix or name.startswith(prefix + "."):
            key = name[len(prefix) + 1:]
        else:
            continue
        totals[key] = sum(ops.values()) // 2
    return output, dict(totals)


def macs_by_module(model: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """MACs of one forward pass per module name (``''`` is the whole model; nested names included)."""
    return profile_forward(model, *inputs)[1]


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass of ``model`` on ``inputs``."""
    return macs_by_module(model, *inputs)[""]


def deployed_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, re-parameterized copy of ``model`` (on the model's device, meta included)."""
    device = next(model.parameters()).device
    with torch.device(device):
        return reparameterize(copy.deepcopy(model).eval())


def diffusion_inputs(batch: int, channels: int = 4, size: int = 32, num_classes: int = 1000,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, t, y)`` for one forward pass on ``batch`` latents of ``channels``×``size``×``size``."""
    x = torch.randn(batch, channels, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    return x, t, y


def token_mixer_macs(macs: dict[str, int], levels: tuple[str, ...]) -> dict[str, int]:
    """Total token-mixer MACs per level from :func:`macs_by_module` of a :class:`~ffnet.generation.models.UDiT`."""
    pattern = re.compile(r"^(\w+)\.\d+\.sub_blocks\.\d+\.token_mixer\.mixer$")
    totals = dict.fromkeys(levels, 0)
    for name, value in macs.items():
        match = pattern.match(name)
        if match and match.group(1) in totals:
            totals[match.group(1)] += value
    return totals
