"""Compatibility of mmengine 0.10.7 (the last release) with torch >= 2.6, applied when ffnet.detection or
ffnet.segmentation is imported (:func:`apply`).

torch 2.6 made ``torch.load(..., weights_only=True)`` the default. mmengine's checkpoint loader calls
``torch.load(filename, map_location=...)``, so ``resume=True`` and ``load_from`` fail on the Runner's own
checkpoints: their ``message_hub`` holds mmengine ``HistoryBuffer`` objects (whose pickles name their
statistics methods through ``builtins.getattr``) and numpy arrays and scalars. Rather than switching
the unpickler off (``weights_only=False``), :func:`apply` allowlists exactly those types for the
weights-only unpickler, with ``builtins.getattr`` mapped to a function that only returns
``HistoryBuffer``'s statistics methods. Any other global in a checkpoint is still refused.

numpy 2: the code paths of mmcv 2.1 / mmdet 3.3 / mmseg 1.2 / pycocotools 2.0.11 that FFNet's configs
use (COCO and ADE20K/Cityscapes loading, transforms, CocoMetric, IoUMetric) run unchanged on numpy 2
(exercised by the tests); nothing is patched for it.
"""
from __future__ import annotations

import collections
import pickle
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_APPLIED = False


def _history_buffer_method(owner: Any, name: str) -> Any:
    """The ``getattr`` of a weights-only unpickle: only ``HistoryBuffer``'s statistics methods."""
    if owner is HistoryBuffer and isinstance(name, str) and name in HistoryBuffer._statistics_methods:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"refusing getattr({owner!r}, {name!r}) while loading a checkpoint: only mmengine HistoryBuffer statistics "
        "methods are allowed (ffnet.classification.openmmlab.compat). Load a checkpoint you trust with "
        "torch.load(..., weights_only=False)"
    )


def mmengine_checkpoint_globals() -> list:
    """What mmengine Runner checkpoints pickle besides tensors, for ``torch.serialization.add_safe_globals``."""
    multiarray = np._core.multiarray
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    return [
        HistoryBuffer,
        collections.Counter,
        np.ndarray,
        np.dtype,
        *sorted(dtype_classes, key=lambda cls: cls.__name__),
        multiarray._reconstruct,
        multiarray.scalar,
        # files written under numpy 1.x name the same functions through numpy.core
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (_history_buffer_method, "builtins.getattr"),
    ]


def apply() -> None:
    """Allowlist mmengine checkpoint contents for torch's weights-only unpickler (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    HistoryBuffer()  # fills HistoryBuffer._statistics_methods (min, max, current, mean)
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _APPLIED = True
