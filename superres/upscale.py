"""Whole-image upscaling with overlapping tiles, so memory stays bounded for any image size.

Each ``tile × tile`` LR region is processed together with ``overlap`` LR pixels of context on
every side (fewer at the image border) and only its own region of the output is kept. With an
overlap of at least the network's receptive radius (the default), every kept output pixel sees
exactly what it sees in one untiled pass, so tiled and untiled outputs are equal; a smaller
overlap is faster and differs slightly near tile seams.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ffnet.superres.models import FFNetSR


def _scale_and_radius(model: nn.Module, overlap: int | None) -> tuple[int, int]:
    if not isinstance(model, FFNetSR):
        raise TypeError(f"expected an FFNetSR model, got {type(model).__name__}")
    return model.scale, model.receptive_radius if overlap is None else overlap


@torch.no_grad()
def upscale_tiled(model: nn.Module, lr: torch.Tensor, tile: int = 256, overlap: int | None = None) -> torch.Tensor:
    """``(B, 3, H, W) → (B, 3, s H, s W)`` by tiles of ``tile`` LR pixels with ``overlap`` context.

    ``overlap`` defaults to the model's receptive radius (exact equality with one pass).
    """
    scale, overlap = _scale_and_radius(model, overlap)
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"expected an RGB batch (B, 3, H, W), got {tuple(lr.shape)}")
    height, width = lr.shape[-2:]
    output = lr.new_empty(lr.shape[0], 3, height * scale, width * scale)
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        top_ctx, bottom_ctx = max(top - overlap, 0), min(bottom + overlap, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            left_ctx, right_ctx = max(left - overlap, 0), min(right + overlap, width)
            patch = model(lr[..., top_ctx:bottom_ctx, left_ctx:right_ctx])
            y0, x0 = (top - top_ctx) * scale, (left - left_ctx) * scale
            output[..., top * scale: bottom * scale, left * scale: right * scale] = (
                patch[..., y0: y0 + (bottom - top) * scale, x0: x0 + (right - left) * scale])
    return output


def upscale_file(model: FFNetSR, source: str | os.PathLike, target: str | os.PathLike, tile: int = 256,
                 overlap: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Upscale an 8-bit RGB image file into ``target``; returns the input and output ``(H, W)``."""
    from ffnet.superres.data import read_rgb, to_tensor, write_rgb
    from ffnet.superres.metrics import tensor_to_uint8

    lr = read_rgb(source)
    parameter = next(model.parameters())
    batch = to_tensor(lr).unsqueeze(0).to(parameter.device, parameter.dtype)
    sr = upscale_tiled(model, batch, tile=tile, overlap=overlap)[0]
    image = tensor_to_uint8(sr)
    write_rgb(image, target)
    return lr.shape[:2], image.shape[:2]
