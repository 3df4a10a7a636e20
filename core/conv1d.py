"""1-D convolutions as matrix products: exact, and faster to train on CPU than oneDNN's kernels.

oneDNN runs a depthwise ``Conv1d`` with a long kernel (FFNet-TS: 51 taps over 48 patches) and
grouped 1×1 convs (FFNet-TS's cross-variable and per-variable FFNs) through generic direct
convolution, whose input- and weight-gradient kernels dominate a CPU training step. The same sums
written as matrix products run on BLAS:

* depthwise (:func:`depthwise_conv1d`): the zero-padded input ``(B, C, L + 2P)`` is cut into
  ``n`` overlapping windows of ``S + K − 1`` samples, one per block of ``S`` outputs; each
  channel's kernel becomes a banded matrix ``T_c`` of shape ``(S + K − 1, S)`` with
  ``T_c[i, j] = w_c[i − j]`` for ``0 ≤ i − j < K`` and 0 elsewhere; output block =
  window @ ``T_c`` (one batched matmul over channels);
* grouped pointwise (:func:`pointwise_conv1d`): ``(G, C_out/G, C_in/G)`` weights times the
  ``(B, G, C_in/G, N)`` input, one einsum.

Every output is the same products as the direct convolution, summed in another order, so results
agree to float rounding; autograd differentiates the gather, unfold and matmuls exactly. Outputs
are contiguous like ``F.conv1d``'s, so a following dropout draws the same mask from the same seed.
:class:`DepthwiseConv1d` and :class:`PointwiseConv1d` are ``nn.Conv1d`` subclasses (same
parameters, state-dict keys and repr) that take these paths for CPU tensors and defer to
``nn.Conv1d`` otherwise (CUDA keeps cuDNN). :func:`plain_conv1d` turns them back into
``nn.Conv1d`` in place, for comparisons.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLOCK = 64  # outputs per band block: long enough to feed BLAS, short enough to keep the band narrow


def _band(weight: torch.Tensor, block: int) -> torch.Tensor:
    """``(C, 1, K)`` kernels → banded ``(C, S + K − 1, S)`` matrices, ``T[c, i, j] = w[c, i − j]`` in the band."""
    padded = F.pad(weight[:, 0], (block - 1, block - 1))  # (C, K + 2S − 2)
    return padded.unfold(-1, block, 1).flip(-1)  # [c, i, j'] = padded[c, i + j'], then j = S − 1 − j'


def depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     padding: int = 0, block: int = BLOCK) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, padding=padding, groups=C)`` for ``x (B, C, L)``, ``weight (C, 1, K)``.

    Returns ``(B, C, L + 2·padding − K + 1)``.
    """
    batch, channels, length = x.shape
    kernel = weight.shape[-1]
    if tuple(weight.shape) != (channels, 1, kernel):
        raise ValueError(f"depthwise weight must be ({channels}, 1, K), got {tuple(weight.shape)}")
    out_len = length + 2 * padding - kernel + 1
    if out_len < 1:
        raise ValueError(f"input length {length} with padding {padding} is shorter than the kernel ({kernel})")
    block = min(block, out_len)
    blocks = -(-out_len // block)
    span = block + kernel - 1
    right = blocks * block + kernel - 1 - length - padding
    padded = F.pad(x, (padding, right))  # (B, C, n·S + K − 1)
    if blocks == 1:  # the whole padded row is the one window (FFNet-TS: 48 outputs); no unfold to differentiate
        windows = padded.transpose(0, 1)  # (C, B, S + K − 1)
    else:
        windows = padded.unfold(-1, span, block).transpose(0, 1)  # (C, B, n, S + K − 1)
    out = torch.matmul(windows.reshape(channels, batch * blocks, span), _band(weight, block))
    out = out.reshape(channels, batch, blocks * block)[..., :out_len].transpose(0, 1).contiguous()
    if bias is not None:
        out = out + bias.reshape(1, channels, 1)
    return out


def pointwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     groups: int = 1) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, groups=groups)`` for ``x (B, C_in, N)``, ``weight (C_out, C_in/G, 1)``."""
    batch, channels, length = x.shape
    group_in = weight.shape[1]
    if weight.shape[-1] != 1 or channels != groups * group_in or weight.shape[0] % groups:
        raise ValueError(f"pointwise weight {tuple(weight.shape)} does not fit {channels} input channels in "
                         f"{groups} groups")
    out = torch.einsum("goi,bgin->bgon", weight.reshape(groups, -1, group_in),
                       x.reshape(batch, groups, group_in, length)).reshape(batch, weight.shape[0], length).contiguous()
    if bias is not None:
        out = out + bias.reshape(1, -1, 1)
    return out


def _plain_geometry(conv: nn.Conv1d, x: torch.Tensor) -> bool:
    return (x.dim() == 3 and x.device.type == "cpu" and conv.stride == (1,) and conv.dilation == (1,)
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


class DepthwiseConv1d(nn.Conv1d):
    """``nn.Conv1d``; with ``groups == in == out`` channels, stride 1 and a CPU input it runs
    :func:`depthwise_conv1d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.groups == self.in_channels == self.out_channels and _plain_geometry(self, input):
            return depthwise_conv1d(input, weight, bias, self.padding[0])
        return super()._conv_forward(input, weight, bias)


class PointwiseConv1d(nn.Conv1d):
    """``nn.Conv1d``; with kernel 1, no padding, stride 1 and a CPU input it runs :func:`pointwise_conv1d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.kernel_size == (1,) and self.padding == (0,) and _plain_geometry(self, input):
            return pointwise_conv1d(input, weight, bias, self.groups)
        return super()._conv_forward(input, weight, bias)


def plain_conv1d(model: nn.Module) -> nn.Module:
    """Turn every :class:`DepthwiseConv1d` / :class:`PointwiseConv1d` of ``model`` into ``nn.Conv1d`` (in place)."""
    for module in model.modules():
        if isinstance(module, (DepthwiseConv1d, PointwiseConv1d)):
            module.__class__ = nn.Conv1d
    return model


__all__ = ["BLOCK", "DepthwiseConv1d", "PointwiseConv1d", "depthwise_conv1d", "plain_conv1d", "pointwise_conv1d"]
