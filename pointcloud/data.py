"""Scene datasets in Pointcept's on-disk layouts, and Pointcept's collate (with Mix3D).

Two layouts are read, per scene:

* upstream Pointcept (current): a folder ``<data_root>/<split>/<scene>/`` of ``coord.npy``,
  ``color.npy``, ``normal.npy``, ``segment20.npy`` / ``segment200.npy`` (ScanNet) or
  ``segment.npy`` (S3DIS), ``instance.npy``;
* the FFNet release's vendored Pointcept: a ``torch.save``d dict ``<data_root>/<split>/<scene>.pth``
  with ``coord``, ``color``, ``normal``, ``semantic_gt20`` / ``semantic_gt200`` / ``semantic_gt``,
  ``instance_gt``. These are pickles, read weights-only (:func:`ffnet.engine.checkpoints.load_file`:
  arrays and plain containers; anything else is refused unless the user opts in with ``--trust-checkpoint``).

Every scene is checked when it is read (points present, finite coordinates, the colour/normal assets
the pipeline needs, labels in ``[0, num_classes)`` or ``-1``); errors name the scene and the problem.
"""
from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ffnet.engine.checkpoints import load_file
from ffnet.pointcloud.classes import S3DIS_CLASSES, SCANNET20_CLASSES, SCANNET200_CLASSES
from ffnet.pointcloud.registry import DATASETS, FUNCTIONS, build_in_scope
from ffnet.pointcloud.transforms import TRANSFORMS, Compose


class SceneError(ValueError):
    """A scene file is missing, empty or inconsistent."""


