"""``ffnet seg deploy``: fold a trained FFNet segmentor (UperNet or FFNet-seg) for deployment."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    seg = subparsers.add_parser("seg", help="semantic segmentation: FFNet UperNet and FFNet-seg (mmseg)")
    commands = seg.add_subparsers(dest="seg_command", required=True)
    deploy = commands.add_parser(
        "deploy", help="re-parameterize a trained segmentor; writes weights and a deploy=True config for ffnet test")
    add_deploy_arguments(deploy)
    deploy.set_defaults(func=run_deploy)


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the training config")
    parser.add_argument("checkpoint", help="trained checkpoint (from ffnet train / mmseg)")
    parser.add_argument("--out", required=True, type=Path,
                        help="deployed checkpoint to write; its config goes next to it with the suffix .py")
    parser.add_argument("--check-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="input size of the train-time vs folded output check (default 256 256)")
    parser.add_argument("--atol", type=float, default=1e-3, help="largest accepted output difference (default 1e-3)")


def run_deploy(args: argparse.Namespace) -> None:
    from ffnet.segmentation.deploy import deploy_checkpoint
    from ffnet.engine import resolve_config_path

    config = resolve_config_path(args.config)
    out, cfg_path, diff = deploy_checkpoint(str(config), args.checkpoint, str(args.out), tuple(args.check_size),
                                            args.atol)
    print(f"wrote {out} and {cfg_path} (max |train-time - folded| = {diff:.2e}); evaluate with: "
          f"ffnet test {cfg_path} {out}")
