"""Point-cloud transforms with Pointcept's names and semantics, built from Pointcept-format configs.

A scene is a dict of numpy arrays: per-point ``coord`` ``(N, 3)``, ``color`` ``(N, 3)`` in 0..255,
``normal`` ``(N, 3)``, ``segment`` ``(N,)``, ``instance`` ``(N,)``, plus scene-level entries (``name``,
``origin_*`` copies). Subsampling transforms index only the per-point keys in :data:`POINT_KEYS`.
Angles are in units of π, as in Pointcept. Randomness comes from ``random`` / ``np.random``
(seeded per worker by the data loader).

Colour normalization differs between the release and upstream Pointcept:
:class:`NormalizeColor` maps 0..255 to ``[0, 1]`` (upstream), :class:`NormalizeColorSymmetric` to
``[-1, 1]`` (the release's ``color / 127.5 - 1``). The configs name the one they use.
"""
from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ffnet.pointcloud.registry import TRANSFORMS, build_in_scope

#: Per-point keys that subsampling (dropout, grid sampling, crops) indexes together.
POINT_KEYS = ("coord", "grid_coord", "color", "normal", "segment", "instance", "strength", "displacement", "index")


def index_points(data: dict, index: np.ndarray) -> dict:
    """Keep the points ``index`` of every per-point key present in ``data``."""
    for key in POINT_KEYS:
        if key in data:
            data[key] = data[key][index]
    return data


def _rotation(angle: float, axis: str) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"rotation axis must be 'x', 'y' or 'z', got {axis!r}")


def _rotate(data: dict, angle: float, axis: str, center) -> dict:
    rotation = _rotation(angle, axis)
    if "coord" in data:
        coord = data["coord"]
        if center is None:
            center = (coord.min(0) + coord.max(0)) / 2
        data["coord"] = ((coord - center) @ rotation.T + center).astype(coord.dtype)
    if "normal" in data:
        data["normal"] = (data["normal"] @ rotation.T).astype(data["normal"].dtype)
    return data


@TRANSFORMS.register_module()
class CenterShift:
    """Centre x and y on the bounding box; with ``apply_z`` also put the lowest point at z = 0."""

    def __init__(self, apply_z: bool = True):
        self.apply_z = apply_z

    def __call__(self, data: dict) -> dict:
        if "coord" in data:
            low, high = data["coord"].min(0), data["coord"].max(0)
            shift = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2] if self.apply_z else 0])
            data["coord"] = data["coord"] - shift.astype(data["coord"].dtype)
        return data


@TRANSFORMS.register_module()
class RandomDropout:
    """With probability ``dropout_application_ratio`` keep a random ``1 - dropout_ratio`` of the points."""

    def __init__(self, dropout_ratio: float = 0.2, dropout_application_ratio: float = 0.5):
        self.dropout_ratio = dropout_ratio
        self.dropout_application_ratio = dropout_application_ratio

    def __call__(self, data: dict) -> dict:
        if random.random() < self.dropout_application_ratio:
            n = len(data["coord"])
            keep = np.random.choice(n, max(int(n * (1 - self.dropout_ratio)), 1), replace=False)
            data = index_points(data, np.sort(keep))
        return data


@TRANSFORMS.register_module()
class RandomRotate:
    """With probability ``p`` rotate coords and normals by ``U(angle) · π`` about ``axis`` through ``center``."""

    def __init__(self, angle=(-1, 1), center=None, axis: str = "z", always_apply: bool = False, p: float = 0.5):
        self.angle, self.center, self.axis = angle, center, axis
        self.p = 1.0 if always_apply else p

    def __call__(self, data: dict) -> dict:
        if random.random() > self.p:
            return data
        return _rotate(data, np.random.uniform(self.angle[0], self.angle[1]) * np.pi, self.axis, self.center)


@TRANSFORMS.register_module()
class RandomRotateTargetAngle:
    """With probability ``p`` rotate by one of ``angle`` (× π), chosen at random; the TTA views use ``p=1``."""

    def __init__(self, angle=(1 / 2, 1, 3 / 2), center=None, axis: str = "z", always_apply: bool = False,
                 p: float = 0.75):
        self.angle, self.center, self.axis = angle, center, axis
        self.p = 1.0 if always_apply else p

    def __call__(self, data: dict) -> dict:
        if random.random() > self.p:
            return data
        return _rotate(data, np.random.choice(self.angle) * np.pi, self.axis, self.center)


