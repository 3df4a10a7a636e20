"""Sparse voxel tensors and submanifold 3D convolution in pure PyTorch, with an spconv adapter.

A :class:`SparseTensor` holds ``N`` active voxels of a batch: integer coordinates ``(N, 4)`` =
``[batch, x, y, z]`` and features ``(N, C)``. :class:`SubMConv3d` keeps the active sites and
computes, at every one of them, what ``nn.Conv3d`` with padding ``k // 2`` computes on the dense
grid whose inactive voxels are zero. Neighbour maps are built once per coordinate set and kernel
size and cached on the tensor; ``replace`` shares that cache, so every conv of a network reuses them.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Sequence, Union

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ffnet.core.backend import weight_key

KernelSize = Union[int, Sequence[int]]
BACKENDS = ("auto", "torch", "spconv")
_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class SparseTensor:
    """A batch of active voxels: ``coords`` ``(N, 4)`` = ``[batch, x, y, z]``, ``features`` ``(N, C)``.

    Coordinates (any integer dtype, stored as int64) must be non-negative and unique within a
    sample; uniqueness is checked once, when the first neighbour map is built. ``cache`` stores
    neighbour maps and is shared by every tensor derived through :meth:`replace` or ``+``.
    """

    def __init__(
        self,
        coords: torch.Tensor,
        features: torch.Tensor,
        batch_size: int | None = None,
        cache: dict | None = None,
    ):
        if not isinstance(coords, torch.Tensor) or coords.dtype not in _INTEGER_DTYPES:
            kind = coords.dtype if isinstance(coords, torch.Tensor) else type(coords).__name__
            raise TypeError(f"coords must be an integer tensor [batch, x, y, z], got {kind}; convert with .long()")
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(
                f"coords must have shape (N, 4) = [batch, x, y, z], got {tuple(coords.shape)}; "
                "prepend the batch index as column 0"
            )
        if coords.shape[0] == 0:
            raise ValueError("empty point set: a SparseTensor needs at least one active voxel")
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must have shape (N, C), got {shape}")
        if features.shape[0] != coords.shape[0]:
            raise ValueError(
                f"features have {features.shape[0]} rows but coords have {coords.shape[0]} points; "
                "pass one feature row per point"
            )
        if features.device != coords.device:
            raise ValueError(f"coords are on {coords.device} but features on {features.device}; move both together")
        coords = coords.long()
        lowest, last_batch = torch.stack([coords.amin(), coords[:, 0].amax()]).tolist()
        if lowest < 0:
            raise ValueError(
                f"coords must be non-negative, found {lowest}; shift them, e.g. xyz - xyz.amin(0), before building"
            )
        if batch_size is None:
            batch_size = last_batch + 1
        elif batch_size <= last_batch:
            raise ValueError(f"batch_size={batch_size} but coords use batch index {last_batch}; pass batch_size=None")
        self._coords = coords
        self._features = features
        self._batch_size = int(batch_size)
        self._cache = {} if cache is None else cache

    @property
    def coords(self) -> torch.Tensor:
        """``(N, 4)`` int64 ``[batch, x, y, z]``."""
        return self._coords

    @property
    def features(self) -> torch.Tensor:
        """``(N, C)``."""
        return self._features

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def num_channels(self) -> int:
        return self._features.shape[1]

    @property
    def device(self) -> torch.device:
        return self._features.device

    @property
    def dtype(self) -> torch.dtype:
        return self._features.dtype

    @property
    def cache(self) -> dict:
        """Neighbour maps and backend indices, keyed by kernel size; shared across :meth:`replace`."""
        return self._cache

    def replace(self, features: torch.Tensor) -> SparseTensor:
        """Same coords and the same cache object with new ``(N, C')`` features."""
        if features.dim() != 2 or features.shape[0] != self._coords.shape[0]:
            raise ValueError(f"expected features of shape ({self._coords.shape[0]}, C), got {tuple(features.shape)}")
        out = copy.copy(self)
        out._features = features
        return out

    def __add__(self, other: SparseTensor) -> SparseTensor:
        if not isinstance(other, SparseTensor):
            return NotImplemented
        if other._coords is not self._coords and not torch.equal(other._coords, self._coords):
            raise ValueError("cannot add SparseTensors with different active sites: coords must be equal")
        return self.replace(self._features + other._features)

    def __repr__(self) -> str:
        return (
            f"SparseTensor(points={self._coords.shape[0]}, channels={self.num_channels}, "
            f"batch_size={self._batch_size}, dtype={self.dtype}, device={self.device})"
        )

    def spatial_shape(self) -> tuple[int, int, int]:
        """Smallest grid ``(X, Y, Z)`` holding every active voxel: ``coords.max + 1``."""
        return tuple((self._coords[:, 1:].amax(0) + 1).tolist())

    def dense(self, spatial_shape: Sequence[int] | None = None) -> torch.Tensor:
        """Scatter to a zero-filled ``(B, C, X, Y, Z)`` grid (default shape: :meth:`spatial_shape`)."""
        needed = self.spatial_shape()
        shape = needed if spatial_shape is None else tuple(int(s) for s in spatial_shape)
        if len(shape) != 3 or any(s < n for s, n in zip(shape, needed)):
            raise ValueError(f"spatial_shape {shape} cannot hold the active voxels: need at least {needed}")
        grid = self._features.new_zeros(self._batch_size, *shape, self.num_channels)
        grid = grid.index_put(tuple(self._coords.unbind(1)), self._features)
        return grid.movedim(-1, 1).contiguous()

    @classmethod
    def from_dense(cls, dense: torch.Tensor, mask: torch.Tensor) -> SparseTensor:
        """Active voxels ``mask`` ``(B, X, Y, Z)`` (bool) of ``dense`` ``(B, C, X, Y, Z)``."""
        if dense.dim() != 5 or mask.dtype != torch.bool or mask.shape != dense.shape[:1] + dense.shape[2:]:
            raise ValueError(
                f"expected dense (B, C, X, Y, Z) and a bool mask (B, X, Y, Z), got {tuple(dense.shape)} "
                f"and {tuple(mask.shape)} {mask.dtype}"
            )
        return cls(mask.nonzero(), dense.movedim(1, -1)[mask], batch_size=dense.shape[0])


class _CoordHash(NamedTuple):
    """Coordinates linearized to int64 keys ``((b * X + x) * Y + y) * Z + z``, sorted."""

    sorted_keys: torch.Tensor
    sorted_xyz: torch.Tensor
    order: torch.Tensor
    extent: tuple[int, int, int]


def _coord_hash(x: SparseTensor) -> _CoordHash:
    """Build (once per cache) the sorted key table; rejects duplicate voxels."""
    if "coord_hash" in x.cache:
        return x.cache["coord_hash"]
    coords = x.coords
    extent = x.spatial_shape()
    if x.batch_size * math.prod(extent) >= 2**63:
        raise ValueError(f"voxel grid {extent} x batch {x.batch_size} is too large to index with int64 keys")
    keys = coords[:, 0]
    for axis in range(3):
        keys = keys * extent[axis] + coords[:, axis + 1]
    sorted_keys, order = keys.sort()
    repeated = (sorted_keys[1:] == sorted_keys[:-1]).nonzero()
    if repeated.numel():
        b, *voxel = coords[order[repeated[0, 0]]].tolist()
        raise ValueError(
            f"duplicate coordinates: {repeated.shape[0]} point(s) share a voxel with another point of the same "
            f"sample (first: batch {b}, voxel {tuple(voxel)}); keep one point per voxel by grid-sampling / "
            "voxelizing first (e.g. average the features of the points in each voxel)"
        )
    table = _CoordHash(sorted_keys, coords[order, 1:], order, extent)
    x.cache["coord_hash"] = table
    return table


@dataclass(frozen=True)
class NeighbourMap:
    """Active-site pairs per kernel offset, in the row-major order of ``weight.flatten(2)``.

    ``pairs[k] = (in_rows, out_rows)``: output row ``out_rows[i]`` receives input row ``in_rows[i]``,
    located at its coordinate plus ``offsets[k]``. The centre entry pairs every row with itself.
    """

    kernel_size: tuple[int, int, int]
    offsets: tuple[tuple[int, int, int], ...]
    pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def center(self) -> int:
        return len(self.offsets) // 2

    @property
    def max_pairs(self) -> int:
        """Largest pair count of a non-centre offset (0 for a 1x1x1 kernel)."""
        return max((rows.shape[0] for _, rows, _ in self.neighbours()), default=0)

    def neighbours(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(k, in_rows, out_rows)`` of each non-centre offset with at least one pair."""
        for k, (in_rows, out_rows) in enumerate(self.pairs):
            if k != self.center and in_rows.shape[0]:
                yield k, in_rows, out_rows


def kernel_tuple(kernel_size: KernelSize) -> tuple[int, int, int]:
    """``(kx, ky, kz)`` from an int or a 3-sequence; every size must be odd and positive."""
    kernel = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
    if len(kernel) != 3 or any(k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(f"submanifold kernel sizes must be 3 odd positive ints, got {kernel_size}")
    return kernel


def build_neighbour_map(x: SparseTensor, kernel_size: KernelSize) -> NeighbourMap:
    """Search every offset of the kernel window among the active sites (uncached; see :func:`neighbour_map`).

    Offsets ``d`` and ``-d`` are mirror images (``q = p + d`` iff ``p = q - d``), so only half the
    window is searched, with one ``searchsorted`` of the sorted keys each. Pairs come in key order,
    which keeps the gathers and scatters sequential when the rows of ``x`` are sorted.
    """
    kernel = kernel_tuple(kernel_size)
    table = _coord_hash(x)
    rows = torch.arange(table.order.shape[0], device=x.device)
    offsets = tuple(
        tuple(i - k // 2 for i, k in zip(index, kernel)) for index in itertools.product(*(range(k) for k in kernel))
    )
    pairs: list[Any] = [None] * len(offsets)
    pairs[len(offsets) // 2] = (rows, rows)
    for k, offset in enumerate(offsets[: len(offsets) // 2]):
        valid = torch.ones_like(rows, dtype=torch.bool)
        for axis, d in enumerate(offset):
            if d > 0:
                valid &= table.sorted_xyz[:, axis] < table.extent[axis] - d
            elif d < 0:
                valid &= table.sorted_xyz[:, axis] >= -d
        candidates = valid.nonzero().squeeze(1)
        shift = (offset[0] * table.extent[1] + offset[1]) * table.extent[2] + offset[2]
        query = table.sorted_keys[candidates] + shift
        position = torch.searchsorted(table.sorted_keys, query).clamp_(max=rows.shape[0] - 1)
        found = table.sorted_keys[position] == query
        out_rows = table.order[candidates[found]]
        in_rows = table.order[position[found]]
        pairs[k] = (in_rows, out_rows)
        pairs[-1 - k] = (out_rows, in_rows)
    return NeighbourMap(kernel, offsets, tuple(pairs))


def neighbour_map(x: SparseTensor, kernel_size: KernelSize) -> NeighbourMap:
    """The cached :class:`NeighbourMap` of ``x``'s coords for ``kernel_size``, built on first use."""
    key = ("neighbour_map", kernel_tuple(kernel_size))
    if key not in x.cache:
        x.cache[key] = build_neighbour_map(x, key[1])
    return x.cache[key]


def _mix(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Grouped ``(M, G * I) → (M, G * O)`` with ``w`` ``(G, I, O)``, written to ``out`` when the path allows."""
    groups, per_in, per_out = w.shape
    if groups == 1:
        return torch.mm(x, w[0], out=out)
    if per_in == 1 and per_out == 1:
        return torch.mul(x, w[:, 0, 0], out=out)
    if per_in == 1:
        return torch.mul(x.unsqueeze(2), w[:, 0], out=None if out is None else out.view(-1, groups, per_out)).flatten(1)
    return torch.bmm(x.reshape(-1, groups, per_in).transpose(0, 1), w).transpose(0, 1).flatten(1)


def _mix_transposed(g: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Adjoint of :func:`_mix` in ``x``: ``(M, G * O) → (M, G * I)``."""
    groups, per_in, per_out = w.shape
    if groups == 1:
        return torch.mm(g, w[0].T, out=out)
    if per_in == 1 and per_out == 1:
        return torch.mul(g, w[:, 0, 0], out=out)
    if per_in == 1:
        return (g.view(-1, groups, per_out) * w[:, 0]).sum(2)
    return torch.bmm(g.reshape(-1, groups, per_out).transpose(0, 1), w.transpose(1, 2)).transpose(0, 1).flatten(1)


def _mix_weight_grad(x: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Gradient of ``<g, _mix(x, w)>`` in ``w``: ``(G, I, O)``."""
    groups, per_in, per_out = w.shape
    if groups == 1:
        return (x.T @ g).unsqueeze(0)
    if per_in == 1 and per_out == 1:
        return torch.linalg.vecdot(x, g, dim=0).view(groups, 1, 1)
    if per_in == 1:
        return (x.unsqueeze(2) * g.view(-1, groups, per_out)).sum(0).unsqueeze(1)
    return torch.bmm(x.reshape(-1, groups, per_in).permute(1, 2, 0), g.reshape(-1, groups, per_out).transpose(0, 1))


class _SubMConvFunction(torch.autograd.Function):
    """Gather-GEMM-scatter over the neighbour map.

    Gathers go to buffers reused across offsets (fresh large allocations cost page faults on CPU);
    backward gathers again instead of saving the ``(pairs, C)`` matrices.
    """

    @staticmethod
    def forward(ctx, features, weight, bias, nmap: NeighbourMap):
        """``features`` ``(N, C_in)``, ``weight`` ``(K, G, C_in / G, C_out / G)``, ``bias`` ``(C_out,)`` or None."""
        ctx.save_for_backward(features, weight)
        ctx.nmap = nmap
        center = weight[nmap.center]
        if bias is not None and center.shape[0] == 1:
            out = torch.addmm(bias, features, center[0])
        else:
            out = _mix(features, center)
            if bias is not None:
                out += bias
        gathered = features.new_empty(nmap.max_pairs, features.shape[1])
        product = out.new_empty(nmap.max_pairs, out.shape[1])
        for k, in_rows, out_rows in nmap.neighbours():
            n = in_rows.shape[0]
            x_k = torch.index_select(features, 0, in_rows, out=gathered[:n])
            out.index_add_(0, out_rows, _mix(x_k, weight[k], product[:n]))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        features, weight = ctx.saved_tensors
        nmap = ctx.nmap
        need_features, need_weight, need_bias, _ = ctx.needs_input_grad
        grad_out = grad_out.contiguous()
        grad_features = grad_weight = None
        gathered_grad = grad_out.new_empty(nmap.max_pairs, grad_out.shape[1])
        if need_features:
            grad_features = _mix_transposed(grad_out, weight[nmap.center])
            product = features.new_empty(nmap.max_pairs, features.shape[1])
        if need_weight:
            grad_weight = torch.zeros_like(weight)
            grad_weight[nmap.center] = _mix_weight_grad(features, grad_out, weight[nmap.center])
            gathered = features.new_empty(nmap.max_pairs, features.shape[1])
        for k, in_rows, out_rows in nmap.neighbours():
            n = in_rows.shape[0]
            g = torch.index_select(grad_out, 0, out_rows, out=gathered_grad[:n])
            if need_features:
                grad_features.index_add_(0, in_rows, _mix_transposed(g, weight[k], product[:n]))
            if need_weight:
                x_k = torch.index_select(features, 0, in_rows, out=gathered[:n])
                grad_weight[k] = _mix_weight_grad(x_k, g, weight[k])
        return grad_features, grad_weight, grad_out.sum(0) if need_bias else None, None


def submanifold_conv3d(
    x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1
) -> SparseTensor:
    """Pure-PyTorch submanifold conv: ``(N, C_in) → (N, C_out)`` on the active sites of ``x``.

    ``weight`` has ``nn.Conv3d``'s layout ``(C_out, C_in / groups, kx, ky, kz)``; the result at site
    ``p`` is ``sum_d W[..., d] · x[p + d]`` (cross-correlation, zero outside the active set).
    Runs in ``x``'s dtype with autocast off; differentiable in features, weight and bias.
    """
    out_channels, per_in = weight.shape[:2]
    if out_channels % groups:
        raise ValueError(f"{out_channels} output channels are not a multiple of groups {groups}")
    if per_in * groups != x.num_channels:
        raise ValueError(f"expected {per_in * groups} input channels, got {x.num_channels}")
    return _kernel_major_conv(x, kernel_major(weight, groups), weight.shape[2:], bias)


def kernel_major(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``nn.Conv3d`` weight ``(C_out, C_in / G, kx, ky, kz)`` → contiguous ``(kx·ky·kz, G, C_in / G, C_out / G)``."""
    out_channels, per_in = weight.shape[:2]
    return weight.reshape(groups, out_channels // groups, per_in, -1).permute(3, 0, 2, 1).contiguous()


def _kernel_major_conv(
    x: SparseTensor, kernel_weight: torch.Tensor, kernel_size: Sequence[int], bias: torch.Tensor | None
) -> SparseTensor:
    nmap = neighbour_map(x, kernel_size)
    with torch.autocast(x.device.type, enabled=False):
        features = _SubMConvFunction.apply(
            x.features.contiguous(),
            kernel_weight.to(x.dtype),
            None if bias is None else bias.to(x.dtype),
            nmap,
        )
    return x.replace(features)


@functools.cache
def spconv_available() -> bool:
    """Whether ``spconv.pytorch`` imports (no CUDA needed; its CPU path is forward-only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import spconv.pytorch  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _spconv_indices(x: SparseTensor) -> torch.Tensor:
    """``(N, 4)`` int32 coords as spconv wants them, cached."""
    if "spconv_indices" not in x.cache:
        x.cache["spconv_indices"] = x.coords.int().contiguous()
    return x.cache["spconv_indices"]


class SubMConv3d(nn.Module):
    """Submanifold 3D conv on a :class:`SparseTensor`: ``(N, C_in) → (N, C_out)``, same active sites.

    Equals ``nn.Conv3d(padding=k // 2)`` on the zero-filled dense grid, read at the active sites.
    ``backend``: ``"torch"`` (gather-GEMM-scatter, CPU/GPU, any ``groups``), ``"spconv"``
    (``groups == 1``; forward only on CPU) or ``"auto"`` (spconv for CUDA inputs with
    ``groups == 1`` when it is installed, torch otherwise).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize = 3,
        groups: int = 1,
        bias: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels {in_channels} and out_channels {out_channels} must be multiples of groups {groups}"
            )
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: use one of {BACKENDS}")
        if backend == "spconv" and groups != 1:
            raise ValueError(
                f"spconv has no grouped convolution: backend='spconv' needs groups=1, got groups={groups}; "
                "use backend='torch' or 'auto'"
            )
        if backend == "spconv" and not spconv_available():
            raise ImportError("backend='spconv' needs spconv: pip install 'ffnet[spconv]' (spconv-cu120==2.3.6)")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_tuple(kernel_size)
        self.groups = groups
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv3d``'s init: Kaiming-uniform weight, bias uniform in ``±1 / sqrt(fan_in)``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if not isinstance(x, SparseTensor):
            raise TypeError(
                f"SubMConv3d expects a SparseTensor, got {type(x).__name__}; "
                "build one with SparseTensor(coords, features) or SparseTensor.from_dense(dense, mask)"
            )
        if x.num_channels != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.num_channels}")
        if self._uses_spconv(x):
            return self._spconv_forward(x)
        weight = self._weight_in_layout("kernel_major", lambda w: kernel_major(w, self.groups))
        return _kernel_major_conv(x, weight, self.kernel_size, self.bias)

    def _weight_in_layout(self, layout: str, convert) -> torch.Tensor:
        """``convert(self.weight)``, reused across calls while the weight is unchanged and no gradient is needed.

        Inference then skips re-laying out every weight on every call; training converts each time,
        so gradients flow to ``self.weight``.
        """
        weight = self.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            return convert(weight)
        key = (layout, *weight_key(weight))
        cached = getattr(self, "_layout_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, convert(weight.detach()))
            self._layout_cache = cached
        return cached[1]

    def _uses_spconv(self, x: SparseTensor) -> bool:
        if self.backend == "auto":
            return self.groups == 1 and x.device.type == "cuda" and spconv_available()
        return self.backend == "spconv"

    def _spconv_forward(self, x: SparseTensor) -> SparseTensor:
        """spconv's submanifold conv, sharing one indice key per kernel size through ``x.cache``."""
        from spconv.pytorch import ConvAlgo, SparseConvTensor
        from spconv.pytorch.conv import SparseConvolutionBase

        extent = _coord_hash(x).extent
        indice_key = "ffnet_subm_" + "x".join(map(str, self.kernel_size))
        cache_key = ("spconv", self.kernel_size)
        op = SparseConvolutionBase(
            3, self.in_channels, self.out_channels, self.kernel_size, subm=True, indice_key=indice_key,
            algo=None if x.device.type == "cuda" else ConvAlgo.Native,
        )
        weight = self._weight_in_layout("spconv", lambda w: w.permute(0, 2, 3, 4, 1).contiguous()).to(x.dtype)
        if list(weight.shape) != list(op.weight_shape):
            raise RuntimeError(f"unsupported spconv weight layout {op.weight_shape}: expected (out, kx, ky, kz, in)")
        indice_dict = {indice_key: x.cache[cache_key]} if cache_key in x.cache else {}
        inputs = SparseConvTensor(
            x.features.contiguous(), _spconv_indices(x), extent, x.batch_size, indice_dict=indice_dict
        )
        out = op._conv_forward(self.training, inputs, weight, None)
        x.cache[cache_key] = out.indice_dict[indice_key]
        features = out.features
        return x.replace(features if self.bias is None else features + self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, groups={self.groups}, "
            f"bias={self.bias is not None}, backend={self.backend!r}"
        )
