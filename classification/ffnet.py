"""FFNet-1..4 ImageNet classifiers (MetaMixer paper, arXiv 2406.02021), registered as timm models.

Architecture (the paper's Table 1 and the authors' models/ffnet.py), built from :mod:`ffnet.core` parts:

* stem, stride 4: conv3x3 s2 + BN → GELU → conv3x3 s2 + BN (no activation after the second);
* four stages at strides 4/8/16/32; stages 2-4 open with :class:`PatchMerging`
  (DW 7x7∥3x3 s2 with channel multiplier 2, then ``x + 1x1(BN(x))``);
* blocks: :class:`ffnet.core.FFNetBlock` with an FFNified-attention token mixer (1x1 conv + BN
  query projection, two depthwise convs: plain 3x3 with bias in stages 1-2, re-parameterizable
  7x7∥3x3 with BN in stages 3-4) and a ConvNeXt-style channel mixer (DW conv + BN, 3x3 for
  FFNet-1 or 7x7∥3x3 otherwise, then a 3x FFN); LayerScale 1e-6 on FFNet-3/4 only;
* head: BatchNorm2d → global average pool → Linear.

``ffnet.core.reparameterize(model)`` folds the train-time branches and, with the default
``fold_scales=True``, also LayerScale and the final BatchNorm (into the classifier; BN before an
average pool commutes with the pool). ``fold_scales=False`` gives the authors' deployed form.
``timm.create_model("ffnet_1", deploy=True)`` builds the fully folded model directly.

The model follows timm's model contract: ``torch.fx`` tracing (``features_only=True, feature_cls='fx'``),
``torch.jit.script`` of the train-time and re-parameterized forms, and ``global_pool=''`` for
unpooled features. This module has no postponed annotations: FX copies the root ``forward``'s
annotations into its generated code, which TorchScript must resolve.
"""
import functools
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from timm.layers import trunc_normal_
from timm.models import adapt_input_conv, build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ffnet.core import (
    ConvBN,
    FFNetBlock,
    FusedConv2d,
    PreBNPointwiseSkip,
    RepConv,
    convnext_channel_mixer,
    ffnified_attention,
    fuse_conv_activation,
    reparameterize,
)
from ffnet.engine.checkpoints import unwrap_state_dict

__all__ = [
    "FFNet", "PatchMerging", "FFNetStage", "FFNetStem", "VARIANTS", "create_ffnet", "checkpoint_filter_fn",
    "ffnet_1", "ffnet_2", "ffnet_3", "ffnet_4",
]

TOTAL_STRIDE = 32
# A depthwise kernel of this size gets a parallel 3x3 branch (+ BN per branch) that folds into it.
_REPARAM_BRANCHES = {7: (3,)}

VARIANTS: Dict[str, Dict[str, Any]] = {
    "ffnet_1": dict(widths=(80, 160, 320, 640), depths=(2, 2, 8, 2), channel_mixer_kernels=(3, 3, 3, 3),
                    layer_scale=None, drop_path_rate=0.1),
    "ffnet_2": dict(widths=(88, 176, 352, 704), depths=(3, 3, 15, 3), channel_mixer_kernels=(7, 7, 7, 7),
                    layer_scale=None, drop_path_rate=0.15),
    "ffnet_3": dict(widths=(96, 192, 384, 768), depths=(4, 4, 22, 5), channel_mixer_kernels=(7, 7, 7, 7),
                    layer_scale=1e-6, drop_path_rate=0.35),
    "ffnet_4": dict(widths=(128, 256, 512, 1024), depths=(4, 4, 27, 3), channel_mixer_kernels=(7, 7, 7, 7),
                    layer_scale=1e-6, drop_path_rate=0.4),
}


@torch.fx.node.has_side_effect  # an assertion: FX dead-code elimination keeps it
def check_ffnet_input(x: torch.Tensor, in_chans: int, min_size: int = TOTAL_STRIDE) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, in_chans, H, W)`` with H, W >= ``min_size`` (scriptable)."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            f"FFNet expected {in_chans}-channel input of shape (B, {in_chans}, H, W), got {list(x.shape)}: "
            f"pass channels-first image batches, or build the model with a matching in_chans"
        )
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f"FFNet input {list(x.shape[2:])} is smaller than the total stride {min_size}; "
            f"resize or pad images to at least {min_size}x{min_size}"
        )


