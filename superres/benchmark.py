"""FFNet-SR / FFNet-SR-light x4: params, FLOPs, CPU latency and peak memory for a 1280x720 HR output.

The paper's protocol (Appendix F.2): one image whose *output* is 1280x720 (LR 320x180 at x4),
deployed models, batch 1. Bicubic upscaling (``torch.nn.functional.interpolate``) of the same LR
image is measured in the same run; ratios are taken within the run so they are comparable across
machines, and set beside the paper's GPU ratios (Table 4).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ffnet.tables import DEFAULT_OUT_DIR, BenchmarkResult

MODELS = ("bicubic", "ffnet_sr_light", "ffnet_sr")
LABELS = {"bicubic": "Bicubic", "ffnet_sr_light": "FFNet-SR-light", "ffnet_sr": "FFNet-SR"}
# Paper Table 4 (x4): memory (MB), RTX 4090 latency (ms).
PAPER = {"ffnet_sr_light": (87.8, 10.1), "ffnet_sr": (91.2, 13.7)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="upscaling factor (default 4)")
    parser.add_argument("--hr-size", default="1280x720", help="HR output WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed rounds, each model once per round; best and median reported (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where the table goes")


def _lr_size(hr_size: str, scale: int) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in hr_size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--hr-size must be WIDTHxHEIGHT, e.g. 1280x720, got {hr_size!r}") from None
    return height // scale, width // scale


def _build(name: str, scale: int):
    """A deployed model in eval mode, or the bicubic upsampler."""
    import torch.nn.functional as F

    from ffnet.core import reparameterize
    from ffnet.superres.models import build_model

    if name == "bicubic":
        return lambda x: F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return reparameterize(build_model(name, scale).eval())


def forward_peak_memory_bytes(model, lr) -> int:
    """Peak bytes of live tensors allocated during ``model(lr)`` (torch profiler memory events).

    Each event carries the net bytes its operator allocated (or a free's negative size); their
    running sum in time order is the live memory, whose maximum is the peak (CPU analogue of
    ``torch.cuda.max_memory_allocated``; workspaces freed inside one operator are not seen).
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(lr)
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def _flops(model, lr):
    from fvcore.nn import FlopCountAnalysis

    counter = FlopCountAnalysis(model, lr)
    counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return counter.total()


def run(args: argparse.Namespace) -> BenchmarkResult:
    import torch
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    lr_size = _lr_size(args.hr_size, args.scale)
    lr = torch.rand(1, 3, *lr_size)
    models = {name: _build(name, args.scale) for name in args.models}
    measured = {}
    for name, model in tqdm(models.items(), desc="size, FLOPs, memory"):
        is_net = name != "bicubic"
        params = sum(p.numel() for p in model.parameters()) if is_net else 0
        measured[name] = dict(
            params=params, gmacs=_flops(model, lr) / 1e9 if is_net else 0.0,
            memory=(4 * params + forward_peak_memory_bytes(model, lr)) / 2**20, times=[],
        )
    with torch.inference_mode():
        for _ in range(args.warmup):
            for model in models.values():
                model(lr)
        # Models take turns in every round, so that a change of machine load hits all of them.
        for _ in tqdm(range(args.repeats), desc="latency rounds"):
            for name, model in models.items():
                start = time.perf_counter()
                model(lr)
                measured[name]["times"].append((time.perf_counter() - start) * 1e3)
    rows = []
    for name, m in measured.items():
        m["latency"] = min(m["times"])
        row = {
            "model": LABELS[name], "scale": f"x{args.scale}", "params": m["params"], "GMACs": round(m["gmacs"], 1),
            "CPU latency, best (ms)": round(m["latency"], 1),
            "CPU latency, median (ms)": round(statistics.median(m["times"]), 1),
            "peak memory (MB)": round(m["memory"], 1),
        }
        rows.append(row)
    for row, (name, m) in zip(rows, measured.items()):
        if "bicubic" in measured:
            row["latency / bicubic"] = round(m["latency"] / measured["bicubic"]["latency"], 1)
        if "ffnet_sr_light" in measured:
            row["latency / light"] = round(m["latency"] / measured["ffnet_sr_light"]["latency"], 3)
            row["memory / light"] = round(m["memory"] / measured["ffnet_sr_light"]["memory"], 3)
    notes = [
        f"Input LR {lr_size[1]}x{lr_size[0]} (batch 1), output {lr_size[1] * args.scale}x{lr_size[0] * args.scale}; "
        "deployed models (ffnet.core.reparameterize, a no-op for FFNet-SR, which has no re-parameterizable branches).",
        f"Latency: {args.repeats} rounds after {args.warmup} warm-up round(s), the models taking turns in each "
        f"round; best and median; torch.inference_mode, {torch.get_num_threads()} thread(s). Ratios use the best. "
        "Bicubic: torch.nn.functional.interpolate(mode='bicubic').",
        "GMACs: fvcore FlopCountAnalysis (one multiply-add = 1). Peak memory: weights plus the peak of live tensors "
        "during one forward pass (torch.profiler memory events), the CPU analogue of the GPU's max allocated memory.",
        "Paper Table 4 (x4, RTX 4090): FFNet-SR / FFNet-SR-light latency {1} / {3} ms = {4:.3f}, "
        "memory {0} / {2} MB = {5:.3f}.".format(*PAPER["ffnet_sr"], *PAPER["ffnet_sr_light"],
                                                PAPER["ffnet_sr"][1] / PAPER["ffnet_sr_light"][1],
                                                PAPER["ffnet_sr"][0] / PAPER["ffnet_sr_light"][0]),
    ]
    return BenchmarkResult(name="superres", title=f"FFNet-SR x{args.scale}, {args.hr_size} output, CPU",
                           rows=rows, notes=notes, plot=lambda path: _plot(rows, path))


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("CPU latency, best (ms)", "peak memory (MB)")):
        ax.bar(names, [r[key] for r in rows], color=["0.6", "tab:blue", "tab:orange"][: len(rows)])
        ax.set_ylabel(key)
    fig.suptitle("FFNet-SR on CPU, 1280x720 output")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
