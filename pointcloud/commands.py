"""CLI groups ``ffnet pointcloud`` (standalone train / test / predict) and ``ffnet pointcept`` (Pointcept's own entry).

Neither imports anything of the other ffnet domains, so both run in an environment that has only the
``pointcloud`` extra (such as the one for upstream Pointcept: ``scripts/install.sh --pointcept``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
CONFIG_HELP = ("Pointcept-format config: a path or a shipped name (scannet-ffnet, scannet200-ffnet, s3dis-ffnet, "
               "scannet-ffnet-paper, scannet-ffnet-dw)")
DEVICE_HELP = "torch device (default: cuda if available, else cpu)"


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help=CONFIG_HELP)
    parser.add_argument("--data-root", help="dataset folder (overrides the config's data_root for every split)")
    parser.add_argument("--work-dir", help="logs, checkpoints and predictions (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override Pointcept config entries, e.g. epoch=100 eval_epoch=100 batch_size=4")
    parser.add_argument("--num-workers", type=int, help="data-loader workers per process (default: the config's)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none",
                        help="'pytorch' under torchrun for DDP (batch_size in the config is the total)")


def register(subparsers) -> None:
    _register_pointcloud(subparsers)
    _register_pointcept(subparsers)


def _register_pointcloud(subparsers) -> None:
    group = subparsers.add_parser("pointcloud", help="FFNet point-cloud segmentation on Pointcept-format data "
                                                     "(no Pointcept needed)")
    commands = group.add_subparsers(dest="pointcloud_command", required=True)

    train = commands.add_parser("train", help="train with mmengine's Runner from a Pointcept-format config")
    _add_run_arguments(train)
    train.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                       help="resume from CHECKPOINT, or from the latest checkpoint in the work dir")
    train.set_defaults(func=_train)

    test = commands.add_parser("test", help="TTA fragment-voting evaluation (mIoU / mAcc / allAcc) of a checkpoint")
    _add_run_arguments(test)
    test.add_argument("--checkpoint", required=True, help="checkpoint written by `ffnet pointcloud train`")
    test.set_defaults(func=_test)

    predict = commands.add_parser("predict", help="per-point labels of one scene (.npy) and a top-down PNG")
    predict.add_argument("config", metavar="CONFIG", nargs="?",
                         help="config to use instead of the one stored in the checkpoint")
    predict.add_argument("--checkpoint", required=True, help="checkpoint written by `ffnet pointcloud train`")
    predict.add_argument("--scene", required=True, help="a scene folder of .npy files, or a release .pth scene")
    predict.add_argument("--out", default=".", help="output folder (default: current)")
    predict.add_argument("--views", type=int, default=1,
                         help="how many of the config's TTA views to vote over (default 1; 0 = all)")
    predict.add_argument("--device", help=DEVICE_HELP)
    predict.set_defaults(func=_predict)


def _register_pointcept(subparsers) -> None:
    group = subparsers.add_parser(
        "pointcept",
        help="run upstream Pointcept's own train/test with the FFNet backbone registered (needs a Pointcept "
             "checkout; runs on CPU too)")
    modes = group.add_subparsers(dest="pointcept_command", required=True)
    for mode in ("train", "test"):
        parser = modes.add_parser(mode, help=f"Pointcept's tools/{mode}.py with ffnet.pointcloud.pointcept imported")
        parser.add_argument("config", metavar="CONFIG", help=CONFIG_HELP)
        parser.add_argument("--pointcept-root", type=Path,
                            help="a Pointcept checkout (the folder holding pointcept/); default: $POINTCEPT_ROOT")
        parser.add_argument("--device", help=DEVICE_HELP + "; other than cuda: one process, AMP off")
        parser.add_argument("--data-root", help="dataset folder (sets data_root of the train, val and test splits)")
        parser.add_argument("--work-dir", help="Pointcept's save_path: logs, model/, result/ "
                                               "(default: work_dirs/pointcept/<config name>)")
        if mode == "train":
            parser.add_argument("--checkpoint", help="weights to start from (Pointcept's weight=)")
            parser.add_argument("--resume", action="store_true",
                                help="resume the run saved in --checkpoint (epoch, optimizer, scheduler)")
        else:
            parser.add_argument("--checkpoint", required=True,
                                help="weights to test, e.g. WORK_DIR/model/model_best.pth (Pointcept's weight=)")
        parser.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs) on this machine")
        parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                            help="Pointcept config overrides, e.g. epoch=100 eval_epoch=100 batch_size=2 num_worker=2")
        parser.set_defaults(func=_pointcept, pointcept_mode=mode)


def _runner(args, mode: str):
    from ffnet.pointcloud.trainer import build_runner, parse_options

    return build_runner(args.config, args.work_dir, options=parse_options(args.cfg_options), data_root=args.data_root,
                        launcher=args.launcher, num_workers=args.num_workers,
                        resume=getattr(args, "resume", None) if mode == "train" else None,
                        load_from=args.checkpoint if mode == "test" else None)


def _train(args) -> None:
    from ffnet.pointcloud.trainer import parse_options, train

    train(args.config, args.work_dir, options=parse_options(args.cfg_options), data_root=args.data_root,
          launcher=args.launcher, num_workers=args.num_workers, resume=args.resume)


def _test(args) -> None:
    print(_runner(args, "test").test())


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _predict(args) -> None:
    from ffnet.pointcloud.predict import predict_scene

    result = predict_scene(args.checkpoint, args.scene, args.out, args.config, args.views or None,
                           args.device or _default_device())
    print(f"labels: {result['npy']}\ntop-down view: {result['png']}")
    if "mIoU" in result:
        print(f"scene mIoU {result['mIoU']:.4f}, allAcc {result['allAcc']:.4f}")


def pointcept_root(given: Path | None) -> Path:
    """The Pointcept checkout from ``--pointcept-root`` or ``$POINTCEPT_ROOT``, checked to hold ``pointcept/``."""
    import os

    if given is None:
        if not os.environ.get("POINTCEPT_ROOT"):
            raise ValueError("no Pointcept checkout: pass --pointcept-root DIR or set POINTCEPT_ROOT")
        given = Path(os.environ["POINTCEPT_ROOT"])
    root = given.expanduser().resolve()
    if not (root / "pointcept" / "__init__.py").is_file():
        raise ValueError(f"{root} is not a Pointcept checkout (expected {root / 'pointcept' / '__init__.py'})")
    return root


def pointcept_argv(args, config: Path) -> list[str]:
    """Pointcept's ``tools/train.py`` / ``tools/test.py`` arguments for the parsed ``ffnet pointcept`` ones."""
    options = [f"save_path={args.work_dir or Path('work_dirs') / 'pointcept' / config.stem}"]
    if args.data_root:
        options += [f"data.{split}.data_root={args.data_root}" for split in ("train", "val", "test")]
    if args.checkpoint:
        options.append(f"weight={args.checkpoint}")
    if getattr(args, "resume", False):
        if not args.checkpoint:
            raise ValueError("--resume needs --checkpoint (e.g. WORK_DIR/model/model_last.pth)")
        options.append("resume=True")
    return ["--config-file", str(config), "--num-gpus", str(args.num_gpus), "--options", *options, *args.options]


def _pointcept(args) -> None:
    root = pointcept_root(args.pointcept_root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from ffnet.pointcloud import pointcept
    from ffnet.pointcloud.trainer import resolve_config

    argv = pointcept_argv(args, resolve_config(args.config).resolve())
    pointcept.launch(args.pointcept_mode, argv, device=args.device)
