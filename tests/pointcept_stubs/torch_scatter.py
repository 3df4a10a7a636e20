"""Stand-in for ``torch_scatter``: NOT the real package; a few functions in plain torch.

torch-scatter's PyPI sdist compiles its C++ ops on install (about 47 minutes on the 2-core CI machine),
and the FFNet path through Pointcept calls none of them. Pointcept imports it at module level and
imports three names with ``from torch_scatter import ...``: ``scatter_min`` (``point_collate_fn``, only
when a batch carries ``grid_size``), ``segment_csr`` (PTv2, ``DefaultClassifier``) and
``scatter_softmax`` (Stratified Transformer). Those three are implemented here with
``torch.Tensor.scatter_reduce`` for the arguments Pointcept passes; every other name raises
``NotImplementedError`` when called. Only the Pointcept test job (``make test-pointcept``) puts this
folder on the path.
"""
from __future__ import annotations

import torch

from _standin import missing

__getattr__ = missing("torch_scatter", "compiled extension too slow to build here; only other Pointcept code needs it")


def _expand(index: torch.Tensor, src: torch.Tensor, dim: int) -> torch.Tensor:
    dim = dim % src.dim()
    shape = [1] * src.dim()
    shape[dim] = -1
    return index.reshape(shape).expand_as(src)


def scatter_min(src: torch.Tensor, index: torch.Tensor, dim: int = -1, dim_size: int | None = None):
    """``(min, argmin)`` of ``src`` over groups ``index`` along ``dim`` (``index`` 1-D over that dim).

    Empty groups give 0 and argmin ``src.size(dim)``, as in torch_scatter.
    """
    dim = dim % src.dim()
    size = int(index.max()) + 1 if dim_size is None else dim_size
    shape = list(src.shape)
    shape[dim] = size
    full = _expand(index, src, dim)
    out = torch.zeros(shape, dtype=src.dtype, device=src.device)
    out = out.scatter_reduce(dim, full, src, reduce="amin", include_self=False)
    positions = torch.arange(src.size(dim), device=src.device)
    positions = _expand(positions, src, dim)
    is_min = src == out.gather(dim, full)
    candidates = torch.where(is_min, positions, torch.full_like(positions, src.size(dim)))
    arg = torch.full(shape, src.size(dim), dtype=torch.long, device=src.device)
    arg = arg.scatter_reduce(dim, full, candidates, reduce="amin", include_self=True)
    return out, arg


def segment_csr(src: torch.Tensor, indptr: torch.Tensor, out=None, reduce: str = "sum") -> torch.Tensor:
    """Reduce ``src`` over the row segments ``indptr[i]:indptr[i + 1]`` of dim 0 (1-D ``indptr``)."""
    if out is not None:
        raise NotImplementedError("torch_scatter stand-in: segment_csr(out=...) is not supported")
    lengths = indptr[1:] - indptr[:-1]
    return torch.segment_reduce(src, "sum" if reduce == "add" else reduce, lengths=lengths, axis=0, initial=0)


def scatter_softmax(src: torch.Tensor, index: torch.Tensor, dim: int = -1, dim_size: int | None = None):
    """Softmax of ``src`` within the groups ``index`` along ``dim`` (``index`` 1-D or shaped like ``src``)."""
    dim = dim % src.dim()
    full = index if index.dim() == src.dim() else _expand(index, src, dim)
    size = int(index.max()) + 1 if dim_size is None else dim_size
    shape = list(src.shape)
    shape[dim] = size
    peak = torch.zeros(shape, dtype=src.dtype, device=src.device)
    peak = peak.scatter_reduce(dim, full, src, reduce="amax", include_self=False)
    exp = (src - peak.gather(dim, full)).exp()
    total = torch.zeros(shape, dtype=src.dtype, device=src.device).scatter_add(dim, full, exp)
    return exp / total.gather(dim, full)