torch.fx.wrap("check_ffnet_input")  # a leaf call for every FX tracer (its shape checks are Python control flow)


class FFNetStem(nn.Module):
    """Stride-4 stem ``(B, in_chans, H, W) → (B, C1, H/4, W/4)``: conv3x3 s2+BN, GELU, conv3x3 s2+BN.

    Not an ``nn.Sequential``, so timm's feature wrappers call it whole and its input check runs.
    """

    def __init__(self, in_chans: int, hidden: int, out_channels: int):
        super().__init__()
        self.in_chans = in_chans
        self.conv1 = ConvBN(2, in_chans, hidden, 3, stride=2)
        self.act = nn.GELU()
        self.conv2 = ConvBN(2, hidden, out_channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            check_ffnet_input(x, self.in_chans)
        return self.conv2(self.act(self.conv1(x)))

    def fuse_inference(self) -> None:
        """Let the deployed first conv apply the GELU (see :func:`ffnet.core.fuse_for_inference`)."""
        self.conv1, self.act = fuse_conv_activation(self.conv1, self.act)


class PatchMerging(nn.Sequential):
    """Stride-2 downsampler ``(B, C_in, H, W) → (B, C_out, H/2, W/2)``, ``C_out`` a multiple of ``C_in``.

    ``conv``: grouped (groups = C_in) 7x7∥3x3 stride-2 conv, each branch + BN; ``proj``: ``x + 1x1(BN(x))``.
    No activation.
    """

    def __init__(self, in_channels: int, out_channels: int):
        if out_channels % in_channels:
            raise ValueError(f"PatchMerging needs out_channels ({out_channels}) to be a multiple of "
                             f"in_channels ({in_channels}) (a depthwise conv with a channel multiplier)")
        super().__init__(OrderedDict(
            conv=RepConv(2, in_channels, out_channels, 7, _REPARAM_BRANCHES[7], stride=2, groups=in_channels),
            proj=PreBNPointwiseSkip(2, out_channels),
        ))


def ffnet_block(
    channels: int,
    token_mixer_kernel: int,
    channel_mixer_kernel: int,
    expansion: float,
    layer_scale: Optional[float],
    drop_path: float,
) -> FFNetBlock:
    """One FFNet block ``(B, C, H, W) → (B, C, H, W)``: residual FFNified attention, residual ConvNeXt mixer."""
    token_branches = _REPARAM_BRANCHES.get(token_mixer_kernel, ())
    token_mixer = ffnified_attention(
        2, channels, token_mixer_kernel, branch_kernels=token_branches, conv_bn=bool(token_branches), query_bn=True,
    )
    channel_mixer = convnext_channel_mixer(
        2, channels, expansion, channel_mixer_kernel,
        branch_kernels=_REPARAM_BRANCHES.get(channel_mixer_kernel, ()), bn=True,
    )
    return FFNetBlock(token_mixer, channel_mixer, channels=channels, spatial_dims=2, norm=None,
                      layer_scale=layer_scale, drop_path=drop_path)


class FFNetStage(nn.Module):
    """Optional :class:`PatchMerging` then ``depth`` FFNet blocks."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class FFNet(nn.Module):
    """FFNet image classifier ``(B, in_chans, H, W) → (B, num_classes)``, H and W ≥ 32.

    Args:
        widths: channels of the four stages (each a multiple of the previous one).
        depths: blocks per stage.
        stem_width: hidden width of the stem.
        token_mixer_kernels: depthwise kernel of the token mixer per stage (7 → 7x7∥3x3 + BN,
            otherwise a plain conv with bias).
        channel_mixer_kernels: depthwise kernel of the channel mixer per stage (7 → 7x7∥3x3 + BN,
            otherwise conv + BN).
        expansion: FFN expansion ratio of the channel mixer.
        layer_scale: LayerScale init value, or ``None`` for none.
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the ``global_pool`` features).
        in_chans: input channels.
        global_pool: ``'avg'``, or ``''`` for no pooling (needs ``num_classes=0``; ``forward`` then returns the
            ``(B, C4, H/32, W/32)`` features of ``forward_features``).
        drop_rate: dropout before the classifier (the authors' models use none).
        drop_path_rate: final stochastic-depth rate; rates rise linearly from 0 over all blocks.
        deploy: build the fully re-parameterized model (``reparameterize(model, fold_scales=True)``).
    """

    def __init__(
        self,
        widths: Sequence[int] = VARIANTS["ffnet_1"]["widths"],
        depths: Sequence[int] = VARIANTS["ffnet_1"]["depths"],
        *,
        stem_width: int = 64,
        token_mixer_kernels: Sequence[int] = (3, 3, 7, 7),
        channel_mixer_kernels: Sequence[int] = VARIANTS["ffnet_1"]["channel_mixer_kernels"],
        expansion: float = 3.0,
        layer_scale: Optional[float] = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        deploy: bool = False,
    ):
        super().__init__()
        num_stages = len(widths)
        if not (len(depths) == len(token_mixer_kernels) == len(channel_mixer_kernels) == num_stages):
            lengths = [len(widths), len(depths), len(token_mixer_kernels), len(channel_mixer_kernels)]
            raise ValueError("widths, depths, token_mixer_kernels and channel_mixer_kernels need one entry per stage, "
                             f"got lengths {lengths}")
        self._check_global_pool(global_pool, num_classes)
        self.arch_args = dict(
            widths=tuple(widths), depths=tuple(depths), stem_width=stem_width,
            token_mixer_kernels=tuple(token_mixer_kernels), channel_mixer_kernels=tuple(channel_mixer_kernels),
            expansion=expansion, layer_scale=layer_scale,
        )
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = widths[-1]
        self.head_bn_folded = False  # set by post_reparameterize(fold_scales=True)

        self.stem = FFNetStem(in_chans, stem_width, widths[0])
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages: List[nn.Module] = []
        self.feature_info = []  # no annotation: TorchScript warns on annotated empty containers
        first_block = 0
        for i in range(num_stages):
            downsample = nn.Identity() if i == 0 else PatchMerging(widths[i - 1], widths[i])
            blocks = [
                ffnet_block(widths[i], token_mixer_kernels[i], channel_mixer_kernels[i], expansion, layer_scale,
                            rates[first_block + j])
                for j in range(depths[i])
            ]
            first_block += depths[i]
            stages.append(FFNetStage(downsample, blocks))
            self.feature_info.append(dict(num_chs=widths[i], reduction=4 * 2 ** i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(widths[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(widths[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        if deploy:
            reparameterize(self, fold_scales=True)

    @staticmethod
    def _check_global_pool(global_pool: str, num_classes: int) -> None:
        if global_pool not in ("avg", ""):
            raise ValueError(f"FFNet supports global_pool='avg' only (or '' for no pooling), got {global_pool!r}")
        if global_pool == "" and num_classes > 0:
            raise ValueError(f"global_pool='' (no pooling) needs num_classes=0, got num_classes={num_classes}: "
                             f"the classifier takes pooled features (use global_pool='avg')")

    @torch.no_grad()
    def post_reparameterize(self, fold_scales: bool) -> None:
        """Fold the final BatchNorm into the classifier: ``W·(x·s + t) + b = (W·s)·x + (W·t + b)``.

        Valid because BN before a global *average* pool commutes with it. Kept when there is no
        classifier (``num_classes=0``) or ``fold_scales`` is False (the authors' deployed form).
        """
        if isinstance(self.stem.conv1, nn.Conv2d):  # timm's first_conv trait follows the folded stem conv
            self._traits = dict(getattr(self, "_traits", {}), first_conv="stem.conv1")
        if not fold_scales or not isinstance(self.norm, nn.BatchNorm2d) or not isinstance(self.head, nn.Linear):
            return
        scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
        shift = self.norm.bias - self.norm.running_mean * scale
        self.head.bias.add_(self.head.weight @ shift)
        self.head.weight.mul_(scale)
        self.norm = nn.Identity()
        self.head_bn_folded = True

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if self.head_bn_folded:
            raise RuntimeError(
                "the final BatchNorm of this FFNet is folded into its classifier (reparameterize(fold_scales=True) "
                "or deploy=True), so the classifier cannot be replaced: reset it on the train-time model, or "
                "re-parameterize with fold_scales=False"
            )
        global_pool = self.global_pool if global_pool is None else global_pool
        self._check_global_pool(global_pool, num_classes)
        self.global_pool = global_pool
        self.num_classes = num_classes
        device = self.stem.conv2.weight.device if isinstance(self.stem.conv2, nn.Conv2d) else self.norm.weight.device
        self.head = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            _init_weights(self.head)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (strides 4/8/16/32) selected by ``indices`` (timm semantics).

        ``norm`` applies the final BatchNorm to the last stage's output.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"FFNet intermediates are NCHW only, got output_fmt={output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last = len(self.stages) - 1
        stages = self.stages if not stop_early else self.stages[:max_index + 1]
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm and i == last else x)
        if intermediates_only:
            return intermediates
        if i == last:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True,
    ) -> List[int]:
        """Drop stages after the last needed one (and the head/final norm); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_head or prune_end:
            self.head = nn.Identity()
            self.num_classes = 0
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        return take_indices

    def load_pretrained(self, checkpoint_path: str) -> None:
        """timm ``custom_load`` hook: load a release/own checkpoint file through :func:`checkpoint_filter_fn`.

        The file is read weights-only (``ffnet.engine.checkpoints.load_file``; timm CheckpointSaver files,
        which pickle their ``argparse.Namespace`` args, are allowed).
        A checkpoint with a different class count or input channels is adapted as timm does.
        """
        from ffnet.engine.checkpoints import load_file

        state = checkpoint_filter_fn(load_file(checkpoint_path), self)
        stem_key = "stem.conv1.conv.weight" if "stem.conv1.conv.weight" in state else "stem.conv1.weight"
        if state[stem_key].shape[1] != self.in_chans:
            state[stem_key] = adapt_input_conv(self.in_chans, state[stem_key])
        own = self.state_dict()
        head_keys = [k for k in ("head.weight", "head.bias") if k in state or k in own]
        if any(k not in state or k not in own or state[k].shape != own[k].shape for k in head_keys):
            for key in head_keys:
                state.pop(key, None)
        result = self.load_state_dict(state, strict=False)
        problems = [k for k in result.missing_keys + result.unexpected_keys if not k.startswith("head.")]
        if problems:
            raise RuntimeError(f"checkpoint {checkpoint_path} does not fit the model: {problems[:5]}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) → (B, C4, H/32, W/32)``, after the final BatchNorm (unless it was folded)."""
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, C4, h, w) → (B, num_classes)``, or the pooled ``(B, C4)`` features with ``pre_logits``.

        With ``global_pool=''`` (and no classifier) the features stay ``(B, C4, h, w)``.
        """
        if self.global_pool == "avg":
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` hook: refuse a model fused by :func:`ffnet.core.fuse_for_inference` in one line."""
        if any(isinstance(m, FusedConv2d) for m in self.modules()):
            raise RuntimeError(
                "an FFNet fused by ffnet.core.fuse_for_inference cannot be scripted (its oneDNN-fused convs run "
                "eagerly only): script the re-parameterized model (ffnet.core.reparameterize) before fusing it"
            )
        return self


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints: the authors' key layout (ysj9909/FFNet models/ffnet.py), form detection, conversion.

_FORMS = ("train", "authors_deployed", "deployed")
_FORM_NAMES = {
    "train": "train-time",
    "authors_deployed": "deployed (authors' fuse, reparameterize(fold_scales=False))",
    "deployed": "fully folded deployed (reparameterize(fold_scales=True))",
}
_BN_STATS = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _authors_unit(suffix: str) -> str:
    """Key suffix inside one of the authors' conv units (Conv2d_BN, RepVGGDW or plain/fused conv)."""
    for pattern, replacement in (
        (r"^conv\.c\.", "main.conv."), (r"^conv\.bn\.", "main.bn."),
        (r"^conv1\.c\.", "branches.0.conv."), (r"^conv1\.bn\.", "branches.0.bn."),
        (r"^c\.", "conv."), (r"^bn\.", "bn."),
    ):
        if re.match(pattern, suffix):
            return re.sub(pattern, replacement, suffix)
    if suffix in ("weight", "bias"):
        return suffix
    raise KeyError(suffix)


def _authors_block_key(rest: str) -> str:
    rules: Tuple[Tuple[str, Callable[[re.Match], str]], ...] = (
        (r"token_mixer\.0\.main\.fc\.(.+)", lambda m: "token_mixer.mixer.query_proj." + _authors_unit(m[1])),
        (r"token_mixer\.0\.main\.conv1\.(.+)", lambda m: "token_mixer.mixer.compat." + _authors_unit(m[1])),
        (r"token_mixer\.0\.main\.conv2\.(.+)", lambda m: "token_mixer.mixer.aggregate." + _authors_unit(m[1])),
        (r"token_mixer\.0\.layer_scale", lambda m: "token_mixer.layer_scale.gamma"),
        (r"channel_mixer\.main\.conv\.(.+)", lambda m: "channel_mixer.mixer.query_proj." + _authors_unit(m[1])),
        (r"channel_mixer\.main\.fc1\.(weight|bias)", lambda m: "channel_mixer.mixer.compat." + m[1]),
        (r"channel_mixer\.main\.fc2\.(weight|bias)", lambda m: "channel_mixer.mixer.aggregate." + m[1]),
        (r"channel_mixer\.layer_scale", lambda m: "channel_mixer.layer_scale.gamma"),
    )
    for pattern, build in rules:
        match = re.fullmatch(pattern, rest)
        if match:
            return build(match)
    raise KeyError(rest)


def _authors_downsample_key(rest: str) -> str:
    match = re.fullmatch(r"proj\.0\.(.+)", rest)
    if match:
        return "conv." + _authors_unit(match[1])
    match = re.fullmatch(r"proj\.1\.conv\.(bn\.\w+|c\.weight)", rest)  # Conv2d_BN_skip → BN_Conv2d
    if match:
        return "proj." + _authors_unit(match[1])
    match = re.fullmatch(r"proj\.1\.(weight|bias)", rest)
    if match:
        return "proj." + match[1]
    raise KeyError(rest)


def _authors_key(key: str) -> str:
    """The key of this module for a key of the authors' ``models/ffnet.py`` (train-time or fused)."""
    try:
        match = re.fullmatch(r"patch_embed\.([02])\.(.+)", key)
        if match:
            return ("stem.conv1." if match[1] == "0" else "stem.conv2.") + _authors_unit(match[2])
        match = re.fullmatch(r"stages\.(\d+)\.(\d+)\.(.+)", key)
        if match:
            stage, index, rest = int(match[1]), int(match[2]), match[3]
            if stage > 0 and index == 0:
                return f"stages.{stage}.downsample." + _authors_downsample_key(rest)
            block = index - 1 if stage > 0 else index
            return f"stages.{stage}.blocks.{block}." + _authors_block_key(rest)
        if re.fullmatch(rf"norm\.{_BN_STATS}|head\.(weight|bias)", key):
            return key
    except KeyError:
        pass
    raise ValueError(f"unrecognised key {key!r} in a checkpoint in the authors' layout (ysj9909/FFNet models/ffnet.py)")


def _to_own_layout(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if not any(k.startswith("patch_embed.") for k in state):
        return dict(state)
    converted = {}
    for key, value in state.items():
        new_key = _authors_key(key)
        if new_key.endswith("layer_scale.gamma"):
            value = value.reshape(-1)  # (C, 1, 1) → (C,)
        converted[new_key] = value
    return converted


_Signature = Dict[str, Tuple[int, ...]]


def _signature(state: Mapping[str, torch.Tensor]) -> _Signature:
    return {k: tuple(v.shape) for k, v in state.items()}


def _advance(model: "FFNet", form: str) -> None:
    if form == "authors_deployed":
        reparameterize(model, fold_scales=False)
    elif form == "deployed":
        reparameterize(model, fold_scales=True)


def _form_signatures(arch_args: Mapping[str, Any], num_classes: int, in_chans: int) -> Dict[str, _Signature]:
    """State-dict signatures of the three forms of an architecture (built on the meta device; cached)."""
    return _cached_form_signatures(tuple(sorted(arch_args.items())), num_classes, in_chans)


@functools.lru_cache(maxsize=32)
def _cached_form_signatures(arch_items: Tuple[Tuple[str, Any], ...], num_classes: int, in_chans: int
                            ) -> Dict[str, _Signature]:
    signatures = {}
    with torch.device("meta"):
        skeleton = FFNet(**dict(arch_items), num_classes=num_classes, in_chans=in_chans)
        for form in _FORMS:
            _advance(skeleton, form)
            signatures[form] = _signature(skeleton.state_dict())
    return signatures


def _match_form(signature: _Signature, signatures: Mapping[str, _Signature]) -> Optional[str]:
    return next((form for form in _FORMS if signatures[form] == signature), None)


def _variant_name(arch_args: Mapping[str, Any]) -> str:
    for name in VARIANTS:
        if all(arch_args.get(k) == v for k, v in _arch_args(name).items()):
            return name
    return "a custom FFNet"


def _arch_args(variant: str) -> Dict[str, Any]:
    cfg = {k: v for k, v in VARIANTS[variant].items() if k != "drop_path_rate"}
    return dict(cfg, stem_width=64, token_mixer_kernels=(3, 3, 7, 7), expansion=3.0)


def _identify_checkpoint(signature: _Signature, num_classes: int, in_chans: int) -> Optional[str]:
    for name in VARIANTS:
        form = _match_form(signature, _form_signatures(_arch_args(name), num_classes, in_chans))
        if form is not None:
            return f"{name} ({_FORM_NAMES[form]})"
    return None


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: "FFNet") -> Dict[str, torch.Tensor]:
    """Convert an FFNet checkpoint to a state dict that ``model.load_state_dict(strict=True)`` accepts.

    Accepts the authors' release (timm CheckpointSaver dicts or raw state dicts, train-time or
    deployed key layout, ``module.`` prefix) and this module's own checkpoints in any of the three
    forms: train-time, ``authors_deployed`` (``reparameterize(fold_scales=False)``) and ``deployed``
    (fully folded). A train-time checkpoint is folded to match a deployed ``model``; a folded
    checkpoint cannot be un-folded into a train-time model (``ValueError``). A checkpoint with a
    different class count keeps its own classifier (timm then drops it); a deployed model whose final
    BatchNorm is folded into its classifier cannot take a different class count (``ValueError``).
    """
    state = _to_own_layout(unwrap_state_dict(state_dict))
    arch = model.arch_args
    model_variant = _variant_name(arch)
    stem_key = "stem.conv1.conv.weight" if "stem.conv1.conv.weight" in state else "stem.conv1.weight"
    if stem_key not in state:
        raise ValueError(f"checkpoint has no FFNet stem weight ('stem.conv1.conv.weight' or 'patch_embed.0.c.weight'); "
                         f"it is not an FFNet checkpoint for {model_variant}")
    ckpt_in_chans = state[stem_key].shape[1]
    ckpt_classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    signature = _signature(state)
    ckpt_form = _match_form(signature, _form_signatures(arch, ckpt_classes, ckpt_in_chans))
    if ckpt_form is None:
        found = _identify_checkpoint(signature, ckpt_classes, ckpt_in_chans) or "an unknown architecture"
        raise ValueError(f"checkpoint ({len(state)} tensors) is for {found}, but the model is {model_variant}: "
                         f"create the matching variant")
    model_form = _match_form(_signature(model.state_dict()), _form_signatures(arch, model.num_classes, model.in_chans))
    if model_form is None:
        raise ValueError(f"the model's state dict matches no train-time or re-parameterized form of {model_variant}")
    if _FORMS.index(ckpt_form) > _FORMS.index(model_form):
        raise ValueError(
            f"cannot load a {_FORM_NAMES[ckpt_form]} checkpoint into a {_FORM_NAMES[model_form]} {model_variant} "
            f"model: re-parameterized weights cannot be un-folded; load it into a deployed model "
            f"(timm.create_model(..., deploy=True), or ffnet.core.reparameterize(model) first)"
        )
    classes_differ = model.num_classes != ckpt_classes
    if classes_differ and model_form == "deployed" and model.head_bn_folded:
        raise ValueError(
            f"the checkpoint has {ckpt_classes} classes and the deployed model {model.num_classes}; its final "
            "BatchNorm is folded into the classifier, so the classifier cannot be replaced: load the checkpoint "
            "into the train-time model, change the classifier, then reparameterize"
        )
    if ckpt_form == model_form:
        return state
    with torch.device("meta"):  # every tensor is overwritten by the strict load: skip the weight init
        converter = FFNet(**arch, num_classes=ckpt_classes, in_chans=ckpt_in_chans)
        _advance(converter, ckpt_form)
    converter.to_empty(device=state[stem_key].device)
    converter.load_state_dict(state, strict=True)
    if classes_differ:
        converter.reset_classifier(model.num_classes)
    _advance(converter, model_form)
    return converter.state_dict()


# --------------------------------------------------------------------------------------------------------------------
# timm registration

def _cfg(url: str = "", **kwargs: Any) -> Dict[str, Any]:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 256, 256),
        "pool_size": (8, 8),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "crop_mode": "center",
        "fixed_input_size": True,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv1.conv",
        "classifier": "head",
        "custom_load": True,
        "license": "apache-2.0",
        "paper_ids": "arXiv:2406.02021",
        "paper_name": "FFNet: MetaMixer-based Efficient Convolutional Mixer Design",
        "origin_url": "https://github.com/ysj9909/FFNet",
        **kwargs,
    }


