"""FFNet-seg: the system-level segmentation backbone of the paper (the paper's Sec. 4.3 and the authors' ffnet_sys.py), built from ffnet.core parts.

It differs from the classification FFNets:

* stem (stride 4): conv3x3 s2 3→64 + BN, GELU, conv3x3 64→64 + BN, GELU, conv3x3 64→96 + BN,
  conv3x3 s2 96→96 + BN;
* downsampler: conv3x3 s2 C→2C' + BN, GELU, conv1x1 2C'→C' + BN (no re-param branches);
* token mixer: FFNified attention whose depthwise convs are always re-parameterizable:
  9x9 ∥ 5x5 ∥ 1x9 ∥ 9x1 (stages 3-4) or 3x3 ∥ 1x3 ∥ 3x1 (stages 1-2), each branch + BN;
* channel mixer: DW 3x3 + BN, FFN with expansion 4; LayerScale 1e-5 on both residuals;
* widths 96/192/384/768, depths 3/4/18/5; outputs: stages 2-4 (strides 8/16/32), no output norm.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from ffnet.classification import FFNetStage
from ffnet.classification.openmmlab.backbone import read_weights
from ffnet.core import ConvBN, FFNetBlock, convnext_channel_mixer, ffnified_attention, reparameterize
from ffnet.engine.errors import CheckpointError

ARCHS: Dict[str, dict] = {
    "ffnet_seg": dict(widths=(96, 192, 384, 768), depths=(3, 4, 18, 5), token_mixer_kernels=(3, 3, 9, 9),
                      channel_mixer_kernel=3, expansion=4.0, stem_width=64),
}


def strip_branches(kernel: int) -> Tuple:
    """Side branches folded into a ``kernel`` x ``kernel`` depthwise conv (the paper's Sec. 4.3 and the authors' ffnet_sys.py)."""
    if kernel > 3:
        return (kernel - 4, (1, kernel), (kernel, 1))
    return ((1, kernel), (kernel, 1))


def seg_ffnet_block(channels: int, token_kernel: int, channel_kernel: int, expansion: float,
                    layer_scale: Optional[float], drop_path: float, channel_branches: Sequence = (),
                    post_act: Optional[str] = None) -> FFNetBlock:
    """An FFNet block ``(B, C, H, W) → (B, C, H, W)`` with strip-kernel re-param token-mixer convs."""
    token_mixer = ffnified_attention(2, channels, token_kernel, branch_kernels=strip_branches(token_kernel),
                                     conv_bn=True, query_bn=True)
    channel_mixer = convnext_channel_mixer(2, channels, expansion, channel_kernel, branch_kernels=channel_branches,
                                           bn=True)
    return FFNetBlock(token_mixer, channel_mixer, channels=channels, spatial_dims=2, layer_scale=layer_scale,
                      drop_path=drop_path, post_act=post_act)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class FFNetSeg(BaseModule):
    """FFNet-seg backbone ``(B, 3, H, W) → (stride-8, stride-16, stride-32 maps)`` of 192/384/768 channels.

    Args:
        arch: ``'ffnet_seg'`` (the only released variant; the authors' Cityscapes config names an
            unregistered ``'ffnet_seg_3'``, a quirk of the authors' config).
        out_indices: stages to return (default 1, 2, 3: strides 8/16/32).
        drop_path_rate: final stochastic-depth rate (0.3 ADE20K, 0.35 Cityscapes).
        layer_scale_init_value: LayerScale init (1e-5).
        deploy: build the re-parameterized form (every branch, BN and LayerScale folded).
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=None)``: the authors' ImageNet
            ``ffnet_seg.pth.tar`` (their key layout; its classifier head is ignored) or a checkpoint
            of this module (``prefix='backbone.'`` for a segmentor's).
    """

    def __init__(self, arch: str = "ffnet_seg", out_indices: Sequence[int] = (1, 2, 3), drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-5, deploy: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if arch not in ARCHS:
            raise ValueError(f"unknown FFNet-seg arch {arch!r}: choose one of {', '.join(ARCHS)} "
                             "(the authors' Cityscapes config names 'ffnet_seg_3', which their code does not define)")
        spec = ARCHS[arch]
        widths, depths = spec["widths"], spec["depths"]
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i < 0 or i >= len(widths) for i in out_indices):
            raise ValueError(f"out_indices must be stage indices in 0..{len(widths) - 1}, got {out_indices}")
        self.arch = arch
        self.out_indices = out_indices
        self.out_channels = tuple(widths[i] for i in out_indices)
        self.deploy = deploy
        c0, hidden = widths[0], spec["stem_width"]
        self.stem = nn.Sequential(
            ConvBN(2, 3, hidden, 3, stride=2), nn.GELU(),
            ConvBN(2, hidden, hidden, 3), nn.GELU(),
            ConvBN(2, hidden, c0, 3),
            ConvBN(2, c0, c0, 3, stride=2),
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, first = [], 0
        for i, (width, depth) in enumerate(zip(widths, depths)):
            if i == 0:
                downsample: nn.Module = nn.Identity()
            else:
                downsample = nn.Sequential(ConvBN(2, widths[i - 1], 2 * width, 3, stride=2), nn.GELU(),
                                           ConvBN(2, 2 * width, width, 1))
            blocks = [seg_ffnet_block(width, spec["token_mixer_kernels"][i], spec["channel_mixer_kernel"],
                                      spec["expansion"], layer_scale_init_value, rates[first + j])
                      for j in range(depth)]
            first += depth
            stages.append(FFNetStage(downsample, blocks))
        self.stages = nn.Sequential(*stages[: max(out_indices) + 1])
        self.apply(_init_weights)
        if deploy:
            reparameterize(self, fold_scales=True)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``(B, 3, H, W)`` → one ``(B, C_i, H / 2^(i+2), W / 2^(i+2))`` map per ``out_indices`` entry."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint (type ``'Pretrained'``), else mmengine's initialisers."""
        if isinstance(self.init_cfg, dict) and self.init_cfg.get("type") == "Pretrained":
            if not self.init_cfg.get("checkpoint"):
                raise ValueError("init_cfg=dict(type='Pretrained') needs checkpoint=PATH_OR_URL; "
                                 "set model.backbone.init_cfg=None to start from random weights")
            self.load_pretrained(self.init_cfg["checkpoint"], prefix=self.init_cfg.get("prefix"))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> None:
        """Load the authors' ``ffnet_seg.pth.tar`` (its ImageNet classifier ``head1``/``head2`` is skipped, said in
        one line) or a checkpoint of this module (train-time or deployed; ``prefix='backbone.'`` for a segmentor's)."""
        state = read_weights(checkpoint)
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointError(f"{checkpoint} has no keys starting with prefix {prefix!r}; fix init_cfg.prefix "
                                      "(or drop it for the ImageNet checkpoint)")
        classifier = sorted(k for k in state if k.startswith(("head1.", "head2.")))
        if any(k.startswith("patch_embed.") for k in state):
            state = authors_to_own(state)
        own = self.state_dict()
        missing = sorted(own.keys() - state.keys())
        if missing:
            unexpected = sorted(state.keys() - own.keys())
            form = "deployed" if self.deploy else "train-time"
            raise CheckpointError(
                f"{checkpoint} does not fit the {form} {self.arch} backbone: {len(missing)} tensors missing (e.g. "
                f"{missing[:3]}), unexpected e.g. {unexpected[:3]}. A re-parameterized checkpoint loads only with "
                "deploy=True; a train-time one only with deploy=False")
        mismatched = [k for k in own if state[k].shape != own[k].shape]
        if mismatched:
            raise CheckpointError(f"{checkpoint}: shapes differ from the {self.arch} backbone for {mismatched[:3]}")
        self.load_state_dict({k: state[k] for k in own}, strict=True)
        skipped = f"; skipped the {len(classifier)} tensors of its ImageNet classifier (head1.*, head2.*)" \
            if classifier else ""
        print_log(f"{checkpoint}: loaded all {len(own)} tensors of the {self.arch} backbone{skipped}", logger="current")


# ---------------------------------------------------------------------------------------------------------------------
# The authors' key layout (segmentation/mmseg_custom/models/backbones/ffnet_sys.py and decode_heads/ffnet_head.py)
#
# Their units: ``Conv2d_BN`` (``c``, ``bn``) is our ConvBN (``conv``, ``bn``); ``RepVGGDW`` (``conv1`` = k x k,
# ``conv2`` = (k-4) x (k-4) when k > 3, ``strip_conv1`` = 1 x k, ``strip_conv2`` = k x 1) is our RepConv (``main``,
# ``branches.i`` in that order). Their blocks' token mixer sits at ``token_mixer.0.main`` (backbone) or
# ``token_mixer.main`` (decode head), the channel mixer at ``channel_mixer.main``.

_REPVGG = ("conv1.", "conv2.", "strip_conv1.", "strip_conv2.")
KernelOf = Callable[[str], int]


def _authors_unit(suffix: str) -> str:
    """``c.weight`` / ``bn.*`` of a Conv2d_BN → ``conv.weight`` / ``bn.*`` of :class:`ffnet.core.ConvBN`."""
    if suffix.startswith("c."):
        return "conv." + suffix[2:]
    if suffix.startswith("bn."):
        return suffix
    raise KeyError(suffix)


def _own_unit(suffix: str) -> str:
    if suffix.startswith("conv."):
        return "c." + suffix[5:]
    if suffix.startswith("bn."):
        return suffix
    raise KeyError(suffix)


def _branch_names(kernel: int) -> Tuple[str, ...]:
    return ("conv2", "strip_conv1", "strip_conv2") if kernel > 3 else ("strip_conv1", "strip_conv2")


def _authors_conv(unit: str, suffix: str, kernel_of: KernelOf) -> str:
    """A ``Conv2d_BN`` or ``RepVGGDW`` key (``suffix``, inside the unit at ``unit``) → ConvBN or RepConv key."""
    if not suffix.startswith(_REPVGG):
        return _authors_unit(suffix)
    name, rest = suffix.split(".", 1)
    if name == "conv1":
        return "main." + _authors_unit(rest)
    names = _branch_names(kernel_of(unit + "conv1.c.weight"))
    if name not in names:
        raise KeyError(suffix)
    return f"branches.{names.index(name)}." + _authors_unit(rest)


def _own_conv(unit: str, suffix: str, kernel_of: KernelOf) -> str:
    if suffix.startswith("main."):
        return "conv1." + _own_unit(suffix[5:])
    branch = re.fullmatch(r"branches\.(\d+)\.(.+)", suffix)
    if branch:
        return f"{_branch_names(kernel_of(unit + 'main.conv.weight'))[int(branch[1])]}." + _own_unit(branch[2])
    return _own_unit(suffix)


def authors_block_key(prefix: str, rest: str, kernel_of: KernelOf) -> str:
    """Our key (without ``prefix``) for ``rest``, the key of one of the authors' blocks after ``prefix``."""
    b = re.fullmatch(r"token_mixer\.(?:0\.)?main\.(fc|conv1|conv2)\.(.+)", rest)
    if b:
        part = {"fc": "query_proj", "conv1": "compat", "conv2": "aggregate"}[b[1]]
        unit = prefix + rest[: len(rest) - len(b[2])]
        return f"token_mixer.mixer.{part}." + _authors_conv(unit, b[2], kernel_of)
    b = re.fullmatch(r"channel_mixer\.main\.(conv|fc1|fc2)\.(.+)", rest)
    if b:
        if b[1] == "conv":
            unit = prefix + rest[: len(rest) - len(b[2])]
            return "channel_mixer.mixer.query_proj." + _authors_conv(unit, b[2], kernel_of)
        return "channel_mixer.mixer." + ("compat." if b[1] == "fc1" else "aggregate.") + b[2]
    if rest in ("token_mixer.0.layer_scale", "channel_mixer.layer_scale"):
        return rest.split(".")[0] + ".layer_scale.gamma"
    raise KeyError(rest)


def own_block_key(prefix: str, rest: str, kernel_of: KernelOf, token_wrapper: str = "token_mixer.0.main.") -> str:
    """Inverse of :func:`authors_block_key`; ``token_wrapper`` is ``'token_mixer.main.'`` for the decode head."""
    b = re.fullmatch(r"(token|channel)_mixer\.mixer\.(query_proj|compat|aggregate)\.(.+)", rest)
    if b:
        unit = prefix + rest[: len(rest) - len(b[3])]
        if b[1] == "token":
            name = {"query_proj": "fc", "compat": "conv1", "aggregate": "conv2"}[b[2]]
            return f"{token_wrapper}{name}." + _own_conv(unit, b[3], kernel_of)
        if b[2] == "query_proj":
            return "channel_mixer.main.conv." + _own_conv(unit, b[3], kernel_of)
        return "channel_mixer.main." + ("fc1." if b[2] == "compat" else "fc2.") + b[3]
    if rest == "token_mixer.layer_scale.gamma":
        return "token_mixer.0.layer_scale"
    if rest == "channel_mixer.layer_scale.gamma":
        return "channel_mixer.layer_scale"
    raise KeyError(rest)


def _kernel_in(state: Mapping[str, torch.Tensor]) -> KernelOf:
    return lambda key: state[key].shape[-1]


def _authors_key(key: str, kernel_of: KernelOf) -> Optional[str]:
    """Own key for an authors' train-time backbone key; ``None`` for their ImageNet classifier (``head1``/``head2``)."""
    if key.startswith(("head1.", "head2.")):
        return None
    m = re.fullmatch(r"patch_embed\.([0245])\.(.+)", key)  # 1 and 3 are the GELUs
    if m:
        return f"stem.{m[1]}." + _authors_unit(m[2])
    m = re.fullmatch(r"stages\.(\d)\.(\d+)\.(.+)", key)
    if not m:
        raise KeyError(key)
    stage, index, rest = int(m[1]), int(m[2]), m[3]
    if stage > 0 and index == 0:
        d = re.fullmatch(r"proj\.([02])\.(.+)", rest)
        if d:
            return f"stages.{stage}.downsample.{d[1]}." + _authors_unit(d[2])
        raise KeyError(key)
    return f"stages.{stage}.blocks.{index - 1 if stage > 0 else index}." + authors_block_key(
        key[: len(key) - len(rest)], rest, kernel_of)


def _own_key(key: str, kernel_of: KernelOf) -> str:
    m = re.fullmatch(r"stem\.(\d)\.(.+)", key)
    if m:
        return f"patch_embed.{m[1]}." + _own_unit(m[2])
    m = re.fullmatch(r"stages\.(\d)\.downsample\.(\d)\.(.+)", key)
    if m:
        return f"stages.{m[1]}.0.proj.{m[2]}." + _own_unit(m[3])
    m = re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(.+)", key)
    if not m:
        raise KeyError(key)
    stage, block, rest = int(m[1]), int(m[2]), m[3]
    return f"stages.{stage}.{block + 1 if stage > 0 else block}." + own_block_key(key[: len(key) - len(rest)], rest,
                                                                                  kernel_of)


def _with_layer_scale_shape(key: str, value: torch.Tensor) -> torch.Tensor:
    if key.endswith("layer_scale.gamma"):
        return value.reshape(-1)
    if key.endswith("layer_scale"):
        return value.reshape(-1, 1, 1)
    return value


def authors_to_own(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' train-time FFNet-seg backbone (``ffnet_seg.pth.tar``) in this module's layout.

    Their ImageNet classifier (``head1``, ``head2``) is dropped; keys it does not know pass unchanged.
    """
    converted = {}
    for key, value in state.items():
        try:
            new_key = _authors_key(key, _kernel_in(state))
        except KeyError:
            new_key = key
        if new_key is not None:
            converted[new_key] = _with_layer_scale_shape(new_key, value)
    return converted


def own_to_authors(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`authors_to_own` for a train-time :class:`FFNetSeg` state dict."""
    converted = {}
    for key, value in state.items():
        new_key = _own_key(key, _kernel_in(state))
        converted[new_key] = _with_layer_scale_shape(new_key, value)
    return converted


def is_authors_imagenet(state: Mapping[str, torch.Tensor]) -> bool:
    """True for the authors' FFNet-seg backbone layout (``patch_embed.5``: its six-layer stem)."""
    return "patch_embed.5.c.weight" in state


def describe_backbone(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``'the FFNet-seg backbone (train-time)'`` for an FFNet-seg backbone state dict (ours or the authors'),
    else ``None``."""
    if "patch_embed.5.c.weight" in state:
        return "the FFNet-seg backbone (train-time)" + (", with the authors' ImageNet classifier head1/head2"
                                                       if "head2.3.weight" in state else "")
    if "stem.5.conv.weight" in state:
        return "the FFNet-seg backbone (train-time)"
    if "stem.5.weight" in state and "stem.4.weight" in state:
        return "the FFNet-seg backbone (deployed)"
    return None
