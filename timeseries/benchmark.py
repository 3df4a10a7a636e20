"""FFNet-TS speed on ETTh1-shaped data: training time per epoch, inference latency (CPU by default).

Random values with ETTh1's shape (7 variables, 8,640 training rows, look-back 96) run through the
real data pipeline and training step; accuracy needs the real CSVs (``ffnet timeseries grid``). The
training-step speed of ours vs plain ``nn.Conv1d`` (vs the authors' model) is a second table,
``timeseries_speed``, from :mod:`ffnet.timeseries.speed`.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time

import numpy as np
import torch

from ffnet.engine.bench import BenchmarkResult, add_bench_arguments, count_parameters, setup_bench, synchronizer, \
    time_interleaved
from ffnet.timeseries import speed
from ffnet.timeseries.data import SEQ_LEN, ForecastWindows, split_borders
from ffnet.timeseries.model import FFNetTS
from ffnet.timeseries.train import paper_configs, train_one_epoch

ETTH1_ROWS = 14400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--horizons", type=int, nargs="+", default=[96],
                        help="horizons to time with the ETTh1 script settings (default: 96)")
    parser.add_argument("--train-steps", type=int, default=2,
                        help="timed training steps (after one warm-up step); s/epoch is extrapolated from them")
    parser.add_argument("--full-epoch", action="store_true", help="time one whole training epoch instead")
    parser.add_argument("--throughput-batch", type=int, default=512, help="batch size of the throughput measurement")
    parser.add_argument("--throughput-runs", dest="rounds", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_bench_arguments(parser, rounds=3, warmup=1, seconds=0.2)
    speed.add_arguments(parser.add_argument_group("training-speed table (timeseries_speed)"))


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
    synchronizer(device)()
    per_batch = (time.perf_counter() - begin) / timed
    return {"model": model, "windows": len(windows), "batches": batches_per_epoch, "timed_batches": timed,
            "seconds_per_epoch": per_batch * batches_per_epoch, "batch_size": train_config.batch_size}


@torch.no_grad()
def time_inference(models: list[FFNetTS], device: torch.device, batch: int, rounds: int, warmup: int,
                   seconds: float) -> list[tuple[float, float]]:
    """Per model: (median batch-1 latency in ms, windows/s at ``batch``), the models timed in the same rounds."""
    num_variables = models[0].config.num_variables
    one = torch.randn(1, SEQ_LEN, num_variables, device=device)
    many = torch.randn(batch, SEQ_LEN, num_variables, device=device)
    for model in models:
        model.eval()
    timings = time_interleaved({(i, inputs.shape[0]): (lambda m=m, x=inputs: m(x))
                                for i, m in enumerate(models) for inputs in (one, many)},
                               rounds=rounds, warmup=warmup, seconds=seconds, device=device)
    return [(timings[i, 1].median * 1e3, batch / timings[i, batch].median) for i in range(len(models))]


def run(args: argparse.Namespace):
    from ffnet.core import reparameterize

    rows = []
    for device, horizon in [(torch.device(d), h) for d in setup_bench(args) for h in args.horizons]:
        print(f"ETTh1 shape, horizon {horizon}: timing training …", flush=True)
        train = time_training(horizon, device, args.train_steps, args.full_epoch)
        model = train["model"]
        folded = reparameterize(copy.deepcopy(model).eval())
        (latency, throughput), (latency_folded, throughput_folded) = time_inference(
            [model, folded], device, args.throughput_batch, args.rounds, args.warmup, args.seconds_per_measure)
        rows.append({
            "Device": device.type,
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
        "Data: random values shaped like ETTh1 (7 variables; 8,640 training rows, look-back 96) "
        "through the real window dataset, loader and training step (Adam, MSE, batch 512, the ETTh1 script's "
        "model: D 64, CIFFN ratio 2, kernel 51∥5).",
        "Train s/epoch = mean time of the timed batches × batches per epoch (one warm-up batch first), unless "
        "'Timed batches' shows the whole epoch (--full-epoch).",
        f"Latency (batch 1) and throughput (batch {args.throughput_batch}): forward passes in eval mode, median over "
        f"{args.rounds} round(s) after {args.warmup} warm-up pass(es); a round's figure is the median pass of those "
        f"in >= {args.seconds_per_measure:g} s (at least one). 'folded' = after ffnet.core.reparameterize (the 5-tap "
        "branch and its BNs merged into the 51-tap conv). Train-form and folded models, at both batch sizes, are "
        "timed in the same rounds, their order rotated each round (same machine load).",
    ]
    return BenchmarkResult(name="timeseries", title="FFNet-TS speed (ETTh1 shape)", rows=rows, notes=notes,
                           also=[speed.speed_result(args)])


__all__ = ["add_arguments", "run", "time_training", "time_inference"]
