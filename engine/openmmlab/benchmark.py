"""Measuring OpenMMLab models for the dense-prediction benchmarks (``ffnet bench detection/segmentation``).

A :class:`Measured` model holds named :class:`Graph` s (a forward over one input batch), whose MACs
come from mmengine's FLOP analyser (:func:`count_macs`) and whose CPU latencies from
:func:`time_models` (model order rotated every round). :func:`make_rows` and :func:`plot_latency`
turn them into the rows and figure of an ``ffnet.tables.BenchmarkResult``; :func:`build_from_config`
and :func:`package_config` build the compared models from configs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence


@dataclass
class Graph:
    """A forward ``inputs -> outputs`` of one model, its MACs and its timed passes."""

    forward: Callable[[object], object]
    macs: float = 0.0
    seconds: List[float] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return 1e3 * statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        return (max(self.seconds) - min(self.seconds)) / statistics.median(self.seconds)


@dataclass
class Measured:
    """One model under test: its name, backbone, sizes and measured graphs (``'features'``, ``'model'``)."""

    name: str
    backbone: str
    params: int
    backbone_params: int
    graphs: Dict[str, Graph]


def as_module(forward: Callable[[object], object], owner) -> object:
    """``forward`` wrapped in an ``nn.Module`` owning ``owner`` (mmengine's FLOP analyser traces modules)."""
    from torch import nn

    class Forward(nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = owner

        def forward(self, inputs):
            return forward(inputs)

    return Forward()


def count_macs(forward: Callable[[object], object], owner, inputs) -> float:
    """Multiply-accumulates of ``forward(inputs)`` (mmengine.analysis, fvcore rules; 1 FMA = 1)."""
    import logging

    import torch
    from mmengine.analysis import FlopAnalyzer
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the analyser lists every op it skips (activations, mmcv RoIAlign)
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(as_module(forward, owner), (inputs,))
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return float(analyzer.total())
    finally:
        logger.setLevel(level)


def time_models(entries: Sequence[Measured], inputs, rounds: int, warmup: int,
                log: Callable[[str], None] = print) -> None:
    """Time every graph of every entry ``rounds`` times, rotating the model order each round."""
    import torch

    with torch.inference_mode():
        for entry in entries:
            for graph in entry.graphs.values():
                for _ in range(warmup):
                    graph.forward(inputs)
        for r in range(rounds):
            order = list(entries[r % len(entries):]) + list(entries[: r % len(entries)])
            for entry in order:
                for graph in entry.graphs.values():
                    start = time.perf_counter()
                    graph.forward(inputs)
                    graph.seconds.append(time.perf_counter() - start)
            log(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{e.name} " + "/".join(f"{1e3 * g.seconds[-1]:.0f}" for g in e.graphs.values()) + " ms"
                for e in entries))


def make_rows(entries: Sequence[Measured], reference: str, labels: Dict[str, str]) -> List[dict]:
    """One row per model; ``labels`` names each graph (e.g. ``{'features': 'backbone+FPN'}``)."""
    ref = next((e for e in entries if e.name == reference), entries[0])
    rows = []
    for e in entries:
        row = {"model": e.name, "backbone": e.backbone, "params (M)": round(e.params / 1e6, 2),
               "backbone params (M)": round(e.backbone_params / 1e6, 2)}
        for key, label in labels.items():
            row[f"{label} GMACs"] = round(e.graphs[key].macs / 1e9, 1)
        for key, label in labels.items():
            graph, ref_graph = e.graphs[key], ref.graphs[key]
            row[f"{label} latency (ms)"] = round(graph.latency_ms, 1)
            row[f"{label} spread (%)"] = round(100 * graph.spread, 1)
            row[f"{label} latency / {ref.name}"] = round(graph.latency_ms / ref_graph.latency_ms, 2)
        rows.append(row)
    return rows


def plot_latency(entries: Sequence[Measured], labels: Dict[str, str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(labels), figsize=(5.2 * len(labels), 0.6 * len(entries) + 1.6), squeeze=False)
    names = [e.name for e in entries]
    colors = ["tab:blue" if "ffnet" in n else "tab:gray" for n in names]
    for ax, (key, label) in zip(axes[0], labels.items()):
        latencies = [e.graphs[key].latency_ms for e in entries]
        ax.barh(names, latencies, color=colors)
        for i, e in enumerate(entries):
            ax.text(latencies[i], i, f" {latencies[i]:.0f} ms, {e.graphs[key].macs / 1e9:.0f} G", va="center",
                    fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.7 * max(latencies))
        ax.set_xlabel(f"{label}: CPU latency (ms, median)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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

    from ffnet.classification.openmmlab.scope import build_model

    return revert_sync_batchnorm(build_model(cfg, default_scope)).eval()
