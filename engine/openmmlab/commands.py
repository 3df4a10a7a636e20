"""The ``export`` verb of ``ffnet detection`` and ``ffnet segmentation``: fold a trained model for deployment.

Argument parsing only; the domain's ``deploy`` module (``deploy_checkpoint``) is imported when the verb runs.
"""
from __future__ import annotations

import argparse
import functools
import importlib
from pathlib import Path

from ffnet.engine.errors import UserError


def add_export_verb(verbs, model: str, deploy_module: str, checked: str) -> argparse.ArgumentParser:
    """Add ``export`` to a domain group's ``verbs``: fold a trained ``model`` (e.g. ``'detector'``).

    ``deploy_module`` names the module whose ``deploy_checkpoint(config, checkpoint, out, size, atol)``
    does the work; ``checked`` says what the train-time vs folded check compares (``'backbone features'``).
    """
    export = verbs.add_parser(
        "export", help=f"fold a trained {model} for deployment: writes re-parameterized weights and a "
                       "deploy=True config for ffnet test")
    export.add_argument("config", help="the training config (a path, or the name of a shipped config)")
    export.add_argument("--checkpoint", help=f"trained {model} checkpoint (written by ffnet train)")
    export.add_argument("legacy_checkpoint", nargs="?", help=argparse.SUPPRESS)
    export.add_argument("--out", required=True, type=Path,
                        help="deployed checkpoint to write; its config goes next to it with the suffix .py")
    export.add_argument("--check-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help=f"input size of the train-time vs folded {checked} check (default 256 256)")
    export.add_argument("--atol", type=float, default=1e-3,
                        help=f"largest accepted difference of the {checked} (default 1e-3)")
    export.set_defaults(func=functools.partial(run_export, deploy_module=deploy_module))
    return export


def run_export(args: argparse.Namespace, deploy_module: str) -> None:
    """Fold ``args.checkpoint`` with ``<deploy_module>.deploy_checkpoint`` and say how to evaluate the result."""
    from ffnet.engine.runner import resolve_config_path

    checkpoint = args.checkpoint or args.legacy_checkpoint
    if checkpoint is None:
        raise UserError("no checkpoint given: pass the trained model with --checkpoint FILE")
    if args.checkpoint and args.legacy_checkpoint:
        raise UserError(f"two checkpoints given ({args.checkpoint} and {args.legacy_checkpoint}): pass one, "
                        "with --checkpoint FILE")
    if "://" not in checkpoint and not Path(checkpoint).is_file():
        raise UserError(f"--checkpoint {checkpoint}: no such file; give the trained checkpoint written by "
                        "ffnet train (e.g. work_dirs/<config>/epoch_36.pth)")
    try:
        config = resolve_config_path(args.config)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    deploy_checkpoint = importlib.import_module(deploy_module).deploy_checkpoint
    out, cfg_path, diff = deploy_checkpoint(str(config), checkpoint, str(args.out), tuple(args.check_size), args.atol)
    print(f"wrote {out} and {cfg_path} (max |train-time - folded| = {diff:.2e}); evaluate with: "
          f"ffnet test {cfg_path} --checkpoint {out}")
