"""Convolution backends, chosen by spatial dimensionality.

The FFNet block is written once; what changes between domains is the operator family:

* ``spatial_dims=1``: dense ``Conv1d`` on ``(B, C, L)`` (time series); depthwise stride-1 convs are
  :class:`~ffnet.core.conv1d.DepthwiseConv1d` and 1x1 convs :class:`~ffnet.core.conv1d.PointwiseConv1d`
  (the same ``Conv1d``, computed as matrix products on CPU, where oneDNN's backward is slow);
* ``spatial_dims=2``: dense ``Conv2d`` on ``(B, C, H, W)`` (images, SR, diffusion);
* ``spatial_dims=3``: submanifold sparse conv on :class:`~ffnet.core.sparse.SparseTensor`
  (point clouds), where point-wise layers act on the ``(N, C)`` feature matrix.

Every factory here takes ``spatial_dims`` first and returns a plain ``nn.Module``.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from ffnet.core.conv1d import DepthwiseConv1d, PointwiseConv1d

KernelSize = Union[int, Sequence[int]]
SPATIAL_DIMS = (1, 2, 3)


def check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(
            f"spatial_dims must be 1 (Conv1d), 2 (Conv2d) or 3 (sparse submanifold), got {spatial_dims}"
        )


def as_tuple(value: KernelSize, spatial_dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise ValueError(f"expected {spatial_dims} kernel/stride values, got {value}")
    return value


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: KernelSize,
    stride: KernelSize = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """A 'same'-padded convolution of the backend (padding ``k // 2`` per axis).

    Dense weights have the torch layout ``(out, in // groups, *kernel)``; the sparse backend
    uses the same layout so kernels can be folded and compared across backends.
    """
    check_spatial_dims(spatial_dims)
    if spatial_dims == 3:
        from ffnet.core.sparse import SubMConv3d

        if as_tuple(stride, 3) != (1, 1, 1):
            raise ValueError("submanifold convolution keeps the active sites: stride must be 1")
        return SubMConv3d(in_channels, out_channels, kernel_size, groups=groups, bias=bias)
    kernel = as_tuple(kernel_size, spatial_dims)
    conv_cls = nn.Conv1d if spatial_dims == 1 else nn.Conv2d
    if spatial_dims == 1 and groups == in_channels == out_channels and as_tuple(stride, 1) == (1,):
        conv_cls = DepthwiseConv1d
    return conv_cls(
        in_channels,
        out_channels,
        kernel,
        stride=as_tuple(stride, spatial_dims),
        padding=tuple(k // 2 for k in kernel),
        groups=groups,
        bias=bias,
    )


def pointwise(spatial_dims: int, in_channels: int, out_channels: int, bias: bool = True) -> nn.Module:
    """Per-position channel projection: a 1x1 conv (dense) or a Linear on features (sparse)."""
    check_spatial_dims(spatial_dims)
    if spatial_dims == 3:
        return FeatureWise(nn.Linear(in_channels, out_channels, bias=bias))
    conv_cls = PointwiseConv1d if spatial_dims == 1 else nn.Conv2d
    return conv_cls(in_channels, out_channels, 1, bias=bias)


def batch_norm(spatial_dims: int, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    check_spatial_dims(spatial_dims)
    if spatial_dims == 2:
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)
    return FeatureWise(bn) if spatial_dims == 3 else bn


def layer_norm(spatial_dims: int, channels: int, eps: float = 1e-6, affine: bool = True) -> nn.Module:
    """LayerNorm over channels: channels-first for dense tensors, on features for sparse ones."""
    check_spatial_dims(spatial_dims)
    if spatial_dims == 3:
        return FeatureWise(nn.LayerNorm(channels, eps=eps, elementwise_affine=affine))
    return ChannelsFirstLayerNorm(channels, eps=eps, affine=affine)


def norm(kind: str | None, spatial_dims: int, channels: int, **kwargs) -> nn.Module:
    """``'bn'``, ``'ln'`` or ``None`` (identity)."""
    if kind is None:
        return nn.Identity()
    if kind == "bn":
        return batch_norm(spatial_dims, channels, **kwargs)
    if kind == "ln":
        return layer_norm(spatial_dims, channels, **kwargs)
    raise ValueError(f"unknown norm {kind!r}: use 'bn', 'ln' or None")


def activation(kind: str, spatial_dims: int) -> nn.Module:
    """``'gelu'`` (exact erf form) or ``'relu'``."""
    acts = {"gelu": nn.GELU, "relu": nn.ReLU}
    if kind not in acts:
        raise ValueError(f"unknown activation {kind!r}: use one of {sorted(acts)}")
    module = acts[kind]()
    return FeatureWise(module) if spatial_dims == 3 else module


def weight_key(weight: torch.Tensor) -> tuple:
    """Identifies a weight's storage and content version, for caches of derived layouts.

    Inference tensors have no version counter; an in-place change to one (inside inference mode)
    goes unnoticed.
    """
    return weight.data_ptr(), None if weight.is_inference() else weight._version, weight.dtype, weight.device


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over dim 1 of ``(B, C, *spatial)`` for any number of spatial dims."""

    def __init__(self, channels: int, eps: float = 1e-6, affine: bool = True):
        super().__init__(channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class FeatureWise(nn.Module):
    """Applies a per-point module to the ``(N, C)`` features of a sparse tensor.

    Dense tensors pass straight through ``module``, so the wrapper is transparent to code that
    handles both. State-dict keys gain one ``module.`` level.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        from ffnet.core.sparse import SparseTensor

        if isinstance(x, SparseTensor):
            return x.replace(self.module(x.features))
        return self.module(x)
