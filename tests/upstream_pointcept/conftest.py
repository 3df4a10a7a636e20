"""Scenes in upstream Pointcept's on-disk layouts, for the tests that run against a Pointcept checkout.

This folder is collected only where ``pointcept`` is importable (see tests/conftest.py): the Pointcept
job (``make test-pointcept``) puts ``$POINTCEPT_ROOT`` and tests/pointcept_stubs/ on ``PYTHONPATH`` in
.venv-pointcept.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("pointcept") is None:
    raise pytest.UsageError("tests/upstream_pointcept/ needs upstream Pointcept on the path: run "
                            "`make test-pointcept POINTCEPT_ROOT=<checkout>`")

from ffnet.pointcloud.synthetic import synthetic_room, write_scannet_scene
from pointcept_scenes import SCANNET_TRAIN, SCANNET_VAL, STUBS, scannet200_labels

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def scannet_root(tmp_path_factory) -> Path:
    """ScanNet as Pointcept's preprocessing writes it: ``<split>/<scene>/{coord,color,normal,segment20,segment200,instance}.npy``."""
    root = tmp_path_factory.mktemp("scannet")
    for split, names, points in (("train", SCANNET_TRAIN, 1500), ("val", SCANNET_VAL, 900)):
        for i, name in enumerate(names):
            scene = synthetic_room(points, seed=len(split) * 10 + i)
            folder = write_scannet_scene(root / split / name, scene)
            np.save(folder / "segment200.npy", scannet200_labels(scene["segment"]))
    return root


@pytest.fixture(scope="session")
def s3dis_root(tmp_path_factory) -> Path:
    """S3DIS as Pointcept's preprocessing writes it: ``Area_<n>/<room>/{coord,color,normal,segment,instance}.npy``."""
    root = tmp_path_factory.mktemp("s3dis")
    for area, room, seed in (("Area_1", "office_1", 1), ("Area_2", "hallway_3", 2), ("Area_5", "conferenceRoom_1", 5)):
        scene = synthetic_room(1200, seed=seed)
        folder = root / area / room
        folder.mkdir(parents=True)
        for key in ("coord", "color", "normal"):
            np.save(folder / f"{key}.npy", scene[key])
        np.save(folder / "segment.npy", scene["segment"].astype(np.int16).reshape(-1, 1))
        np.save(folder / "instance.npy", np.arange(len(scene["coord"]), dtype=np.int16).reshape(-1, 1) // 100)
    return root


@pytest.fixture(scope="session")
def pointcept_env() -> dict[str, str]:
    """The environment for ``ffnet`` subprocesses: this one, with the stand-ins on ``PYTHONPATH``."""
    env = dict(os.environ, WANDB_MODE="disabled")
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(STUBS) not in paths:
        paths.append(str(STUBS))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
