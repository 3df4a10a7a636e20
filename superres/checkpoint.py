"""Checkpoints: the authors' BasicSR files, this project's mmengine files, and plain state dicts.

Every file is read by :func:`ffnet.engine.checkpoints.load_file` (weights-only, no fallback to the
full unpickler) and every load into a model is strict (:func:`ffnet.engine.checkpoints.load_state_dict`).

The authors' release (a BasicSR plugin) stores the network under ``'params'`` (and
``'params_ema'`` when trained with EMA) with keys ``proj.*``, ``body.{i}.token_mixer.{j}.*``,
``body.{i}.channel_mixer.{j}.*`` and ``conv_bef_up.*`` where ``j`` indexes an ``nn.Sequential``.
:func:`convert_authors_state_dict` maps them onto :class:`~ffnet.superres.models.FFNetSR`; importing
this module registers that layout and an FFNet-SR describer with :mod:`ffnet.engine.checkpoints`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import torch

from ffnet.engine.checkpoints import (describe_state_dict, load_file, load_state_dict, register_describer,
                                      register_layout, unwrap_state_dict)
from ffnet.engine.errors import CheckpointError
from ffnet.engine.files import save_atomic
from ffnet.superres.models import FFNetSR, VARIANTS, architecture_from_state_dict

# Sequential index → our sub-module, per authors' norm option (GELU has no weights).
_AUTHORS_MIXER_LAYOUT = {
    None: {"0": "mixer.query_proj", "1": "mixer.compat", "3": "mixer.aggregate"},
    "ln": {"0": "norm", "1": "mixer.query_proj", "2": "mixer.compat", "4": "mixer.aggregate"},
    "bn": {"0": "mixer.query_proj.conv", "1": "mixer.query_proj.bn", "2": "mixer.compat", "4": "mixer.aggregate"},
}
_AUTHORS_KEY = re.compile(r"body\.(\d+)\.(token_mixer|channel_mixer)\.(\d+)\.(.+)")
GENERATOR_PREFIX = "generator."
AUTHORS_LAYOUT = "the authors' FFNet-SR release (BasicSR keys)"


def is_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return "proj.weight" in state_dict and "conv_bef_up.weight" in state_dict


def _authors_norm(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    if "body.0.token_mixer.4.weight" not in state_dict:
        return None
    return "bn" if "body.0.token_mixer.1.running_mean" in state_dict else "ln"


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Authors' ``FFNetSR`` state dict (released ``norm=None``, or their BN/LN options) → ours."""
    if not is_authors_state_dict(state_dict):
        raise ValueError("not an authors' FFNetSR state dict: expected keys 'proj.weight' and 'conv_bef_up.weight'")
    layout = _AUTHORS_MIXER_LAYOUT[_authors_norm(state_dict)]
    converted = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("proj."):
            converted["shallow_conv." + key[len("proj."):]] = value
        elif key.startswith("conv_bef_up."):
            converted["reconstruction_conv." + key[len("conv_bef_up."):]] = value
        elif match := _AUTHORS_KEY.fullmatch(key):
            block, mixer, index, leaf = match.groups()
            if index not in layout:
                raise ValueError(f"unexpected authors' key {key!r} for their norm option")
            converted[f"body.{block}.{mixer}.{layout[index]}.{leaf}"] = value
        else:
            raise ValueError(f"unexpected authors' key {key!r}")
    return converted


def _without_generator_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``generator.*`` entries of an :class:`~ffnet.superres.engine.FFNetSRModel` state, unprefixed."""
    if any(k.startswith(GENERATOR_PREFIX) for k in state):
        return {k[len(GENERATOR_PREFIX):]: v for k, v in state.items() if k.startswith(GENERATOR_PREFIX)}
    return dict(state)


def describe_sr_state_dict(state: Mapping[str, torch.Tensor]) -> str | None:
    """``'FFNet-SR x2 (width 96, depth 36: ffnet_sr_light)'`` for any FFNet-SR layout, else ``None``."""
    authors = is_authors_state_dict(state)
    state = convert_authors_state_dict(state) if authors else _without_generator_prefix(state)
    if "shallow_conv.weight" not in state or "reconstruction_conv.weight" not in state:
        return None
    arch = architecture_from_state_dict(state)
    variant = next((f": {name}" for name, v in VARIANTS.items()
                    if (v["dim"], v["depth"], v["expansion"]) == (arch["dim"], arch["depth"], arch["expansion"])), "")
    norm = f", norm {arch['norm']}" if arch["norm"] else ""
    layout = ", in the authors' BasicSR layout" if authors else ""
    return f"FFNet-SR x{arch['scale']} (width {arch['dim']}, depth {arch['depth']}{norm}{variant}){layout}"


register_layout(AUTHORS_LAYOUT, is_authors_state_dict, convert_authors_state_dict)
register_describer("FFNet-SR", describe_sr_state_dict)


def generator_state_dict(checkpoint: Mapping | str | os.PathLike, param_key: str | None = None) -> dict:
    """Our :class:`FFNetSR` state dict from any supported checkpoint (path or loaded dict).

    Args:
        checkpoint: an authors' BasicSR file (``params``/``params_ema``), an mmengine checkpoint of
            :class:`~ffnet.superres.engine.FFNetSRModel` (``state_dict`` with ``generator.*`` keys), or a
            plain state dict; or a path to one (read weights-only).
        param_key: which entry to read (e.g. ``'params_ema'``); default: the engine's order
            (``state_dict``, ``model``, ``params``, ``ema``, ``params_ema``, else the mapping itself).

    Raises :class:`~ffnet.engine.errors.CheckpointError` (one line naming the file) for an unreadable or
    refused file and for a missing ``param_key``.
    """
    source = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "the given checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load_file(checkpoint)
    if param_key is not None:
        if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(param_key), Mapping):
            held = sorted(str(k) for k in checkpoint)[:8] if isinstance(checkpoint, Mapping) else []
            raise CheckpointError(f"{source}: has no {param_key!r} entry (it holds {held}); pass --param-key with "
                                  "one of these, or leave it out")
        checkpoint = checkpoint[param_key]
    state = _without_generator_prefix(unwrap_state_dict(checkpoint, source=source))
    return convert_authors_state_dict(state) if is_authors_state_dict(state) else state


def load_generator(checkpoint: Mapping | str | os.PathLike, param_key: str | None = None) -> FFNetSR:
    """An :class:`FFNetSR` with the architecture and weights of ``checkpoint`` (see :func:`generator_state_dict`).

    The architecture is read from the weights; the load is strict.
    """
    source = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "the given checkpoint"
    state = generator_state_dict(checkpoint, param_key)
    try:
        architecture = architecture_from_state_dict(state)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}; the file looks like {describe_state_dict(state)}; give an FFNet-SR "
                              "checkpoint (this project's or the authors' BasicSR .pth)") from None
    model = FFNetSR(**architecture)
    load_state_dict(model, state, source=source, target=f"FFNet-SR x{model.scale}")
    return model


def save_as_mmengine_checkpoint(model: FFNetSR, path: str | os.PathLike) -> Path:
    """Write ``{'state_dict': {'generator.*': ...}, 'meta': {...}}`` atomically, loadable weights-only by the
    mmengine Runner (``load_from``, ``init_cfg=dict(type='Pretrained')``) and by :func:`load_generator`."""
    state = {GENERATOR_PREFIX + k: v for k, v in model.state_dict().items()}
    return save_atomic({"state_dict": state, "meta": {"ffnet_sr": model.architecture()}}, path)
