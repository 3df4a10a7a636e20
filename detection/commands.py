"""``ffnet det deploy``: fold a trained FFNet detector for deployment."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    det = subparsers.add_parser("det", help="object detection: FFNet Cascade Mask R-CNN (mmdet)")
    commands = det.add_subparsers(dest="det_command", required=True)
    deploy = commands.add_parser(
        "deploy", help="re-parameterize a trained detector; writes weights and a deploy=True config for ffnet test")
    deploy.add_argument("config", help="the training config")
    deploy.add_argument("checkpoint", help="trained checkpoint (from ffnet train / mmdet)")
    deploy.add_argument("--out", required=True, type=Path,
                        help="deployed checkpoint to write; its config goes next to it with the suffix .py")
    deploy.add_argument("--check-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="input size of the train-time vs folded feature check (default 256 256)")
    deploy.add_argument("--atol", type=float, default=1e-3, help="largest accepted feature difference (default 1e-3)")
    deploy.set_defaults(func=run_deploy)


def run_deploy(args: argparse.Namespace) -> None:
    from ffnet.detection.deploy import deploy_checkpoint
    from ffnet.engine import resolve_config_path

    config = resolve_config_path(args.config)
    out, cfg_path, diff = deploy_checkpoint(str(config), args.checkpoint, str(args.out), tuple(args.check_size),
                                            args.atol)
    print(f"wrote {out} and {cfg_path} (max |train-time - folded| = {diff:.2e}); evaluate with: "
          f"ffnet test {cfg_path} {out}")