@TRANSFORMS.register_module()
class RandomScale:
    """Scale coords by ``U(scale)`` (one factor, or one per axis when ``anisotropic``)."""

    def __init__(self, scale=(0.95, 1.05), anisotropic: bool = False):
        self.scale, self.anisotropic = scale, anisotropic

    def __call__(self, data: dict) -> dict:
        if "coord" in data:
            factor = np.random.uniform(self.scale[0], self.scale[1], 3 if self.anisotropic else 1)
            data["coord"] = (data["coord"] * factor).astype(data["coord"].dtype)
        return data


@TRANSFORMS.register_module()
class RandomFlip:
    """Negate x with probability ``p``, then, independently, y (coords and normals)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, data: dict) -> dict:
        for axis in (0, 1):
            if np.random.rand() < self.p:
                for key in ("coord", "normal"):
                    if key in data:
                        data[key] = data[key].copy()
                        data[key][:, axis] = -data[key][:, axis]
        return data


@TRANSFORMS.register_module()
class RandomJitter:
    """Add ``clip(sigma · N(0, 1), ±clip)`` to every coordinate."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05):
        if clip <= 0:
            raise ValueError(f"RandomJitter clip must be > 0, got {clip}")
        self.sigma, self.clip = sigma, clip

    def __call__(self, data: dict) -> dict:
        if "coord" in data:
            jitter = np.clip(self.sigma * np.random.randn(len(data["coord"]), 3), -self.clip, self.clip)
            data["coord"] = (data["coord"] + jitter).astype(data["coord"].dtype)
        return data


@TRANSFORMS.register_module()
class ElasticDistortion:
    """With probability 0.95 warp coords by smoothed noise grids, one per ``[granularity, magnitude]`` pair."""

    def __init__(self, distortion_params=((0.2, 0.4), (0.8, 1.6))):
        self.distortion_params = distortion_params

    @staticmethod
    def distort(coord: np.ndarray, granularity: float, magnitude: float) -> np.ndarray:
        """Add ``magnitude ×`` trilinearly interpolated, box-blurred Gaussian noise on a ``granularity`` grid."""
        from scipy.interpolate import RegularGridInterpolator
        from scipy.ndimage import uniform_filter1d

        low = coord.min(0)
        shape = ((coord - low).max(0) // granularity).astype(int) + 3
        noise = np.random.randn(*shape, 3).astype(np.float32)
        for _ in range(2):
            for axis in range(3):
                noise = uniform_filter1d(noise, size=3, axis=axis, mode="constant", cval=0.0)
        axes = [np.linspace(lo - granularity, lo + granularity * (n - 2), n) for lo, n in zip(low, shape)]
        interpolate = RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0)
        return coord + interpolate(coord) * magnitude

    def __call__(self, data: dict) -> dict:
        if "coord" in data and self.distortion_params is not None and random.random() < 0.95:
            coord = data["coord"]
            for granularity, magnitude in self.distortion_params:
                coord = self.distort(coord, granularity, magnitude)
            data["coord"] = coord.astype(data["coord"].dtype)
        return data


@TRANSFORMS.register_module()
class ChromaticAutoContrast:
    """With probability ``p`` blend colours with their per-channel min-max stretch to 0..255."""

    def __init__(self, p: float = 0.2, blend_factor: float | None = None):
        self.p, self.blend_factor = p, blend_factor

    def __call__(self, data: dict) -> dict:
        if "color" in data and np.random.rand() < self.p:
            color = data["color"].astype(np.float32)
            low, high = color.min(0, keepdims=True), color.max(0, keepdims=True)
            contrast = (color - low) * (255 / np.maximum(high - low, 1e-6))
            blend = np.random.rand() if self.blend_factor is None else self.blend_factor
            data["color"] = (1 - blend) * color + blend * contrast
        return data


@TRANSFORMS.register_module()
class ChromaticTranslation:
    """With probability ``p`` shift all colours by one random offset in ``±ratio · 255``, clipped to 0..255."""

    def __init__(self, p: float = 0.95, ratio: float = 0.05):
        self.p, self.ratio = p, ratio

    def __call__(self, data: dict) -> dict:
        if "color" in data and np.random.rand() < self.p:
            shift = (np.random.rand(1, 3) - 0.5) * 255 * 2 * self.ratio
            data["color"] = np.clip(data["color"] + shift, 0, 255).astype(np.float32)
        return data


@TRANSFORMS.register_module()
class ChromaticJitter:
    """With probability ``p`` add per-point Gaussian colour noise of std ``std · 255``, clipped to 0..255."""

    def __init__(self, p: float = 0.95, std: float = 0.005):
        self.p, self.std = p, std

    def __call__(self, data: dict) -> dict:
        if "color" in data and np.random.rand() < self.p:
            noise = np.random.randn(len(data["color"]), 3) * self.std * 255
            data["color"] = np.clip(data["color"] + noise, 0, 255).astype(np.float32)
        return data


