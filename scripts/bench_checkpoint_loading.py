"""Time ffnet's weights-only checkpoint loader against torch's full unpickler on large real checkpoints.

    python scripts/bench_checkpoint_loading.py [--rounds 5] [--out-dir docs/results] [--work-dir DIR]

Writes the released point model's checkpoint (103M parameters, the Runner layout with a message
hub and meta) and FFNet-4's (timm layout) into ``--work-dir`` (a temporary folder by default), then
loads each with ``ffnet.engine.checkpoints.load_file`` and with ``torch.load(weights_only=False)``,
alternating the order round by round, and writes ``checkpoints.{md,csv}``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _point_model_checkpoint(path: Path) -> int:
    import numpy as np
    from mmengine.logging import HistoryBuffer

    from ffnet.pointcloud.model import FFNetPointBackbone

    with torch.device("meta"):
        skeleton = FFNetPointBackbone()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in skeleton.state_dict().items()}
    buffer = HistoryBuffer()
    buffer.update(0.5)
    torch.save({"state_dict": state, "meta": {"epoch": 1, "seed": np.int64(0)},
                "message_hub": {"log_scalars": {"train/loss": buffer}}}, path)
    return sum(v.numel() for v in state.values())


def _ffnet4_checkpoint(path: Path) -> int:
    import timm

    import ffnet.classification  # noqa: F401  (registers ffnet_4)

    state = timm.create_model("ffnet_4").state_dict()
    torch.save({"state_dict": state, "epoch": 300, "args": argparse.Namespace(model="ffnet_4")}, path)
    return sum(v.numel() for v in state.values() if v.is_floating_point())


def main() -> None:
    from ffnet.engine.bench import BenchmarkResult, write_result
    from ffnet.engine.checkpoints import load_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--work-dir", type=Path, help="where the checkpoints are written (default: a temp dir)")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ffnet-ckpt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    files = {"point model (Runner layout)": (work / "point.pth", _point_model_checkpoint),
             "FFNet-4 (timm layout)": (work / "ffnet_4.pth.tar", _ffnet4_checkpoint)}
    loaders = {"weights-only (ffnet)": lambda p: load_file(p),
               "full unpickler": lambda p: torch.load(p, map_location="cpu", weights_only=False)}
    rows = []
    for name, (path, make) in files.items():
        params = make(path)
        times = {loader: [] for loader in loaders}
        for round_index in range(args.rounds):
            order = list(loaders) if round_index % 2 == 0 else list(reversed(loaders))
            for loader in order:
                start = time.perf_counter()
                loaders[loader](path)
                times[loader].append(time.perf_counter() - start)
        safe, plain = (statistics.median(times[k]) for k in loaders)
        rows.append({"checkpoint": name, "parameters (M)": params / 1e6,
                     "file (MB)": path.stat().st_size / 1e6, "weights-only (s)": safe, "full unpickler (s)": plain,
                     "ratio": safe / plain,
                     "spread": max((max(t) - min(t)) / statistics.median(t) for t in times.values())})
    write_result(BenchmarkResult(
        name="checkpoints", title="Checkpoint loading: weights-only against the full unpickler", rows=rows,
        notes=[f"Median of {args.rounds} alternating rounds per loader, file in the page cache; ratio = "
               "weights-only / full (1.0 = same speed). Command: python scripts/bench_checkpoint_loading.py"]),
        args.out_dir)


if __name__ == "__main__":
    main()
