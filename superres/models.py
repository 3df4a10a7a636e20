"""FFNet-SR and FFNet-SR-light: a flat stack of the core's FFNet blocks with a pixel-shuffle head.

Data flow for an LR image ``x`` of shape ``(B, 3, H, W)`` with values in [0, 1]::

    residual = reconstruction_conv(body(shallow_conv(x)))   # (B, 3 s², H, W)
    anchor   = x.repeat_interleave(s², dim=1)               # each RGB channel s² times
    output   = PixelShuffle(s)(residual + anchor)           # (B, 3, s H, s W)

``PixelShuffle(s)(anchor)`` is the nearest-neighbour upscaled input, so the network predicts a
residual over it. There is no mean subtraction, no range scaling and no output clamp.

The block is :class:`ffnet.core.FFNetBlock` with

* token mixer: ``ffnified_attention`` (1x1 query projection → depthwise 3x3 → GELU → depthwise 3x3),
* channel mixer: ``convnext_channel_mixer`` (depthwise 3x3 → 1x1 C→2C → GELU → 1x1 2C→C),

and no normalization, LayerScale or drop-path (the released models). ``norm='bn'`` and
``norm='ln'`` reproduce the two variants the authors' code also supports (BN after the first conv
of each mixer; a channel LayerNorm before each mixer); none of their released models uses them.
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import torch
from torch import nn

from ffnet.core import FFNetBlock, backend, convnext_channel_mixer, ffnified_attention
from ffnet.core.reparam import ConvBN

SCALES = (2, 3, 4)
NORMS = (None, "bn", "ln")
VARIANTS = {"ffnet_sr": dict(dim=96, depth=48, expansion=2.0), "ffnet_sr_light": dict(dim=96, depth=36, expansion=2.0)}


def sr_block(dim: int, expansion: float = 2.0, norm: str | None = None) -> FFNetBlock:
    """One FFNet-SR block ``(B, dim, H, W) → (B, dim, H, W)`` built from the core's parts."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    mixer_bn = norm == "bn"
    query_proj = ConvBN(2, dim, dim, 1, conv_bias=True) if mixer_bn else None
    token_mixer = ffnified_attention(2, dim, 3, conv_bn=False, query_bn=False, query_proj=query_proj)
    channel_mixer = convnext_channel_mixer(2, dim, expansion, 3, bn=mixer_bn, conv_bias=True)
    return FFNetBlock(token_mixer, channel_mixer, channels=dim, spatial_dims=2,
                      norm="ln" if norm == "ln" else None, norm_eps=1e-6)


class FFNetSR(nn.Module):
    """FFNet super-resolution network ``(B, 3, H, W) → (B, 3, scale H, scale W)``.

    Args:
        scale: upscaling factor (2, 3 or 4).
        dim: feature channels.
        depth: number of FFNet blocks.
        expansion: hidden/input channel ratio of the channel mixer.
        norm: ``None`` (released models), ``'bn'`` or ``'ln'``.
    """

    def __init__(self, scale: int, dim: int = 96, depth: int = 48, expansion: float = 2.0, norm: str | None = None):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        self.scale = scale
        self.dim = dim
        self.depth = depth
        self.expansion = expansion
        self.norm = norm
        self.shallow_conv = backend.conv(2, 3, dim, 3)
        self.body = nn.Sequential(*(sr_block(dim, expansion, norm) for _ in range(depth)))
        self.reconstruction_conv = backend.conv(2, dim, 3 * scale**2, 3)
        self.pixel_shuffle = nn.PixelShuffle(scale)

    @property
    def receptive_radius(self) -> int:
        """LR pixels each side that influence one output pixel (3x3 convs: stem, 3 per block, head)."""
        return 2 + 3 * self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FFNetSR expects an RGB batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        residual = self.reconstruction_conv(self.body(self.shallow_conv(x)))
        anchor = x.repeat_interleave(self.scale**2, dim=1)
        return self.pixel_shuffle(residual + anchor)

    def architecture(self) -> dict:
        """Constructor arguments, e.g. to store beside weights."""
        return dict(scale=self.scale, dim=self.dim, depth=self.depth, expansion=self.expansion, norm=self.norm)


def ffnet_sr(scale: int = 4, **kwargs) -> FFNetSR:
    """FFNet-SR (DF2K model): dim 96, 48 blocks. x4: 2,412,720 parameters."""
    return FFNetSR(scale, **{**VARIANTS["ffnet_sr"], **kwargs})


def ffnet_sr_light(scale: int = 4, **kwargs) -> FFNetSR:
    """FFNet-SR-light (DIV2K model): dim 96, 36 blocks. x4: 1,820,592 parameters."""
    return FFNetSR(scale, **{**VARIANTS["ffnet_sr_light"], **kwargs})


def build_model(variant: str, scale: int, **kwargs) -> FFNetSR:
    """``variant`` is ``'ffnet_sr'`` or ``'ffnet_sr_light'``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown FFNet-SR variant {variant!r}: use one of {sorted(VARIANTS)}")
    return FFNetSR(scale, **{**VARIANTS[variant], **kwargs})


def architecture_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Infer :class:`FFNetSR` arguments from one of its (train-time or deployed) state dicts."""
    if "shallow_conv.weight" not in state_dict or "reconstruction_conv.weight" not in state_dict:
        raise ValueError("not an FFNet-SR state dict (no 'shallow_conv.weight'/'reconstruction_conv.weight'); "
                         "the authors' BasicSR files load with ffnet.superres.checkpoint.load_generator")
    dim = state_dict["shallow_conv.weight"].shape[0]
    out_channels = state_dict["reconstruction_conv.weight"].shape[0]
    scale = math.isqrt(out_channels // 3)
    if 3 * scale**2 != out_channels:
        raise ValueError(f"reconstruction_conv has {out_channels} output channels, expected 3·scale²")
    blocks = {int(m.group(1)) for key in state_dict if (m := re.match(r"body\.(\d+)\.", key))}
    depth = len(blocks)
    if blocks != set(range(depth)):
        raise ValueError(f"body block indices are not contiguous: {sorted(blocks)}")
    hidden = [v.shape[0] for k, v in state_dict.items() if k.startswith("body.0.channel_mixer.mixer.compat")]
    expansion = hidden[0] / dim if hidden else 2.0
    if "body.0.token_mixer.norm.weight" in state_dict:
        norm = "ln"
    elif "body.0.token_mixer.mixer.query_proj.bn.weight" in state_dict:
        norm = "bn"
    else:
        norm = None
    return dict(scale=scale, dim=dim, depth=depth, expansion=expansion, norm=norm)


def model_from_state_dict(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> FFNetSR:
    """Build the matching :class:`FFNetSR` and load ``state_dict`` into it strictly (one-line
    :class:`~ffnet.engine.errors.CheckpointError` naming ``source`` when it does not fit).

    A deployed BN model (``norm='bn'`` after :func:`ffnet.core.reparameterize`) has the plain
    layout and loads as ``norm=None``, which is the same function.
    """
    from ffnet.engine.checkpoints import load_state_dict

    model = FFNetSR(**architecture_from_state_dict(state_dict))
    load_state_dict(model, state_dict, source=source, target=f"FFNet-SR x{model.scale}")
    return model