@TRANSFORMS.register_module()
class NormalizeColor:
    """Upstream Pointcept: colour 0..255 → ``[0, 1]`` (``color / 255``)."""

    def __call__(self, data: dict) -> dict:
        if "color" in data:
            data["color"] = (data["color"] / 255).astype(np.float32)
        return data


@TRANSFORMS.register_module()
class NormalizeColorSymmetric:
    """The FFNet release (its vendored Pointcept's ``NormalizeColor``): 0..255 → ``[-1, 1]`` (``color / 127.5 - 1``)."""

    def __call__(self, data: dict) -> dict:
        if "color" in data:
            data["color"] = (data["color"] / 127.5 - 1).astype(np.float32)
        return data


def fnv_hash(grid: np.ndarray) -> np.ndarray:
    """Pointcept's 64-bit FNV hash of non-negative integer voxel coords ``(N, 3)`` → ``(N,)`` uint64."""
    grid = grid.astype(np.uint64, copy=False)
    hashed = np.full(grid.shape[0], np.uint64(14695981039346656037), dtype=np.uint64)
    for axis in range(grid.shape[1]):
        hashed *= np.uint64(1099511628211)
        hashed = np.bitwise_xor(hashed, grid[:, axis])
    return hashed


def ravel_hash(grid: np.ndarray) -> np.ndarray:
    """Row-major linear index of voxel coords ``(N, 3)`` → ``(N,)`` uint64 (collision free)."""
    grid = grid - grid.min(0)
    extent = grid.max(0).astype(np.uint64) + 1
    grid = grid.astype(np.uint64)
    return (grid[:, 0] * extent[1] + grid[:, 1]) * extent[2] + grid[:, 2]


@TRANSFORMS.register_module()
class GridSample:
    """Voxelize at ``grid_size`` metres.

    ``mode="train"``: keep one random point per voxel (and ``grid_coord`` ``(M, 3)``, voxel indices
    from 0). ``mode="test"``: return a list of fragments; fragment ``i`` takes the ``(i mod count)``-th
    point of every voxel, so the fragments together cover every point; each carries ``index`` (the
    points' rows in the input). ``return_inverse`` adds ``inverse`` ``(N,)``: each input point's row
    in the train-mode output. ``keys`` is accepted for the release's configs (all per-point keys are
    sampled together).
    """

    def __init__(self, grid_size: float = 0.05, hash_type: str = "fnv", mode: str = "train", keys=None,
                 return_inverse: bool = False, return_grid_coord: bool = False, return_min_coord: bool = False):
        grid = np.asarray(grid_size, dtype=np.float64)
        if not np.all(np.isfinite(grid)) or np.any(grid <= 0):
            raise ValueError(f"GridSample grid_size must be a positive length in metres (e.g. 0.02), got {grid_size}")
        if mode not in ("train", "test"):
            raise ValueError(f"GridSample mode must be 'train' or 'test', got {mode!r}")
        if hash_type not in ("fnv", "ravel"):
            raise ValueError(f"GridSample hash_type must be 'fnv' or 'ravel', got {hash_type!r}")
        self.grid_size = grid
        self.hash = fnv_hash if hash_type == "fnv" else ravel_hash
        self.mode = mode
        self.return_inverse = return_inverse
        self.return_grid_coord = return_grid_coord
        self.return_min_coord = return_min_coord

    def __call__(self, data: dict):
        coord = data["coord"]
        if len(coord) == 0:
            raise ValueError(f"GridSample got an empty point set (scene {data.get('name', '?')!r})")
        grid = np.floor(coord / self.grid_size).astype(np.int64)
        min_grid = grid.min(0)
        grid -= min_grid
        keys = self.hash(grid)
        order = np.argsort(keys, kind="stable")
        _, inverse_sorted, count = np.unique(keys[order], return_inverse=True, return_counts=True)
        start = np.cumsum(np.insert(count, 0, 0)[:-1])
        extras = {}
        if self.return_min_coord:
            extras["min_coord"] = (min_grid * self.grid_size).reshape(1, 3)
        if self.mode == "train":
            chosen = order[start + np.random.randint(0, count.max(), count.size) % count]
            if self.return_inverse:
                inverse = np.zeros_like(inverse_sorted)
                inverse[order] = inverse_sorted
                data["inverse"] = inverse
            data = index_points(data, chosen)
            if self.return_grid_coord:
                data["grid_coord"] = grid[chosen]
            data.update(extras)
            return data
        fragments = []
        for i in range(count.max()):
            chosen = order[start + i % count]
            fragment = {key: value for key, value in data.items() if key not in POINT_KEYS}
            for key in POINT_KEYS:
                if key in data:
                    fragment[key] = data[key][chosen]
            fragment["index"] = chosen
            if self.return_grid_coord:
                fragment["grid_coord"] = grid[chosen]
            fragment.update(extras)
            fragments.append(fragment)
        return fragments


