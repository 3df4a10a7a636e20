"""FFNet-TS speed on ETTh1-shaped data: training time per epoch, inference latency (CPU by default).

Random values with ETTh1's shape (7 variables, 8,640 training rows, look-back 96) run through the
real data pipeline and training step; accuracy needs the real CSVs (``ffnet ts bench --data-root``).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time

import numpy as np
import torch

from ffnet.timeseries.data import SEQ_LEN, ForecastWindows, split_borders
from ffnet.timeseries.model import FFNetTS, count_parameters
from ffnet.timeseries.train import paper_configs, train_one_epoch

ETTH1_ROWS = 14400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--horizons", type=int, nargs="+", default=[96],
                        help="horizons to time with the ETTh1 script settings (default: 96)")
    parser.add_argument("--train-steps", type=int, default=2,
                        help="timed training steps (after one warm-up step); s/epoch is extrapolated from them")
    parser.add_argument("--full-epoch", action="store_true", help="time one whole training epoch instead")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed batch-1 forward passes (median)")
    parser.add_argument("--throughput-batch", type=int, default=512, help="batch size of the throughput measurement")
    parser.add_argument("--throughput-runs", type=int, default=1, help="timed throughput passes (median)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--out-dir", default="docs/results")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _interleaved_medians(fns: list, runs: int, device: torch.device) -> list[float]:
    """Median seconds of each callable, timed in turns so that all see the same machine load."""
    for fn in fns:  # warm-up
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            _sync(device)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def time_training(horizon: int, device: torch.device, steps: int, full_epoch: bool) -> dict:
    """Seconds per epoch of the ETTh1 script's training loop (batch 512) on random ETTh1-shaped data."""
    model_config, train_config = paper_configs("ETTh1", 7, horizon)
    start, end = split_borders(ETTH1_ROWS, "ett_hour", SEQ_LEN)["train"]
    rng = np.random.default_rng(0)
    windows = ForecastWindows(rng.standard_normal((end - start, 7)), SEQ_LEN, horizon)
    torch.manual_seed(0)
    model = FFNetTS(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)
    batches_per_epoch = math.ceil(len(windows) / train_config.batch_size)
    train_one_epoch(model, windows, optimizer, train_config, 0, device, progress=False, max_batches=1)
    timed = batches_per_epoch if full_epoch else min(steps, batches_per_epoch)
    begin = time.perf_counter()
    train_one_epoch(model, windows, optimizer, train_config, 1, device, progress=True, max_batches=timed)
    _sync(device)
    per_batch = (time.perf_counter() - begin) / timed
    return {"model": model, "windows": len(windows), "batches": batches_per_epoch, "timed_batches": timed,
            "seconds_per_epoch": per_batch * batches_per_epoch, "batch_size": train_config.batch_size}


@torch.no_grad()
def time_inference(models: list[FFNetTS], device: torch.device, runs: int, batch: int,
                   batch_runs: int = 1) -> list[tuple[float, float]]:
    """Per model: (median batch-1 latency in ms, windows/s at ``batch``), timed interleaved."""
    num_variables = models[0].config.num_variables
    one = torch.randn(1, SEQ_LEN, num_variables, device=device)
    many = torch.randn(batch, SEQ_LEN, num_variables, device=device)
    latencies = _interleaved_medians([lambda m=m: m.eval()(one) for m in models], runs, device)
    batch_times = _interleaved_medians([lambda m=m: m.eval()(many) for m in models], batch_runs, device)
    return [(latency * 1e3, batch / seconds) for latency, seconds in zip(latencies, batch_times)]


def run(args: argparse.Namespace):
    from ffnet.core import reparameterize
    from ffnet.tables import BenchmarkResult

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for horizon in args.horizons:
        print(f"ETTh1 shape, horizon {horizon}: timing training …", flush=True)
        train = time_training(horizon, device, args.train_steps, args.full_epoch)
        model = train["model"]
        folded = reparameterize(copy.deepcopy(model).eval())
        (latency, throughput), (latency_folded, throughput_folded) = time_inference(
            [model, folded], device, args.latency_runs, args.throughput_batch, args.throughput_runs)
        rows.append({
            "Horizon": horizon,
            "Params (train)": count_parameters(model),
            "Params (folded)": count_parameters(folded),
            "Train windows": train["windows"],
            "Batch": train["batch_size"],
            "Train s/epoch": round(train["seconds_per_epoch"], 1),
            "Timed batches": f"{train['timed_batches']}/{train['batches']}",
            "Latency B=1 (ms)": round(latency, 2),
            "Latency B=1 folded (ms)": round(latency_folded, 2),
            f"Windows/s B={args.throughput_batch}": round(throughput, 1),
            f"Windows/s B={args.throughput_batch} folded": round(throughput_folded, 1),
        })
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    notes = [
        f"1-minute load average at the end: {load:.1f} on {os.cpu_count()} CPUs (a busy machine inflates CPU times).",
        f"Device {device}. Data: random values shaped like ETTh1 (7 variables; 8,640 training rows, look-back 96) "
        "through the real window dataset, loader and training step (Adam, MSE, batch 512, the ETTh1 script's "
        "model: D 64, CIFFN ratio 2, kernel 51∥5).",
        "Train s/epoch = mean time of the timed batches × batches per epoch (one warm-up batch first), unless "
        "'Timed batches' shows the whole epoch (--full-epoch).",
        "Latency: median of batch-1 forward passes in eval mode; 'folded' = after ffnet.core.reparameterize "
        "(the 5-tap branch and its BNs merged into the 51-tap conv). Throughput: median of --throughput-runs "
        "forward passes after one warm-up. Train-form and folded models are timed in turns (same machine load).",
    ]
    return BenchmarkResult(name="timeseries", title="FFNet-TS speed (ETTh1 shape)", rows=rows, notes=notes)


__all__ = ["add_arguments", "run", "time_training", "time_inference"]
