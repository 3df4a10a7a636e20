"""U-FFNet-B vs U-DiT-B: parameters, MACs and forward passes per second on 4x32x32 latents (deployed forms).

Both models are timed in the same run, in turns, so they see the same machine load; the ratio
is compared with the paper's 331.0 / 276.5 = 1.20x (Tab. 7, hardware and batch not stated there).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ffnet.core import reparameterize
from ffnet.engine.bench import BenchmarkResult, add_bench_arguments, count_parameters, figure, setup_bench, \
    time_interleaved
from ffnet.generation.complexity import count_macs, deployed_copy, diffusion_inputs
from ffnet.generation.models import ARCHITECTURES, create_model

PAPER = {"U-DiT-B": dict(gmacs=22.2, throughput=276.5), "U-FFNet-B": dict(gmacs=19.6, throughput=331.0)}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["U-DiT-B", "U-FFNet-B"], choices=sorted(ARCHITECTURES),
                        help="models to compare; the first is the baseline of the speed-up column")
    parser.add_argument("--archs", nargs="+", dest="models", choices=sorted(ARCHITECTURES), default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--latent-size", type=int, default=32, help="latent side (32 for 256 px images)")
    parser.add_argument("--cuda-dtype", choices=sorted(DTYPES), default="float32")
    add_bench_arguments(parser, rounds=3, warmup=1, seconds=0.5, batch_sizes=(1, 16))


def run(args: argparse.Namespace) -> BenchmarkResult:
    devices = [torch.device(d) for d in setup_bench(args)]
    sizes, models = {}, []
    for arch in args.models:
        with torch.device("meta"):
            meta = create_model(arch)
        deployed_meta = deployed_copy(meta)
        x, t, y = diffusion_inputs(1, size=args.latent_size, device="meta")
        sizes[arch] = dict(params_train=count_parameters(meta), params_deployed=count_parameters(deployed_meta),
                           macs=count_macs(deployed_meta, x, t, y))
        models.append(reparameterize(create_model(arch).eval()))

    rows, ratios = [], {}
    for device in devices:
        dtype = DTYPES[args.cuda_dtype] if device.type == "cuda" else torch.float32
        on_device = [m.to(device=device, dtype=dtype) for m in models]
        for batch in args.batch_sizes:
            x, t, y = diffusion_inputs(batch, size=args.latent_size, device=device)
            inputs = (x.to(dtype), t, y)
            with torch.no_grad():
                timings = time_interleaved({arch: (lambda m=m: m(*inputs)) for arch, m in zip(args.models, on_device)},
                                           rounds=args.rounds, warmup=args.warmup, seconds=args.seconds_per_measure,
                                           device=device)
            seconds = [timing.median for timing in timings.values()]
            for arch, sec in zip(args.models, seconds):
                speedup = seconds[0] / sec
                ratios[(device.type, batch, arch)] = speedup
                rows.append({
                    "model": arch, "device": device.type, "dtype": str(dtype).removeprefix("torch."), "batch": batch,
                    "params_train_M": round(sizes[arch]["params_train"] / 1e6, 2),
                    "params_deployed_M": round(sizes[arch]["params_deployed"] / 1e6, 2),
                    "GMACs": round(sizes[arch]["macs"] / 1e9, 2),
                    "forwards_per_s": round(batch / sec, 2),
                    "spread_%": round(100 * timings[arch].spread, 1),
                    f"speedup_vs_{args.models[0]}": round(speedup, 3),
                })
        models = [m.cpu().float() for m in on_device]

    notes = [f"Forward passes of the deployed (re-parameterized) backbone on {args.latent_size}x{args.latent_size}x4 "
             "latents with random timesteps and labels, no guidance; forwards_per_s = batch / median seconds of "
             f"one pass over {args.rounds} round(s) after {args.warmup} warm-up pass(es), the models' order rotated "
             f"each round; a round's figure is the median pass of those in >= {args.seconds_per_measure:g} s (at least "
             "one); spread = (max - min) / median over rounds.",
             "MACs: torch.utils.flop_counter on the deployed model at batch 1 (FLOPs / 2; convolutions, linears and "
             "both attention matmuls), the counter U-DiT's 22.2 G 'FLOPs' corresponds to."]
    if "U-DiT-B" in sizes and "U-FFNet-B" in sizes:
        mac_ratio = sizes["U-FFNet-B"]["macs"] / sizes["U-DiT-B"]["macs"]
        notes.append(f"MACs U-FFNet-B / U-DiT-B = {mac_ratio:.3f} (paper: 19.6 G / 22.2 G = "
                     f"{PAPER['U-FFNet-B']['gmacs'] / PAPER['U-DiT-B']['gmacs']:.3f}).")
        paper_ratio = PAPER["U-FFNet-B"]["throughput"] / PAPER["U-DiT-B"]["throughput"]
        for (device, batch, arch), ratio in ratios.items():
            if arch == "U-FFNet-B" and args.models[0] == "U-DiT-B":
                notes.append(f"{device} batch {batch}: U-FFNet-B is {ratio:.2f}x U-DiT-B's throughput "
                             f"(paper: 331.0 / 276.5 = {paper_ratio:.2f}x, setup not stated).")
    return BenchmarkResult(name="generation", title="U-FFNet-B vs U-DiT-B: size, MACs and throughput",
                           rows=rows, notes=notes, plot=lambda path: _plot(rows, args.models, path))


def _plot(rows: list[dict], archs: list[str], path: Path) -> None:
    groups = sorted({(r["device"], r["batch"]) for r in rows})
    with figure(path, 1, len(groups), (3.2 * len(groups), 3.2)) as (_, axes):
        for ax, (device, batch) in zip(axes[0], groups):
            values = [next(r["forwards_per_s"] for r in rows
                           if (r["device"], r["batch"], r["model"]) == (device, batch, a)) for a in archs]
            ax.bar(archs, values, color=["#888888", "#d95f02", "#1b9e77", "#7570b3"][: len(archs)])
            ax.set_title(f"{device}, batch {batch}")
            ax.set_ylabel("forward passes / s")
