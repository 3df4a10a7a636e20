"""U-FFNet-B vs U-DiT-B: parameters, MACs and forward passes per second on 4x32x32 latents (deployed forms).

Both models are timed in the same run, in turns, so they see the same machine load; the ratio
is compared with the paper's 331.0 / 276.5 = 1.20x (Tab. 7, hardware and batch not stated there).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from ffnet.core import reparameterize
from ffnet.generation.complexity import count_macs, count_parameters, deployed_copy, diffusion_inputs
from ffnet.generation.models import ARCHITECTURES, create_model

PAPER = {"U-DiT-B": dict(gmacs=22.2, throughput=276.5), "U-FFNet-B": dict(gmacs=19.6, throughput=331.0)}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archs", nargs="+", default=["U-DiT-B", "U-FFNet-B"], choices=sorted(ARCHITECTURES),
                        help="models to compare; the first is the baseline of the speed-up column")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--latent-size", type=int, default=32, help="latent side (32 for 256 px images)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"],
                        help="devices to time on; cuda is skipped when absent (default: cpu cuda)")
    parser.add_argument("--runs", type=int, default=2, help="timed forward passes per model and batch on CPU (median)")
    parser.add_argument("--cuda-runs", type=int, default=50, help="timed forward passes on CUDA (median)")
    parser.add_argument("--cuda-dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def interleaved_medians(models: list[torch.nn.Module], inputs: tuple, runs: int, device: torch.device) -> list[float]:
    """Median seconds of one forward pass of each model, timed in turns after one warm-up each."""
    for model in models:
        model(*inputs)
    _sync(device)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for model, bucket in zip(models, times):
            start = time.perf_counter()
            model(*inputs)
            _sync(device)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def run(args: argparse.Namespace):
    from ffnet.tables import BenchmarkResult

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    sizes, models = {}, []
    for arch in args.archs:
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
            seconds = interleaved_medians(on_device, (x.to(dtype), t, y), args.cuda_runs if device.type == "cuda"
                                          else args.runs, device)
            for arch, sec in zip(args.archs, seconds):
                speedup = seconds[0] / sec
                ratios[(device.type, batch, arch)] = speedup
                rows.append({
                    "model": arch, "device": device.type, "dtype": str(dtype).removeprefix("torch."), "batch": batch,
                    "params_train_M": round(sizes[arch]["params_train"] / 1e6, 2),
                    "params_deployed_M": round(sizes[arch]["params_deployed"] / 1e6, 2),
                    "GMACs": round(sizes[arch]["macs"] / 1e9, 2),
                    "forwards_per_s": round(batch / sec, 2),
                    f"speedup_vs_{args.archs[0]}": round(speedup, 3),
                })
        models = [m.cpu().float() for m in on_device]

    notes = [f"Forward passes of the deployed (re-parameterized) backbone on {args.latent_size}x{args.latent_size}x4 "
             "latents with random timesteps and labels, no guidance; forwards_per_s = batch / median seconds of "
             f"one pass, models timed in turns (CPU: {args.runs} runs, CUDA: {args.cuda_runs} runs, after a warm-up).",
             "MACs: torch.utils.flop_counter on the deployed model at batch 1 (FLOPs / 2; convolutions, linears and "
             "both attention matmuls), the counter U-DiT's 22.2 G 'FLOPs' corresponds to."]
    if "U-DiT-B" in sizes and "U-FFNet-B" in sizes:
        mac_ratio = sizes["U-FFNet-B"]["macs"] / sizes["U-DiT-B"]["macs"]
        notes.append(f"MACs U-FFNet-B / U-DiT-B = {mac_ratio:.3f} (paper: 19.6 G / 22.2 G = "
                     f"{PAPER['U-FFNet-B']['gmacs'] / PAPER['U-DiT-B']['gmacs']:.3f}).")
        paper_ratio = PAPER["U-FFNet-B"]["throughput"] / PAPER["U-DiT-B"]["throughput"]
        for (device, batch, arch), ratio in ratios.items():
            if arch == "U-FFNet-B" and args.archs[0] == "U-DiT-B":
                notes.append(f"{device} batch {batch}: U-FFNet-B is {ratio:.2f}x U-DiT-B's throughput "
                             f"(paper: 331.0 / 276.5 = {paper_ratio:.2f}x, setup not stated).")
    return BenchmarkResult(name="generation", title="U-FFNet-B vs U-DiT-B: size, MACs and throughput",
                           rows=rows, notes=notes, plot=lambda path: _plot(rows, args.archs, path))


def _plot(rows: list[dict], archs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["device"], r["batch"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), squeeze=False)
    for ax, (device, batch) in zip(axes[0], groups):
        values = [next(r["forwards_per_s"] for r in rows if (r["device"], r["batch"], r["model"]) == (device, batch, a))
                  for a in archs]
        ax.bar(archs, values, color=["#888888", "#d95f02", "#1b9e77", "#7570b3"][: len(archs)])
        ax.set_title(f"{device}, batch {batch}")
        ax.set_ylabel("forward passes / s")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from ffnet.tables import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parsed = parser.parse_args()
    write_result(run(parsed), parsed.out_dir)
