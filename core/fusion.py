"""Inference fusion of a re-parameterized model: activations and residual additions into its convs.

After :func:`ffnet.core.reparameterize`, a 2D FFNet block is a chain of plain convs, GELUs and
residual additions. Each GELU and each addition is one more pass over a feature map (for the
4x-expanded channel mixer, the largest one). :func:`fuse_for_inference` lets the conv before the
activation apply it, and the last conv of a residual branch add the shortcut, as oneDNN post-ops on
CPU (the ops PyTorch's inductor uses for frozen CPU graphs). Outputs are unchanged up to float
rounding; state-dict keys are unchanged, so a fused model loads the deployed checkpoints.

Under ``torch.compile`` the conv → activation op is kept (inductor lowers it; there is no fake-tensor
kernel for the residual variant, so the addition runs as a plain op for inductor to fuse). Elsewhere
(GPU, float16, autograd, tracing, ONNX export) the fused conv runs the plain ops, so a fused model
stays usable everywhere.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ffnet.core.backend import weight_key
from ffnet.core.block import FFNetBlock, Residual
from ffnet.core.metamixer import MetaMixer, SelfAttention
from ffnet.core.reparam import is_reparameterized

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


def _activation_name(module: nn.Module) -> str | None:
    """The post-op name of an exact GELU / ReLU module, ``'none'`` for identity, else ``None``."""
    if isinstance(module, nn.Identity):
        return "none"
    if type(module) is nn.GELU and module.approximate == "none":
        return "gelu"
    if type(module) is nn.ReLU:
        return "relu"
    return None


_MKLDNN_AVAILABLE = torch.backends.mkldnn.is_available()


def _onednn_usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the oneDNN fused ops apply: CPU float32 inference, outside tracing and ONNX export.

    Under ``torch.compile`` they do: inductor lowers them (with the plain weight, not the packed one).
    """
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    if not torch.compiler.is_compiling() and torch.onnx.is_in_onnx_export():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or not _MKLDNN_AVAILABLE:
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))


class FusedConv2d(nn.Module):
    """``activation(conv2d(x) + residual)`` in one oneDNN call: ``(B, C_in, H, W) → (B, C_out, H', W')``.

    ``residual`` (optional) has the output's shape. Parameters keep ``nn.Conv2d``'s names.
    """

    def __init__(self, conv: nn.Conv2d, activation: str = "none"):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("FusedConv2d needs a zero-padded conv with explicit integer padding")
        if activation not in ("none", *_ACTIVATIONS):
            raise ValueError(f"unsupported fused activation {activation!r}; use 'none', 'gelu' or 'relu'")
        self.weight = conv.weight
        self.bias = conv.bias if conv.bias is not None else nn.Parameter(
            torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device), requires_grad=False)
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.activation = activation
        self._packed: tuple | None = None

    def __getstate__(self) -> dict:
        """Copies and pickles leave the packed weight behind (an opaque oneDNN tensor); it is rebuilt on use."""
        state = self.__dict__.copy()
        state["_packed"] = None
        return state

    def _onednn_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight pre-packed in oneDNN's blocked layout (packed for the first input's shape, valid
        for any), reused until the weight changes: the per-call reorder otherwise dominates small inputs."""
        key = weight_key(self.weight)
        if self._packed is None or self._packed[0] != key:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.detach().to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(x.shape))
            self._packed = (key, packed)
        return self._packed[1]

    def extra_repr(self) -> str:
        out_c, in_c = self.weight.shape[:2]
        return (f"{in_c * self.groups}, {out_c}, kernel_size={tuple(self.weight.shape[2:])}, stride={tuple(self.stride)}, "
                f"groups={self.groups}, activation={self.activation}")

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        compiling = torch.compiler.is_compiling()
        if _onednn_usable(x, self.weight) and not (compiling and residual is not None):  # binary op: no fake kernel
            geometry = (self.padding, self.stride, self.dilation, self.groups)
            weight = self.weight if compiling else self._onednn_weight(x)
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, weight, self.bias, *geometry, self.activation, [], "none")
            unary = "relu" if self.activation == "relu" else None  # oneDNN's only unary after a binary post-op
            y = torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, weight, self.bias, *geometry, "add", 1.0, unary, [], None)
            return y if unary or self.activation == "none" else _ACTIVATIONS[self.activation](y)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return y if self.activation == "none" else _ACTIVATIONS[self.activation](y)


def fuse_conv_activation(conv: nn.Module, activation: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(FusedConv2d, nn.Identity())`` for a plain ``nn.Conv2d`` followed by GELU / ReLU, else the inputs."""
    name = _activation_name(activation)
    if type(conv) is nn.Conv2d and name not in (None, "none"):
        return FusedConv2d(conv, name), nn.Identity()
    return conv, activation


