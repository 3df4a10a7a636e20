"""Point model speed on CPU: released (dense 3³) vs depthwise variant, our PyTorch backend vs spconv (Native).

A synthetic room (surfaces sampled from meshes) is grid-sampled at 0.02 m like the configs; the
backbones are timed on it: forward (eval, no grad) and forward + backward (train mode), with the
peak resident-memory increase during the call. spconv's CPU forward (its Native algorithm, the only
one on CPU; it has no CPU backward) runs the same released layers in the same process, for the ratio.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the ``with`` block and alive at the same time.

    Every op output's storage is counted once until it is freed; inputs and weights that exist before
    the block are not counted. Works on any device, at the cost of Python overhead per op (untimed).
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

    @property
    def megabytes(self) -> float:
        return self.peak / 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, default=20000,
                        help="points sampled on the room before 0.02 m grid sampling (default 20000, table "
                             "'pointcloud'; --points 100000 writes 'pointcloud_100k')")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, for stable timings)")
    parser.add_argument("--no-spconv", action="store_true", help="skip spconv even if it is installed")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))


def _scene(points: int) -> dict:
    from ffnet.pointcloud.synthetic import synthetic_room
    from ffnet.pointcloud.transforms import Compose

    pipeline = Compose([
        dict(type="CenterShift", apply_z=True),
        dict(type="GridSample", grid_size=0.02, hash_type="fnv", mode="train", return_grid_coord=True),
        dict(type="CenterShift", apply_z=False),
        dict(type="NormalizeColorSymmetric"),
        dict(type="ToTensor"),
        dict(type="Collect", keys=("coord", "grid_coord"), feat_keys=("color", "normal")),
    ])
    return pipeline(synthetic_room(points, seed=0, scale=math.sqrt(points / 20000)))


def _measure(fn, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn()`` over ``repeats`` timed runs, and its peak tensor memory (MB).

    The memory is measured on a first, untimed run, which also serves as warm-up.
    """
    return _measure_alternating({"run": fn}, repeats)["run"]


def _measure_alternating(fns: dict, repeats: int) -> dict:
    """:func:`_measure` for several callables whose timed runs alternate, the starting one rotating each
    round, so that load changes on a shared machine hit them alike: ``{name: (seconds, MB)}``."""
    memory = {}
    for name, fn in fns.items():
        with PeakTensorMemory() as tracker:
            fn()
        memory[name] = tracker.megabytes
    names, times = list(fns), {name: [] for name in fns}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: (sorted(t)[len(t) // 2], memory[name]) for name, t in times.items()}


def _forward(model, data):
    def run():
        model.eval()
        with torch.no_grad():
            return model(data)
    return run


def _forward_backward(model, data):
    def run():
        model.train()
        model.zero_grad(set_to_none=True)
        model(data).feat.square().mean().backward()
    return run


def run(args: argparse.Namespace):
    from ffnet.core.sparse import spconv_available
    from ffnet.pointcloud.model import build_backbone, set_sparse_backend
    from ffnet.tables import BenchmarkResult

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = _scene(args.points)
    voxels = len(data["coord"])
    rows = []

    def row(model_name, backend, params, forward, train=None, ratio=1.0):
        return {
            "model": model_name, "backend": backend, "voxels": voxels, "params (M)": round(params / 1e6, 2),
            "forward (s)": round(forward[0], 3), "forward peak mem (MB)": round(forward[1], 1),
            "fwd+bwd (s)": round(train[0], 3) if train else "n/a",
            "fwd+bwd peak mem (MB)": round(train[1], 1) if train else "n/a",
            "forward time / torch backend": round(ratio, 2),
        }

    for arch, label in (("release", "released (dense 3³)"), ("depthwise", "depthwise (dw 5³ / 3³)")):
        model = build_backbone(arch, sparse_backend="torch")
        params = sum(p.numel() for p in model.parameters())
        forwards = {"torch": _forward(model, data)}
        if arch == "release" and not args.no_spconv and spconv_available():
            spconv_model = copy.deepcopy(model)
            set_sparse_backend(spconv_model, "spconv")
            forwards["spconv"] = _forward(spconv_model, data)
        forward = _measure_alternating(forwards, args.repeats)
        train = _measure(_forward_backward(model, data), args.repeats)
        rows.append(row(label, "torch", params, forward["torch"], train))
        if "spconv" in forward:
            rows.append(row(label, "spconv (Native, CPU)", params, forward["spconv"],
                            ratio=forward["spconv"][0] / forward["torch"][0]))
        del model, forwards

    notes = [
        f"Synthetic room, {args.points} sampled points → {voxels} voxels after GridSample(0.02 m); backbone only "
        f"(no head); {args.threads} CPU thread(s); median of {args.repeats} timed run(s) after one untimed run; "
        "the forward runs of the two backends alternate (same weights), the first one changing every round.",
        "forward: eval mode, no grad; fwd+bwd: train mode (drop path 0.3 active), backward of a scalar of the output.",
        "peak mem: the most tensor storage (activations, saved tensors, gradients) alive at once during the call, "
        "tracked per op on the untimed run; weights and inputs are not counted.",
        "spconv on CPU runs only its Native algorithm and has no backward (its backward needs CUDA); it cannot run "
        "the depthwise variant (no grouped convs).",
        "The paper reports no latency for the point model; GPU timings need a CUDA machine.",
    ]

    name = "pointcloud" if args.points == 20000 else f"pointcloud_{args.points // 1000}k"
    return BenchmarkResult(name=name, title="FFNet point model: CPU speed and memory", rows=rows, notes=notes,
                           plot=lambda path: plot_times(rows, path))


def plot_times(rows: list[dict], path: Path) -> None:
    """Grouped bars: forward and forward + backward seconds per model and backend."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['backend']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [float(r["forward (s)"]) for r in rows], width=0.4, label="forward")
    train = [float(r["fwd+bwd (s)"]) if r["fwd+bwd (s)"] != "n/a" else 0.0 for r in rows]
    ax.bar(x + 0.2, train, width=0.4, label="forward + backward (none for spconv on CPU)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("seconds")
    ax.set_title(f"FFNet point backbone on CPU, {rows[0]['voxels']} voxels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
