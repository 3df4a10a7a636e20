"""Point model speed: released (dense 3³) vs depthwise variant, our PyTorch backend vs spconv.

A synthetic room (surfaces sampled from meshes) is grid-sampled at 0.02 m like the configs; the
backbones are timed on it: forward (eval, no grad) and forward + backward (train mode), with the
peak tensor memory of the call. spconv (on CPU its Native algorithm, the only one there; it has no CPU
backward) runs the same released layers in the same process, for the ratio.
"""
from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

from ffnet.engine.bench import BenchmarkResult, add_bench_arguments, count_parameters, figure, peak_memory_bytes, \
    setup_bench, time_interleaved


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, default=20000,
                        help="points sampled on the room before 0.02 m grid sampling (default 20000, table "
                             "'pointcloud'; --points 100000 writes 'pointcloud_100k')")
    parser.add_argument("--no-spconv", action="store_true", help="skip spconv even if it is installed")
    add_bench_arguments(parser, rounds=1, warmup=0, threads=1)


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


def _measure(fns: dict, device: str, args: argparse.Namespace) -> dict:
    """``{name: (seconds, MB)}``: the peak tensor memory of a first, untimed call of each callable (which also
    warms it up), then the median time over ``--rounds`` rotated rounds
    (:func:`ffnet.engine.bench.time_interleaved`)."""
    memory = {name: peak_memory_bytes(fn, device) / 2**20 for name, fn in fns.items()}
    timings = time_interleaved(fns, rounds=args.rounds, warmup=args.warmup, seconds=args.seconds_per_measure,
                               device=device)
    return {name: (timings[name].median, memory[name]) for name in fns}


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


def run(args: argparse.Namespace) -> BenchmarkResult:
    from ffnet.core.sparse import spconv_available
    from ffnet.pointcloud.model import build_backbone, set_sparse_backend

    devices = setup_bench(args)
    torch.manual_seed(0)
    scene = _scene(args.points)
    voxels = len(scene["coord"])
    rows = []

    def row(model_name, device, backend, params, forward, train=None, ratio=1.0):
        return {
            "model": model_name, "device": device, "backend": backend, "voxels": voxels,
            "params (M)": round(params / 1e6, 2),
            "forward (s)": round(forward[0], 3), "forward peak mem (MB)": round(forward[1], 1),
            "fwd+bwd (s)": round(train[0], 3) if train else "n/a",
            "fwd+bwd peak mem (MB)": round(train[1], 1) if train else "n/a",
            "forward time / torch backend": round(ratio, 2),
        }

    for device in devices:
        data = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in scene.items()}
        on_cpu = torch.device(device).type == "cpu"
        for arch, label in (("release", "released (dense 3³)"), ("depthwise", "depthwise (dw 5³ / 3³)")):
            model = build_backbone(arch, sparse_backend="torch").to(device)
            params = count_parameters(model)
            forwards = {"torch": _forward(model, data)}
            if arch == "release" and not args.no_spconv and spconv_available():
                spconv_model = copy.deepcopy(model)
                set_sparse_backend(spconv_model, "spconv")
                forwards["spconv"] = _forward(spconv_model, data)
            forward = _measure(forwards, device, args)
            train = _measure({"train": _forward_backward(model, data)}, device, args)["train"]
            rows.append(row(label, device, "torch", params, forward["torch"], train))
            if "spconv" in forward:
                rows.append(row(label, device, "spconv (Native, CPU)" if on_cpu else "spconv", params,
                                forward["spconv"], ratio=forward["spconv"][0] / forward["torch"][0]))
            del model, forwards

    notes = [
        f"Synthetic room, {args.points} sampled points → {voxels} voxels after GridSample(0.02 m); backbone only "
        f"(no head); {torch.get_num_threads()} CPU thread(s); median of {args.rounds} timed round(s) after one "
        "untimed run (the memory measurement) and --warmup more; the forward runs of the two backends alternate (same "
        "weights), the first one changing every round.",
        "forward: eval mode, no grad; fwd+bwd: train mode (drop path 0.3 active), backward of a scalar of the output.",
        "peak mem: ffnet.engine.bench.peak_memory_bytes, the most tensor storage (activations, saved tensors, "
        "gradients) alive at once during the call, tracked per op on the untimed run (CUDA: the allocator's peak); "
        "weights and inputs are not counted.",
        "spconv on CPU runs only its Native algorithm and has no backward (its backward needs CUDA); it cannot run "
        "the depthwise variant (no grouped convs).",
        "The paper reports no latency for the point model.",
    ]

    name = "pointcloud" if args.points == 20000 else f"pointcloud_{args.points // 1000}k"
    where = "CPU" if all(torch.device(d).type == "cpu" for d in devices) else ", ".join(devices)
    return BenchmarkResult(name=name, title=f"FFNet point model: {where} speed and memory", rows=rows, notes=notes,
                           plot=lambda path: plot_times(rows, path))


def plot_times(rows: list[dict], path: Path) -> None:
    """Grouped bars: forward and forward + backward seconds per model, device and backend."""
    import numpy as np

    labels = [f"{r['model']}\n{r['device']} {r['backend']}" for r in rows]
    x = np.arange(len(rows))
    with figure(path, figsize=(8, 4)) as (_, axes):
        ax = axes[0][0]
        ax.bar(x - 0.2, [float(r["forward (s)"]) for r in rows], width=0.4, label="forward")
        train = [float(r["fwd+bwd (s)"]) if r["fwd+bwd (s)"] != "n/a" else 0.0 for r in rows]
        ax.bar(x + 0.2, train, width=0.4, label="forward + backward (none for spconv)")
        ax.set_xticks(x, labels)
        ax.set_ylabel("seconds")
        ax.set_title(f"FFNet point backbone, {rows[0]['voxels']} voxels")
        ax.legend()
