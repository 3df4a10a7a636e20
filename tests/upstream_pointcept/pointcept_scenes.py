"""Names shared by the upstream-Pointcept tests and their fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np

STUBS = Path(__file__).resolve().parents[1] / "pointcept_stubs"
SCANNET_TRAIN = ("scene0000_00", "scene0001_00")
SCANNET_VAL = ("scene0100_00",)


def scannet200_labels(segment20: np.ndarray) -> np.ndarray:
    """Distinct labels for segment200.npy, so a test can tell which file a dataset read."""
    return (segment20.astype(np.int16) * 3 + 7) % 200
