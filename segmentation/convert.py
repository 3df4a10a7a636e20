"""The authors' released segmentors (mmseg 0.x) and FFNet-seg ImageNet backbone in our mmseg 1.2 layouts.

Which keys move:

* UperNet (``upernet_ffnet_{2,3,4}_512_160k_ade20k.pth``, mmseg 0.27): only ``backbone.*``, the same
  backbone as the detectors (:func:`ffnet.classification.authors_to_own`); ``decode_head`` (UPerHead) and
  ``auxiliary_head`` (FCNHead) have the same module names in mmseg 0.27 and 1.2;
* FFNet-seg (``ffnet_seg_sys_512_160k_ade20k.pth``, ``ffnet_seg_sys_1024_160k_cityscapes.pth``; trained in
  the mmseg 0.x based SegNeXt code): ``backbone.*`` (``ffnet_sys.py`` naming,
  :func:`ffnet.segmentation.ffnet_seg.authors_to_own`) and ``decode_head.*`` (``ffnet_head.py``: Conv2d_BN
  ``c``/``bn`` → ConvBN ``conv``/``bn``, RepVGGDW ``conv1``/``conv2``/``strip_conv1``/``strip_conv2`` →
  RepConv ``main``/``branches.i``, block mixers ``token_mixer.main``/``channel_mixer.main`` →
  ``*.mixer.{query_proj,compat,aggregate}``); ``decode_head.conv_seg`` keeps its name;
* the FFNet-seg ImageNet backbone (``ffnet_seg.pth.tar``): the backbone keys, without its ImageNet
  classifier (``head1``, ``head2``).
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Optional

import torch

from ffnet.classification import authors_to_own as classifier_authors_to_own
from ffnet.classification import own_to_authors as classifier_own_to_authors
from ffnet.classification.openmmlab.backbone import describe_backbone
from ffnet.segmentation import ffnet_seg
from ffnet.segmentation.ffnet_seg import _authors_unit, _kernel_in, _own_unit, authors_block_key, own_block_key

__all__ = [
    "UPERNET_LAYOUT", "SYSTEM_LAYOUT", "IMAGENET_LAYOUT", "is_authors_upernet", "is_authors_system",
    "upernet_authors_to_own", "upernet_own_to_authors", "system_authors_to_own", "system_own_to_authors",
    "describe_segmentor",
]

UPERNET_LAYOUT = "the authors' mmseg 0.27 UperNet layout (ysj9909/FFNet segmentation/)"
SYSTEM_LAYOUT = ("the authors' mmseg 0.x FFNet-seg segmentor layout "
                 "(ysj9909/FFNet segmentation/, ffnet_sys.py + ffnet_head.py)")
IMAGENET_LAYOUT = "the authors' FFNet-seg ImageNet layout (ffnet_seg.pth.tar)"
_BACKBONE, _HEAD = "backbone.", "decode_head."


def _part(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _rest(state: Mapping[str, torch.Tensor], *prefixes: str) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def _prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


# ---------------------------------------------------------------------------------------------------------------------
# UperNet on FFNet-2/3/4


def is_authors_upernet(state: Mapping[str, torch.Tensor]) -> bool:
    """True for a segmentor whose FFNet-1..4 backbone is in the authors' layout."""
    return "backbone.patch_embed.2.c.weight" in state and "backbone.patch_embed.5.c.weight" not in state and any(
        k.startswith(_HEAD) for k in state)


def upernet_authors_to_own(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' UperNet state dict in the layout of our mmseg 1.2 UperNet configs (see the module doc)."""
    return {**_prefixed(_BACKBONE, classifier_authors_to_own(_part(state, _BACKBONE))), **_rest(state, _BACKBONE)}


def upernet_own_to_authors(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`upernet_authors_to_own`."""
    return {**_prefixed(_BACKBONE, classifier_own_to_authors(_part(state, _BACKBONE))), **_rest(state, _BACKBONE)}


# ---------------------------------------------------------------------------------------------------------------------
# The FFNet-seg system-level segmentor


def is_authors_system(state: Mapping[str, torch.Tensor]) -> bool:
    """True for an FFNet-seg segmentor in the authors' layout (six-layer stem ``backbone.patch_embed.5``)."""
    return "backbone.patch_embed.5.c.weight" in state


def _head_authors_to_own(head: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    kernel_of = _kernel_in(head)
    converted = {}
    for key, value in head.items():
        unit = re.fullmatch(r"(squeeze\.[02]|align\.0)\.(.+)", key)
        block = re.fullmatch(r"head_blocks\.(\d+)\.(.+)", key)
        try:
            if unit:
                key = f"{unit[1]}." + _authors_unit(unit[2])
            elif block:
                key = f"head_blocks.{block[1]}." + authors_block_key(f"head_blocks.{block[1]}.", block[2], kernel_of)
        except KeyError:
            pass  # an unknown key stays as it is: the strict load names it
        converted[key] = value
    return converted


def _head_own_to_authors(head: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    kernel_of = _kernel_in(head)
    converted = {}
    for key, value in head.items():
        unit = re.fullmatch(r"(squeeze\.[02]|align\.0)\.(.+)", key)
        block = re.fullmatch(r"head_blocks\.(\d+)\.(.+)", key)
        if unit:
            key = f"{unit[1]}." + _own_unit(unit[2])
        elif block:
            key = f"head_blocks.{block[1]}." + own_block_key(f"head_blocks.{block[1]}.", block[2], kernel_of,
                                                             token_wrapper="token_mixer.main.")
        converted[key] = value
    return converted


def system_authors_to_own(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' FFNet-seg segmentor in the layout of our ``ffnet-seg_*`` configs (see the module doc)."""
    return {**_prefixed(_BACKBONE, ffnet_seg.authors_to_own(_part(state, _BACKBONE))),
            **_prefixed(_HEAD, _head_authors_to_own(_part(state, _HEAD))), **_rest(state, _BACKBONE, _HEAD)}


def system_own_to_authors(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`system_authors_to_own`."""
    return {**_prefixed(_BACKBONE, ffnet_seg.own_to_authors(_part(state, _BACKBONE))),
            **_prefixed(_HEAD, _head_own_to_authors(_part(state, _HEAD))), **_rest(state, _BACKBONE, _HEAD)}


# ---------------------------------------------------------------------------------------------------------------------
# Describing


def describe_segmentor(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``'an UperNet segmentor (150 classes) with backbone ffnet_3 (train-time)'``, ``'an FFNet-seg segmentor
    (3 head blocks, 150 classes)'``, or ``None`` when ``state`` is no encoder-decoder segmentor."""
    if is_authors_system(state):
        state = system_authors_to_own(state)
    elif is_authors_upernet(state):
        state = upernet_authors_to_own(state)
    head = _part(state, _HEAD)
    if not head:
        return None
    classes = head["conv_seg.weight"].shape[0] if "conv_seg.weight" in head else None
    counted = f"{classes} classes" if classes is not None else "unknown classes"
    backbone = _part(state, _BACKBONE)
    if any(k.startswith("squeeze.") for k in head):
        blocks = len({k.split(".")[1] for k in head if k.startswith("head_blocks.")})
        found = ffnet_seg.describe_backbone(backbone) or "not FFNet-seg"
        return f"an FFNet-seg segmentor ({blocks} head blocks, {counted}) with backbone {found}"
    kind = "an UperNet" if any(k.startswith("psp_modules.") for k in head) else "a"
    found = describe_backbone(backbone) or ffnet_seg.describe_backbone(backbone) or "not an FFNet"
    return f"{kind} segmentor ({counted}) with backbone {found}"
