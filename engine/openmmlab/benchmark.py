"""The dense-prediction benchmarks (``ffnet detection bench``, ``ffnet segmentation bench``) on the kit.

A domain names its models and builds each as a :class:`Measured`: the OpenMMLab model and its named
graphs (forwards over one input batch, e.g. ``'features'`` and ``'model'``). :func:`run_dense` counts
every graph's MACs, times all graphs of all models in the same rounds
(:func:`ffnet.engine.bench.time_interleaved`) on every device, and returns the table rows;
:func:`plot_latency` draws them. :func:`build_from_config` and :func:`package_config` build the
compared models from configs.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ffnet.engine.bench import BenchmarkResult, Timing, count_macs, count_parameters, figure, time_interleaved

COUNTER = "GMACs: ffnet.engine.bench.count_macs (mmengine.analysis FlopAnalyzer, fvcore rules, 1 FMA = 1)"


@dataclass
class Measured:
    """One model under test: its name, backbone label, the model and its graphs, and what was measured."""

    name: str
    backbone: str
    model: object
    graphs: Dict[str, Callable[[object], object]]
    params: int = 0
    macs: Dict[str, float] = field(default_factory=dict)
    timings: Dict[str, Timing] = field(default_factory=dict)

    @property
    def backbone_params(self) -> int:
        return count_parameters(self.model.backbone)


def add_dense_arguments(parser: argparse.ArgumentParser, models: Sequence[str], height: int, width: int,
                        full_size: str) -> None:
    """``--models --height --width`` and the kit's flags (one round = one pass per graph; no warm-up by default:
    the MAC count has already run every graph once)."""
    from ffnet.engine.bench import add_bench_arguments

    parser.add_argument("--models", nargs="+", choices=models, default=list(models))
    parser.add_argument("--height", type=int, default=height, help=f"input height (default {height}; {full_size})")
    parser.add_argument("--width", type=int, default=width, help=f"input width (default {width})")
    add_bench_arguments(parser, rounds=3, warmup=0)


def run_dense(args: argparse.Namespace, devices: Sequence[str], build: Callable[[str, str], Measured],
              labels: Dict[str, str], reference: str) -> tuple[List[dict], Dict[str, List[Measured]]]:
    """Build ``args.models`` on every device with ``build(name, device)``, count and time them.

    MACs are counted once per model (first device) on a ``(1, 3, height, width)`` batch, which also runs
    every graph once; the graphs of all models are then timed in the same rounds, under
    ``torch.inference_mode``. Returns the rows (see :func:`make_rows`) and the measured models per device.
    """
    import torch

    from ffnet.engine.errors import UserError

    if args.height < 64 or args.width < 64:
        raise UserError(f"--height/--width must be >= 64 (got {args.height}x{args.width})")
    def log(line: str) -> None:
        print(line, flush=True)

    macs: Dict[str, Dict[str, float]] = {}
    rows, measured = [], {}
    for device in devices:
        torch.manual_seed(0)
        inputs = torch.randn(1, 3, args.height, args.width).to(device)
        entries = []
        for name in args.models:
            entry = build(name, device)
            if name not in macs:
                macs[name] = {key: count_macs(graph, inputs, owner=entry.model) for key, graph in entry.graphs.items()}
            entry.macs = macs[name]
            entries.append(entry)
            log(f"built {name} on {device}: {entry.params / 1e6:.2f}M params, {entry.macs['model'] / 1e9:.1f} GMACs")
        graphs = {(e.name, key): (lambda g=graph: g(inputs)) for e in entries for key, graph in e.graphs.items()}
        with torch.inference_mode():
            timings = time_interleaved(graphs, rounds=args.rounds, warmup=args.warmup,
                                       seconds=args.seconds_per_measure, device=device, log=log)
        for entry in entries:
            entry.timings = {key: timings[entry.name, key] for key in entry.graphs}
        rows += make_rows(entries, device, reference, labels)
        measured[device] = entries
    return rows, measured


def make_rows(entries: Sequence[Measured], device: str, reference: str, labels: Dict[str, str]) -> List[dict]:
    """One row per model; ``labels`` names each graph (e.g. ``{'features': 'backbone+FPN'}``)."""
    ref = next((e for e in entries if e.name == reference), entries[0])
    rows = []
    for e in entries:
        row = {"model": e.name, "device": device, "backbone": e.backbone, "params (M)": round(e.params / 1e6, 2),
               "backbone params (M)": round(e.backbone_params / 1e6, 2)}
        for key, label in labels.items():
            row[f"{label} GMACs"] = round(e.macs[key] / 1e9, 1)
        for key, label in labels.items():
            timing, ref_timing = e.timings[key], ref.timings[key]
            row[f"{label} latency (ms)"] = round(1e3 * timing.median, 1)
            row[f"{label} spread (%)"] = round(100 * timing.spread, 1)
            row[f"{label} latency / {ref.name}"] = round(timing.median / ref_timing.median, 2)
        rows.append(row)
    return rows


def dense_result(name: str, title: str, args: argparse.Namespace, rows: List[dict],
                 measured: Dict[str, List[Measured]], labels: Dict[str, str], input_note: str,
                 notes: Sequence[str]) -> BenchmarkResult:
    """The table: ``rows``, a first note on the input (``input_note``) and timing protocol, then ``notes``."""
    import torch

    protocol = (f"Input 1x3x{args.height}x{args.width} ({input_note}), batch 1, float32, eval mode, random weights, "
                f"torch.inference_mode, {torch.get_num_threads()} threads; latency = median of {args.rounds} round(s) "
                f"after the MAC-count pass and {args.warmup} warm-up pass(es), each round one timed pass of every "
                "graph of every model (or the median pass of those in --seconds-per-measure), the order rotated each "
                "round; spread = (max - min) / median.")
    return BenchmarkResult(name=name, title=title, rows=rows, notes=[protocol, *notes],
                           plot=lambda path: plot_latency(measured, labels, title, path))


def plot_latency(measured: Dict[str, List[Measured]], labels: Dict[str, str], title: str, path: Path) -> None:
    """Horizontal bars: median latency of every graph per model, one row of panels per device."""
    some = next(iter(measured.values()))
    with figure(path, len(measured), len(labels), (5.2 * len(labels), (0.6 * len(some) + 1.6) * len(measured)),
                title=title) as (_, axes):
        for row, (device, entries) in enumerate(measured.items()):
            names = [e.name for e in entries]
            colors = ["tab:blue" if "ffnet" in n else "tab:gray" for n in names]
            for ax, (key, label) in zip(axes[row], labels.items()):
                latencies = [1e3 * e.timings[key].median for e in entries]
                ax.barh(names, latencies, color=colors)
                for i, e in enumerate(entries):
                    ax.text(latencies[i], i, f" {latencies[i]:.0f} ms, {e.macs[key] / 1e9:.0f} G", va="center",
                            fontsize=8)
                ax.invert_yaxis()
                ax.set_xlim(0, 1.7 * max(latencies))
                ax.set_xlabel(f"{label}: {device} latency (ms, median)")


def package_config(package: str, relative: str) -> str:
    """Path of a config shipped inside an OpenMMLab package (its ``.mim/configs``)."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed; it ships the baseline config {relative}")
    path = Path(list(spec.submodule_search_locations)[0]) / ".mim" / "configs" / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} does not ship {relative} (looked in {path.parent})")
    return str(path)


def build_from_config(cfg, default_scope: Optional[str] = None) -> object:
    """The model of an mmengine config in eval mode, SyncBN reverted, custom imports applied.

    Built in the config's ``default_scope`` (else ``default_scope``), whatever registry scope is current.
    """
    from mmengine.model import revert_sync_batchnorm

    from ffnet.engine.openmmlab.scope import build_model

    return revert_sync_batchnorm(build_model(cfg, default_scope)).eval()
