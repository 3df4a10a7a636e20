"""FFNet-TS: RevIN → patch embedding → FFNet blocks (1D backend) → flatten-and-linear head.

Shapes: B batch, L look-back (96), T horizon, M variables, D width (64), N patches (L // stride).
Inside a block the features are ``(B, M, D, N)``; each mixer sees them as a 1D map with
``M·D`` channels (index ``m·D + d``), which is what the core's MetaMixer operates on.

* token mixer = the core's ``ffnified_attention`` (51-tap depthwise static keys and values)
  whose query projection is CVIFFN: a cross-variable FFN (groups = D, then groups = M)
  followed by a BatchNorm over D;
* channel mixer = a ``MetaMixer`` whose query projection is the core's ``RepConv`` (51∥5
  depthwise, BN per branch) plus a BatchNorm over D, and whose compat / activation / aggregate
  are CIFFN: a per-variable FFN (groups = M) whose second layer mixes all variables (groups = D).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ffnet.core import FFNetBlock, MetaMixer, conv_unit, ffnified_attention, reparameterize
from ffnet.core.conv1d import PointwiseConv1d
from ffnet.engine.checkpoints import load_file, load_state_dict, register_describer, register_layout


@dataclass(frozen=True)
class FFNetTSConfig:
    """Architecture of FFNet-TS. Defaults are the release's ETTh1 settings (see ``presets``)."""

    num_variables: int
    pred_len: int = 96
    seq_len: int = 96
    patch_size: int = 4
    patch_stride: int = 2
    dim: int = 64
    num_blocks: int = 1
    large_kernel: int = 51
    small_kernel: int | None = 5
    ffn_ratio: int = 2
    cross_variable_ratio: int = 2
    dropout: float = 0.7
    cross_variable_dropout: float = 0.3
    output_dropout: float = 0.15
    head_dropout: float = 0.0
    revin: bool = True
    revin_affine: bool = False

    def __post_init__(self):
        if self.num_variables < 1:
            raise ValueError(f"num_variables must be >= 1, got {self.num_variables}")
        if not 1 <= self.patch_stride <= self.patch_size:
            raise ValueError(f"need 1 <= patch_stride <= patch_size, got stride {self.patch_stride}, "
                             f"size {self.patch_size}")
        if self.seq_len < self.patch_size:
            raise ValueError(f"seq_len ({self.seq_len}) must be at least patch_size ({self.patch_size})")
        if self.pred_len < 1:
            raise ValueError(f"pred_len must be >= 1, got {self.pred_len}")

    @property
    def num_patches(self) -> int:
        return self.seq_len // self.patch_stride

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "FFNetTSConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown FFNetTSConfig fields {unknown}")
        return cls(**values)


class RevIN(nn.Module):
    """Reversible instance normalization over time, per sample and variable.

    ``normalize``: ``(B, L, M) → (B, L, M)`` and the statistics ``(mean, std)`` each ``(B, 1, M)``
    (detached; ``std = sqrt(biased var + eps)``); ``denormalize`` maps ``(B, T, M)`` back.
    """

    def __init__(self, num_variables: int, eps: float = 1e-5, affine: bool = False):
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.affine_weight = nn.Parameter(torch.ones(num_variables))
            self.affine_bias = nn.Parameter(torch.zeros(num_variables))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.affine:
            x = x * self.affine_weight + self.affine_bias
        return x, (mean, std)

    def denormalize(self, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.affine:
            x = (x - self.affine_bias) / (self.affine_weight + self.eps * self.eps)
        return x * std + mean


class PatchEmbedding(nn.Module):
    """Shared per-variable stem: ``(B, M, L) → (B, M, D, N)``.

    The series is padded at its end with ``patch_size - stride`` copies of its last value, then
    a ``Conv1d(1, D, patch_size, stride)`` and a ``BatchNorm1d(D)`` embed the patches.
    """

    def __init__(self, patch_size: int, stride: int, dim: int):
        super().__init__()
        self.pad = patch_size - stride
        self.conv = nn.Conv1d(1, dim, patch_size, stride=stride)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, length = x.shape
        x = x.reshape(b * m, 1, length)
        if self.pad:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, self.pad)], dim=-1)
        x = self.norm(self.conv(x))
        return x.reshape(b, m, x.shape[1], x.shape[2])


class VariableBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the D features of ``(B, M·D, N)`` (index ``m·D + d``).

    Statistics are shared over batch, variables and time: the map is viewed as ``(B·M, D, N)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, channels, n = x.shape
        return super().forward(x.reshape(-1, self.num_features, n)).reshape(b, channels, n)


def _variable_major_to_feature_major(x: torch.Tensor, num_variables: int) -> torch.Tensor:
    """``(B, M·C, N)`` indexed ``m·C + c`` → ``(B, C·M, N)`` indexed ``c·M + m``."""
    b, channels, n = x.shape
    return x.reshape(b, num_variables, channels // num_variables, n).transpose(1, 2).reshape(b, channels, n)


def _feature_major_to_variable_major(x: torch.Tensor, num_variables: int) -> torch.Tensor:
    """``(B, C·M, N)`` indexed ``c·M + m`` → ``(B, M·C, N)`` indexed ``m·C + c``."""
    b, channels, n = x.shape
    return x.reshape(b, channels // num_variables, num_variables, n).transpose(1, 2).reshape(b, channels, n)


class CrossVariableFFN(nn.Module):
    """CVIFFN, the token mixer's query projection: ``(B, M·D, N) → (B, M·D, N)`` (index ``m·D + d``).

    fc1 (groups = D) maps, for each feature d, the M variables to ``r·M`` hidden slots;
    dropout then GELU; fc2 (groups = M) maps hidden slots ``{r·g, …, r·g + r − 1}`` × all D
    features to the D features of variable g; dropout; BatchNorm over D.
    """

    def __init__(self, num_variables: int, dim: int, ratio: int = 2, dropout: float = 0.3,
                 output_dropout: float = 0.15):
        super().__init__()
        self.num_variables = num_variables
        self.hidden_variables = ratio * num_variables
        channels = num_variables * dim
        self.fc1 = PointwiseConv1d(channels, ratio * channels, 1, groups=dim)
        self.drop1 = nn.Dropout(dropout)
        self.act = nn.GELU()
        self.fc2 = PointwiseConv1d(ratio * channels, channels, 1, groups=num_variables)
        self.drop2 = nn.Dropout(output_dropout)
        self.norm = VariableBatchNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _variable_major_to_feature_major(x, self.num_variables)  # (B, D·M, N)
        x = self.act(self.drop1(self.fc1(x)))  # (B, D·rM, N), index d·rM + m'
        x = _feature_major_to_variable_major(x, self.hidden_variables)  # (B, rM·D, N)
        x = self.drop2(self.fc2(x))  # (B, M·D, N)
        return self.norm(x)


class ChannelFFNOutput(nn.Module):
    """CIFFN's second layer (the channel mixer's aggregate): ``(B, M·F, N) → (B, M·D, N)``.

    The hidden map (index ``m·F + f``, F = r·D) is regrouped to ``f·M + m``; fc2 (groups = D)
    maps hidden features ``[g·r, (g+1)·r)`` of all M variables to feature g of every variable;
    dropout; back to index ``m·D + d``.
    """

    def __init__(self, num_variables: int, dim: int, hidden: int, dropout: float = 0.15):
        super().__init__()
        self.num_variables = num_variables
        self.fc2 = PointwiseConv1d(num_variables * hidden, num_variables * dim, 1, groups=dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _variable_major_to_feature_major(x, self.num_variables)  # (B, F·M, N)
        x = self.drop(self.fc2(x))  # (B, D·M, N), index d·M + m
        return _feature_major_to_variable_major(x, self.num_variables)


class VariablesAsChannels(nn.Module):
    """Runs a 1D mixer on ``(B, M, D, N)`` as ``(B, M·D, N)`` and returns ``(B, M, D, N)``."""

    def __init__(self, metamixer: nn.Module):
        super().__init__()
        self.metamixer = metamixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.metamixer(x.flatten(1, 2)).reshape(x.shape)


def token_mixer(config: FFNetTSConfig) -> MetaMixer:
    """FFNified attention on ``M·D`` channels with CVIFFN as its query projection."""
    channels = config.num_variables * config.dim
    query = CrossVariableFFN(config.num_variables, config.dim, config.cross_variable_ratio,
                             config.cross_variable_dropout, config.output_dropout)
    return ffnified_attention(1, channels, config.large_kernel, conv_bn=False, query_proj=query)


def channel_mixer(config: FFNetTSConfig) -> MetaMixer:
    """Re-parameterizable depthwise conv + BN(D) as query projection, CIFFN as keys and values."""
    m, d = config.num_variables, config.dim
    hidden = d * config.ffn_ratio
    branches = [config.small_kernel] if config.small_kernel else []
    query = nn.Sequential(OrderedDict(
        conv=conv_unit(1, m * d, m * d, config.large_kernel, groups=m * d, branch_kernels=branches, bn=True),
        norm=VariableBatchNorm(d),
    ))
    return MetaMixer(
        query_proj=query,
        compat=PointwiseConv1d(m * d, m * hidden, 1, groups=m),
        activation=nn.Sequential(nn.Dropout(config.dropout), nn.GELU()),
        aggregate=ChannelFFNOutput(m, d, hidden, config.output_dropout),
    )


def ffnet_ts_block(config: FFNetTSConfig) -> FFNetBlock:
    """The core's FFNet block (1D backend, no pre-norm) on ``(B, M, D, N)`` features."""
    return FFNetBlock(
        VariablesAsChannels(token_mixer(config)),
        VariablesAsChannels(channel_mixer(config)),
        channels=config.num_variables * config.dim,
        spatial_dims=1,
    )


class FlattenHead(nn.Module):
    """``(B, M, D, N) → (B, M, T)``: flatten D·N, one Linear shared by all variables, dropout."""

    def __init__(self, in_features: int, pred_len: int, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(in_features, pred_len)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear(x.flatten(2)))


class FFNetTS(nn.Module):
    """FFNet-TS forecaster: ``(B, L, M)`` standardized history → ``(B, T, M)`` forecast."""

    def __init__(self, config: FFNetTSConfig):
        super().__init__()
        self.config = config
        self.revin = RevIN(config.num_variables, affine=config.revin_affine) if config.revin else None
        self.patch_embed = PatchEmbedding(config.patch_size, config.patch_stride, config.dim)
        self.blocks = nn.ModuleList(ffnet_ts_block(config) for _ in range(config.num_blocks))
        self.head = FlattenHead(config.dim * config.num_patches, config.pred_len, config.head_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 3 or x.shape[1] != cfg.seq_len or x.shape[2] != cfg.num_variables:
            raise ValueError(f"expected input (batch, {cfg.seq_len}, {cfg.num_variables}) = (batch, look-back, "
                             f"variables), got {tuple(x.shape)}")
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        z = self.patch_embed(x.transpose(1, 2))  # (B, M, D, N)
        for block in self.blocks:
            z = block(z)
        y = self.head(z).transpose(1, 2)  # (B, T, M)
        if self.revin is not None:
            y = self.revin.denormalize(y, stats)
        return y


MODELS: dict[str, type[FFNetTS]] = {"ffnet_ts": FFNetTS}


def create_model(name: str = "ffnet_ts", **config) -> FFNetTS:
    """Build a registered time-series model from :class:`FFNetTSConfig` fields."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: registered are {sorted(MODELS)}")
    return MODELS[name](FFNetTSConfig(**config))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# The authors' checkpoints (``checkpoint.pth`` of github ysj9909/FFNet, time_series_forecasting)

_BLOCK = r"stages\.0\.blocks\.(\d+)\."
_TOKEN = r"blocks.\1.token_mixer.mixer.metamixer."
_CHANNEL = r"blocks.\1.channel_mixer.mixer.metamixer."
AUTHORS_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^downsample_layers\.0\.0\.", "patch_embed.conv."),
    (r"^downsample_layers\.0\.1\.", "patch_embed.norm."),
    (rf"^{_BLOCK}token_mixer\.ffnpw1\.", _TOKEN + "query_proj.fc1."),
    (rf"^{_BLOCK}token_mixer\.ffnpw2\.", _TOKEN + "query_proj.fc2."),
    (rf"^{_BLOCK}token_mixer\.norm\.", _TOKEN + "query_proj.norm."),
    (rf"^{_BLOCK}token_mixer\.dw1\.", _TOKEN + "compat."),
    (rf"^{_BLOCK}token_mixer\.dw2\.", _TOKEN + "aggregate."),
    (rf"^{_BLOCK}channel_mixer\.dw\.lkb_origin\.conv\.", _CHANNEL + "query_proj.conv.main.conv."),
    (rf"^{_BLOCK}channel_mixer\.dw\.lkb_origin\.bn\.", _CHANNEL + "query_proj.conv.main.bn."),
    (rf"^{_BLOCK}channel_mixer\.dw\.small_conv\.conv\.", _CHANNEL + "query_proj.conv.branches.0.conv."),
    (rf"^{_BLOCK}channel_mixer\.dw\.small_conv\.bn\.", _CHANNEL + "query_proj.conv.branches.0.bn."),
    (rf"^{_BLOCK}channel_mixer\.dw\.lkb_reparam\.", _CHANNEL + "query_proj.conv."),
    (rf"^{_BLOCK}channel_mixer\.norm\.", _CHANNEL + "query_proj.norm."),
    (rf"^{_BLOCK}channel_mixer\.ffnpw1\.", _CHANNEL + "compat."),
    (rf"^{_BLOCK}channel_mixer\.ffnpw2\.", _CHANNEL + "aggregate.fc2."),
    (r"^head\.linear\.", "head.linear."),
    (r"^revin_layer\.affine_(weight|bias)$", r"revin.affine_\1"),
)
# Modules the release constructs but never runs with its scripts' settings (one stage, no
# multi-scale fusion, time marks ignored): 50,516 parameters, dropped on load.
AUTHORS_UNUSED_PREFIXES = ("downsample_layers.1.", "downsample_layers.2.", "downsample_layers.3.", "te_patch.",
                           "lat_layer.", "smooth_layer.", "up_sample_conv.")


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` (DataParallel) and ``model.`` (the release's ``Model``) prefixes."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith(("model_res.", "model_trend.")):
            raise ValueError("this checkpoint was trained with --decomposition 1 (two FFNets); only the released "
                             "setting --decomposition 0 is supported")
        if key.startswith("model."):
            key = key[len("model."):]
        out[key] = value
    return out


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the release's keys to this model's, dropping the unused modules' keys.

    Raises on keys that are neither mapped nor known-unused, so nothing is dropped silently.
    """
    state_dict = _strip_wrappers(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(AUTHORS_UNUSED_PREFIXES):
            continue
        if key.startswith("stages.") and not key.startswith("stages.0."):
            raise ValueError(f"{key!r}: multi-stage checkpoints are not supported (the released scripts use one "
                             "stage, --num_blocks 1)")
        if key.startswith("head.linears."):
            raise ValueError("this checkpoint has per-variable heads (--individual 1); only the released shared "
                             "head (--individual 0) is supported")
        for pattern, replacement in AUTHORS_KEY_MAP:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                converted[new_key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unrecognised keys in the authors' checkpoint: {unknown[:8]}"
                         f"{' …' if len(unknown) > 8 else ''}")
    return converted


def config_from_authors_state_dict(state_dict: Mapping[str, torch.Tensor], **overrides) -> FFNetTSConfig:
    """Read the architecture (M, D, horizon, kernels, ratios, blocks) off the release's weights.

    Training-only settings (dropouts) and the patch stride cannot be read from weights; they come
    from ``overrides`` or the defaults (stride 2, the released value).
    """
    sd = _strip_wrappers(state_dict)
    try:
        stem = sd["downsample_layers.0.0.weight"]
        cv_fc1 = sd["stages.0.blocks.0.token_mixer.ffnpw1.weight"]
        ci_fc1 = sd["stages.0.blocks.0.channel_mixer.ffnpw1.weight"]
        dw1 = sd["stages.0.blocks.0.token_mixer.dw1.weight"]
        head = sd["head.linear.weight"]
    except KeyError as err:
        raise ValueError(f"not an FFNet-TS checkpoint of the authors' release: missing {err}") from None
    dim = stem.shape[0]
    num_variables = cv_fc1.shape[1]
    block_ids = {int(k.split(".")[3]) for k in sd if k.startswith("stages.0.blocks.")}
    small = sd.get("stages.0.blocks.0.channel_mixer.dw.small_conv.conv.weight")
    stride = overrides.pop("patch_stride", 2)
    values = dict(
        num_variables=num_variables,
        pred_len=head.shape[0],
        seq_len=head.shape[1] // dim * stride,
        patch_size=stem.shape[2],
        patch_stride=stride,
        dim=dim,
        num_blocks=len(block_ids),
        large_kernel=dw1.shape[2],
        small_kernel=None if small is None else small.shape[2],
        ffn_ratio=ci_fc1.shape[0] // (num_variables * dim),
        cross_variable_ratio=cv_fc1.shape[0] // (num_variables * dim),
        revin_affine="revin_layer.affine_weight" in sd,
    )
    if small is None and "stages.0.blocks.0.channel_mixer.dw.lkb_reparam.weight" in sd:
        values["small_kernel"] = 5  # folded already; any branch size gives the same deploy-time model
    values.update(overrides)
    return FFNetTSConfig(**values)


def load_authors_state_dict(model: FFNetTS, state_dict: Mapping[str, torch.Tensor] | str | Path) -> FFNetTS:
    """Load a release checkpoint (a plain ``state_dict``, or its path) into ``model``, strictly.

    A checkpoint saved with ``--small_kernel_merged True`` holds the folded 51-tap conv; the model
    is then re-parameterized first so that the keys match.
    """
    if isinstance(state_dict, (str, Path)):
        state_dict = load_file(state_dict)
    converted = convert_authors_state_dict(state_dict)
    if any(".query_proj.conv.weight" in k for k in converted):
        reparameterize(model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)}"
                  for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(f"checkpoint does not fit this FFNetTSConfig (check num_variables, horizon, ffn_ratio; "
                         f"config_from_authors_state_dict reads them off the weights): missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}, shape mismatches {mismatched[:4]}")
    load_state_dict(model, converted, source="the authors' checkpoint", convert=False)
    return model


def _is_authors_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """The release's FFNet-TS keys: 1-D (3-dim) ``token_mixer.dw1`` kernels under ``stages.0.blocks``."""
    return any(k.endswith("token_mixer.dw1.weight") and "stages.0.blocks." in k and v.dim() == 3
               for k, v in state.items())


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> str | None:
    """``'FFNet-TS (7 variables, horizon 96, D 64, CIFFN ratio 2: shaped like ETTh1)'`` or ``None``."""
    try:
        if _is_authors_layout(state):
            config = config_from_authors_state_dict(state)
            where = "the authors' layout"
        elif "patch_embed.conv.weight" in state and "head.linear.weight" in state:
            dim = state["patch_embed.conv.weight"].shape[0]
            variables = state["blocks.0.token_mixer.mixer.metamixer.query_proj.fc1.weight"].shape[1]
            hidden = state["blocks.0.channel_mixer.mixer.metamixer.compat.weight"].shape[0] // variables
            config = FFNetTSConfig(num_variables=variables, pred_len=state["head.linear.weight"].shape[0], dim=dim,
                                   ffn_ratio=hidden // dim)
            where = "ours"
        else:
            return None
    except (KeyError, IndexError, ValueError):
        return None
    from ffnet.timeseries.data import STANDARD_DATASETS
    from ffnet.timeseries.presets import preset_for

    like = [name for name, spec in STANDARD_DATASETS.items()
            if spec.num_variables == config.num_variables
            and preset_for(name, config.pred_len).ffn_ratio == config.ffn_ratio]
    shaped = f": shaped like {'/'.join(like)}" if like else ""
    return (f"FFNet-TS ({where}; {config.num_variables} variables, horizon {config.pred_len}, D {config.dim}, "
            f"CIFFN ratio {config.ffn_ratio}{shaped})")


register_layout("ffnet-ts-authors", _is_authors_layout, convert_authors_state_dict)
register_describer("ffnet-ts", describe_state_dict)


__all__ = [
    "FFNetTSConfig", "FFNetTS", "RevIN", "PatchEmbedding", "VariableBatchNorm", "CrossVariableFFN",
    "ChannelFFNOutput", "VariablesAsChannels", "FlattenHead", "token_mixer", "channel_mixer", "ffnet_ts_block",
    "MODELS", "create_model", "count_parameters", "AUTHORS_KEY_MAP", "AUTHORS_UNUSED_PREFIXES",
    "convert_authors_state_dict", "config_from_authors_state_dict", "load_authors_state_dict", "describe_state_dict",
]
