"""A batch of points at one resolution, and the conversion from Pointcept's collated dict.

Pointcept's collate gives ``coord`` ``(N, 3)`` float, ``grid_coord`` ``(N, 3)`` int (voxel indices
from GridSample), ``feat`` ``(N, C)`` and ``offset`` ``(B,)`` (cumulative point counts). Inside the
network a :class:`PointCloud` keeps ``coord`` next to a :class:`~ffnet.core.sparse.SparseTensor`
whose coords are ``[batch, grid_coord]`` and whose features are the points' features.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import torch

from ffnet.core.sparse import SparseTensor


@dataclass
class PointCloud:
    """``coord`` ``(N, 3)`` and a :class:`SparseTensor` of ``N`` voxels ``[batch, x, y, z]``, ``(N, C)`` features."""

    coord: torch.Tensor
    sparse: SparseTensor

    @property
    def feat(self) -> torch.Tensor:
        return self.sparse.features

    @property
    def grid_coord(self) -> torch.Tensor:
        return self.sparse.coords[:, 1:]

    @property
    def batch(self) -> torch.Tensor:
        return self.sparse.coords[:, 0]

    @property
    def batch_size(self) -> int:
        return self.sparse.batch_size

    @property
    def offset(self) -> torch.Tensor:
        """``(B,)`` cumulative point counts, Pointcept's convention."""
        return torch.bincount(self.batch, minlength=self.batch_size).cumsum(0)

    def replace(self, feat: torch.Tensor) -> PointCloud:
        """Same points (and the same neighbour-map cache) with new ``(N, C')`` features."""
        return replace(self, sparse=self.sparse.replace(feat))

    def __len__(self) -> int:
        return self.coord.shape[0]


def offset_to_batch(offset: torch.Tensor, num_points: int) -> torch.Tensor:
    """``(B,)`` cumulative counts → ``(N,)`` sample index; checks that ``offset`` is a valid partition."""
    offset = torch.as_tensor(offset).long().reshape(-1)
    if offset.numel() == 0:
        raise ValueError("offset is empty: it must hold the cumulative point count of each sample")
    counts = torch.diff(offset, prepend=offset.new_zeros(1))
    if (counts <= 0).any() or int(offset[-1]) != num_points:
        raise ValueError(
            f"offset {offset.tolist()[:8]} must be strictly increasing cumulative counts ending at the number of "
            f"points ({num_points}); Pointcept's collate_fn produces it"
        )
    return torch.repeat_interleave(torch.arange(offset.numel(), device=offset.device), counts.to(offset.device))


def point_cloud_from_dict(data: Mapping) -> PointCloud:
    """A :class:`PointCloud` from Pointcept's keys ``coord``, ``grid_coord``, ``feat`` and ``offset`` (or ``batch``)."""
    missing = [key for key in ("coord", "grid_coord", "feat") if key not in data]
    if missing or ("offset" not in data and "batch" not in data):
        missing += [] if ("offset" in data or "batch" in data) else ["offset"]
        raise KeyError(
            f"the point dict lacks {missing}: expected coord (N, 3), grid_coord (N, 3) from GridSample("
            "return_grid_coord=True), feat (N, C) and offset (B,), as Pointcept's Collect + collate_fn produce"
        )
    coord, grid_coord, feat = data["coord"], data["grid_coord"], data["feat"]
    num_points = coord.shape[0]
    if num_points == 0:
        raise ValueError("empty point cloud: the batch has no points")
    for key, value in (("coord", coord), ("grid_coord", grid_coord)):
        if value.dim() != 2 or value.shape != (num_points, 3):
            raise ValueError(f"{key} must have shape (N, 3) with N = {num_points}, got {tuple(value.shape)}")
    if feat.dim() != 2 or feat.shape[0] != num_points:
        raise ValueError(f"feat must have shape (N, C) with N = {num_points}, got {tuple(feat.shape)}")
    if grid_coord.is_floating_point():
        raise TypeError("grid_coord must be integer voxel indices (GridSample(return_grid_coord=True))")
    if not torch.isfinite(coord).all() or not torch.isfinite(feat).all():
        raise ValueError("coord or feat contain NaN/inf values: clean the scene before grid sampling")
    if int(grid_coord.min()) < 0:
        raise ValueError("grid_coord must be non-negative: GridSample subtracts the minimum voxel")
    if "batch" in data:
        batch = torch.as_tensor(data["batch"]).long().reshape(-1)
        if batch.shape[0] != num_points:
            raise ValueError(f"batch must have one entry per point ({num_points}), got {batch.shape[0]}")
    else:
        batch = offset_to_batch(data["offset"], num_points)
    coords = torch.cat([batch.to(grid_coord.device).unsqueeze(1), grid_coord.long()], dim=1)
    return PointCloud(coord.float(), SparseTensor(coords, feat.float()))


def merge_duplicate_voxels(point: PointCloud) -> tuple[PointCloud, torch.Tensor | None]:
    """Average the points that share a voxel of the same sample; ``inverse`` ``(N,)`` maps points to voxels.

    Grid-sampled scenes have one point per voxel and come back unchanged (``inverse`` is ``None``).
    Mix3D (merging two scenes in one sample) puts points of both scenes in the same voxels; the
    network then sees each voxel once, with the mean coordinate and features of its points
    (MinkowskiEngine's averaging quantization), and every point reads its voxel's output.
    """
    coords = point.sparse.coords
    extent = (coords.amax(0) + 1).tolist()
    key = coords[:, 0]
    for axis in range(1, 4):
        key = key * extent[axis] + coords[:, axis]
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    if counts.shape[0] == coords.shape[0]:
        return point, None
    num_voxels = counts.shape[0]
    weight = (1.0 / counts.to(point.coord.dtype))[inverse].unsqueeze(1)
    coord = point.coord.new_zeros(num_voxels, 3).index_add_(0, inverse, point.coord * weight)
    feat = point.feat.new_zeros(num_voxels, point.feat.shape[1])
    feat = feat.index_add_(0, inverse, point.feat * weight.to(point.feat.dtype))
    voxel_coords = coords.new_empty(num_voxels, 4).index_copy_(0, inverse, coords)
    return PointCloud(coord, SparseTensor(voxel_coords, feat, batch_size=point.batch_size)), inverse