@TRANSFORMS.register_module()
class SphereCrop:
    """Keep the ``point_max`` (or ``sample_rate · N``) points nearest to a random (or the middle) point."""

    def __init__(self, point_max: int = 80000, sample_rate: float | None = None, mode: str = "random"):
        if mode not in ("random", "center"):
            raise ValueError(f"SphereCrop mode must be 'random' or 'center', got {mode!r}")
        self.point_max, self.sample_rate, self.mode = point_max, sample_rate, mode

    def __call__(self, data: dict) -> dict:
        n = len(data["coord"])
        limit = int(self.sample_rate * n) if self.sample_rate is not None else self.point_max
        if n > limit:
            center = data["coord"][np.random.randint(n) if self.mode == "random" else n // 2]
            nearest = np.argsort(np.square(data["coord"] - center).sum(1))[:limit]
            data = index_points(data, nearest)
            for key in ("origin_coord", "origin_segment"):
                if key in data and len(data[key]) == n:
                    data[key] = data[key][nearest]
        return data


@TRANSFORMS.register_module()
class Copy:
    """Copy entries under new names, e.g. ``{"segment": "origin_segment"}`` (kept at full resolution)."""

    def __init__(self, keys_dict: Mapping | None = None):
        self.keys_dict = dict(keys_dict or {"coord": "origin_coord", "segment": "origin_segment"})

    def __call__(self, data: dict) -> dict:
        for source, target in self.keys_dict.items():
            data[target] = copy.deepcopy(data[source])
        return data


def to_tensor(value):
    """numpy floats → float32 tensors, integers → int64, bools stay; recurses into dicts and lists."""
    if isinstance(value, (torch.Tensor, str)) or value is None:
        return value
    if isinstance(value, bool):
        return torch.tensor([value])
    if isinstance(value, int):
        return torch.LongTensor([value])
    if isinstance(value, float):
        return torch.FloatTensor([value])
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return torch.from_numpy(value)
        if np.issubdtype(value.dtype, np.integer):
            return torch.from_numpy(value.astype(np.int64))
        if np.issubdtype(value.dtype, np.floating):
            return torch.from_numpy(value.astype(np.float32))
        raise TypeError(f"cannot convert a numpy array of dtype {value.dtype} to a tensor")
    if isinstance(value, Mapping):
        return {key: to_tensor(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [to_tensor(item) for item in value]
    raise TypeError(f"cannot convert {type(value).__name__} to a tensor")


@TRANSFORMS.register_module()
class ToTensor:
    """numpy arrays → tensors (float32 / int64), recursively."""

    def __call__(self, data):
        return to_tensor(data)


@TRANSFORMS.register_module()
class Collect:
    """Keep ``keys``, add ``offset`` (``tensor([N])``), concatenate ``*_keys`` groups, e.g. ``feat_keys``."""

    def __init__(self, keys, offset_keys_dict: Mapping | None = None, **concat_keys):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.offset_keys = dict(offset_keys_dict or {"offset": "coord"})
        for name in concat_keys:
            if not name.endswith("_keys"):
                raise TypeError(f"Collect got an unexpected argument {name!r}; groups are named like feat_keys")
        self.concat_keys = {name[: -len("_keys")]: list(keys) for name, keys in concat_keys.items()}

    def __call__(self, data: dict) -> dict:
        missing = [key for key in self.keys + sum(self.concat_keys.values(), []) if key not in data]
        if missing:
            raise KeyError(f"scene {data.get('name', '?')!r} lacks {missing} needed by Collect")
        out = {key: data[key] for key in self.keys}
        for key, source in self.offset_keys.items():
            out[key] = torch.tensor([len(data[source])])
        for name, keys in self.concat_keys.items():
            out[name] = torch.cat([torch.as_tensor(data[key]).float() for key in keys], dim=1)
        return out


class Compose:
    """Apply transforms built from a list of configs, in order."""

    def __init__(self, configs=None):
        self.transforms = [build_in_scope(TRANSFORMS, dict(config)) for config in (configs or [])]

    def __call__(self, data):
        for transform in self.transforms:
            data = transform(data)
        return data
