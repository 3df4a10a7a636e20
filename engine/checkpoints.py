"""Every checkpoint ffnet reads goes through this module: safe, strict, and with one unwrapping order.

Reading (:func:`load_file`)
    ``torch.load(weights_only=True)`` always. Besides tensors and plain containers, the weights-only
    unpickler accepts exactly the types that mmengine's own Runner checkpoints and timm's
    CheckpointSaver files pickle (:func:`safe_globals`): numpy arrays/scalars/dtypes, ``collections.Counter``,
    ``argparse.Namespace``, mmengine's ``HistoryBuffer`` and the OneCycle annealing functions (named
    through ``getattr``, which is replaced by a function that returns only those attributes). A file
    that needs anything else is refused with one line naming the file and the offending global; there
    is no fallback to the full unpickler. A user who trusts a file opts in explicitly:
    ``--trust-checkpoint`` on the command line, ``FFNET_TRUST_CHECKPOINTS=1``, or ``trust=True``.

Unwrapping (:func:`unwrap_state_dict`)
    The model weights inside a checkpoint dict are found in this order: with ``prefer_ema``,
    ``state_dict_ema``, ``model_ema``, ``ema``, ``params_ema``; then ``state_dict`` (mmengine, timm),
    ``model`` (DeiT, torchvision), ``params`` (BasicSR), then the EMA keys above (EMA-only files);
    else the dict itself. A ``module.`` prefix on every key (DDP) is removed.

Layouts (:func:`register_layout`, :func:`convert_layout`)
    Domains register recognisers for foreign key layouts (the authors' release) with a converter to
    ours, and describers that say which architecture a state dict belongs to; loaders convert
    automatically and error messages name what a mismatched file looks like.

Loading into a model (:func:`load_state_dict`)
    Strict by default: missing, unexpected or wrong-shaped keys raise :class:`CheckpointError` with
    their counts, the first few keys and what the file looks like. ``strict=False`` loads what fits
    and prints one summary line of what it skipped.
"""
from __future__ import annotations

import argparse
import ast
import collections
import functools
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from ffnet.engine.errors import CheckpointError

TRUST_ENV = "FFNET_TRUST_CHECKPOINTS"
TRUST_HINT = f"if you trust this file, pass --trust-checkpoint (or set {TRUST_ENV}=1)"
_trust_all = False


def set_trust(trust: bool) -> None:
    """Process-wide opt-in to the full unpickler (what ``--trust-checkpoint`` sets)."""
    global _trust_all
    _trust_all = bool(trust)


def trusting() -> bool:
    return _trust_all or os.environ.get(TRUST_ENV, "") not in ("", "0")


# ---------------------------------------------------------------------------------------------------------------
# The allowlist of the weights-only unpickler


@functools.cache
def _safe_attributes() -> dict:
    """Class attributes that mmengine checkpoints name through ``getattr`` ({} without mmengine)."""
    try:
        from mmengine.logging import HistoryBuffer
        from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
    except ModuleNotFoundError:
        return {}
    HistoryBuffer()  # fills HistoryBuffer._statistics_methods (min, max, current, mean)
    return {
        HistoryBuffer: frozenset(HistoryBuffer._statistics_methods),
        OneCycleParamScheduler: frozenset({"_annealing_cos", "_annealing_linear"}),
    }


def _allowed_getattr(owner: Any, name: str) -> Any:
    """The ``getattr`` of a weights-only unpickle: only the attributes of :func:`_safe_attributes`."""
    if isinstance(name, str) and name in _safe_attributes().get(owner, ()):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f"Unsupported global: GLOBAL builtins.getattr({getattr(owner, '__name__', owner)}, "
                                 f"{name!r})")


@functools.cache
def safe_globals() -> tuple:
    """What checkpoints pickle besides tensors and containers, for ``torch.serialization.safe_globals``."""
    import numpy as np

    multiarray = np._core.multiarray
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    return (
        *_safe_attributes(),
        argparse.Namespace,
        collections.Counter,
        np.ndarray,
        np.dtype,
        *sorted(dtype_classes, key=lambda cls: cls.__name__),
        multiarray._reconstruct,
        multiarray.scalar,
        # files written under numpy 1.x name the same functions through numpy.core
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (_allowed_getattr, "builtins.getattr"),
    )


