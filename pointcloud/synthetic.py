"""Small indoor scenes sampled from real surfaces, written in Pointcept's on-disk layouts.

A room of floor, two walls and objects: an ellipsoid "chair" and a rounded "table" whose surfaces
are meshes extracted from signed-distance volumes with scikit-image's marching cubes. Points are
sampled uniformly by area on the triangles, with the face normals and a noisy per-class colour.
Used by the tests (the real loaders read these files) and the benchmark; not a substitute for data.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: ScanNet20 labels used by the synthetic room: wall, floor, chair, table.
WALL, FLOOR, CHAIR, TABLE = 0, 1, 4, 6
_COLORS = {WALL: (200, 200, 190), FLOOR: (120, 90, 60), CHAIR: (40, 90, 160), TABLE: (150, 60, 40)}


def _sample_triangles(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator):
    """``count`` points uniform by area on a triangle mesh, with unit face normals."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    face = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random((2, count))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    points = a[face] + u[:, None] * (b - a)[face] + v[:, None] * (c - a)[face]
    return points, cross[face] / area[face, None]


def _surface(sdf: np.ndarray, spacing: float, origin, count: int, rng: np.random.Generator):
    from skimage.measure import marching_cubes

    vertices, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(spacing,) * 3)
    return _sample_triangles(vertices + np.asarray(origin), faces, count, rng)


def _plane(origin, u_axis, v_axis, count: int, rng: np.random.Generator):
    uv = rng.random((count, 2))
    points = np.asarray(origin) + uv[:, :1] * np.asarray(u_axis) + uv[:, 1:] * np.asarray(v_axis)
    normal = np.cross(u_axis, v_axis).astype(np.float64)
    return points, np.repeat((normal / np.linalg.norm(normal))[None], count, axis=0)


def synthetic_room(num_points: int = 4000, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    """A scene dict: ``coord`` ``(N, 3)`` float32 (metres), ``color`` uint8, ``normal`` float32, ``segment`` int16.

    The room is 3 × 2.5 × 2 m times ``scale`` (about 21 m² of surface at ``scale=1``).
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, 24)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    chair_sdf = np.sqrt((x / 0.9) ** 2 + (y / 0.9) ** 2 + (z / 0.6) ** 2) - 1
    table_sdf = (np.abs(x) ** 6 + np.abs(y) ** 6 + (np.abs(z) / 0.3) ** 6) ** (1 / 6) - 0.9
    share = np.array([0.3, 0.3, 0.2, 0.2])
    counts = np.maximum((share * num_points).astype(int), 2)
    counts[0] += num_points - counts.sum()
    parts = [
        (FLOOR, _plane((0, 0, 0), (3.0, 0, 0), (0, 2.5, 0), counts[0], rng)),
        (WALL, _plane((0, 0, 0), (0, 0, 2.0), (3.0, 0, 0), counts[1] // 2, rng)),
        (WALL, _plane((0, 0, 0), (0, 2.5, 0), (0, 0, 2.0), counts[1] - counts[1] // 2, rng)),
        (CHAIR, _surface(chair_sdf, 0.4 * 2 / 23, (0.6, 0.8, 0.05), counts[2], rng)),
        (TABLE, _surface(table_sdf, 0.5 * 2 / 23, (1.6, 1.1, 0.3), counts[3], rng)),
    ]
    coord = (np.concatenate([points for _, (points, _) in parts]) * scale).astype(np.float32)
    normal = np.concatenate([normals for _, (_, normals) in parts]).astype(np.float32)
    segment = np.concatenate([np.full(len(points), label) for label, (points, _) in parts]).astype(np.int16)
    base = np.array([_COLORS[label] for label in segment], dtype=np.float64)
    color = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return dict(coord=coord, color=color, normal=normal, segment=segment)


def write_scannet_scene(folder: str | os.PathLike, scene: dict[str, np.ndarray]) -> Path:
    """Upstream Pointcept's ScanNet layout: ``coord/color/normal/segment20/segment200/instance.npy`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("coord", "color", "normal"):
        np.save(folder / f"{key}.npy", scene[key])
    np.save(folder / "segment20.npy", scene["segment"].astype(np.int16))
    np.save(folder / "segment200.npy", scene["segment"].astype(np.int16))
    np.save(folder / "instance.npy", np.full(len(scene["coord"]), -1, dtype=np.int16))
    return folder


def write_release_scene(path: str | os.PathLike, scene: dict[str, np.ndarray], scene_id: str | None = None) -> Path:
    """The FFNet release's ScanNet ``.pth`` dict (``coord``, ``color``, ``normal``, ``semantic_gt20/200``, ...)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segment = scene["segment"].astype(np.int64)
    torch.save(dict(coord=scene["coord"], color=scene["color"].astype(np.float32), normal=scene["normal"],
                    semantic_gt20=segment, semantic_gt200=segment, instance_gt=np.full_like(segment, -1),
                    scene_id=scene_id or path.stem), path)
    return path
