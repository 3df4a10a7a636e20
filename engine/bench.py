"""The benchmark kit: the flags, timer, counters and result files every ``ffnet <domain> bench`` shares.

A domain benchmark builds its models, hands named callables to :func:`time_interleaved` (and, where
it reports them, :func:`count_macs`, :func:`count_parameters`, :func:`peak_memory_bytes`), and
describes the rows of a :class:`BenchmarkResult`; :func:`write_result` prints it and writes
``<name>.md``, ``<name>.csv`` and ``<name>.png`` atomically.

* :func:`add_bench_arguments` / :func:`setup_bench`: ``--rounds --warmup --seconds-per-measure --threads
  --device [--batch-sizes] --out-dir``, the same in every domain;
* :func:`time_interleaved`: every entry measured once per round, the order rotated each round, so that a
  change of machine load hits all entries alike; median and spread over the rounds;
* :func:`count_macs`: mmengine's ``FlopAnalyzer`` (fvcore's counting rules, one fused multiply-add = 1),
  plus ``scaled_dot_product_attention`` counted as its two matmuls;
* :func:`peak_memory_bytes`: the most tensor memory alive at once during one call (CUDA or CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import platform
import statistics
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence

from ffnet.engine.errors import UserError
from ffnet.engine.files import atomic_path, write_atomic

__all__ = ["DEFAULT_OUT_DIR", "BenchmarkResult", "Timing", "PeakTensorMemory", "add_bench_arguments", "setup_bench",
           "time_interleaved", "count_macs", "count_parameters", "peak_memory_bytes", "synchronizer", "to_markdown",
           "machine_line", "write_result", "figure"]

DEFAULT_OUT_DIR = Path("docs/results")


# -- flags ----------------------------------------------------------------------------------------------------------

def add_bench_arguments(parser: argparse.ArgumentParser, *, rounds: int = 3, warmup: int = 1, seconds: float = 0.0,
                        threads: int | None = None, batch_sizes: Sequence[int] | None = None) -> None:
    """The flags every domain's ``bench`` takes; the keyword arguments are that domain's defaults.

    ``--batch-sizes`` is added only for domains with batch sizes (``batch_sizes`` given). The old
    spellings (``--repeats``, ``--runs``, ``--latency-runs``, ``--devices``) are accepted, unlisted.
    """
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"measurement rounds, the order of the measured entries rotated each round (default "
                             f"{rounds}); tables report the median and the spread over rounds")
    parser.add_argument("--repeats", "--runs", "--latency-runs", dest="rounds", type=int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=warmup,
                        help=f"untimed calls of every entry before the first round (default {warmup})")
    parser.add_argument("--seconds-per-measure", type=float, default=seconds,
                        help=f"each measurement repeats the call for at least this long and reports the median "
                             f"call (default {seconds:g}: one call)")
    thread_default = threads or "torch's choice"
    parser.add_argument("--threads", type=int, default=threads,
                        help=f"torch intra-op threads (default: {thread_default})")
    parser.add_argument("--device", nargs="+", default=None, metavar="DEVICE",
                        help="where to measure: one or more of cpu, cuda, cuda:N (default: cuda if available, "
                             "else cpu)")
    parser.add_argument("--devices", nargs="+", dest="device", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    if batch_sizes is not None:
        parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(batch_sizes),
                            help=f"batch sizes to measure (default {' '.join(map(str, batch_sizes))})")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help=f"where <table>.md/.csv/.png are written (default {DEFAULT_OUT_DIR})")


def setup_bench(args: argparse.Namespace) -> list[str]:
    """Check the common flags, apply ``--threads``, and return the devices to measure on.

    Raises :class:`~ffnet.engine.errors.UserError` for a count out of range or a device not present here.
    """
    import torch

    if args.rounds < 1 or args.warmup < 0 or args.seconds_per_measure < 0:
        raise UserError(f"--rounds must be >= 1 and --warmup, --seconds-per-measure >= 0 (got {args.rounds}, "
                        f"{args.warmup}, {args.seconds_per_measure:g})")
    if getattr(args, "batch_sizes", None) is not None and min(args.batch_sizes) < 1:
        raise UserError(f"--batch-sizes must be >= 1 (got {' '.join(map(str, args.batch_sizes))})")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1 (got {args.threads})")
        torch.set_num_threads(args.threads)
    devices = args.device or (["cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise UserError(f"--device {device}: not a torch device; use cpu, cuda or cuda:N") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available here; use --device cpu")
        if kind not in ("cpu", "cuda"):
            raise UserError(f"--device {device}: the benchmarks measure on cpu or cuda")
    return list(devices)


# -- timing ---------------------------------------------------------------------------------------------------------

@dataclass
class Timing:
    """Seconds of one call of one entry, one figure per round (each the median call of that round's measurement)."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def spread(self) -> float:
        """``(max - min) / median`` over the rounds (0 for one round)."""
        return (max(self.seconds) - min(self.seconds)) / self.median


def synchronizer(device: Any) -> Callable[[], None]:
    """A call that waits for ``device``'s queued work (CUDA), or does nothing (CPU)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_interleaved(entries: Mapping[Hashable, Callable[[], object]], *, rounds: int = 3, warmup: int = 1,
                     seconds: float = 0.0, iterations: int = 1, device: Any = "cpu",
                     clock: Callable[[], float] = time.perf_counter,
                     log: Callable[[str], None] | None = None) -> dict[Hashable, Timing]:
    """Time every callable of ``entries`` in the same rounds; returns ``{key: Timing}`` in ``entries``' order.

    First ``warmup`` untimed calls of each entry. Then round ``r`` measures the entries starting at
    index ``r mod n`` (``[e_r, …, e_n-1, e_0, …]``), so that each entry is sometimes first and a change of
    machine load hits all of them. One measurement calls the entry until at least ``seconds`` have
    passed and at least ``iterations`` calls were made, and keeps the median call. On a CUDA ``device``
    every call is followed by a synchronisation, inside the timed span. ``clock`` is read before and
    after every call (and once when a measurement starts).
    """
    if rounds < 1 or warmup < 0 or seconds < 0 or iterations < 1:
        raise ValueError(f"rounds and iterations must be >= 1, warmup and seconds >= 0 (got {rounds}, {iterations}, "
                         f"{warmup}, {seconds})")
    sync = synchronizer(device)
    keys = list(entries)
    for key in keys:
        for _ in range(warmup):
            entries[key]()
        sync()
    timings = {key: Timing() for key in keys}
    for round_index in range(rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            calls = []
            start = clock()
            while True:
                begin = clock()
                entries[key]()
                sync()
                end = clock()
                calls.append(end - begin)
                if end - start >= seconds and len(calls) >= iterations:
                    break
            timings[key].seconds.append(statistics.median(calls))
        if log is not None:
            log(f"round {round_index + 1}/{rounds}: " + ", ".join(
                f"{' '.join(map(str, key)) if isinstance(key, tuple) else key} {1e3 * timings[key].seconds[-1]:.4g} ms"
                for key in keys))
    return timings


# -- counters -------------------------------------------------------------------------------------------------------

def count_parameters(model, exclude: Sequence[str] = ()) -> int:
    """Number of parameters of ``model``, leaving out those whose name starts with one of ``exclude``."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(tuple(exclude)))


def _sdpa_macs(inputs: list, outputs: list) -> int:
    """``aten::scaled_dot_product_attention``: ``q @ kᵀ`` and ``attention @ v``, B·H·Lq·Lk·(D + Dv) MACs."""
    from mmengine.analysis.jit_handles import get_shape

    query, key, value = (get_shape(v) for v in inputs[:3])
    batch_heads = 1
    for size in query[:-2]:
        batch_heads *= size
    return batch_heads * query[-2] * key[-2] * (query[-1] + value[-1])


def count_macs(model, inputs: Any, owner=None) -> float:
    """Multiply-accumulates of one call ``model(*inputs)`` (one fused multiply-add = 1).

    mmengine's ``FlopAnalyzer``, fvcore's rules (convolutions, matmuls, linears, norms, upsampling,
    adaptive pooling; element-wise activations and additions are not counted), with
    ``scaled_dot_product_attention`` counted as its two matmuls, so a fused attention counts the same as
    its unfused path. ``model`` is a module, or any callable (a partial graph of a model), whose tensors
    are then those of the module ``owner``. ``inputs`` is a tensor or a tuple of positional inputs.
    """
    import logging

    import torch
    from mmengine.analysis import FlopAnalyzer
    from mmengine.logging import MMLogger
    from torch import nn

    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    if not isinstance(model, nn.Module):
        model = _callable_module_class()(model, owner)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the analyser names every op it skips (activations, mmcv RoIAlign, …)
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            return float(analyzer.total())
    finally:
        logger.setLevel(level)


@functools.cache
def _callable_module_class() -> type:
    from torch import nn

    class CallableModule(nn.Module):
        """A callable as an ``nn.Module`` (the analyser traces modules) that owns the module it runs."""

        def __init__(self, forward: Callable, owner=None):
            super().__init__()
            self._call = forward
            self.owner = owner

        def forward(self, *inputs):
            return self._call(*inputs)

    return CallableModule


# -- memory ---------------------------------------------------------------------------------------------------------

@functools.cache
def _peak_tensor_memory_class() -> type:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map_only

    class PeakTensorMemory(TorchDispatchMode):
        """Peak bytes of tensor storage created inside the ``with`` block and alive at the same time.

        Every op output's storage is counted once until it is freed; tensors that exist before the block
        (inputs, weights) are not counted. Works on any device, at the cost of Python overhead per op.
        """

        def __init__(self):
            super().__init__()
            self.live = self.peak = 0
            self._storages: set[int] = set()

        def _track(self, tensor: torch.Tensor) -> None:
            storage = tensor.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self._storages:
                return
            self._storages.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, size)

        def _release(self, key: int, size: int) -> None:
            self.live -= size
            self._storages.discard(key)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tree_map_only(torch.Tensor, self._track, out)
            return out

    return PeakTensorMemory