def allow_mmengine_checkpoints() -> None:
    """Add :func:`safe_globals` to torch's process-wide allowlist, for loads that mmengine itself makes
    (``Runner`` resume and ``load_from``, ``init_cfg=dict(type='Pretrained')``) and for :func:`load_file`.

    Idempotent. (A ``torch.serialization.safe_globals`` block is not used instead: leaving it
    resets the process-wide list, which would drop these entries for mmengine's later loads.)
    """
    allowed = set(map(repr, torch.serialization.get_safe_globals()))
    missing = [entry for entry in safe_globals() if repr(entry) not in allowed]
    if missing:
        torch.serialization.add_safe_globals(missing)


# ---------------------------------------------------------------------------------------------------------------
# Reading a file

_GLOBAL = re.compile(r"GLOBAL ([\w.]+(?:\([^)]*\))?)")


def _refusal(path: Path, err: Exception) -> CheckpointError:
    text = str(err)
    found = _GLOBAL.search(text)
    if found:
        what = f"it needs the Python global {found[1]}, which a weights-only load never runs"
    else:
        detail = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
        detail = " ".join(detail.split()) or "no detail"
        what = f"it is corrupt, or holds pickle code a weights-only load refuses ({detail[:160]})"
    return CheckpointError(f"{path}: refused to load: {what}; {TRUST_HINT}")


def load_file(path: str | os.PathLike, *, trust: bool | None = None, map_location: Any = "cpu") -> Any:
    """The object stored in checkpoint ``path`` (``.pt``/``.pth``/``.pth.tar``/``.ckpt`` or ``.safetensors``).

    Raises :class:`CheckpointError` (one line: file, problem, fix) for a missing, empty, corrupt or
    refused file. ``trust=None`` follows :func:`set_trust` / ``FFNET_TRUST_CHECKPOINTS``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found; check the path")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; give the file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (an interrupted download or copy?); fetch it again")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(path, device=str(map_location))
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({err}); fetch it again") from None
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle); check that "
                              "the file is a .pt/.pth/.pth.tar or .safetensors file")
    trusted = trusting() if trust is None else trust
    try:
        if trusted:
            return torch.load(path, map_location=map_location, weights_only=False)
        allow_mmengine_checkpoints()
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if trusted:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint ({err}); check the file") from None
        raise _refusal(path, err) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first[:200]}); check that the file is "
                              "complete and is a .pt/.pth file") from None


# ---------------------------------------------------------------------------------------------------------------
# Unwrapping

EMA_KEYS = ("state_dict_ema", "model_ema", "ema", "params_ema")
WEIGHT_KEYS = ("state_dict", "model", "params", "state_dict_ema", "model_ema", "ema", "params_ema")


def unwrap_state_dict(checkpoint: Any, *, prefer_ema: bool = False, source: str = "checkpoint"
                      ) -> dict[str, torch.Tensor]:
    """The tensor state dict inside ``checkpoint`` (order in the module docstring); ``module.`` removed."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict")
    state: Mapping = checkpoint
    for key in (EMA_KEYS if prefer_ema else ()) + WEIGHT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: holds no weights (no tensors at the top level nor under "
                              f"{', '.join(repr(k) for k in WEIGHT_KEYS)})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_weights(path: str | os.PathLike, *, prefer_ema: bool = False, trust: bool | None = None
                 ) -> dict[str, torch.Tensor]:
    """:func:`load_file` then :func:`unwrap_state_dict`."""
    return unwrap_state_dict(load_file(path, trust=trust), prefer_ema=prefer_ema, source=str(path))


# ---------------------------------------------------------------------------------------------------------------
# Layouts: recognising and converting foreign checkpoints, describing any


@dataclass(frozen=True)
class Layout:
    """A foreign key layout: ``matches(state)`` recognises it, ``convert(state)`` gives ours."""

    name: str
    matches: Callable[[Mapping[str, torch.Tensor]], bool]
    convert: Callable[[Mapping[str, torch.Tensor]], dict]


_LAYOUTS: dict[str, Layout] = {}
_DESCRIBERS: dict[str, Callable[[Mapping[str, torch.Tensor]], str | None]] = {}


def register_layout(name: str, matches: Callable, convert: Callable) -> None:
    """Register a foreign layout (re-registering a name replaces it)."""
    _LAYOUTS[name] = Layout(name, matches, convert)


def register_describer(name: str, describe: Callable[[Mapping[str, torch.Tensor]], str | None]) -> None:
    """Register ``describe(state) -> 'ffnet_2 (train-time)' | None`` for error messages."""
    _DESCRIBERS[name] = describe


