"""ImageNet classifiers: params, MACs and throughput of deployed FFNet-1..4 beside timm baselines.

Every model is measured in the same run, eval mode under ``torch.inference_mode``, at its own
input resolution, in its faster memory layout (contiguous or channels_last, chosen per device and
batch size), over several rounds whose model order rotates; the table reports the median and the
spread (max − min, % of the median) of the rounds.
"""
from __future__ import annotations

import argparse
import builtins
import copy
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

FFNETS = ("ffnet_1", "ffnet_2", "ffnet_3", "ffnet_4")
BASELINES = ("convnext_tiny", "convnext_base", "swin_tiny_patch4_window7_224", "efficientnet_b1", "fastvit_sa12")
REFERENCE = "convnext_tiny"
AUTHORS = "ffnet_1 (authors' code)"
UNFUSED = " (unfused)"
# Paper Tab. 8, CPU throughput in img/s at batch 1 and 16 (FFNet-4 is reported at 384 only).
PAPER_CPU = {
    "ffnet_1": {1: 38, 16: 62}, "ffnet_2": {1: 31, 16: 52}, "ffnet_3": {1: 22, 16: 40},
    "convnext_tiny": {1: 41, 16: 50}, "convnext_base": {1: 16, 16: 17}, "swin_tiny_patch4_window7_224": {1: 30, 16: 35},
}
# Performance targets for deployed FFNet-1 (ratios of throughput).
TARGETS = {(REFERENCE, 16): 1.50, (REFERENCE, 1): 1.25, (AUTHORS, 16): 1.15, (AUTHORS, 1): 1.15}
FFNET_RESOLUTION = 256
QUICK_SIZE = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ffnet.engine.bench import add_bench_arguments

    parser.add_argument("--models", nargs="+", default=list(FFNETS + BASELINES),
                        help="timm model names (FFNets are built deployed; default: FFNet-1..4 and the baselines)")
    add_bench_arguments(parser, rounds=3, warmup=1, seconds=1.0, batch_sizes=(1, 16))
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (same treatment for all)")
    parser.add_argument("--authors-code", type=Path, metavar="DIR",
                        help="checkout of github.com/ysj9909/FFNet: also measure its deployed FFNet-1")
    parser.add_argument("--steps", action="store_true",
                        help="also measure each FFNet re-parameterized but without fuse_for_inference, to show "
                             "what the fusion step buys")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test only: {QUICK_SIZE}x{QUICK_SIZE} inputs, one short pass per measurement "
                             "(not a benchmark)")


@dataclass
class Entry:
    """One model under test: the eval-mode module and what the table reports about it."""

    name: str
    module: object
    resolution: int
    params: int
    macs: float
    timing: dict = field(default_factory=dict)  # (device, batch) -> Timing of one batch
    layout: dict = field(default_factory=dict)  # (device, batch) -> 'contiguous' | 'channels_last'


def _reparameterize(model):
    from ffnet.core import reparameterize
    from timm.utils import reparameterize_model

    reparameterize(model)
    return reparameterize_model(model)


def build_model(name: str):
    """``(model, resolution)``: the deployed timm model in eval mode and its evaluation input size.

    FFNets are re-parameterized and fused for inference (:func:`ffnet.core.fuse_for_inference`);
    ``'<ffnet> (unfused)'`` is the re-parameterized model alone.
    """
    import timm

    import ffnet.classification  # noqa: F401  (registers ffnet_1..4)
    from ffnet.core import fuse_for_inference

    variant = name.removesuffix(UNFUSED)
    if variant in FFNETS:  # all four at 256 (FFNet-4's default weights are the 384 fine-tune)
        model = timm.create_model(variant, deploy=True).eval()
        return (model if name.endswith(UNFUSED) else fuse_for_inference(model)), FFNET_RESOLUTION
    model = _reparameterize(timm.create_model(name).eval())
    return model, int(model.pretrained_cfg["input_size"][-1])


