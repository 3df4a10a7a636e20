"""``ffnet superres ...``: upscale images, make bicubic LR folders, convert the authors' checkpoints,
train and test with the mmengine Runner (``bench`` is added by the CLI from :mod:`ffnet.superres.benchmark`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ffnet.engine.errors import UserError


def register(subparsers) -> None:
    group = subparsers.add_parser("superres", help="super-resolution: FFNet-SR and FFNet-SR-light")
    verbs = group.add_subparsers(dest="verb", required=True)

    upscale = verbs.add_parser("upscale", help="upscale an RGB image with a checkpoint (tiled, bounded memory)")
    upscale.add_argument("source", type=Path, help="input 8-bit RGB image")
    upscale.add_argument("target", type=Path, help="output image in an existing folder (format from the suffix; "
                                                   ".png is written band by band)")
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
    _add_device(upscale)
    upscale.set_defaults(func=_upscale)

    make_lr = verbs.add_parser("make-lr", help="write MATLAB-bicubic LR images X{s}/<name>x{s}.png from HR images")
    make_lr.add_argument("hr_dir", type=Path)
    make_lr.add_argument("out_dir", type=Path, help="e.g. DIV2K/DIV2K_train_LR_bicubic")
    make_lr.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4], choices=(2, 3, 4))
    make_lr.set_defaults(func=_make_lr)

    convert = verbs.add_parser("convert", help="authors' BasicSR checkpoint -> this project's mmengine checkpoint")
    convert.add_argument("--checkpoint", type=Path, help="the checkpoint to convert (the authors' BasicSR .pth)")
    convert.add_argument("--out", type=Path, help="the mmengine checkpoint to write")
    convert.add_argument("legacy_paths", nargs="*", type=Path, help=argparse.SUPPRESS)  # old form: SRC DST
    convert.add_argument("--param-key", default=None, help="'params' (default when present) or 'params_ema'")
    convert.set_defaults(func=_convert)

    from ffnet.engine import runner

    train = verbs.add_parser("train", help="`ffnet train` for an SR config, with --data-root and --init-from")
    runner.add_train_arguments(train)
    _add_data_root(train)
    train.add_argument("--init-from", type=Path, default=None,
                       help="initialise the generator from a checkpoint, ours or the authors' (e.g. the x2 model "
                            "for x3/x4: the differently shaped reconstruction conv is skipped)")
    train.set_defaults(func=_train)

    test = verbs.add_parser("test", help="`ffnet test` for an SR config (PSNR/SSIM on Y); reads the authors' "
                                         "checkpoints too")
    runner.add_test_arguments(test)
    _add_data_root(test)
    test.add_argument("--param-key", default=None, help="BasicSR entry to read ('params' or 'params_ema')")
    test.set_defaults(func=_test)


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding DIV2K/, Flickr2K/ and benchmark/ (sets every dataloader's data_root)")


def _sr_cfg_options(args: argparse.Namespace, stages: tuple[str, ...]) -> list[str]:
    options = list(args.cfg_options)
    if args.data_root is not None:
        if not args.data_root.is_dir():
            raise FileNotFoundError(f"--data-root {args.data_root}: no such folder; give the folder holding DIV2K/, "
                                    "Flickr2K/ and benchmark/")
        options += [f"{stage}_dataloader.dataset.data_root={args.data_root}" for stage in stages]
    return options


def _train(args: argparse.Namespace) -> None:
    from ffnet.engine import runner

    args.cfg_options = _sr_cfg_options(args, ("train", "val", "test"))
    if args.init_from is not None:
        from ffnet.superres.checkpoint import generator_state_dict

        generator_state_dict(args.init_from)  # refuse an unreadable or unsafe file before the run starts
        args.cfg_options.append(f"model.init_from={args.init_from}")
    runner.train(args)


def _test(args: argparse.Namespace) -> None:
    from ffnet.engine import runner
    from ffnet.engine.checkpoints import load_state_dict
    from ffnet.superres.checkpoint import generator_state_dict
    from ffnet.superres.models import architecture_from_state_dict

    checkpoint = args.checkpoint or args.legacy_checkpoint
    if checkpoint is None:
        raise UserError("give the checkpoint to evaluate with --checkpoint FILE")
    state = generator_state_dict(checkpoint, args.param_key)
    args.cfg_options = _sr_cfg_options(args, ("test",))
    config_scale = runner.load_config(args).model.generator.scale
    try:
        checkpoint_scale = architecture_from_state_dict(state)["scale"]
    except ValueError as err:
        raise UserError(f"{checkpoint}: {err}") from None
    if checkpoint_scale != config_scale:
        raise UserError(f"{checkpoint}: is a x{checkpoint_scale} model but the config tests x{config_scale}; "
                        f"use a x{checkpoint_scale} config or a x{config_scale} checkpoint")
    from mmengine.model import is_model_wrapper

    test_runner = runner.build_runner(args, "test")
    model = test_runner.model.module if is_model_wrapper(test_runner.model) else test_runner.model
    load_state_dict(model.generator, state, source=str(checkpoint), target=f"the generator of {Path(args.config).name}")
    print(f"loaded {checkpoint}: all {len(state)} generator tensors", flush=True)
    test_runner.test()


def _upscale(args: argparse.Namespace) -> None:
    from ffnet.core import reparameterize
    from ffnet.superres.checkpoint import load_generator
    from ffnet.superres.data import check_output_image_path
    from ffnet.superres.upscale import upscale_file

    if args.tile < 1 or (args.overlap is not None and args.overlap < 0):
        raise UserError(f"--tile must be >= 1 and --overlap >= 0, got --tile {args.tile} --overlap {args.overlap}")
    check_output_image_path(args.target)
    device = _device(args.device)
    model = load_generator(args.checkpoint, args.param_key)
    if model.scale != args.scale:
        raise UserError(f"{args.checkpoint}: trained for x{model.scale}, not x{args.scale}; "
                        f"pass --scale {model.scale} or a x{args.scale} checkpoint")
    model = model.eval().to(device)
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

    legacy = list(args.legacy_paths)
    source = args.checkpoint or (legacy.pop(0) if legacy else None)
    target = args.out or (legacy.pop(0) if legacy else None)
    if source is None or target is None or legacy:
        raise UserError("give the checkpoint to convert and the file to write: --checkpoint SRC --out DST")
    model = load_generator(source, args.param_key)
    save_as_mmengine_checkpoint(model, target)
    print(f"{source} -> {target}: {model.architecture()}")