def convert_layout(state: Mapping[str, torch.Tensor], only: Iterable[str] | None = None
                   ) -> tuple[dict[str, torch.Tensor], str | None]:
    """``(state in our layout, name of the converter applied or None)``."""
    for layout in _LAYOUTS.values():
        if only is not None and layout.name not in only:
            continue
        if layout.matches(state):
            return layout.convert(state), layout.name
    return dict(state), None


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """What architecture ``state`` looks like, from the registered describers and layouts."""
    for describe in _DESCRIBERS.values():
        try:
            found = describe(state)
        except Exception:  # a describer must never turn an error message into a crash
            found = None
        if found:
            return found
    for layout in _LAYOUTS.values():
        if layout.matches(state):
            return f"a checkpoint in {layout.name}"
    return "no architecture ffnet recognises"


# ---------------------------------------------------------------------------------------------------------------
# Putting weights into a model


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    converter: str | None = None

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, first: int = 3) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:first])}{', ...' if len(keys) > first else ''})")
        if self.mismatched:
            shown = ", ".join(f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched[:first])
            parts.append(f"{len(self.mismatched)} of the wrong shape ({shown}{', ...' if len(self.mismatched) > first else ''})")
        return "; ".join(parts) or "every key fits"


def compare_state_dict(model_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> LoadReport:
    """What :func:`load_state_dict` would report, without loading."""
    report = LoadReport()
    report.missing = [k for k in model_state if k not in state]
    report.unexpected = [k for k in state if k not in model_state]
    report.mismatched = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in model_state.items()
                         if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return report


def check_fits(model_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *, source: str,
               target: str) -> LoadReport:
    """Raise :class:`CheckpointError` (one line) unless ``state`` fills ``model_state`` exactly."""
    report = compare_state_dict(model_state, state)
    if not report.complete:
        raise CheckpointError(f"{source}: does not fit {target}: {report.summary()}; the file looks like "
                              f"{describe_state_dict(state)}; use the config or model that matches it")
    return report


def load_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
                    strict: bool = True, convert: bool = True, target: str | None = None) -> LoadReport:
    """Put ``state`` into ``model``; strict unless ``strict=False``. Foreign layouts are converted first.

    Raises :class:`CheckpointError` (one line) when strict and anything does not fit; with
    ``strict=False`` loads what fits and prints one line naming what it skipped.
    """
    converter = None
    model_state = model.state_dict()
    if convert and compare_state_dict(model_state, state).missing:
        state, converter = convert_layout(state)
    what = target or type(model).__name__
    if strict:
        report = check_fits(model_state, state, source=source, target=what)
    else:
        report = compare_state_dict(model_state, state)
    report.converter = converter
    if not report.complete:
        mismatched = {k for k, _, _ in report.mismatched}
        state = {k: v for k, v in state.items() if k in model_state and k not in mismatched}
        print(f"partial load of {source} into {what}: {len(state)} tensors loaded, skipped {report.summary()}",
              file=sys.stderr)
    model.load_state_dict(state, strict=strict)
    return report


# ---------------------------------------------------------------------------------------------------------------
# Configs stored inside checkpoints


class _DictCalls(ast.NodeTransformer):
    """``dict(a=1, b=2)`` → ``{'a': 1, 'b': 2}``, so that :func:`ast.literal_eval` accepts mmengine's pretty text."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args \
                and all(k.arg is not None for k in node.keywords):
            return ast.Dict([ast.Constant(k.arg) for k in node.keywords], [k.value for k in node.keywords])
        return node


def config_from_text(text: str, source: str):
    """The mmengine ``Config`` a checkpoint carries as text (``meta['cfg']``), read as data.

    mmengine writes it as ``name = <literal>`` lines (``Config.pretty_text``); executing it, as
    ``Config.fromstring`` does, would run whatever code the file holds, so only literals and
    ``dict(...)`` are accepted (anything else only with the trust opt-in).
    """
    from mmengine.config import Config

    if trusting():
        return Config.fromstring(text, ".py")
    values = {}
    try:
        for statement in ast.parse(text).body:
            if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)):
                raise ValueError(f"line {statement.lineno} is not a 'name = value' assignment")
            values[statement.targets[0].id] = ast.literal_eval(_DictCalls().visit(statement.value))
    except (SyntaxError, ValueError) as err:
        raise CheckpointError(f"{source}: the config stored in it (meta['cfg']) is not plain data ({err}); "
                              f"{TRUST_HINT}") from None
    return Config(values)