def __getattr__(name: str) -> object:
    if name == "PeakTensorMemory":  # built on first use: importing the kit does not import torch
        return _peak_tensor_memory_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def peak_memory_bytes(fn: Callable[[], object], device: Any = "cpu") -> int:
    """The most tensor memory allocated by ``fn()`` and alive at once (bytes; what existed before is not counted).

    CUDA: ``torch.cuda.max_memory_allocated`` over the call; CPU: :class:`PeakTensorMemory` (per-op tracking,
    so the call runs slower than usual: never time this call).
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with _peak_tensor_memory_class()() as tracker:
        fn()
    return tracker.peak


# -- results --------------------------------------------------------------------------------------------------------

@dataclass
class BenchmarkResult:
    """What a domain benchmark returns.

    ``rows`` are dicts with the same keys (the table's columns, in order); ``notes`` are sentences
    printed under the table (protocol, counter used, ratios to the paper); ``plot`` writes a PNG to the
    path it is given (see :func:`figure`); ``also`` are more tables of the same run, written beside it.
    """

    name: str
    title: str
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    plot: Callable[[Path], None] | None = None
    also: list["BenchmarkResult"] = field(default_factory=list)


def to_markdown(rows: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g")


def machine_line() -> str:
    import torch

    return (f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}.")


def write_result(result: BenchmarkResult, out_dir: Path | str = DEFAULT_OUT_DIR) -> Path:
    """Print the table and write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` (if plotted), each atomically;
    then the same for every table of ``result.also``. Returns the first table's ``.md``."""
    if not result.rows:
        raise ValueError(f"benchmark {result.name!r} produced no rows")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {result.title}", "", to_markdown(result.rows), "", machine_line(), ""]
    lines += [f"- {note}" for note in result.notes]
    if result.plot is not None:
        png = out_dir / f"{result.name}.png"
        result.plot(png)
        lines += ["", f"![{result.title}]({png.name})"]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(result.rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(result.rows)
    write_atomic(out_dir / f"{result.name}.csv", table.getvalue())
    md = write_atomic(out_dir / f"{result.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    for more in result.also:
        write_result(more, out_dir)
    return md


@contextlib.contextmanager
def figure(path: Path | str, nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.0),
           title: str | None = None) -> Iterator[tuple[Any, Any]]:
    """``with figure(path, 1, 2) as (fig, axes): ...``: a matplotlib figure (Agg) with a 2-D array of axes,
    laid out and written to ``path`` (PNG, 120 dpi, atomically) when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    try:
        yield fig, axes
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