class PointSceneDataset(Dataset):
    """Scenes of one benchmark; ``__getitem__`` returns the transformed scene (train/val) or its test fragments.

    Args:
        split: a split folder name, a list of them, or a JSON file listing scene paths relative to ``data_root``.
        data_root: folder holding the split folders.
        transform: Pointcept transform configs applied to every scene.
        test_mode: return ``dict(fragment_list, segment, name)`` built with ``test_cfg`` (TTA views ×
            test-mode grid-sampling fragments) instead of one transformed scene.
        test_cfg: ``dict(voxelize, crop, post_transform, aug_transform)`` as in Pointcept configs.
        loop: how many times the scene list is repeated per epoch (``epoch // eval_epoch`` in Pointcept).
        require: assets every scene must have; the FFNet configs feed ``color`` and ``normal``.
        scenes: explicit scene paths (folders or ``.pth`` files) instead of listing ``split``.
    """

    NUM_CLASSES: int = 0
    CLASS_NAMES: tuple = ()
    SEGMENT_ASSET = "segment"
    RELEASE_SEGMENT_KEY = "semantic_gt"

    def __init__(
        self,
        split: str | Sequence[str] = "train",
        data_root: str | os.PathLike = "data",
        transform: Sequence[Mapping] | None = None,
        test_mode: bool = False,
        test_cfg: Mapping | None = None,
        loop: int = 1,
        ignore_index: int = -1,
        require: Sequence[str] = ("coord", "color", "normal"),
        scenes: Sequence[str | os.PathLike] | None = None,
    ):
        super().__init__()
        self.data_root = Path(data_root)
        self.split = split
        self.transform = Compose(transform)
        self.test_mode = test_mode
        self.loop = 1 if test_mode else int(loop)
        self.ignore_index = ignore_index
        self.require = tuple(require)
        if test_mode:
            if test_cfg is None:
                raise ValueError(
                    "test_mode=True needs test_cfg=dict(voxelize=..., post_transform=..., aug_transform=...)")
            self.test_voxelize = build_in_scope(TRANSFORMS, dict(test_cfg["voxelize"]))
            crop = test_cfg.get("crop")
            self.test_crop = build_in_scope(TRANSFORMS, dict(crop)) if crop else None
            self.post_transform = Compose(test_cfg.get("post_transform"))
            self.aug_transform = [Compose(views) for views in test_cfg.get("aug_transform") or [[]]]
        self.data_list = [Path(p) for p in scenes] if scenes is not None else self.get_data_list()
        if not self.data_list:
            raise FileNotFoundError(
                f"no scenes found for split {split!r} under {self.data_root}: expected scene folders of .npy files "
                "(upstream Pointcept) or .pth files (the FFNet release); run Pointcept's preprocessing first"
            )

    def get_data_list(self) -> list[Path]:
        splits = [self.split] if isinstance(self.split, str) else list(self.split)
        scenes: list[Path] = []
        for split in splits:
            if str(split).endswith(".json"):
                with open(self.data_root / split) as f:
                    scenes += [self.data_root / name for name in json.load(f)]
                continue
            folder = self.data_root / split
            if not folder.is_dir():
                raise FileNotFoundError(f"split folder {folder} does not exist (data_root={self.data_root})")
            scenes += sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix == ".pth")
        return scenes

    def get_data_name(self, idx: int) -> str:
        return self.data_list[idx % len(self.data_list)].name.removesuffix(".pth")

    def _load_assets(self, path: Path, name: str) -> dict:
        if path.suffix == ".pth":
            raw = load_file(path)
            if not isinstance(raw, Mapping):
                raise SceneError(f"scene {name!r}: {path} does not hold a dict of arrays")
            data = {key: np.asarray(raw[key]) for key in ("coord", "color", "normal") if key in raw}
            if self.RELEASE_SEGMENT_KEY in raw:
                data["segment"] = np.asarray(raw[self.RELEASE_SEGMENT_KEY])
            if "instance_gt" in raw:
                data["instance"] = np.asarray(raw["instance_gt"])
            return data
        data = {}
        for asset, key in (("coord", "coord"), ("color", "color"), ("normal", "normal"),
                           (self.SEGMENT_ASSET, "segment"), ("instance", "instance")):
            file = path / f"{asset}.npy"
            if file.is_file():
                data[key] = np.load(file)
        return data

    def get_data(self, idx: int) -> dict:
        path = self.data_list[idx % len(self.data_list)]
        name = self.get_data_name(idx)
        if not path.exists():
            raise SceneError(f"scene {name!r}: {path} does not exist")
        data = self._load_assets(path, name)
        missing = [key for key in self.require if key not in data]
        if missing:
            hint = " (S3DIS: preprocess with --parse_normal to get normals)" if "normal" in missing else ""
            raise SceneError(f"scene {name!r}: missing {', '.join(f'{m}.npy' for m in missing)} in {path}{hint}")
        coord = np.asarray(data["coord"], dtype=np.float32)
        if coord.ndim != 2 or coord.shape[1] != 3:
            raise SceneError(f"scene {name!r}: coord must have shape (N, 3), got {coord.shape}")
        num_points = coord.shape[0]
        if num_points == 0:
            raise SceneError(f"scene {name!r} has no points")
        if num_points == 1:
            raise SceneError(
                f"scene {name!r} has a single point: a scene needs at least 2 points (BatchNorm statistics)")
        bad = ~np.isfinite(coord).all(1)
        if bad.any():
            raise SceneError(f"scene {name!r}: {int(bad.sum())} of {num_points} points have NaN/inf coordinates")
        data["coord"] = coord
        for key in ("color", "normal"):
            if key in data:
                value = np.asarray(data[key], dtype=np.float32)
                if value.shape != (num_points, 3):
                    raise SceneError(
                        f"scene {name!r}: {key} has shape {value.shape}, expected ({num_points}, 3) like coord")
                if not np.isfinite(value).all():
                    raise SceneError(f"scene {name!r}: {key} contains NaN/inf values")
                data[key] = value
        for key in ("segment", "instance"):
            if key in data:
                values = np.asarray(data[key]).reshape(-1)
                if values.shape[0] != num_points:
                    raise SceneError(f"scene {name!r}: {key} has {values.shape[0]} entries for {num_points} points")
                data[key] = values.astype(np.int64)
            else:
                data[key] = np.full(num_points, self.ignore_index, dtype=np.int64)
        segment = data["segment"]
        wrong = (segment != self.ignore_index) & ((segment < 0) | (segment >= self.NUM_CLASSES))
        if wrong.any():
            raise SceneError(
                f"scene {name!r}: {int(wrong.sum())} labels outside [0, {self.NUM_CLASSES}) and not the ignore index "
                f"{self.ignore_index} (e.g. {np.unique(segment[wrong])[:5].tolist()}); map unlabelled classes to "
                f"{self.ignore_index}"
            )
        data["name"] = name
        return data

    def prepare_train_data(self, idx: int) -> dict:
        return self.transform(self.get_data(idx))

    def prepare_test_data(self, idx: int) -> dict:
        """TTA views × grid-sampling fragments of one scene; ``segment`` is returned at full resolution."""
        data = self.get_data(idx)
        segment = data.pop("segment")
        data = self.transform(data)
        fragments = []
        for view in self.aug_transform:
            parts = self.test_voxelize(view(deepcopy(data)))
            for part in parts if isinstance(parts, list) else [parts]:
                fragments += self.test_crop(part) if self.test_crop else [part]
        return dict(fragment_list=[self.post_transform(f) for f in fragments], segment=segment, name=data["name"])

    def __getitem__(self, idx: int) -> dict:
        return self.prepare_test_data(idx) if self.test_mode else self.prepare_train_data(idx)

    def __len__(self) -> int:
        return len(self.data_list) * self.loop