def _scratch_import(overrides: dict[str, object]) -> Callable:
    def importer(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in overrides and fromlist:
            return overrides[name]
        return builtins.__import__(name, globals, locals, fromlist, level)
    return importer


def load_authors_ffnet_1(checkout: Path):
    """The release's deployed FFNet-1, imported from ``<checkout>/models/ffnet.py`` without editing it.

    The file is executed as a scratch module whose imports of two helpers missing from current timm
    (``resolve_pretrained_cfg``, ``_update_default_kwargs``) and of ``register_model`` (which would
    replace ``ffnet_1`` in timm's registry) are answered by local stand-ins; the layers are theirs.
    Deployment is the release's recursive ``fuse()`` replacement (``export_model.py``).
    """
    source = checkout / "models" / "ffnet.py"
    if not source.is_file():
        raise FileNotFoundError(f"--authors-code {checkout}: expected the FFNet repository with models/ffnet.py")
    module = types.ModuleType("authors_ffnet_scratch")
    module.__file__ = str(source)
    stand_ins = types.SimpleNamespace(
        resolve_pretrained_cfg=lambda name: types.SimpleNamespace(to_dict=lambda: dict(module.default_cfgs[name])),
        _update_default_kwargs=lambda cfg, kwargs, kwargs_filter=None: None,
    )
    registry = types.SimpleNamespace(register_model=lambda fn: fn)
    module.__dict__["__builtins__"] = dict(vars(builtins), __import__=_scratch_import(
        {"timm.models._builder": stand_ins, "timm.models": registry}))
    exec(compile(source.read_text(), str(source), "exec"), module.__dict__)
    model = module.ffnet_1().eval()

    def fuse_recursively(net):
        for child_name, child in net.named_children():
            if hasattr(child, "fuse"):
                fused = child.fuse()
                setattr(net, child_name, fused)
                fuse_recursively(fused)
            else:
                fuse_recursively(child)

    import torch

    with torch.no_grad():
        fuse_recursively(model)
    return model, 256


def _prepare(module, device: str, batch: int, resolution: int, layout: str, compiled: bool):
    """``(callable model, images)``: a copy of ``module`` on ``device`` in ``layout``, and a batch in it."""
    import torch

    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    module = copy.deepcopy(module).to(device=device, memory_format=memory_format)
    images = torch.randn(batch, 3, resolution, resolution, device=device).contiguous(memory_format=memory_format)
    return (torch.compile(module, dynamic=False) if compiled else module), images


def benchmark(entries: list[Entry], devices: list[str], batch_sizes: list[int], rounds: int, warmup: int,
              seconds: float, compiled: bool, log: Callable[[str], None] = print) -> None:
    """Fill ``entry.timing`` / ``entry.layout`` for every device and batch size.

    Per device and batch size: each model is measured in both layouts (after ``warmup`` passes; at least
    one when compiling, so compilation is never timed) and the faster is kept; then
    :func:`ffnet.engine.bench.time_interleaved` measures all models in ``rounds`` rotated rounds.
    """
    import torch

    from ffnet.engine.bench import time_interleaved

    if compiled:
        warmup = max(warmup, 1)
    with torch.inference_mode():
        for device in devices:
            for batch in batch_sizes:
                kept = {}
                for entry in entries:
                    prepared = {layout: _prepare(entry.module, device, batch, entry.resolution, layout, compiled)
                                for layout in ("contiguous", "channels_last")}
                    trial = time_interleaved({layout: (lambda m=m, x=x: m(x)) for layout, (m, x) in prepared.items()},
                                             rounds=1, warmup=warmup, seconds=seconds, device=device)
                    layout = min(trial, key=lambda key: trial[key].median)
                    entry.layout[device, batch], kept[entry.name] = layout, prepared[layout]
                    log(f"{device} bs{batch} {entry.name}: {layout} ({batch / trial[layout].median:.1f} img/s)")
                timings = time_interleaved({name: (lambda m=m, x=x: m(x)) for name, (m, x) in kept.items()},
                                           rounds=rounds, warmup=0, seconds=seconds, device=device,
                                           log=lambda line: log(f"{device} bs{batch} {line}"))
                for entry in entries:
                    entry.timing[device, batch] = timings[entry.name]
                kept.clear()
                if torch.device(device).type == "cuda":
                    torch.cuda.empty_cache()


def _speed(entry: Entry, key) -> float:
    """Images per second: batch size / the median seconds of one batch."""
    return key[1] / entry.timing[key].median


def _ratio(entries: dict[str, Entry], name: str, other: str, key) -> float | None:
    if name not in entries or other not in entries or key not in entries[other].timing:
        return None
    return _speed(entries[name], key) / _speed(entries[other], key)


def make_rows(entries: list[Entry], devices: list[str], batch_sizes: list[int]) -> list[dict]:
    by_name = {e.name: e for e in entries}
    rows = []
    for device in devices:
        for entry in entries:
            row = {"model": entry.name, "device": device, "res": entry.resolution,
                   "params (M)": round(entry.params / 1e6, 2), "MACs (G)": round(entry.macs / 1e9, 3)}
            for batch in batch_sizes:
                row[f"bs{batch} img/s"] = round(_speed(entry, (device, batch)), 2)
                row[f"bs{batch} spread %"] = round(100 * entry.timing[device, batch].spread, 1)
                row[f"bs{batch} layout"] = entry.layout[device, batch]
                ratio = _ratio(by_name, entry.name, REFERENCE, (device, batch))
                row[f"bs{batch} x{REFERENCE}"] = None if ratio is None else round(ratio, 3)
                paper = PAPER_CPU.get(entry.name, {}).get(batch)
                reference = PAPER_CPU[REFERENCE].get(batch)
                row[f"bs{batch} paper x{REFERENCE}"] = (round(paper / reference, 2)
                                                       if device == "cpu" and paper and reference else None)
            rows.append(row)
    return rows


def target_notes(entries: list[Entry], devices: list[str], batch_sizes: list[int], compiled: bool) -> list[str]:
    by_name = {e.name: e for e in entries}
    notes = []
    for device in devices:
        for (other, batch), target in TARGETS.items():
            ratio = _ratio(by_name, "ffnet_1", other, (device, batch))
            if ratio is None or batch not in batch_sizes:
                continue
            verdict = "meets" if ratio >= target else "misses"
            notes.append(f"Target ({device}, {'compiled' if compiled else 'eager'}, batch {batch}): deployed "
                         f"ffnet_1 / {other} = {ratio:.2f}x, target >= {target:.2f}x: {verdict} it.")
        for entry in entries:
            for batch in batch_sizes:
                gain = _ratio(by_name, entry.name, entry.name + UNFUSED, (device, batch))
                if gain is not None:
                    notes.append(f"Fusion step ({device}, batch {batch}): {entry.name} / {entry.name}{UNFUSED} "
                                 f"= {gain:.2f}x.")
    return notes


def plot(entries: list[Entry], devices: list[str], batch_sizes: list[int], path: Path) -> None:
    from ffnet.engine.bench import figure

    with figure(path, len(devices), len(batch_sizes), (5.5 * len(batch_sizes), 4.2 * len(devices))) as (_, axes):
        for i, device in enumerate(devices):
            for j, batch in enumerate(batch_sizes):
                ax = axes[i][j]
                for index, entry in enumerate(entries):
                    speed = _speed(entry, (device, batch))
                    ours = entry.name.startswith("ffnet") and entry.name != AUTHORS
                    ax.scatter(entry.params / 1e6, speed, marker="*" if ours else "o", s=120 if ours else 45,
                               color="tab:red" if ours else "tab:blue")
                    ax.annotate(entry.name.replace("_patch4_window7_224", ""), (entry.params / 1e6, speed),
                                textcoords="offset points", xytext=(4, 4 if index % 2 else -10), fontsize=7)
                ax.set_xlabel("parameters (M, deployed)")
                ax.set_ylabel("images / s")
                ax.set_title(f"{device.upper()}, batch {batch}")
                ax.grid(alpha=0.3)


def run(args: argparse.Namespace):
    """Build, count and time every model; return the ``BenchmarkResult`` for ``ffnet bench classification``."""
    import torch

    from ffnet.engine.bench import BenchmarkResult, count_macs, count_parameters, setup_bench

    devices = setup_bench(args)
    seconds, rounds, warmup = args.seconds_per_measure, args.rounds, args.warmup
    if args.quick:
        seconds, rounds, warmup = 0.0, 1, 0

    names = list(args.models)
    if args.steps:
        names += [name + UNFUSED for name in args.models if name in FFNETS]
    builders = [(name, lambda name=name: build_model(name)) for name in names]
    if args.authors_code is not None:
        builders.append((AUTHORS, lambda: load_authors_ffnet_1(args.authors_code)))
    entries = []
    for name, builder in builders:
        module, resolution = builder()
        if args.quick:
            resolution = QUICK_SIZE
        params = count_parameters(module)
        macs = count_macs(module, torch.randn(1, 3, resolution, resolution))
        entries.append(Entry(name, module, resolution, params, macs))
        print(f"built {name}: {params / 1e6:.2f}M params, {entries[-1].macs / 1e9:.3f} GMACs at {resolution}",
              flush=True)

    benchmark(entries, devices, args.batch_sizes, rounds, warmup, seconds, args.compile,
              log=lambda line: print(line, flush=True))
    rows = make_rows(entries, devices, args.batch_sizes)
    mode = "torch.compile" if args.compile else "eager"
    notes = [
        "MACs (ffnet.engine.bench.count_macs: fvcore rules, 1 FMA = 1) of the deployed model for one image at the "
        "listed resolution; attention is counted as its two matmuls. Params are deployed counts.",
        f"Throughput: {mode}, float32, torch.inference_mode, eval mode, random weights; median of {rounds} "
        f"round(s), model order rotated every round; each round's figure is batch size / the median time of the "
        f"passes in >= {seconds:g} s (at least one pass); img/s = batch size / the median over rounds; "
        "spread = (max - min) / median over rounds; "
        "layout = the faster of contiguous and channels_last for that device and batch size (chosen per run). "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}.",
        "Resolution per model: " + ", ".join(f"{e.name} {e.resolution}" for e in entries) + ".",
        "FFNets are the re-parameterized models (timm.create_model(name, deploy=True): BN, 3x3 side branches, "
        "LayerScale and the final BN folded), then ffnet.core.fuse_for_inference (GELUs and residual additions "
        "run as oneDNN post-ops of the convs before them, CPU eager only; '(unfused)' rows skip this step); "
        "fastvit_sa12 is folded with timm's reparameterize_model.",
        "Paper Tab. 8 CPU reference (its CPU is not named): FFNet-1 is 0.93x ConvNeXt-T at batch 1 (38 vs 41 "
        "img/s) and 1.24x at batch 16 (62 vs 50); paper ratios for the other models are in the 'paper' columns.",
    ]
    if args.authors_code is not None:
        notes.append(f"'{AUTHORS}': the release's models/ffnet.py, deployed by its recursive fuse() (BN after the "
                     "last stage and LayerScale kept as separate ops, as in the release).")
    title = f"ImageNet classifiers: size and throughput ({mode})"
    if not args.quick:
        notes += target_notes(entries, devices, args.batch_sizes, args.compile)
    else:
        title = f"QUICK SMOKE RUN at {QUICK_SIZE}x{QUICK_SIZE}, not a benchmark"
        notes.insert(0, "Quick mode: every model at 64x64, one unwarmed pass per measurement. Do not quote.")
    return BenchmarkResult(name="classification", title=title, rows=rows, notes=notes,
                           plot=lambda path: plot(entries, devices, args.batch_sizes, path))

