"""U-DiT and U-FFNet: U-shaped latent-diffusion backbones built from the MetaMixer core.

One network class, :class:`UDiT`, serves both models. Each of its five levels (encoder 1,
encoder 2, bottleneck, decoder 2, decoder 1) stacks ``U_DiTBlock`` s of two adaLN-Zero
sub-blocks; a sub-block is the core's :class:`~ffnet.core.FFNetBlock` with a token mixer chosen
per level (a config value) and U-DiT's re-parameterizable depthwise FFN as channel mixer:

* ``'attention'``: U-DiT's downsampled cosine self-attention with 2D RoPE;
* ``dict(type='ffnified', ...)``: the core's FFNified attention (U-FFNet's encoder/decoder).

``create_model('U-DiT-B')`` / ``create_model('U-FFNet-B')`` build the presets of
:data:`ARCHITECTURES`; ``ffnet.core.reparameterize(model)`` gives the deployed form.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from ffnet.core import FFNetBlock, MetaMixer, RepConv, Reparameterizable, SelfAttention, backend, ffnified_attention
from ffnet.engine.checkpoints import register_describer, register_layout

LEVELS = ("encoder1", "encoder2", "bottleneck", "decoder2", "decoder1")
LOGIT_SCALE_MAX = math.log(100.0)

# U-FFNet token mixers (docs/generation.md explains the choices). Both drop BN (adaLN's
# LayerNorm precedes the mixer and batch statistics would mix noise levels) and keep FFNet's
# k∥3 re-parameterization branches, which fold into one depthwise kernel.
FFNIFIED_MIXER = dict(type="ffnified", kernel_size=15, branch_kernels=(3,), output_proj=True)
PLAIN_FFNIFIED_MIXER = dict(type="ffnified", kernel_size=7, branch_kernels=(3,), output_proj=False)
ATTENTION_MIXER = dict(type="attention", down_factor=2, downsampler_kernel=5)

DEPTHS = (2, 5, 8, 5, 2)  # blocks per level, every preset
_UDIT_SIZES = {"S": dict(width=96, num_heads=4), "B": dict(width=192, num_heads=8), "L": dict(width=384, num_heads=16)}
ARCHITECTURES: dict[str, dict[str, Any]] = {}
for _size, _dims in _UDIT_SIZES.items():
    ARCHITECTURES[f"U-DiT-{_size}"] = dict(_dims, mixers=(ATTENTION_MIXER,) * 5)
    ARCHITECTURES[f"U-FFNet-{_size}"] = dict(
        _dims, mixers=(FFNIFIED_MIXER, FFNIFIED_MIXER, ATTENTION_MIXER, FFNIFIED_MIXER, FFNIFIED_MIXER))
    ARCHITECTURES[f"U-FFNet-{_size}-plain"] = dict(
        _dims, mixers=(PLAIN_FFNIFIED_MIXER, PLAIN_FFNIFIED_MIXER, ATTENTION_MIXER, PLAIN_FFNIFIED_MIXER,
                       PLAIN_FFNIFIED_MIXER))


class FactorizedPointwise(Reparameterizable):
    """A chain of biased 1x1 convs with no activation, ``(B, C_0, H, W) → (B, C_n, H, W)``.

    U-DiT factorizes its FFN projections (d→d→2d and 2d→d→d); the chain is linear, so
    ``fuse()`` composes it into one 1x1 conv ``C_0 → C_n``.
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"a pointwise chain needs at least an input and an output width, got {channels}")
        self.layers = nn.Sequential(*(backend.pointwise(2, a, b) for a, b in zip(channels[:-1], channels[1:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        first = self.layers[0].weight
        weight = torch.eye(first.shape[1], device=first.device, dtype=first.dtype)
        bias = first.new_zeros(first.shape[1])
        for conv in self.layers:
            w = conv.weight.flatten(1)
            weight, bias = w @ weight, w @ bias + conv.bias
        fused = nn.Conv2d(weight.shape[1], weight.shape[0], 1, device=first.device, dtype=first.dtype)
        fused.weight.copy_(weight[:, :, None, None])
        fused.bias.copy_(bias)
        return fused


def rep_dw_ffn(channels: int, expansion: float = 2.0, kernel_size: int = 5,
               branch_kernels: Sequence[int] = (3, 1)) -> MetaMixer:
    """U-DiT's FFN (``ffn_type='rep'``) as a MetaMixer, ``(B, d, H, W) → (B, d, H, W)``.

    keys: factorized 1x1 d → h/2 → h (h = expansion·d); GELU; values: depthwise k×k ∥ smaller
    depthwise kernels ∥ identity on the h coefficients, then factorized 1x1 h → h/2 → d.
    Deployed: 1x1 d→h, GELU, DW k×k, 1x1 h→d.
    """
    hidden = int(channels * expansion)
    return MetaMixer(
        nn.Identity(),
        FactorizedPointwise((channels, hidden // 2, hidden)),
        backend.activation("gelu", 2),
        nn.Sequential(
            RepConv(2, hidden, hidden, kernel_size, branch_kernels, groups=hidden, bn=False, identity=True),
            FactorizedPointwise((hidden, hidden // 2, channels)),
        ),
    )


@lru_cache(maxsize=64)
def rope_2d_tables(grid_h: int, grid_w: int, head_dim: int, theta: float,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, signed_sin)``, each ``(grid_h·grid_w, head_dim)``, for :func:`apply_rope_2d`.

    Channel pair j = (2j, 2j+1) turns by x·f_i for j = 2i and by y·f_i for j = 2i + 1, with
    f_i = theta^(-4i / head_dim) and (x, y) the token's column and row on the grid.
    """
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim)
    index = torch.arange(grid_h * grid_w, device=device)
    x_angle = torch.outer((index % grid_w).float(), freqs)
    y_angle = torch.outer((index // grid_w).float(), freqs)
    angles = torch.stack([x_angle, y_angle], dim=-1).flatten(1).repeat_interleave(2, dim=-1)
    sign = torch.tensor([-1.0, 1.0], device=device).repeat(head_dim // 2)
    return angles.cos(), angles.sin() * sign


def apply_rope_2d(t: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``t`` ``(..., N, head_dim)``: (a, b) → (a·cos − b·sin, a·sin + b·cos).

    ``cos`` and ``signed_sin`` ``(N, head_dim)`` come from :func:`rope_2d_tables`.
    """
    swapped = t.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return t * cos.to(t.dtype) + swapped * signed_sin.to(t.dtype)


class DownsampledCosineAttention(SelfAttention):
    """U-DiT's downsampled self-attention, ``(B, C, H, W) → (B, C, H, W)``.

    ``x + DWConv_k(x)`` is split into ``f²`` interleaved sub-grids (pixel-unshuffle phases);
    each attends within itself (shared weights) with cosine similarity times a learned per-head
    temperature (clamped at 100) and 2D RoPE on queries and keys; the phases are merged back
    and projected by the output linear. Projections are the core's ``SelfAttention`` ones.
    """

    def __init__(self, channels: int, num_heads: int, down_factor: int = 2, downsampler_kernel: int = 5,
                 rope_theta: float = 10000.0):
        super().__init__(channels, num_heads, qkv_bias=True, cosine=False)
        # The core's cosine=True sets the same parameter through a tensor .item(), which fails
        # when the model is built on the meta device; set it here instead.
        self.cosine = True
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        head_dim = channels // num_heads
        if head_dim % 4:
            raise ValueError(f"2D RoPE needs a head width divisible by 4; got {channels} channels / {num_heads} heads")
        self.down_factor = down_factor
        self.rope_theta = rope_theta
        self.token_downsampler = backend.conv(2, channels, channels, downsampler_kernel, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = self.down_factor
        if h % f or w % f:
            raise ValueError(f"downsampled attention with factor {f} needs H and W divisible by {f}, got {h}x{w}")
        x = x + self.token_downsampler(x)
        tokens = x.reshape(b, c, h // f, f, w // f, f).permute(0, 3, 5, 2, 4, 1).reshape(b * f * f, -1, c)
        out = self.attend_rotary(tokens, (h // f, w // f))
        return out.reshape(b, f, f, h // f, w // f, c).permute(0, 5, 3, 1, 4, 2).reshape(b, c, h, w)

    def attend_rotary(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``(B', N, C) → (B', N, C)`` for tokens laid out row-major on ``grid`` (N = gh·gw)."""
        bp, n, c = tokens.shape
        heads = lambda t: t.reshape(bp, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # noqa: E731
        q = heads(self.query_proj(tokens))
        k, v = (heads(t) for t in self.key_value(tokens).chunk(2, dim=-1))
        cos, signed_sin = rope_2d_tables(grid[0], grid[1], c // self.num_heads, self.rope_theta, tokens.device)
        q, k = apply_rope_2d(q, cos, signed_sin), apply_rope_2d(k, cos, signed_sin)
        temperature = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        q = F.normalize(q, dim=-1) * temperature
        out = F.scaled_dot_product_attention(q, F.normalize(k, dim=-1), v, scale=1.0)
        return self.aggregate(out.transpose(1, 2).reshape(bp, n, c))


def _mixer_spec(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    defaults = {"attention": ATTENTION_MIXER, "ffnified": FFNIFIED_MIXER}
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.get("type")
    if kind not in defaults:
        raise ValueError(f"unknown token mixer type {kind!r}: use 'attention' or 'ffnified'")
    unknown = set(spec) - set(defaults[kind])
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for a {kind!r} mixer; valid: {sorted(defaults[kind])}")
    return {**defaults[kind], **spec}


def build_token_mixer(spec: str | Mapping[str, Any], channels: int, num_heads: int) -> nn.Module:
    """A level's token mixer from its spec (``'attention'``, ``'ffnified'`` or a dict with options)."""
    spec = _mixer_spec(spec)
    if spec["type"] == "attention":
        return DownsampledCosineAttention(channels, num_heads, spec["down_factor"], spec["downsampler_kernel"])
    mixer = ffnified_attention(2, channels, spec["kernel_size"], branch_kernels=tuple(spec["branch_kernels"]),
                               conv_bn=False, query_bn=False)
    if spec["output_proj"]:
        return nn.Sequential(mixer, backend.pointwise(2, channels, channels))
    return mixer


class UDiTBlock(nn.Module):
    """Two adaLN-Zero sub-blocks ``x + g·mixer(mod(LN(x)))``, ``(B, C, H, W), (B, C) → (B, C, H, W)``."""

    def __init__(self, channels: int, num_heads: int, mixer: str | Mapping[str, Any], ffn_expansion: float):
        super().__init__()
        self.sub_blocks = nn.ModuleList(
            FFNetBlock(build_token_mixer(mixer, channels, num_heads), rep_dw_ffn(channels, ffn_expansion),
                       channels=channels, spatial_dims=2, norm="ln", norm_affine=False, norm_eps=1e-6,
                       cond_channels=channels)
            for _ in range(2)
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for block in self.sub_blocks:
            x = block(x, cond)
        return x


class FinalLayer(nn.Module):
    """LN (no affine) → adaLN shift/scale → Conv3x3, ``(B, C, H, W) → (B, C_out, H, W)``."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm = backend.layer_norm(2, channels, eps=1e-6, affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 2 * channels))
        self.out_proj = backend.conv(2, channels, out_channels, 3)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond)[:, :, None, None].chunk(2, dim=1)
        return self.out_proj(self.norm(x) * (1 + scale) + shift)


def _resample(channels: int, down: bool) -> nn.Sequential:
    """Conv3x3 then pixel-unshuffle (C → 2C, H/2) or pixel-shuffle (C → C/2, 2H)."""
    if down:
        return nn.Sequential(backend.conv(2, channels, channels // 2, 3, bias=False), nn.PixelUnshuffle(2))
    return nn.Sequential(backend.conv(2, channels, channels * 2, 3, bias=False), nn.PixelShuffle(2))


class UDiT(nn.Module):
    """U-shaped diffusion backbone: ``(B, in, H, W), t (B,), y (B,) → (B, out, H, W)``.

    ``out = 2·in`` with ``learn_sigma`` (ε then the variance interpolation ``v``). Levels run at
    widths C, 2C, 4C, 2C, 2C on H, H/2, H/4, H/2, H; ``mixers`` gives each level's token mixer.
    Label id ``num_classes`` is the null (unconditional) class.
    """

    def __init__(
        self,
        width: int = 192,
        num_heads: int = 8,
        depths: Sequence[int] = DEPTHS,
        mixers: Sequence[str | Mapping[str, Any]] = (ATTENTION_MIXER,) * 5,
        ffn_expansion: float = 2.0,
        in_channels: int = 4,
        num_classes: int = 1000,
        class_dropout_prob: float = 0.1,
        learn_sigma: bool = True,
        frequency_embedding_size: int = 256,
    ):
        super().__init__()
        if len(depths) != 5 or len(mixers) != 5:
            raise ValueError(f"depths and mixers need one entry per level {LEVELS}, got {depths} and {mixers}")
        if width % 2:
            raise ValueError(f"width must be even (pixel-unshuffle halves then quadruples channels), got {width}")
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.num_classes = num_classes
        self.class_dropout_prob = class_dropout_prob
        self.mixer_specs = tuple(_mixer_spec(m) for m in mixers)
        widths = (width, 2 * width, 4 * width, 2 * width, 2 * width)
        self.cond_widths = (width, 2 * width, 4 * width)

        self.patch_embed = backend.conv(2, in_channels, width, 3)
        self.time_proj = Timesteps(frequency_embedding_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedders = nn.ModuleList(TimestepEmbedding(frequency_embedding_size, w) for w in self.cond_widths)
        self.label_embedders = nn.ModuleList(nn.Embedding(num_classes + 1, w) for w in self.cond_widths)
        for name, w, depth, mixer in zip(LEVELS, widths, depths, self.mixer_specs):
            self.add_module(name, nn.ModuleList(UDiTBlock(w, num_heads, mixer, ffn_expansion) for _ in range(depth)))
        self.down1 = _resample(width, down=True)
        self.down2 = _resample(2 * width, down=True)
        self.up2 = _resample(4 * width, down=False)
        self.skip_fuse2 = backend.pointwise(2, 4 * width, 2 * width)
        self.up1 = _resample(2 * width, down=False)
        self.skip_fuse1 = backend.pointwise(2, 2 * width, 2 * width)
        self.output_conv = backend.conv(2, 2 * width, 2 * width, 3)
        self.final_layer = FinalLayer(2 * width, self.out_channels)
        self.initialize_weights()

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (two 2x resamplings and the attention sub-grids)."""
        multiple = 4
        for spec, scale in zip(self.mixer_specs, (1, 2, 4, 2, 1)):
            if spec["type"] == "attention":
                multiple = math.lcm(multiple, scale * spec["down_factor"])
        return multiple

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """DiT's init: Xavier-uniform linears/convs, zero biases, N(0, 0.02) embeddings, zero adaLN and output."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        for table in self.label_embedders:
            nn.init.normal_(table.weight, std=0.02)
        for embedder in self.time_embedders:
            nn.init.normal_(embedder.linear_1.weight, std=0.02)
            nn.init.normal_(embedder.linear_2.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, FFNetBlock):
                nn.init.zeros_(module.modulation[1].weight)
                nn.init.zeros_(module.modulation[1].bias)
        for layer in (self.final_layer.modulation[1], self.final_layer.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        """Raise a ValueError naming the problem for inputs the model does not accept."""
        m = self.size_multiple
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"expected latents of shape (B, {self.in_channels}, H, W) with H and W multiples of {m} "
                f"(e.g. 32x32 latents of 256x256 images), got {tuple(x.shape)}")
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.dtype.is_floating_point:
            raise ValueError(f"expected integer class labels of shape ({x.shape[0]},), got {tuple(y.shape)} {y.dtype}")
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"expected timesteps of shape ({x.shape[0]},), got {tuple(t.shape)}")
        if y.numel() and y.device.type != "meta" and (int(y.min()) < 0 or int(y.max()) > self.num_classes):
            raise ValueError(
                f"class ids must be in [0, {self.num_classes - 1}] (or {self.num_classes} for the unconditional "
                f"null class), got values in [{int(y.min())}, {int(y.max())}]")

    def drop_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Replace each label by the null class with probability ``class_dropout_prob`` (one mask for all levels)."""
        drop = torch.rand(y.shape, device=y.device) < self.class_dropout_prob
        return torch.where(drop, torch.full_like(y, self.num_classes), y)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = t.reshape(1).expand(x.shape[0]) if t.dim() == 0 else t
        self.check_inputs(x, t, y)
        if self.training and self.class_dropout_prob > 0:
            y = self.drop_labels(y)
        t_freq = self.time_proj(t).to(x.dtype)
        c1, c2, c3 = (te(t_freq) + ye(y) for te, ye in zip(self.time_embedders, self.label_embedders))

        def run(blocks: nn.ModuleList, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            for block in blocks:
                h = block(h, cond)
            return h

        enc1 = run(self.encoder1, self.patch_embed(x), c1)
        enc2 = run(self.encoder2, self.down1(enc1), c2)
        h = run(self.bottleneck, self.down2(enc2), c3)
        h = run(self.decoder2, self.skip_fuse2(torch.cat([self.up2(h), enc2], dim=1)), c2)
        h = run(self.decoder1, self.skip_fuse1(torch.cat([self.up1(h), enc1], dim=1)), c2)
        return self.final_layer(self.output_conv(h), c2)


def create_model(arch: str = "U-DiT-B", **overrides: Any) -> UDiT:
    """A preset of :data:`ARCHITECTURES` (``'U-DiT-B'``, ``'U-FFNet-B'``, ``'U-FFNet-B-plain'``, ...).

    ``overrides`` replace constructor arguments, e.g. ``mixers=...`` or ``num_classes=10``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {sorted(ARCHITECTURES)}")
    return UDiT(**{**ARCHITECTURES[arch], **overrides})


_OFFICIAL_LEVELS = {"encoder_level_1": "encoder1", "encoder_level_2": "encoder2", "latent": "bottleneck",
                    "decoder_level_2": "decoder2", "decoder_level_1": "decoder1"}
_OFFICIAL_RENAMES = [
    (r"^x_embedder\.proj\.", "patch_embed."),
    (r"^t_embedder_(\d)\.mlp\.0\.", lambda m: f"time_embedders.{int(m[1]) - 1}.linear_1."),
    (r"^t_embedder_(\d)\.mlp\.2\.", lambda m: f"time_embedders.{int(m[1]) - 1}.linear_2."),
    (r"^y_embedder_(\d)\.embedding_table\.", lambda m: f"label_embedders.{int(m[1]) - 1}."),
    (r"^(\w+_level_\d|latent)\.(\d+)\.", lambda m: f"{_OFFICIAL_LEVELS[m[1]]}.{m[2]}."),
    (r"\.adaLN_modulation(\d)\.1\.", lambda m: f".sub_blocks.{int(m[1]) - 1}.modulation.1."),
    (r"\.attn(\d)\.to_out\.", lambda m: f".sub_blocks.{int(m[1]) - 1}.token_mixer.mixer.aggregate."),
    (r"\.attn(\d)\.to_qkv\.", lambda m: f".sub_blocks.{int(m[1]) - 1}.token_mixer.mixer.to_qkv."),
    (r"\.attn(\d)\.downsampler\.layer\.",
     lambda m: f".sub_blocks.{int(m[1]) - 1}.token_mixer.mixer.token_downsampler."),
    (r"\.attn(\d)\.logit_scale$", lambda m: f".sub_blocks.{int(m[1]) - 1}.token_mixer.mixer.logit_scale"),
    (r"\.mlp(\d)\.project_in\.(\d)\.",
     lambda m: f".sub_blocks.{int(m[1]) - 1}.channel_mixer.mixer.compat.layers.{m[2]}."),
    (r"\.mlp(\d)\.project_out\.(\d)\.",
     lambda m: f".sub_blocks.{int(m[1]) - 1}.channel_mixer.mixer.aggregate.1.layers.{m[2]}."),
    (r"\.mlp(\d)\.dwconv\.0\.", lambda m: f".sub_blocks.{int(m[1]) - 1}.channel_mixer.mixer.aggregate.0.main."),
    (r"\.mlp(\d)\.dwconv\.(\d)\.",
     lambda m: f".sub_blocks.{int(m[1]) - 1}.channel_mixer.mixer.aggregate.0.branches.{int(m[2]) - 1}."),
    (r"^down1_2\.body\.", "down1."), (r"^down2_3\.body\.", "down2."),
    (r"^up3_2\.body\.", "up2."), (r"^up2_1\.body\.", "up1."),
    (r"^reduce_chan_level2\.", "skip_fuse2."), (r"^reduce_chan_level1\.", "skip_fuse1."),
    (r"^output\.", "output_conv."), (r"^final_layer\.adaLN_modulation\.", "final_layer.modulation."),
]


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict of the official U-DiT code (``udit_models.py``, ``rep=1``) to :class:`UDiT` keys.

    The fused ``to_qkv`` splits into the query projection (first third) and the key/value
    projection; ``to_out`` (a 1x1 conv) becomes the attention's output linear.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        for pattern, replacement in _OFFICIAL_RENAMES:
            key = re.sub(pattern, replacement, key)
        if ".to_qkv." in key:
            dim = value.shape[0] // 3
            converted[key.replace(".to_qkv.", ".query_proj.")] = value[:dim]
            converted[key.replace(".to_qkv.", ".key_value.")] = value[dim:]
        elif key.endswith("token_mixer.mixer.aggregate.weight"):
            converted[key] = value.flatten(1)
        else:
            converted[key] = value
    return converted


OFFICIAL_LAYOUT = "the official U-DiT layout"
_SIZE_OF_WIDTH = {dims["width"]: size for size, dims in _UDIT_SIZES.items()}


def official_arch(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """``'U-DiT-B'`` (etc.) for a state dict in the official U-DiT layout, else ``None``."""
    stem = state_dict.get("x_embedder.proj.weight")
    if stem is None or stem.dim() != 4 or stem.shape[0] not in _SIZE_OF_WIDTH:
        return None
    return f"U-DiT-{_SIZE_OF_WIDTH[stem.shape[0]]}"


def _level_mixer(state_dict: Mapping[str, torch.Tensor], level: str) -> str | None:
    """``'attention'`` / ``'ffnified 15x15 + output projection'`` for the first block of ``level``."""
    prefix = f"{level}.0.sub_blocks.0.token_mixer.mixer."
    if prefix + "logit_scale" in state_dict:
        return "attention"
    compat = [v for k, v in state_dict.items() if k.startswith(prefix) and re.search(r"compat\.(main\.)?weight$", k)]
    if not compat:
        return None
    output_proj = any(k.startswith(prefix + "1.") for k in state_dict)
    return f"ffnified {compat[0].shape[-2]}x{compat[0].shape[-1]}" + (" + output projection" if output_proj else "")


def _describe_spec(spec: Mapping[str, Any]) -> str:
    if spec["type"] == "attention":
        return "attention"
    k = spec["kernel_size"]
    return f"ffnified {k}x{k}" + (" + output projection" if spec["output_proj"] else "")


def describe_backbone_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Which backbone ``state_dict`` holds: ``'U-FFNet-B (train-time, 1000 classes)'``, an official U-DiT
    file, or a non-preset U-DiT-family network; ``None`` when it is none of them."""
    state = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")} or state_dict
    arch = official_arch(state)
    if arch is not None:
        return f"an official {arch} checkpoint ({OFFICIAL_LAYOUT})"
    stem, labels = state.get("patch_embed.weight"), state.get("label_embedders.0.weight")
    if stem is None or labels is None:
        return None
    mixers = [_level_mixer(state, level) for level in LEVELS]
    depths = tuple(len({k.split(".")[1] for k in state if k.startswith(f"{level}.")}) for level in LEVELS)
    form = "train-time" if any(".branches." in k for k in state) else "deployed"
    details = f"{form}, {labels.shape[0] - 1} classes"
    for name, preset in ARCHITECTURES.items():
        if preset["width"] == stem.shape[0] and DEPTHS == depths and mixers == [
                _describe_spec(_mixer_spec(spec)) for spec in preset["mixers"]]:
            return f"{name} ({details})"
    outer = set(mixers[:2] + mixers[3:])
    mixer_text = (f"{outer.pop()} mixers around a {mixers[2]} bottleneck" if len(outer) == 1
                  else "mixers " + ", ".join(map(str, mixers)))
    return f"a U-DiT-family backbone of width {stem.shape[0]} (depths {depths}, {mixer_text}; {details})"


register_layout(OFFICIAL_LAYOUT, lambda state: official_arch(state) is not None, convert_official_state_dict)
register_describer("generation", describe_backbone_state_dict)