_CACHE_BUDGET_BYTES = 16 * 2**20


def _is_pointwise(conv: nn.Module) -> bool:
    return isinstance(conv, FusedConv2d) and conv.weight.shape[2:] == (1, 1) and conv.groups == 1 and \
        conv.stride == [1, 1]


class CacheBlockedMixer(MetaMixer):
    """A fused MetaMixer whose pointwise ``compat → aggregate`` pair (an FFN) runs over batch chunks.

    The expanded hidden map of an FFN on a large batch (e.g. 16 × 240 × 64 × 64 floats, 63 MB) does
    not stay in the CPU's cache between the two convs; chunks whose hidden map fits in
    ``_CACHE_BUDGET_BYTES`` do. Each image is computed exactly as before.
    """

    def forward(self, x, residual=None):
        h = self.query_proj(x)
        if not _onednn_usable(h, self.compat.weight):
            return self._ffn(h, residual)
        hidden_bytes = self.compat.weight.shape[0] * h[0, 0].numel() * h.element_size()
        chunk = max(1, _CACHE_BUDGET_BYTES // hidden_bytes)
        if chunk >= h.shape[0]:
            return self._ffn(h, residual)
        shortcuts = [None] * math.ceil(h.shape[0] / chunk) if residual is None else residual.split(chunk)
        return torch.cat([self._ffn(part, shortcut) for part, shortcut in zip(h.split(chunk), shortcuts)])

    def _ffn(self, h: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        h = self.activation(self.compat(h))
        return self.aggregate(h) if residual is None else self.aggregate(h, residual)


def _fuse_mixer(mixer: MetaMixer) -> None:
    """``compat`` takes over ``activation``; an FFN pair becomes cache-blocked."""
    mixer.compat, mixer.activation = fuse_conv_activation(mixer.compat, mixer.activation)
    if _is_pointwise(mixer.compat) and _is_pointwise(mixer.aggregate) and isinstance(mixer.activation, nn.Identity):
        mixer.__class__ = CacheBlockedMixer  # same modules and parameters, only the forward changes


def _fuse_residual(residual: Residual) -> None:
    """The mixer's last conv adds the shortcut (and applies ``post_act``)."""
    post_act = _activation_name(residual.post_act)
    plain = all(isinstance(m, (nn.Identity, DropPath)) for m in (residual.norm, residual.layer_scale, residual.drop_path))
    mixer = residual.mixer
    if not plain or post_act is None or type(mixer.aggregate) is not nn.Conv2d:
        return
    mixer.aggregate = FusedConv2d(mixer.aggregate, post_act)
    residual.post_act = nn.Identity()
    residual.fused_shortcut = True


@torch.no_grad()
def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fuse the activations and residual additions of a re-parameterized ``model`` in place.

    Applies to every dense 2D :class:`MetaMixer` (its compat conv takes the activation) and to every
    un-modulated :class:`FFNetBlock` branch without norm or LayerScale (its last conv adds the
    shortcut; a DropPath, identity in eval mode, is skipped). Call it on an eval-mode model after
    :func:`ffnet.core.reparameterize`; it is for inference only (training through the fused ops
    falls back to the plain ones). Idempotent. Other modules take part by defining a
    ``fuse_inference()`` method (e.g. a stem fusing its own conv and activation with
    :func:`fuse_conv_activation`).
    """
    if not is_reparameterized(model):
        raise ValueError("fuse_for_inference needs a re-parameterized model: call ffnet.core.reparameterize(model) "
                         "first (or build it with deploy=True)")
    if model.training:
        raise ValueError("fuse_for_inference is for inference: call model.eval() first")
    for module in model.modules():
        if isinstance(module, FFNetBlock) and module.modulation is None:
            for residual in (module.token_mixer, module.channel_mixer):
                if type(residual.mixer) is MetaMixer:
                    _fuse_residual(residual)
        if type(module) is MetaMixer and not isinstance(module, SelfAttention):
            _fuse_mixer(module)
        hook = getattr(module, "fuse_inference", None)
        if callable(hook):
            hook()
    return model