_RELEASE = "https://github.com/ysj9909/FFNet/releases/download/v1.0/"
# 384 fine-tuned models: the authors' fine-tune evaluation resizes straight to 384 (crop_pct 1.0; as the authors evaluate).
_384 = dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0)

default_cfgs = generate_default_cfgs({
    "ffnet_1.in1k": _cfg(_RELEASE + "ffnet_1.pth.tar"),
    "ffnet_1.dist_in1k": _cfg(_RELEASE + "ffnet_1_distillation.pth.tar"),
    "ffnet_2.in1k": _cfg(_RELEASE + "ffnet_2.pth.tar"),
    "ffnet_2.dist_in1k": _cfg(_RELEASE + "ffnet_2_distillation.pth.tar"),
    "ffnet_3.in1k": _cfg(_RELEASE + "ffnet_3.pth.tar", crop_pct=0.95),
    "ffnet_3.dist_in1k": _cfg(_RELEASE + "ffnet_3_distillation.pth.tar", crop_pct=0.95),
    "ffnet_3.in1k_384": _cfg(_RELEASE + "ffnet_3_384.pth.tar", **_384),
    "ffnet_4.in1k_384": _cfg(_RELEASE + "ffnet_4_384.pth.tar", **_384),
    "ffnet_4.untrained": _cfg(crop_pct=0.95),
})


