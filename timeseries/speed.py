"""Training speed of FFNet-TS: forward + backward steps per second, ours vs the plain convs vs the authors'.

One training step = forward, MSE loss, backward (optimizer excluded: the same Adam in every model)
on a random ``(B, 96, M)`` batch in train mode, for the ETTh1 script's model (D 64, CIFFN ratio 2,
kernels 51 ∥ 5, dropout 0.7). Three models, timed in interleaved rounds
(:func:`ffnet.engine.bench.time_interleaved`), so a change of machine load hits all alike:

* ``ours``: FFNet-TS with the core's matrix-product depthwise and 1×1 convs
  (:mod:`ffnet.core.conv1d`);
* ``ours, nn.Conv1d``: the same weights with every conv back to ``nn.Conv1d`` (oneDNN), i.e. before
  the change; the two give the same outputs and gradients to float rounding;
* ``authors``: the release's ``time_series_forecasting/models/FFNet.py`` (``Model``, ETTh1 script
  arguments), imported from a checkout passed as ``authors_code`` (optional).

:func:`add_arguments` / :func:`speed_rows` / :func:`speed_result` are what ``ffnet timeseries bench``
calls; the result is written to ``docs/results/timeseries_speed.{md,csv}``.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import sys
import types
from pathlib import Path

SEQ_LEN = 96
SPEED_NAME = "timeseries_speed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variables", type=int, nargs="+", default=[1], help="variables M (default: 1)")
    parser.add_argument("--batch", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--authors-code", type=Path, metavar="DIR",
                        help="checkout of github.com/ysj9909/FFNet, to time the authors' model too")


def load_authors_model(checkout: Path, num_variables: int, horizon: int):
    """The release's ``Model`` with the ETTh1 script's arguments, imported from ``checkout`` unchanged.

    Its ``models`` / ``layers`` packages are imported from ``<checkout>/time_series_forecasting`` and
    removed from ``sys.modules`` again, so they shadow nothing afterwards.
    """
    root = Path(checkout) / "time_series_forecasting"
    if not (root / "models" / "FFNet.py").is_file():
        raise FileNotFoundError(f"--authors-code {checkout}: expected the FFNet repository with "
                                "time_series_forecasting/models/FFNet.py")
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("models.FFNet")
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("models", "layers", "utils"):
                del sys.modules[name]
    configs = types.SimpleNamespace(
        stem_ratio=6, downsample_ratio=2, ffn_ratio=2, num_blocks=[1], large_size=[51], small_size=[5],
        dims=[64, 64, 64, 64], dw_dims=[256, 256, 256, 256], enc_in=num_variables, small_kernel_merged=False,
        dropout=0.7, head_dropout=0.0, use_multi_scale=False, revin=1, affine=0, subtract_last=0, freq="h",
        seq_len=SEQ_LEN, individual=0, pred_len=horizon, kernel_size=25, patch_size=4, patch_stride=2,
        decomposition=0)
    return module.Model(configs)


def speed_rows(variables: list[int], batch: int = 128, horizon: int = 96, authors_code: Path | None = None,
               rounds: int = 5, warmup: int = 1, seconds: float = 0.0, log=print) -> list[dict]:
    """One row per ``M``: ms per step and steps/s of each model, and the speed-ups of ours."""
    import torch
    from torch import nn

    from ffnet.core.conv1d import plain_conv1d
    from ffnet.engine.bench import time_interleaved
    from ffnet.timeseries.model import FFNetTS
    from ffnet.timeseries.train import paper_configs

    rows = []
    for m in variables:
        torch.manual_seed(0)
        model_config, _ = paper_configs("ETTh1", m, horizon)
        models = {"ours": FFNetTS(model_config)}
        models["ours, nn.Conv1d"] = plain_conv1d(copy.deepcopy(models["ours"]))
        if authors_code is not None:
            models["authors"] = load_authors_model(authors_code, m, horizon)
        x, y = torch.randn(batch, SEQ_LEN, m), torch.randn(batch, horizon, m)

        def step(model: nn.Module) -> None:
            model.train().zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), y).backward()

        timings = time_interleaved({name: (lambda model=model: step(model)) for name, model in models.items()},
                                   rounds=rounds, warmup=warmup, seconds=seconds,
                                   log=lambda line: log(f"M={m}: {line}"))
        row = {"Variables": m, "Batch": batch}
        for name, timing in timings.items():
            row[f"{name} ms/step"] = round(1e3 * timing.median, 1)
            row[f"{name} steps/s"] = round(1.0 / timing.median, 2)
        base = timings["ours, nn.Conv1d"].median
        row["speed-up vs nn.Conv1d"] = round(base / timings["ours"].median, 2)
        if "authors" in timings:
            row["speed-up vs authors"] = round(timings["authors"].median / timings["ours"].median, 2)
        rows.append(row)
    return rows


def speed_result(args: argparse.Namespace):
    """The speed table as a :class:`ffnet.engine.bench.BenchmarkResult` (name ``timeseries_speed``)."""
    import os

    import torch

    from ffnet.engine.bench import BenchmarkResult

    rounds = getattr(args, "rounds", 5)
    rows = speed_rows(args.variables, args.batch, args.horizon, args.authors_code, rounds=rounds,
                      warmup=getattr(args, "warmup", 1), seconds=getattr(args, "seconds_per_measure", 0.0))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    notes = [
        f"CPU, {torch.get_num_threads()} torch threads; 1-minute load average at the end {load:.1f} on "
        f"{os.cpu_count()} CPUs. Median of {rounds} interleaved rounds (order rotated each round).",
        "A step = train-mode forward, MSE loss and backward on a random (batch, 96, M) input; the optimizer "
        "update is excluded (the same Adam for every model). Model: the ETTh1 script's (D 64, CIFFN ratio 2, "
        "kernels 51 || 5, dropout 0.7, horizon 96).",
        "'ours, nn.Conv1d' is the same model and weights with the core's matrix-product convs turned back into "
        "nn.Conv1d (ffnet.core.conv1d.plain_conv1d): the code before the change. Outputs and gradients agree to "
        "float rounding and dropout draws the same masks (tests/test_timeseries_conv1d.py).",
        "Why: oneDNN runs a depthwise Conv1d with a 51-tap kernel and the grouped 1x1 convs through its generic "
        "direct-convolution path, whose backward (aten::convolution_backward) dominated the step; the same sums "
        "as a banded matrix product per channel (depthwise) and an einsum (grouped 1x1) run on BLAS.",
    ]
    if args.authors_code is None:
        notes.append("The authors' model was not timed: pass --authors-code DIR (a checkout of ysj9909/FFNet).")
    else:
        notes.append("'authors': the release's time_series_forecasting/models/FFNet.py Model, imported unchanged "
                     "from the checkout, ETTh1 script arguments (one stage, no multi-scale fusion).")
    return BenchmarkResult(name=SPEED_NAME, title="FFNet-TS training speed (CPU, forward + backward)", rows=rows,
                           notes=notes)


def main(argv: list[str] | None = None) -> None:
    """Command-line hook: parse :func:`add_arguments` (+ ``--rounds``, ``--out-dir``), write the table."""
    from ffnet.engine.bench import write_result

    parser = argparse.ArgumentParser(prog="ffnet timeseries bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out-dir", default="docs/results")
    args = parser.parse_args(argv)
    write_result(speed_result(args), args.out_dir)


__all__ = ["SPEED_NAME", "add_arguments", "load_authors_model", "speed_rows", "speed_result", "main"]
