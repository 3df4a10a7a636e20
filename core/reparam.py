"""Structural re-parameterization: train-time multi-branch units that fold into one conv.

Units here subclass :class:`Reparameterizable` and return their deploy-time replacement from
``fuse()``. Containers that can simplify themselves once their children are folded (e.g. fold a
LayerScale into the preceding conv) implement ``post_reparameterize(fold_scales)``.
:func:`reparameterize` walks any model of any domain and applies both, in place.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ffnet.core import backend
from ffnet.core.backend import FeatureWise, KernelSize, as_tuple


class Reparameterizable(nn.Module):
    """A train-time unit that ``fuse()`` turns into an equivalent deploy-time module."""

    def fuse(self) -> nn.Module:
        raise NotImplementedError


@torch.no_grad()
def reparameterize(model: nn.Module, fold_scales: bool = True) -> nn.Module:
    """Fold every re-parameterizable unit of ``model`` in place and return ``model``.

    ``fold_scales`` also folds what the authors' deployed models keep as separate ops
    (LayerScale, a BatchNorm before a linear head). Calling it twice changes nothing.
    Outputs are preserved in eval mode (BatchNorm uses its running statistics).
    """
    for name, child in list(model.named_children()):
        if isinstance(child, Reparameterizable):
            setattr(model, name, child.fuse())
        else:
            reparameterize(child, fold_scales)
    hook = getattr(model, "post_reparameterize", None)
    if callable(hook):
        hook(fold_scales)
    return model


def is_reparameterized(model: nn.Module) -> bool:
    return not any(isinstance(m, Reparameterizable) for m in model.modules())


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, FeatureWise) else module


def _bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) with ``bn(x) == x * scale + shift`` in eval mode."""
    bn = _unwrap(bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _pad_kernel(weight: torch.Tensor, kernel: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``(out, in, *k)`` symmetrically to ``(out, in, *kernel)``."""
    pads: list[int] = []
    for k, target in zip(reversed(weight.shape[2:]), reversed(kernel)):
        if (target - k) % 2:
            raise ValueError(f"cannot centre a {k}-tap kernel inside {target} taps")
        pads += [(target - k) // 2] * 2
    return F.pad(weight, pads)


@torch.no_grad()
def _conv_like(spatial_dims: int, conv: nn.Module, kernel: Sequence[int], weight, bias) -> nn.Module:
    """A fresh backend conv with ``conv``'s geometry, ``kernel`` and the given tensors."""
    stride = getattr(conv, "stride", 1)
    with torch.device(weight.device):
        fused = backend.conv(
            spatial_dims, weight.shape[1] * conv.groups, weight.shape[0], tuple(kernel),
            stride=stride, groups=conv.groups, bias=True,
        ).to(weight.dtype)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


class ConvBN(Reparameterizable):
    """Conv → BatchNorm; folds into one conv with bias.

    Shapes: ``(B, C_in, *S) → (B, C_out, *S')`` (dense) or sparse features ``(N, C_in) → (N, C_out)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize,
        stride: KernelSize = 1,
        groups: int = 1,
        conv_bias: bool = False,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.kernel_size = as_tuple(kernel_size, spatial_dims)
        self.conv = backend.conv(spatial_dims, in_channels, out_channels, kernel_size, stride, groups, conv_bias)
        self.bn = backend.batch_norm(spatial_dims, out_channels, eps=bn_eps, momentum=bn_momentum)
        nn.init.ones_(_unwrap(self.bn).weight)
        nn.init.zeros_(_unwrap(self.bn).bias)

    def forward(self, x):
        return self.bn(self.conv(x))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the single equivalent conv."""
        scale, shift = _bn_scale_shift(self.bn)
        weight = self.conv.weight * scale.reshape(-1, *([1] * (self.conv.weight.dim() - 1)))
        bias = shift if self.conv.bias is None else shift + self.conv.bias * scale
        return weight, bias

    def fuse(self) -> nn.Module:
        return _conv_like(self.spatial_dims, self.conv, self.kernel_size, *self.folded())


def _branch_weights(branch: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(branch, ConvBN):
        return branch.folded()
    if branch.bias is None:
        return branch.weight, branch.weight.new_zeros(branch.weight.shape[0])
    return branch.weight, branch.bias


class RepConv(Reparameterizable):
    """Parallel same-stride branches summed; folds into one conv of the main kernel size.

    ``branch_kernels`` are the extra kernels (e.g. ``[3]`` for 7∥3, ``[5, (1, 9), (9, 1)]`` for
    the segmentation strip kernels), each zero-padded to the main kernel when folding.
    With ``bn=True`` every branch is conv → BN (no conv bias); otherwise a conv with bias.
    ``identity=True`` adds the input (needs ``in == out`` or a depthwise channel multiplier 1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize,
        branch_kernels: Sequence[KernelSize] = (),
        stride: KernelSize = 1,
        groups: int = 1,
        bn: bool = True,
        identity: bool = False,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if identity and (in_channels != out_channels or as_tuple(stride, spatial_dims) != (1,) * spatial_dims):
            raise ValueError("an identity branch needs in_channels == out_channels and stride 1")
        self.spatial_dims = spatial_dims
        self.kernel_size = as_tuple(kernel_size, spatial_dims)
        self.identity = identity

        def unit(kernel):
            if bn:
                return ConvBN(spatial_dims, in_channels, out_channels, kernel, stride, groups,
                              bn_eps=bn_eps, bn_momentum=bn_momentum)
            return backend.conv(spatial_dims, in_channels, out_channels, kernel, stride, groups, bias=True)

        self.main = unit(kernel_size)
        self.branches = nn.ModuleList(unit(k) for k in branch_kernels)

    def forward(self, x):
        out = self.main(x)
        for branch in self.branches:
            out = out + branch(x)
        return out + x if self.identity else out

    def fuse(self) -> nn.Module:
        weight, bias = _branch_weights(self.main)
        for branch in self.branches:
            w, b = _branch_weights(branch)
            weight = weight + _pad_kernel(w, self.kernel_size)
            bias = bias + b
        main_conv = self.main.conv if isinstance(self.main, ConvBN) else self.main
        if self.identity:
            weight = weight + _identity_kernel(weight, main_conv.groups)
        return _conv_like(self.spatial_dims, main_conv, self.kernel_size, weight, bias)


def _identity_kernel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The ``(out, in/groups, *k)`` kernel of ``x ↦ x``."""
    out_channels, in_per_group = weight.shape[:2]
    kernel = torch.zeros_like(weight)
    centre = tuple(k // 2 for k in weight.shape[2:])
    channels = torch.arange(out_channels, device=weight.device)
    kernel[(channels, channels % in_per_group, *centre)] = 1.0
    return kernel


class PreBNPointwiseSkip(Reparameterizable):
    """``x + Conv1x1(BN(x))`` (no conv bias); folds into one 1x1 conv with bias. Dense only."""

    def __init__(self, spatial_dims: int, channels: int):
        super().__init__()
        if spatial_dims == 3:
            raise ValueError("PreBNPointwiseSkip is defined for dense tensors only")
        self.spatial_dims = spatial_dims
        self.bn = backend.batch_norm(spatial_dims, channels)
        self.conv = backend.pointwise(spatial_dims, channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.bn(x))

    def fuse(self) -> nn.Module:
        scale, shift = _bn_scale_shift(self.bn)
        w = self.conv.weight.flatten(1)
        weight = w * scale + torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
        bias = w @ shift
        kernel = (1,) * self.spatial_dims
        return _conv_like(self.spatial_dims, self.conv, kernel, weight.reshape(self.conv.weight.shape), bias)


@torch.no_grad()
def scale_output_channels(layer: nn.Module, scale: torch.Tensor) -> None:
    """Multiply the output channels of a conv/linear by ``scale`` (C,), adding a bias if absent."""
    layer = _unwrap(layer)
    layer.weight.mul_(scale.reshape(-1, *([1] * (layer.weight.dim() - 1))))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros_like(scale))
    else:
        layer.bias.mul_(scale)
