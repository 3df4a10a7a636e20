"""The authors' released detectors (``casc_mask_rcnn_ffnet_{2,3,4}_fpn_3x_coco.pth``, mmdet 2.28) in our
mmdet 3.3 layout.

Which keys move from the authors' mmdet 2.28 Cascade Mask R-CNN to the configs in ``configs/``:

* ``backbone.*``: their backbone (``detection/mmdet_custom/models/backbones/ffnet.py``) names the stem
  ``patch_embed`` and nests its blocks differently; :func:`ffnet.classification.authors_to_own` maps
  them (the output LayerNorms ``norm0`` … ``norm3`` keep their names; LayerScale ``(C, 1, 1)`` → ``(C,)``);
* ``ema_*``: the FFNet-4 detector was trained with mmdet 2's ``ExpMomentumEMAHook``, which registers a
  buffer ``ema_<key with _ for .>`` per weight and swaps it with the weight before evaluation and
  checkpointing, so the model's keys hold the averaged weights the authors evaluated and ``ema_*`` the raw
  ones: ``ema_*`` is dropped;
* nothing else: ``neck`` (FPN), ``rpn_head`` (RPNHead) and ``roi_head`` (three ConvFCBBoxHead, FCNMaskHead;
  the RoI extractors hold no weights) have the same module names in mmdet 2.28 and 3.3.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

from ffnet.classification import authors_to_own as classifier_authors_to_own
from ffnet.classification import own_to_authors as classifier_own_to_authors
from ffnet.classification.openmmlab.backbone import describe_backbone

__all__ = ["AUTHORS_LAYOUT", "is_authors_layout", "authors_to_own", "own_to_authors", "describe_detector"]

AUTHORS_LAYOUT = "the authors' mmdet 2.28 Cascade Mask R-CNN layout (ysj9909/FFNet detection/)"
_BACKBONE = "backbone."
_EMA = "ema_"


def _split(state: Mapping[str, torch.Tensor]) -> tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(backbone keys without 'backbone.', every other key)``."""
    backbone = {k[len(_BACKBONE):]: v for k, v in state.items() if k.startswith(_BACKBONE)}
    return backbone, {k: v for k, v in state.items() if not k.startswith(_BACKBONE)}


def is_authors_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True for a detector state dict whose FFNet backbone is in the authors' layout."""
    return "backbone.patch_embed.0.c.weight" in state and any(k.startswith("roi_head.") for k in state)


def authors_to_own(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' mmdet 2.28 detector state dict in the layout of our mmdet 3.3 configs (see the module doc)."""
    backbone, rest = _split(state)
    converted = {_BACKBONE + k: v for k, v in classifier_authors_to_own(backbone).items()}
    converted.update({k: v for k, v in rest.items() if not k.startswith(_EMA)})
    return converted


def own_to_authors(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`authors_to_own` (without EMA buffers): our detector in the authors' layout."""
    backbone, rest = _split(state)
    converted = {_BACKBONE + k: v for k, v in classifier_own_to_authors(backbone).items()}
    converted.update(rest)
    return converted


def describe_detector(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``'a Cascade Mask R-CNN (3 stages, 80 classes) with backbone ffnet_2 (train-time)'``, or ``None`` when
    ``state`` is no two-stage detector."""
    if is_authors_layout(state):
        state = authors_to_own(state)
    if not any(k.startswith("roi_head.") for k in state):
        return None
    stages = {k.split(".")[2] for k in state if k.startswith("roi_head.bbox_head.") and k.split(".")[2].isdigit()}
    kind = ("Cascade " if len(stages) > 1 else "") + (
        "Mask R-CNN" if any(k.startswith("roi_head.mask_head.") for k in state) else "Faster R-CNN")
    cls = next((v for k, v in state.items() if k.startswith("roi_head.bbox_head.") and k.endswith("fc_cls.weight")),
               None)
    details = [f"{len(stages)} stages"] if len(stages) > 1 else []
    if cls is not None:
        details.append(f"{cls.shape[0] - 1} classes")
    backbone = describe_backbone(_split(state)[0]) or "not an FFNet"
    detail = f" ({', '.join(details)})" if details else ""
    return f"a {kind}{detail} with backbone {backbone}"
