"""``ffnet sr ...``: upscale images, make bicubic LR folders, convert the authors' checkpoints,
train and test with the mmengine Runner."""
from __future__ import annotations

import argparse
from pathlib import Path

from ffnet import engine


def register(subparsers) -> None:
    sr = subparsers.add_parser("sr", help="super-resolution: FFNet-SR and FFNet-SR-light")
    commands = sr.add_subparsers(dest="sr_command", required=True)

    upscale = commands.add_parser("upscale", help="upscale an RGB image with a checkpoint (tiled, bounded memory)")
    upscale.add_argument("source", type=Path, help="input 8-bit RGB image")
    upscale.add_argument("target", type=Path, help="output image (format from the suffix, e.g. .png)")
    upscale.add_argument("--scale", type=int, required=True, choices=(2, 3, 4),
                         help="upscaling factor; must be the one the checkpoint was trained for")
    upscale.add_argument("--checkpoint", required=True, type=Path,
                         help="this project's mmengine checkpoint or the authors' BasicSR .pth")
    upscale.add_argument("--param-key", default=None, help="BasicSR entry to read ('params' or 'params_ema')")
    upscale.add_argument("--tile", type=int, default=256, help="LR tile size in pixels (default 256)")
    upscale.add_argument("--overlap", type=int, default=None,
                         help="LR context pixels around each tile (default: the receptive radius, exact)")
    upscale.add_argument("--no-reparameterize", action="store_true",
                         help="keep the train-time model instead of the deployed (re-parameterized) one")
    upscale.add_argument("--device", default="cpu", help="torch device (default cpu)")
    upscale.set_defaults(func=_upscale)

    make_lr = commands.add_parser("make-lr", help="write MATLAB-bicubic LR images X{s}/<name>x{s}.png from HR images")
    make_lr.add_argument("hr_dir", type=Path)
    make_lr.add_argument("out_dir", type=Path, help="e.g. DIV2K/DIV2K_train_LR_bicubic")
    make_lr.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4], choices=(2, 3, 4))
    make_lr.set_defaults(func=_make_lr)

    convert = commands.add_parser("convert", help="authors' BasicSR checkpoint -> this project's mmengine checkpoint")
    convert.add_argument("source", type=Path)
    convert.add_argument("target", type=Path)
    convert.add_argument("--param-key", default=None, help="'params' (default when present) or 'params_ema'")
    convert.set_defaults(func=_convert)

    train = commands.add_parser("train", help="`ffnet train` for an SR config, with --data-root and --init-from")
    engine.add_train_arguments(train)
    _add_data_root(train)
    train.add_argument("--init-from", type=Path, default=None,
                       help="initialise the generator from a checkpoint, ours or the authors' (e.g. the x2 model "
                            "for x3/x4: the differently shaped reconstruction conv is skipped)")
    train.set_defaults(func=_train)

    test = commands.add_parser("test", help="`ffnet test` for an SR config (PSNR/SSIM on Y); reads the authors' "
                                            "checkpoints too")
    engine.add_test_arguments(test)
    _add_data_root(test)
    test.add_argument("--param-key", default=None, help="BasicSR entry to read ('params' or 'params_ema')")
    test.set_defaults(func=_test)


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding DIV2K/, Flickr2K/ and benchmark/ (sets every dataloader's data_root)")


def _sr_cfg_options(args: argparse.Namespace, stages: tuple[str, ...]) -> list[str]:
    options = list(args.cfg_options)
    if args.data_root is not None:
        options += [f"{stage}_dataloader.dataset.data_root={args.data_root}" for stage in stages]
    return options


def _train(args: argparse.Namespace) -> None:
    args.cfg_options = _sr_cfg_options(args, ("train", "val", "test"))
    if args.init_from is not None:
        if not args.init_from.is_file():
            raise FileNotFoundError(f"--init-from checkpoint {args.init_from} does not exist")
        args.cfg_options.append(f"model.init_from={args.init_from}")
    engine.train(args)


def _test(args: argparse.Namespace) -> None:
    from mmengine.config import Config

    from ffnet.superres.checkpoint import generator_state_dict, is_mmengine_checkpoint, save_as_mmengine_checkpoint
    from ffnet.superres.models import model_from_state_dict

    args.cfg_options = _sr_cfg_options(args, ("test",))
    config_scale = Config.fromfile(str(engine.resolve_config_path(args.config))).model.generator.scale
    model = model_from_state_dict(generator_state_dict(args.checkpoint, args.param_key))
    if model.scale != config_scale:
        raise ValueError(f"checkpoint {args.checkpoint} is a x{model.scale} model but the config tests x{config_scale}; "
                         f"use a x{model.scale} config or a x{config_scale} checkpoint")
    if args.param_key is not None or not is_mmengine_checkpoint(args.checkpoint):
        converted = Path(args.work_dir or "work_dirs") / f"converted_{Path(args.checkpoint).stem}.pth"
        save_as_mmengine_checkpoint(model, converted)
        print(f"converted {args.checkpoint} into {converted}")
        args.checkpoint = str(converted)
    engine.test(args)


def _upscale(args: argparse.Namespace) -> None:
    import torch

    from ffnet.core import reparameterize
    from ffnet.superres.checkpoint import load_generator
    from ffnet.superres.upscale import upscale_file

    model = load_generator(args.checkpoint, args.param_key)
    if model.scale != args.scale:
        raise ValueError(f"checkpoint {args.checkpoint} was trained for x{model.scale}, not x{args.scale}; "
                         f"pass --scale {model.scale} or a x{args.scale} checkpoint")
    model = model.eval().to(torch.device(args.device))
    if not args.no_reparameterize:
        model = reparameterize(model)
    (h, w), (sh, sw) = upscale_file(model, args.source, args.target, tile=args.tile, overlap=args.overlap)
    print(f"{args.source} ({w}x{h}) -> {args.target} ({sw}x{sh}), x{model.scale}")


def _make_lr(args: argparse.Namespace) -> None:
    from ffnet.superres.data import make_lr_folder

    written = make_lr_folder(args.hr_dir, args.out_dir, args.scales)
    print(f"wrote {len(written)} LR images under {args.out_dir}")


def _convert(args: argparse.Namespace) -> None:
    from ffnet.superres.checkpoint import load_generator, save_as_mmengine_checkpoint

    model = load_generator(args.source, args.param_key)
    save_as_mmengine_checkpoint(model, args.target)
    print(f"{args.source} -> {args.target}: {model.architecture()}")
