"""CLI groups ``ffnet pc`` (standalone train / test / predict) and ``ffnet pointcept`` (Pointcept's own entry)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="Pointcept-format config: a path or a shipped name (scannet-ffnet, scannet200-ffnet, "
                             "s3dis-ffnet, scannet-ffnet-paper, scannet-ffnet-dw)")
    parser.add_argument("--data-root", help="dataset folder (overrides the config's data_root for every split)")
    parser.add_argument("--work-dir", help="logs, checkpoints and predictions (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override Pointcept config entries, e.g. epoch=100 eval_epoch=100 batch_size=4")
    parser.add_argument("--num-workers", type=int, help="data-loader workers per process (default: the config's)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none",
                        help="'pytorch' under torchrun for DDP (batch_size in the config is the total)")


def register(subparsers) -> None:
    pc = subparsers.add_parser("pc", help="FFNet point-cloud segmentation on Pointcept-format data "
                                          "(no Pointcept needed)")
    commands = pc.add_subparsers(dest="pc_command", required=True)

    train = commands.add_parser("train", help="train with mmengine's Runner from a Pointcept-format config")
    _add_run_arguments(train)
    train.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                       help="resume from CHECKPOINT, or from the latest checkpoint in the work dir")
    train.set_defaults(func=_train)

    test = commands.add_parser("test", help="TTA fragment-voting evaluation (mIoU / mAcc / allAcc) of a checkpoint")
    _add_run_arguments(test)
    test.add_argument("--checkpoint", required=True, help="checkpoint written by `ffnet pc train`")
    test.set_defaults(func=_test)

    predict = commands.add_parser("predict", help="per-point labels of one scene (.npy) and a top-down PNG")
    predict.add_argument("--checkpoint", required=True, help="checkpoint written by `ffnet pc train`")
    predict.add_argument("--scene", required=True, help="a scene folder of .npy files, or a release .pth scene")
    predict.add_argument("--config", help="config to use instead of the one stored in the checkpoint")
    predict.add_argument("--out", default=".", help="output folder (default: current)")
    predict.add_argument("--views", type=int, default=1,
                         help="how many of the config's TTA views to vote over (default 1; 0 = all)")
    predict.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    predict.set_defaults(func=_predict)

    pointcept = subparsers.add_parser(
        "pointcept",
        help="run Pointcept's own train/test with the FFNet backbone registered (needs a Pointcept checkout)")
    modes = pointcept.add_subparsers(dest="pointcept_command", required=True)
    for mode in ("train", "test"):
        parser = modes.add_parser(mode, help=f"Pointcept's tools/{mode}.py with ffnet.pointcloud.pointcept imported")
        parser.add_argument("--pointcept-root", required=True, type=Path, help="a Pointcept checkout (git clone)")
        parser.add_argument("--config", required=True, help="Pointcept-format config (path or shipped name)")
        parser.add_argument("--num-gpus", type=int, default=1)
        parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                            help="Pointcept config overrides, e.g. save_path=exp/scannet-ffnet weight=PATH")
        parser.set_defaults(func=_pointcept, pointcept_mode=mode)


def _runner(args, mode: str):
    from ffnet.pointcloud.trainer import build_runner, parse_options

    return build_runner(args.config, args.work_dir, options=parse_options(args.cfg_options), data_root=args.data_root,
                        launcher=args.launcher, num_workers=args.num_workers,
                        resume=getattr(args, "resume", None) if mode == "train" else None,
                        load_from=args.checkpoint if mode == "test" else None)


def _train(args) -> None:
    _runner(args, "train").train()


def _test(args) -> None:
    print(_runner(args, "test").test())


def _predict(args) -> None:
    from ffnet.pointcloud.predict import predict_scene

    result = predict_scene(args.checkpoint, args.scene, args.out, args.config, args.views or None, args.device)
    print(f"labels: {result['npy']}\ntop-down view: {result['png']}")
    if "mIoU" in result:
        print(f"scene mIoU {result['mIoU']:.4f}, allAcc {result['allAcc']:.4f}")


def _pointcept(args) -> None:
    root = args.pointcept_root.resolve()
    if not (root / "pointcept" / "__init__.py").is_file():
        raise FileNotFoundError(f"{root} is not a Pointcept checkout: expected {root / 'pointcept' / '__init__.py'}")
    sys.path.insert(0, str(root))
    from ffnet.pointcloud import pointcept
    from ffnet.pointcloud.trainer import resolve_config

    argv = ["--config-file", str(resolve_config(args.config)), "--num-gpus", str(args.num_gpus)]
    if args.options:
        argv += ["--options", *args.options]
    pointcept.launch(args.pointcept_mode, argv)
