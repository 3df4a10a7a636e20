"""FFNet-seg: the system-level segmentation backbone of the paper (spec §7.2), built from ffnet.core parts.

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
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from ffnet.classification import FFNetStage
from ffnet.classification.openmmlab.backbone import read_checkpoint, state_dict_of
from ffnet.core import ConvBN, FFNetBlock, convnext_channel_mixer, ffnified_attention, reparameterize

ARCHS: Dict[str, dict] = {
    "ffnet_seg": dict(widths=(96, 192, 384, 768), depths=(3, 4, 18, 5), token_mixer_kernels=(3, 3, 9, 9),
                      channel_mixer_kernel=3, expansion=4.0, stem_width=64),
}


def strip_branches(kernel: int) -> Tuple:
    """Side branches folded into a ``kernel`` x ``kernel`` depthwise conv (spec §7.2)."""
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
            unregistered ``'ffnet_seg_3'``, spec §8.10).
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
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
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
        """Load the authors' ``ffnet_seg.pth.tar`` or a checkpoint of this module (train-time or deployed)."""
        state = state_dict_of(read_checkpoint(checkpoint))
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise ValueError(f"{checkpoint} has no keys starting with prefix {prefix!r}")
        if any(k.startswith("patch_embed.") for k in state):
            state = authors_to_own(state)
        own = self.state_dict()
        missing = sorted(own.keys() - state.keys())
        if missing:
            unexpected = sorted(state.keys() - own.keys())
            form = "deployed" if self.deploy else "train-time"
            raise ValueError(f"{checkpoint} does not fit the {form} {self.arch} backbone: {len(missing)} tensors "
                             f"missing (e.g. {missing[:3]}), unexpected e.g. {unexpected[:3]}. A re-parameterized "
                             "checkpoint loads only with deploy=True; a train-time one only with deploy=False")
        mismatched = [k for k in own if state[k].shape != own[k].shape]
        if mismatched:
            raise ValueError(f"{checkpoint}: shapes differ from the {self.arch} backbone for {mismatched[:3]}")
        self.load_state_dict({k: state[k] for k in own}, strict=True)
        print_log(f"FFNet-seg backbone loaded {len(own)} tensors from {checkpoint}", logger="current")


# ---------------------------------------------------------------------------------------------------------------------
# The authors' key layout (segmentation/mmseg_custom/models/backbones/ffnet_sys.py)

def _authors_unit(suffix: str) -> str:
    """``c.weight`` / ``bn.*`` of a Conv2d_BN → ``conv.weight`` / ``bn.*`` of :class:`ffnet.core.ConvBN`."""
    if suffix.startswith("c."):
        return "conv." + suffix[2:]
    if suffix.startswith("bn."):
        return suffix
    raise KeyError(suffix)


def _authors_repvgg(kernel: int, suffix: str) -> str:
    """A ``RepVGGDW`` key (``conv1``, ``conv2``, ``strip_conv1``, ``strip_conv2``) → :class:`RepConv` key."""
    names = ("conv2", "strip_conv1", "strip_conv2") if kernel > 3 else ("strip_conv1", "strip_conv2")
    branch_index = {name: i for i, name in enumerate(names)}
    name, rest = suffix.split(".", 1)
    if name == "conv1":
        return "main." + _authors_unit(rest)
    if name in branch_index:
        return f"branches.{branch_index[name]}." + _authors_unit(rest)
    raise KeyError(suffix)


def _authors_key(key: str) -> Optional[str]:
    """Own key for an authors' train-time key; ``None`` for their ImageNet classifier (``head1``/``head2``)."""
    if key.startswith(("head1.", "head2.")):
        return None
    kernels = ARCHS["ffnet_seg"]["token_mixer_kernels"]
    try:
        m = re.fullmatch(r"patch_embed\.(\d)\.(.+)", key)
        if m and m[1] in "0245":  # 1 and 3 are the GELUs
            return f"stem.{m[1]}." + _authors_unit(m[2])
        m = re.fullmatch(r"stages\.(\d)\.(\d+)\.(.+)", key)
        if m:
            stage, index, rest = int(m[1]), int(m[2]), m[3]
            if stage > 0 and index == 0:
                d = re.fullmatch(r"proj\.([02])\.(.+)", rest)
                if d:
                    return f"stages.{stage}.downsample.{d[1]}." + _authors_unit(d[2])
                raise KeyError(rest)
            head = f"stages.{stage}.blocks.{index - 1 if stage > 0 else index}."
            b = re.fullmatch(r"token_mixer\.0\.main\.(fc|conv1|conv2)\.(.+)", rest)
            if b:
                if b[1] == "fc":
                    return head + "token_mixer.mixer.query_proj." + _authors_unit(b[2])
                part = "compat" if b[1] == "conv1" else "aggregate"
                return head + f"token_mixer.mixer.{part}." + _authors_repvgg(kernels[stage], b[2])
            b = re.fullmatch(r"channel_mixer\.main\.(conv|fc1|fc2)\.(.+)", rest)
            if b:
                if b[1] == "conv":
                    return head + "channel_mixer.mixer.query_proj." + _authors_unit(b[2])
                return head + "channel_mixer.mixer." + ("compat." if b[1] == "fc1" else "aggregate.") + b[2]
            if rest == "token_mixer.0.layer_scale":
                return head + "token_mixer.layer_scale.gamma"
            if rest == "channel_mixer.layer_scale":
                return head + "channel_mixer.layer_scale.gamma"
    except KeyError:
        pass
    raise ValueError(f"unrecognised key {key!r} in a checkpoint in the authors' FFNet-seg layout (train-time keys "
                     "of ffnet_sys.py are expected; their deployed form is not supported)")


def authors_to_own(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' train-time FFNet-seg state dict (``ffnet_seg.pth.tar``) in this module's layout."""
    converted = {}
    for key, value in state.items():
        new_key = _authors_key(key)
        if new_key is not None:
            converted[new_key] = value.reshape(-1) if new_key.endswith("layer_scale.gamma") else value
    return converted