def create_ffnet(variant: str, pretrained: bool = False, **kwargs: Any) -> FFNet:
    """Build ``ffnet_1`` … ``ffnet_4`` through timm's builder (``features_only``, pretrained cfgs, …)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown FFNet variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    model_args = dict(_arch_args(variant), drop_path_rate=VARIANTS[variant]["drop_path_rate"])
    model_args.update(kwargs)
    overlay = model_args.get("pretrained_cfg_overlay")
    if pretrained and overlay and overlay.get("file"):
        # timm rebuilds the cfg from the overlay; keep our loader (weights-only, strict) for local files
        model_args["pretrained_cfg_overlay"] = dict(overlay, custom_load=True)
    model = build_model_with_cfg(
        FFNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        kwargs_filter=("img_size",),  # fully convolutional: any H, W >= 32 works
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **model_args,
    )
    return model



@register_model
def ffnet_1(pretrained: bool = False, **kwargs: Any) -> FFNet:
    """FFNet-1: widths 80-640, depths 2-2-8-2, 3x3 channel-mixer kernels; 13.66M deployed params."""
    return create_ffnet("ffnet_1", pretrained, **kwargs)


@register_model
def ffnet_2(pretrained: bool = False, **kwargs: Any) -> FFNet:
    """FFNet-2: widths 88-704, depths 3-3-15-3, 7x7∥3x3 channel mixer; 26.91M deployed params."""
    return create_ffnet("ffnet_2", pretrained, **kwargs)


@register_model
def ffnet_3(pretrained: bool = False, **kwargs: Any) -> FFNet:
    """FFNet-3: widths 96-768, depths 4-4-22-5, LayerScale 1e-6; 48.33M deployed params."""
    return create_ffnet("ffnet_3", pretrained, **kwargs)


@register_model
def ffnet_4(pretrained: bool = False, **kwargs: Any) -> FFNet:
    """FFNet-4: widths 128-1024, depths 4-4-27-3, LayerScale 1e-6; 79.20M deployed params."""
    return create_ffnet("ffnet_4", pretrained, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# The authors' ImageNet layout for ffnet.engine.checkpoints (registered by ``ffnet.classification``)

AUTHORS_LAYOUT = "the authors' ImageNet layout (ysj9909/FFNet models/ffnet.py)"


def is_authors_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True for a classifier state dict in the authors' key layout (stem ``patch_embed.0``/``.2``)."""
    stem = {k.split(".")[1] for k in state if k.startswith("patch_embed.")}
    return bool(stem) and stem <= {"0", "2"} and any(k.startswith("stages.") for k in state)


