"""Loading mmengine Runner checkpoints with torch >= 2.6's weights-only unpickler.

:func:`allow_mmengine_checkpoints` runs before every Runner of ``ffnet train`` / ``ffnet test`` and the
point-cloud trainer, and when ffnet.detection or ffnet.segmentation is imported (mmdet/mmseg tools).

torch 2.6 made ``torch.load(..., weights_only=True)`` the default. mmengine's checkpoint loader calls
``torch.load(filename, map_location=...)``, so ``resume=True`` and ``load_from`` fail on the Runner's own
checkpoints: their ``message_hub`` holds mmengine ``HistoryBuffer`` objects (whose pickles name their
statistics methods through ``builtins.getattr``) and numpy arrays and scalars, and a OneCycle
scheduler's state names its annealing function the same way. Rather than switching
the unpickler off (``weights_only=False``), :func:`allow_mmengine_checkpoints` allowlists exactly those types for the
weights-only unpickler, with ``builtins.getattr`` mapped to a function that only returns those
attributes. Any other global in a checkpoint is still refused.

numpy 2: the code paths of mmcv 2.1 / mmdet 3.3 / mmseg 1.2 / pycocotools 2.0.11 that FFNet's configs
use (COCO and ADE20K/Cityscapes loading, transforms, CocoMetric, IoUMetric) run unchanged on numpy 2
(exercised by the tests); nothing is patched for it.
"""
from __future__ import annotations

import collections
import functools
import pickle
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

_APPLIED = False


@functools.cache
def _safe_attributes() -> dict:
    """The class attributes mmengine checkpoints name through ``getattr``: statistics methods of
    ``HistoryBuffer`` (message hub) and the annealing functions of ``OneCycleParamScheduler``."""
    HistoryBuffer()  # fills HistoryBuffer._statistics_methods (min, max, current, mean)
    return {
        HistoryBuffer: frozenset(HistoryBuffer._statistics_methods),
        OneCycleParamScheduler: frozenset({"_annealing_cos", "_annealing_linear"}),
    }


def _allowed_getattr(owner: Any, name: str) -> Any:
    """The ``getattr`` of a weights-only unpickle: only the attributes of :func:`_safe_attributes`."""
    if isinstance(name, str) and name in _safe_attributes().get(owner, ()):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f"refusing getattr({owner!r}, {name!r}) while loading a checkpoint: only mmengine HistoryBuffer statistics "
        "methods and OneCycleParamScheduler annealing functions are allowed (ffnet.checkpoints). Load a checkpoint "
        "you trust with torch.load(..., weights_only=False)"
    )


def mmengine_checkpoint_globals() -> list:
    """What mmengine Runner checkpoints pickle besides tensors, for ``torch.serialization.add_safe_globals``."""
    multiarray = np._core.multiarray
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    return [
        *_safe_attributes(),
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
    ]


def allow_mmengine_checkpoints() -> None:
    """Allowlist mmengine checkpoint contents for torch's weights-only unpickler (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _APPLIED = True
