"""FFNet-SR / FFNet-SR-light x4: params, MACs, latency (CPU by default) and peak memory for a 1280x720 HR output.

The paper's protocol (Appendix F.2): one image whose *output* is 1280x720 (LR 320x180 at x4),
deployed models, batch 1. Bicubic upscaling (``torch.nn.functional.interpolate``) of the same LR
image is measured in the same run; ratios are taken within the run so they are comparable across
machines, and set beside the paper's GPU ratios (Table 4).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ffnet.engine.bench import BenchmarkResult, add_bench_arguments, count_macs, count_parameters, figure, \
    peak_memory_bytes, setup_bench, time_interleaved
from ffnet.engine.errors import UserError

MODELS = ("bicubic", "ffnet_sr_light", "ffnet_sr")
LABELS = {"bicubic": "Bicubic", "ffnet_sr_light": "FFNet-SR-light", "ffnet_sr": "FFNet-SR"}
# Paper Table 4 (x4): memory (MB), RTX 4090 latency (ms).
PAPER = {"ffnet_sr_light": (87.8, 10.1), "ffnet_sr": (91.2, 13.7)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="upscaling factor (default 4)")
    parser.add_argument("--hr-size", default="1280x720", help="HR output WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    add_bench_arguments(parser, rounds=3, warmup=1)


def _lr_size(hr_size: str, scale: int) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in hr_size.lower().split("x"))
    except ValueError:
        raise UserError(f"--hr-size must be WIDTHxHEIGHT, e.g. 1280x720, got {hr_size!r}") from None
    return height // scale, width // scale


def _build(name: str, scale: int):
    """A deployed model in eval mode, or the bicubic upsampler."""
    import torch.nn.functional as F

    from ffnet.core import reparameterize
    from ffnet.superres.models import build_model

    if name == "bicubic":
        return lambda x: F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return reparameterize(build_model(name, scale).eval())


def run(args: argparse.Namespace) -> BenchmarkResult:
    import torch

    devices = setup_bench(args)
    lr_size = _lr_size(args.hr_size, args.scale)
    rows = []
    for device in devices:
        lr = torch.rand(1, 3, *lr_size, generator=torch.Generator().manual_seed(0)).to(device)
        models = {name: _build(name, args.scale) for name in args.models}
        measured = {}
        for name, model in models.items():
            is_net = name != "bicubic"
            if is_net:
                model.to(device)
            params = count_parameters(model) if is_net else 0
            with torch.inference_mode():
                peak = peak_memory_bytes(lambda m=model: m(lr), device)
            measured[name] = dict(params=params, gmacs=count_macs(model, lr) / 1e9 if is_net else 0.0,
                                  memory=(4 * params + peak) / 2**20)
        with torch.inference_mode():
            timings = time_interleaved({name: (lambda m=model: m(lr)) for name, model in models.items()},
                                       rounds=args.rounds, warmup=args.warmup, seconds=args.seconds_per_measure,
                                       device=device, log=lambda line: print(line, flush=True))
        where = "CPU" if torch.device(device).type == "cpu" else "GPU"
        group = []
        for name, m in measured.items():
            m["latency"] = 1e3 * timings[name].best
            group.append({
                "model": LABELS[name], "scale": f"x{args.scale}", "params": m["params"], "GMACs": round(m["gmacs"], 1),
                f"{where} latency, best (ms)": round(m["latency"], 1),
                f"{where} latency, median (ms)": round(1e3 * timings[name].median, 1),
                "peak memory (MB)": round(m["memory"], 1),
            })
        for row, m in zip(group, measured.values()):
            if "bicubic" in measured:
                row["latency / bicubic"] = round(m["latency"] / measured["bicubic"]["latency"], 1)
            if "ffnet_sr_light" in measured:
                row["latency / light"] = round(m["latency"] / measured["ffnet_sr_light"]["latency"], 3)
                row["memory / light"] = round(m["memory"] / measured["ffnet_sr_light"]["memory"], 3)
            if len(devices) > 1:
                row["device"] = device
        rows += group
    notes = [
        f"Input LR {lr_size[1]}x{lr_size[0]} (batch 1), output {lr_size[1] * args.scale}x{lr_size[0] * args.scale}; "
        "deployed models (ffnet.core.reparameterize, a no-op for FFNet-SR, which has no re-parameterizable branches).",
        f"Latency: {args.rounds} rounds after {args.warmup} warm-up round(s), the models taking turns in each "
        f"round, the order rotated each round; best and median; torch.inference_mode, {torch.get_num_threads()} "
        "thread(s). Ratios use the best. Bicubic: torch.nn.functional.interpolate(mode='bicubic').",
        "GMACs: ffnet.engine.bench.count_macs (fvcore rules, one multiply-add = 1). Peak memory: weights plus "
        "ffnet.engine.bench.peak_memory_bytes of one forward pass (the most tensor storage alive at once, tracked "
        "per op on CPU; the allocator's peak on a GPU).",
        "Paper Table 4 (x4, RTX 4090): FFNet-SR / FFNet-SR-light latency {1} / {3} ms = {4:.3f}, "
        "memory {0} / {2} MB = {5:.3f}.".format(*PAPER["ffnet_sr"], *PAPER["ffnet_sr_light"],
                                                PAPER["ffnet_sr"][1] / PAPER["ffnet_sr_light"][1],
                                                PAPER["ffnet_sr"][0] / PAPER["ffnet_sr_light"][0]),
    ]
    where = "CPU" if all(torch.device(d).type == "cpu" for d in devices) else ", ".join(devices)
    return BenchmarkResult(name="superres", title=f"FFNet-SR x{args.scale}, {args.hr_size} output, {where}",
                           rows=rows, notes=notes,
                           plot=lambda path: _plot(rows, path, f"FFNet-SR on {where}, {args.hr_size} output"))


def _plot(rows: list[dict], path: Path, title: str) -> None:
    names = [r["model"] + (f" ({r['device']})" if "device" in r else "") for r in rows]
    latency = next(key for key in rows[0] if "latency, best" in key)
    with figure(path, 1, 2, (9, 3.5), title=title) as (_, axes):
        for ax, key in zip(axes[0], (latency, "peak memory (MB)")):
            ax.bar(names, [r[key] for r in rows], color=["0.6", "tab:blue", "tab:orange"][: len(rows)])
            ax.set_ylabel(key)
