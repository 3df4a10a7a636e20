"""Checkpoints: the authors' BasicSR files, this project's mmengine files, and plain state dicts.

The authors' release (a BasicSR plugin) stores the network under ``'params'`` (and
``'params_ema'`` when trained with EMA) with keys ``proj.*``, ``body.{i}.token_mixer.{j}.*``,
``body.{i}.channel_mixer.{j}.*`` and ``conv_bef_up.*`` where ``j`` indexes an ``nn.Sequential``.
:func:`convert_authors_state_dict` maps them onto :class:`~ffnet.superres.models.FFNetSR`.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Mapping

import torch

from ffnet.superres.models import FFNetSR, model_from_state_dict

# Sequential index → our sub-module, per authors' norm option (GELU has no weights).
_AUTHORS_MIXER_LAYOUT = {
    None: {"0": "mixer.query_proj", "1": "mixer.compat", "3": "mixer.aggregate"},
    "ln": {"0": "norm", "1": "mixer.query_proj", "2": "mixer.compat", "4": "mixer.aggregate"},
    "bn": {"0": "mixer.query_proj.conv", "1": "mixer.query_proj.bn", "2": "mixer.compat", "4": "mixer.aggregate"},
}
_AUTHORS_KEY = re.compile(r"body\.(\d+)\.(token_mixer|channel_mixer)\.(\d+)\.(.+)")
GENERATOR_PREFIX = "generator."


def load_checkpoint_file(path: str | os.PathLike) -> Mapping:
    """``torch.load`` on CPU: tensors-only first; mmengine checkpoints also pickle run metadata
    (message hub, numpy scalars), which needs a full unpickle - as mmengine itself does, so load
    only checkpoints you trust."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False)


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


def _select_weights(checkpoint: Mapping, param_key: str | None) -> Mapping[str, torch.Tensor]:
    """The network state dict inside a BasicSR, mmengine or plain checkpoint."""
    if param_key is not None:
        if param_key not in checkpoint:
            raise KeyError(f"checkpoint has no {param_key!r}; it holds {sorted(checkpoint)[:8]}")
        return checkpoint[param_key]
    for key in ("params", "params_ema"):  # BasicSR (its test default is 'params')
        if key in checkpoint:
            return checkpoint[key]
    if "state_dict" in checkpoint:  # mmengine
        state = checkpoint["state_dict"]
        if any(k.startswith(GENERATOR_PREFIX) for k in state):
            return {k[len(GENERATOR_PREFIX):]: v for k, v in state.items() if k.startswith(GENERATOR_PREFIX)}
        return state
    return checkpoint


def generator_state_dict(checkpoint: Mapping | str | os.PathLike, param_key: str | None = None) -> dict:
    """Our :class:`FFNetSR` state dict from any supported checkpoint (path or loaded dict).

    Args:
        checkpoint: an authors' BasicSR file (``params``/``params_ema``), an mmengine checkpoint of
            :class:`~ffnet.superres.engine.FFNetSRModel`, or a plain state dict; or a path to one.
        param_key: which entry to read (e.g. ``'params_ema'``); default: ``'params'`` if present,
            else ``'params_ema'``, else mmengine's ``'state_dict'``, else the mapping itself.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load_checkpoint_file(checkpoint)
    state = {k.removeprefix("module."): v for k, v in _select_weights(checkpoint, param_key).items()}
    return convert_authors_state_dict(state) if is_authors_state_dict(state) else state


def load_generator(checkpoint: Mapping | str | os.PathLike, param_key: str | None = None) -> FFNetSR:
    """An :class:`FFNetSR` with the architecture and weights of ``checkpoint`` (see :func:`generator_state_dict`)."""
    return model_from_state_dict(generator_state_dict(checkpoint, param_key))


def is_mmengine_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds an mmengine checkpoint of :class:`~ffnet.superres.engine.FFNetSRModel`."""
    checkpoint = load_checkpoint_file(path)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    return isinstance(state, dict) and any(k.startswith(GENERATOR_PREFIX) for k in state)


def save_checkpoint_atomic(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_as_mmengine_checkpoint(model: FFNetSR, path: str | os.PathLike) -> Path:
    """Write ``{'state_dict': {'generator.*': ...}, 'meta': {...}}``, loadable by the mmengine Runner
    (``load_from``, ``init_cfg=dict(type='Pretrained')``) and by :func:`load_generator`."""
    state = {GENERATOR_PREFIX + k: v for k, v in model.state_dict().items()}
    return save_checkpoint_atomic({"state_dict": state, "meta": {"ffnet_sr": model.architecture()}}, path)