def authors_to_own(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' train-time or fused keys in this module's layout; keys it does not know pass unchanged.

    LayerScale ``(C, 1, 1)`` becomes ``(C,)``. Also maps the authors' mmdet/mmseg backbone (whose
    output norms ``norm0`` … ``norm3`` keep their names).
    """
    converted = {}
    for key, value in state.items():
        try:
            new_key = _authors_key(key)
        except ValueError:
            converted[key] = value
            continue
        converted[new_key] = value.reshape(-1) if new_key.endswith("layer_scale.gamma") else value
    return converted


_OWN_UNITS = ((r"main\.conv\.", "conv.c."), (r"main\.bn\.", "conv.bn."), (r"branches\.0\.conv\.", "conv1.c."),
              (r"branches\.0\.bn\.", "conv1.bn."), (r"conv\.", "c."), (r"bn\.", "bn."))
_OWN_BLOCK_PARTS = {
    ("token", "query_proj"): "token_mixer.0.main.fc.", ("token", "compat"): "token_mixer.0.main.conv1.",
    ("token", "aggregate"): "token_mixer.0.main.conv2.", ("channel", "query_proj"): "channel_mixer.main.conv.",
    ("channel", "compat"): "channel_mixer.main.fc1.", ("channel", "aggregate"): "channel_mixer.main.fc2.",
}


def _own_unit(suffix: str) -> str:
    for pattern, replacement in _OWN_UNITS:
        if re.match(pattern, suffix):
            return replacement + suffix[len(re.match(pattern, suffix)[0]):]
    return suffix  # bare weight/bias of a plain or fused conv


def _own_key_to_authors(key: str) -> str:
    match = re.fullmatch(r"stem\.conv([12])\.(.+)", key)
    if match:
        return f"patch_embed.{0 if match[1] == '1' else 2}." + _own_unit(match[2])
    match = re.fullmatch(r"stages\.(\d+)\.downsample\.(conv|proj)\.(.+)", key)
    if match:
        if match[2] == "conv":
            return f"stages.{match[1]}.0.proj.0." + _own_unit(match[3])
        fused = match[3] in ("weight", "bias")
        return f"stages.{match[1]}.0.proj.1." + (match[3] if fused else "conv." + _own_unit(match[3]))
    match = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(token|channel)_mixer\.(.+)", key)
    if match:
        stage, block, mixer, rest = int(match[1]), int(match[2]), match[3], match[4]
        head = f"stages.{stage}.{block + 1 if stage > 0 else block}."
        if rest == "layer_scale.gamma":
            return head + ("token_mixer.0.layer_scale" if mixer == "token" else "channel_mixer.layer_scale")
        part = re.fullmatch(r"mixer\.(query_proj|compat|aggregate)\.(.+)", rest)
        if part:
            return head + _OWN_BLOCK_PARTS[(mixer, part[1])] + _own_unit(part[2])
    return key


def own_to_authors(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`authors_to_own`: this module's keys (classifier or mm backbone) in the authors' layout."""
    converted = {}
    for key, value in state.items():
        new_key = _own_key_to_authors(key)
        converted[new_key] = value.reshape(-1, 1, 1) if new_key.endswith("layer_scale") else value
    return converted


def describe_checkpoint(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``'ffnet_2 (train-time)'`` for an FFNet classifier state dict (ours or the authors'), else ``None``."""
    if is_authors_layout(state):
        state = authors_to_own(state)
    stem_key = next((k for k in ("stem.conv1.conv.weight", "stem.conv1.weight") if k in state), None)
    if stem_key is None or any(k.startswith("norm0.") for k in state):
        return None
    num_classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    stem_width = next((v.shape[0] for k, v in state.items() if k.startswith("stem.conv2.") and v.ndim == 4), None)
    signature = _signature(state)
    for name in VARIANTS:  # only the variants whose first width matches are built (on the meta device)
        if _arch_args(name)["widths"][0] == stem_width:
            form = _match_form(signature, _form_signatures(_arch_args(name), num_classes, state[stem_key].shape[1]))
            if form is not None:
                return f"{name} ({_FORM_NAMES[form]})"
    return None