@DATASETS.register_module()
class ScanNetDataset(PointSceneDataset):
    """ScanNet v2, 20 classes: ``segment20.npy`` (upstream) or ``semantic_gt20`` (release ``.pth``)."""

    NUM_CLASSES = 20
    CLASS_NAMES = SCANNET20_CLASSES
    SEGMENT_ASSET = "segment20"
    RELEASE_SEGMENT_KEY = "semantic_gt20"


@DATASETS.register_module()
class ScanNet200Dataset(ScanNetDataset):
    """ScanNet200: ``segment200.npy`` (upstream) or ``semantic_gt200`` (release ``.pth``)."""

    NUM_CLASSES = 200
    CLASS_NAMES = SCANNET200_CLASSES
    SEGMENT_ASSET = "segment200"
    RELEASE_SEGMENT_KEY = "semantic_gt200"


@DATASETS.register_module()
class S3DISDataset(PointSceneDataset):
    """S3DIS, 13 classes; rooms ``<data_root>/Area_N/<room>``, named ``Area_N-<room>``."""

    NUM_CLASSES = 13
    CLASS_NAMES = S3DIS_CLASSES

    def __init__(self, split=("Area_1", "Area_2", "Area_3", "Area_4", "Area_6"), data_root="data/s3dis", **kwargs):
        super().__init__(split=split, data_root=data_root, **kwargs)

    def get_data_name(self, idx: int) -> str:
        path = self.data_list[idx % len(self.data_list)]
        return f"{path.parent.name}-{path.name.removesuffix('.pth')}"


@FUNCTIONS.register_module()
def collate_fn(batch):
    """Pointcept's collate: concatenate tensors, cumulative-sum every ``*offset*`` key, keep strings as lists."""
    if not isinstance(batch, Sequence):
        raise TypeError(f"collate_fn expects a list of samples, got {type(batch).__name__}")
    first = batch[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(batch))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, Mapping):
        out = {key: collate_fn([sample[key] for sample in batch]) for key in first}
        for key in out:
            if "offset" in key:
                out[key] = torch.cumsum(out[key], dim=0)
        return out
    if isinstance(first, Sequence):
        return [collate_fn(list(samples)) for samples in zip(*batch)]
    return torch.utils.data.default_collate(batch)


@FUNCTIONS.register_module()
def point_collate_fn(batch: Sequence[Mapping], mix_prob: float = 0.0) -> dict:
    """:func:`collate_fn`, then Mix3D: with probability ``mix_prob`` merge samples (2i, 2i+1) into one scene each."""
    out = collate_fn(batch)
    if "offset" in out and random.random() < mix_prob:
        offset = out["offset"]
        out["offset"] = torch.cat([offset[1:-1:2], offset[-1:]])
    return out


@FUNCTIONS.register_module()
def first_item(batch: Sequence):
    """Test loader collate: batch size 1, the scene's dict of fragments as it is."""
    if len(batch) != 1:
        raise ValueError(f"the fragment test loader needs batch_size=1, got {len(batch)}")
    return batch[0]
