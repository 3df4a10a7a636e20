"""Grid pooling and additive unpooling of the PTv3 skeleton.

The release pools by clustering points on ``serialized_code >> 3`` of a (randomly chosen)
space-filling curve. For z-order and Hilbert curves alike that cluster is exactly the voxel cell
``grid_coord >> 1`` of the same sample, so here points are pooled on the cell directly: no curve
codes are computed. Cells come out sorted by ``(batch, x, y, z)`` instead of curve order; every
later operation is per point or a submanifold conv, so the order does not change any output.
"""
from __future__ import annotations

import torch
from torch import nn

from ffnet.core.sparse import SparseTensor
from ffnet.pointcloud.structure import PointCloud


def grid_cells(coords: torch.Tensor, stride: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group voxels ``(N, 4)`` = ``[batch, x, y, z]`` into cells of ``stride³`` voxels of the same sample.

    Returns ``inverse`` ``(N,)`` (each voxel's cell, cells sorted by ``(batch, x // s, y // s, z // s)``),
    ``cell_coords`` ``(M, 4)`` = ``[batch, x // s, y // s, z // s]`` and ``counts`` ``(M,)``.
    """
    if stride < 1:
        raise ValueError(f"pooling stride must be a positive integer, got {stride}")
    cell = torch.cat([coords[:, :1], torch.div(coords[:, 1:], stride, rounding_mode="floor")], dim=1)
    extent = (cell.amax(0) + 1).tolist()
    key = cell[:, 0]
    for axis in range(1, 4):
        key = key * extent[axis] + cell[:, axis]
    unique_keys, inverse, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    cell_coords = torch.empty(unique_keys.shape[0], 4, dtype=coords.dtype, device=coords.device)
    remainder = unique_keys
    for axis in (3, 2, 1):
        cell_coords[:, axis] = remainder % extent[axis]
        remainder = torch.div(remainder, extent[axis], rounding_mode="floor")
    cell_coords[:, 0] = remainder
    return inverse, cell_coords, counts


class GridPooling(nn.Module):
    """``Linear(C_in → C_out)`` per point, max over each ``2×2×2`` cell, then BN → GELU.

    Coordinates are averaged per cell; the cell's voxel index is ``grid_coord // stride``.
    ``(N, C_in)`` → ``(M, C_out)``; also returns the ``(N,)`` cell index of every input point.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01):
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.BatchNorm1d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = nn.GELU()

    def forward(self, point: PointCloud) -> tuple[PointCloud, torch.Tensor]:
        inverse, cell_coords, counts = grid_cells(point.sparse.coords, self.stride)
        feat = self.proj(point.feat)
        index = inverse.unsqueeze(1).expand_as(feat)
        pooled = feat.new_zeros(cell_coords.shape[0], feat.shape[1])
        pooled = pooled.scatter_reduce(0, index, feat, reduce="amax", include_self=False)
        coord = point.coord.new_zeros(cell_coords.shape[0], 3).index_add_(0, inverse, point.coord)
        coord = coord / counts.unsqueeze(1).to(coord.dtype)
        pooled = self.act(self.norm(pooled))
        return PointCloud(coord, SparseTensor(cell_coords, pooled, batch_size=point.batch_size)), inverse


class GridUnpooling(nn.Module):
    """``parent ← proj_skip(parent) + proj(coarse)[inverse]``; both projections are Linear → BN → GELU.

    ``coarse`` ``(M, C_in)`` and the saved encoder output ``parent`` ``(N, C_skip)`` → ``(N, C_out)``,
    on the parent's points (and its neighbour-map cache).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01):
        super().__init__()

        def projection(channels: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(channels, out_channels),
                                 nn.BatchNorm1d(out_channels, eps=bn_eps, momentum=bn_momentum), nn.GELU())

        self.proj = projection(in_channels)
        self.proj_skip = projection(skip_channels)

    def forward(self, coarse: PointCloud, parent: PointCloud, inverse: torch.Tensor) -> PointCloud:
        return parent.replace(self.proj_skip(parent.feat) + self.proj(coarse.feat)[inverse])
