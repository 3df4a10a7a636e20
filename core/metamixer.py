"""MetaMixer: ``aggregate(activation(compat(query_proj(x), keys)), values)``.

The four sub-operations are modules, so every mixer in the paper is one instance:

============================  ==================  ===================  ======================
                              FFN                 ConvNeXt mixer       FFNified attention
============================  ==================  ===================  ======================
query projection              identity            depthwise conv       1x1 conv (+ BN)
compat (with static keys)     1x1 conv C→rC       1x1 conv C→rC        depthwise conv
activation                    GELU                GELU                 GELU
aggregate (static values)     1x1 conv rC→C       1x1 conv rC→C        depthwise conv
============================  ==================  ===================  ======================

Self-attention is the instance whose keys and values are projections of the input, whose
compatibility is a dot product over tokens and whose activation is a softmax.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ffnet.core import backend
from ffnet.core.backend import KernelSize
from ffnet.core.reparam import ConvBN, RepConv


class MetaMixer(nn.Module):
    """``aggregate(activation(compat(query_proj(x))))`` with static keys/values in the modules.

    Shapes are those of the backend: ``(B, C, *S) → (B, C, *S)`` or sparse ``(N, C) → (N, C)``.
    """

    def __init__(self, query_proj: nn.Module, compat: nn.Module, activation: nn.Module, aggregate: nn.Module):
        super().__init__()
        self.query_proj = query_proj
        self.compat = compat
        self.activation = activation
        self.aggregate = aggregate

    def forward(self, x, residual: torch.Tensor | None = None):
        """``residual`` (same shape as the output) is added by a fused ``aggregate`` (see :mod:`ffnet.core.fusion`)."""
        h = self.activation(self.compat(self.query_proj(x)))
        if residual is None:
            return self.aggregate(h)
        return self._aggregate_with_residual(h, residual)

    @torch.jit.unused
    def _aggregate_with_residual(self, h, residual):
        """A fused ``aggregate`` adding ``residual``; not compiled by TorchScript (fused models are eager-only)."""
        return self.aggregate(h, residual)

    def output_layer(self) -> nn.Module:
        """The last linear operator, into which an output scale can be folded."""
        return self.aggregate


def conv_unit(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: KernelSize,
    *,
    groups: int,
    branch_kernels: Sequence[KernelSize] = (),
    bn: bool = True,
    conv_bias: bool = False,
    stride: KernelSize = 1,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
) -> nn.Module:
    """A conv with optional BN and optional re-parameterizable side branches.

    No branches and no BN gives a plain conv with bias; no branches with BN gives
    :class:`ConvBN`; branches give :class:`RepConv` (each branch conv → BN when ``bn``).
    """
    if branch_kernels:
        return RepConv(spatial_dims, in_channels, out_channels, kernel_size, branch_kernels, stride, groups,
                       bn=bn, bn_eps=bn_eps, bn_momentum=bn_momentum)
    if bn:
        return ConvBN(spatial_dims, in_channels, out_channels, kernel_size, stride, groups, conv_bias,
                      bn_eps=bn_eps, bn_momentum=bn_momentum)
    return backend.conv(spatial_dims, in_channels, out_channels, kernel_size, stride, groups, bias=True)


def ffn(spatial_dims: int, channels: int, hidden: int, act: str = "gelu") -> MetaMixer:
    """The FFN as key-value memory: fc1 holds the keys, fc2 the values."""
    return MetaMixer(
        nn.Identity(),
        backend.pointwise(spatial_dims, channels, hidden),
        backend.activation(act, spatial_dims),
        backend.pointwise(spatial_dims, hidden, channels),
    )


def convnext_channel_mixer(
    spatial_dims: int,
    channels: int,
    expansion: float,
    kernel_size: KernelSize,
    *,
    branch_kernels: Sequence[KernelSize] = (),
    bn: bool = True,
    depthwise: bool = True,
    conv_bias: bool = False,
    act: str = "gelu",
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
) -> MetaMixer:
    """Spatial conv (the query projection) followed by an FFN (static keys and values).

    ``depthwise=False`` makes the spatial conv dense (the point-cloud model's 3x3x3 conv).
    """
    hidden = int(channels * expansion)
    return MetaMixer(
        conv_unit(spatial_dims, channels, channels, kernel_size, groups=channels if depthwise else 1,
                  branch_kernels=branch_kernels, bn=bn, conv_bias=conv_bias, bn_eps=bn_eps, bn_momentum=bn_momentum),
        backend.pointwise(spatial_dims, channels, hidden),
        backend.activation(act, spatial_dims),
        backend.pointwise(spatial_dims, hidden, channels),
    )


def ffnified_attention(
    spatial_dims: int,
    channels: int,
    kernel_size: KernelSize,
    *,
    branch_kernels: Sequence[KernelSize] = (),
    conv_bn: bool = True,
    query_bn: bool = True,
    query_proj: nn.Module | None = None,
    depthwise: bool = True,
    conv_bias: bool = False,
    act: str = "gelu",
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
) -> MetaMixer:
    """The token mixer: 1x1 query projection → conv (static keys) → act → conv (static values).

    ``query_proj`` replaces the default 1x1 conv (+ BN when ``query_bn``), e.g. with the
    time-series model's cross-variable FFN. ``depthwise=False`` gives dense convs (points).
    """
    if query_proj is None:
        if query_bn:
            query_proj = ConvBN(spatial_dims, channels, channels, 1, bn_eps=bn_eps, bn_momentum=bn_momentum)
        else:
            query_proj = backend.pointwise(spatial_dims, channels, channels)
    groups = channels if depthwise else 1

    def unit() -> nn.Module:
        return conv_unit(spatial_dims, channels, channels, kernel_size, groups=groups, branch_kernels=branch_kernels,
                         bn=conv_bn, conv_bias=conv_bias, bn_eps=bn_eps, bn_momentum=bn_momentum)

    return MetaMixer(query_proj, unit(), backend.activation(act, spatial_dims), unit())


class SelfAttention(MetaMixer):
    """Multi-head self-attention on dense channels-first maps ``(B, C, *S) → (B, C, *S)``.

    Query projection: linear; keys and values: linear projections of the input (dynamic);
    compat: scaled dot product (or cosine similarity with a learned per-head temperature);
    activation: softmax over tokens; aggregate: weighted sum of values, then an output linear.
    """

    def __init__(self, channels: int, num_heads: int, qkv_bias: bool = True, cosine: bool = False):
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        super().__init__(nn.Linear(channels, channels, bias=qkv_bias), nn.Identity(), nn.Softmax(-1),
                         nn.Linear(channels, channels))
        self.num_heads = num_heads
        self.cosine = cosine
        self.key_value = nn.Linear(channels, 2 * channels, bias=qkv_bias)
        if cosine:
            self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C) → (B, N, C)``."""
        b, n, c = tokens.shape
        heads = lambda t: t.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # noqa: E731
        q = heads(self.query_proj(tokens))
        k, v = (heads(t) for t in self.key_value(tokens).chunk(2, dim=-1))
        if self.cosine:
            scale = self.logit_scale.clamp(max=4.6052).exp()
            weights = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * scale
            out = self.activation(weights) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.aggregate(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)
        return self.attend(tokens).transpose(1, 2).reshape(x.shape)
