"""The FFNet block: a token mixer and a channel mixer, each in its own residual branch.

One class serves every domain; what differs is configured, not re-written:

* normalization: BN inside the conv units (images), a pre-norm (points: LayerNorm) or none (SR);
* LayerScale and DropPath (timm's), a GELU after the addition (the segmentation head);
* adaLN modulation (diffusion): ``x + gate * mixer(norm(x) * (1 + scale) + shift)``.
"""
from __future__ import annotations

import torch
from timm.layers import DropPath, LayerScale, LayerScale2d
from torch import nn

from ffnet.core import backend
from ffnet.core.backend import FeatureWise
from ffnet.core.reparam import scale_output_channels


def _layer_scale(spatial_dims: int, channels: int, init: float) -> nn.Module:
    if spatial_dims == 2:
        return LayerScale2d(channels, init)
    if spatial_dims == 3:
        return FeatureWise(LayerScale(channels, init))
    raise ValueError("LayerScale is available for spatial_dims 2 (images) and 3 (points)")


class Residual(nn.Module):
    """``post_act(x + drop_path(layer_scale(mixer(norm(x)))))``, with optional adaLN modulation."""

    def __init__(
        self,
        mixer: nn.Module,
        *,
        spatial_dims: int,
        channels: int,
        norm: str | None = None,
        norm_eps: float = 1e-6,
        norm_affine: bool = True,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        post_act: str | None = None,
    ):
        super().__init__()
        norm_kwargs = dict(eps=norm_eps, affine=norm_affine) if norm == "ln" else {}
        self.norm = backend.norm(norm, spatial_dims, channels, **norm_kwargs)
        self.mixer = mixer
        self.layer_scale = nn.Identity() if layer_scale is None else _layer_scale(spatial_dims, channels, layer_scale)
        drop = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.drop_path = FeatureWise(drop) if spatial_dims == 3 else drop
        self.post_act = nn.Identity() if post_act is None else backend.activation(post_act, spatial_dims)
        self.fused_shortcut = False

    def forward(self, x, shift: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                gate: torch.Tensor | None = None):
        if self.fused_shortcut:
            return self.mixer(x, residual=x)
        h = self.norm(x)
        if scale is not None:
            assert shift is not None, "adaLN modulation passes shift with scale"  # refines the type for TorchScript
            h = h * (1 + scale) + shift
        h = self.layer_scale(self.mixer(h))
        if gate is not None:
            h = h * gate
        return self.post_act(x + self.drop_path(h))

    def post_reparameterize(self, fold_scales: bool) -> None:
        """Fold LayerScale into the mixer's last linear operator."""
        if not fold_scales or isinstance(self.layer_scale, nn.Identity):
            return
        gamma = self.layer_scale.module.gamma if isinstance(self.layer_scale, FeatureWise) else self.layer_scale.gamma
        scale_output_channels(self.mixer.output_layer(), gamma.detach())
        self.layer_scale = nn.Identity()


class FFNetBlock(nn.Module):
    """Token mixer then channel mixer, each residual: ``(B, C, *S) → (B, C, *S)`` or sparse.

    Args:
        token_mixer, channel_mixer: MetaMixer instances (see :mod:`ffnet.core.metamixer`).
        spatial_dims: 1, 2 or 3 (sparse), choosing the backend of norms and scales.
        norm: pre-norm of both branches: ``'ln'``, ``'bn'`` or ``None``.
        layer_scale: LayerScale init value, or ``None`` for no LayerScale.
        drop_path: stochastic-depth rate of both branches.
        post_act: activation applied after each residual addition (``None`` for none).
        cond_channels: if set, the block is adaLN-modulated by a condition ``(B, cond_channels)``
            through a zero-initialised ``SiLU → Linear(cond, 6C)``; use a non-affine pre-norm.
    """

    def __init__(
        self,
        token_mixer: nn.Module,
        channel_mixer: nn.Module,
        *,
        channels: int,
        spatial_dims: int = 2,
        norm: str | None = None,
        norm_eps: float = 1e-6,
        norm_affine: bool = True,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        post_act: str | None = None,
        cond_channels: int | None = None,
    ):
        super().__init__()
        backend.check_spatial_dims(spatial_dims)
        common = dict(spatial_dims=spatial_dims, channels=channels, norm=norm, norm_eps=norm_eps,
                      norm_affine=norm_affine, layer_scale=layer_scale, drop_path=drop_path, post_act=post_act)
        self.token_mixer = Residual(token_mixer, **common)
        self.channel_mixer = Residual(channel_mixer, **common)
        self.modulation = None
        if cond_channels is not None:
            if spatial_dims == 3:
                raise ValueError("adaLN modulation is defined for dense inputs")
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_channels, 6 * channels))
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x, cond: torch.Tensor | None = None):
        if self.modulation is None:
            return self.channel_mixer(self.token_mixer(x))
        if cond is None:
            raise ValueError("this block is adaLN-modulated: pass cond of shape (B, cond_channels)")
        params = self.modulation(cond).reshape(cond.shape[0], 6, -1, *([1] * (x.dim() - 2)))
        shift1, scale1, gate1, shift2, scale2, gate2 = params.unbind(1)
        x = self.token_mixer(x, shift1, scale1, gate1)
        return self.channel_mixer(x, shift2, scale2, gate2)
