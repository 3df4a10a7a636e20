"""Weights trained with the FFNet release (its vendored Pointcept) → this package's segmentor.

The release stores ``DefaultSegmentorV2`` state dicts (under ``state_dict``, keys possibly prefixed
``module.``) with ``PointSequential`` indices and spconv kernels laid out ``(out, kx, ky, kz, in)``;
:func:`convert_release_state_dict` renames the keys onto
:class:`~ffnet.pointcloud.model.FFNetPointSegmentor` and moves kernels to torch's ``(out, in, kx, ky, kz)``.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

# FFBlock sub-module (PointSequential index) → core FFNetBlock path
_BLOCK_LAYOUT = {
    "norm1.0": "token_mixer.norm.module",
    "token_mixer.0": "token_mixer.mixer.query_proj.module",
    "token_mixer.1": "token_mixer.mixer.compat.conv",
    "token_mixer.2": "token_mixer.mixer.compat.bn.module",
    "token_mixer.4": "token_mixer.mixer.aggregate.conv",
    "token_mixer.5": "token_mixer.mixer.aggregate.bn.module",
    "norm2.0": "channel_mixer.norm.module",
    "channel_mixer.0": "channel_mixer.mixer.query_proj.conv",
    "channel_mixer.1": "channel_mixer.mixer.query_proj.bn.module",
    "channel_mixer.2.fc1": "channel_mixer.mixer.compat.module",
    "channel_mixer.2.fc2": "channel_mixer.mixer.aggregate.module",
}
_SPCONV_WEIGHTS = ("embedding.conv.weight", ".conv.weight")
_BLOCK = re.compile(r"backbone\.(enc|dec)\.(enc|dec)(\d+)\.block(\d+)\.(.+)\.(weight|bias|running_mean|running_var|"
                    r"num_batches_tracked)")
_OTHER = {
    r"backbone\.embedding\.stem\.conv\.weight": "backbone.embedding.conv.weight",
    r"backbone\.embedding\.stem\.norm\.(.+)": r"backbone.embedding.norm.module.\1",
    r"backbone\.enc\.enc(\d+)\.down\.proj\.(.+)": r"backbone.enc.\1.down.proj.\2",
    r"backbone\.enc\.enc(\d+)\.down\.norm\.0\.(.+)": r"backbone.enc.\1.down.norm.\2",
    r"seg_head\.(.+)": r"seg_head.\1",
}


def convert_release_state_dict(state_dict: Mapping[str, torch.Tensor], num_stages: int = 5) -> dict[str, torch.Tensor]:
    """The release's segmentor state dict (or a checkpoint dict holding ``state_dict``) → ours."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        new = _convert_key(key, num_stages)
        if new is None:
            raise ValueError(f"unexpected key {key!r}: not a key of the release's DefaultSegmentorV2 + FFNet")
        if value.dim() == 5 and new.endswith(_SPCONV_WEIGHTS):
            value = value.permute(0, 4, 1, 2, 3).contiguous()
        converted[new] = value
    return converted


def _convert_key(key: str, num_stages: int) -> str | None:
    match = _BLOCK.fullmatch(key)
    if match:
        part, _, stage, block, module, leaf = match.groups()
        if module not in _BLOCK_LAYOUT:
            return None
        index = int(stage) if part == "enc" else num_stages - 2 - int(stage)
        return f"backbone.{part}.{index}.blocks.{block}.{_BLOCK_LAYOUT[module]}.{leaf}"
    unpool = re.fullmatch(r"backbone\.dec\.dec(\d+)\.up\.(proj|proj_skip)\.(\d)\.(.+)", key)
    if unpool:
        stage, proj, index, leaf = unpool.groups()
        return f"backbone.dec.{num_stages - 2 - int(stage)}.up.{proj}.{index}.{leaf}"
    for pattern, replacement in _OTHER.items():
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None
