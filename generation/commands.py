"""``ffnet generation ...``: train, extract latents, sample image grids, FID/IS, convert official U-DiT weights.

(``bench`` is added by the CLI from :mod:`ffnet.generation.benchmark`.)
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from ffnet.engine.runner import add_train_arguments

    group = subparsers.add_parser("generation", help="class-conditional latent diffusion with U-DiT / U-FFNet "
                                                     "backbones")
    verbs = group.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train with the mmengine Runner (DDP: torchrun ... --launcher pytorch)")
    add_train_arguments(train)
    data = train.add_mutually_exclusive_group()
    data.add_argument("--data", help="image folder in ImageNet layout root/<class>/<image>")
    data.add_argument("--latents", help="folder written by `ffnet generation extract-latents`")
    train.add_argument("--vae", help="local diffusers AutoencoderKL folder (needed with --data)")
    train.add_argument("--max-iters", type=int)
    train.add_argument("--batch-size", type=int, help="per-process batch size")
    train.set_defaults(func=_train)

    extract = verbs.add_parser("extract-latents", help="encode an image folder once with the VAE, for --latents")
    extract.add_argument("--data", required=True, help="image folder in ImageNet layout")
    extract.add_argument("--vae", required=True, help="local diffusers AutoencoderKL folder")
    extract.add_argument("--out", required=True, help="output folder")
    extract.add_argument("--image-size", type=int, default=256)
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--no-hflip", action="store_true", help="do not also store the flipped images' latents")
    extract.add_argument("--num-workers", type=int, default=4)
    _add_device(extract)
    extract.set_defaults(func=_extract)

    sample = verbs.add_parser("sample", help="write a grid of class-conditional samples")
    _add_sampling_arguments(sample)
    sample.add_argument("--classes", type=int, nargs="+", required=True, help="class ids, one grid row each")
    sample.add_argument("--num", type=int, default=8, help="samples per class")
    sample.add_argument("--out", required=True, help="PNG path")
    sample.set_defaults(func=_sample)

    fid = verbs.add_parser("fid", help="sample N images and compute FID and IS against a reference folder")
    _add_sampling_arguments(fid)
    fid.add_argument("--ref", required=True, help="reference image folder (searched recursively)")
    fid.add_argument("--num", type=int, default=50_000, help="number of generated images")
    fid.add_argument("--inception", help="local torch-fidelity Inception weights (pt_inception-2015-12-05)")
    fid.add_argument("--is-splits", type=int, default=10)
    fid.add_argument("--num-workers", type=int, default=8, help="processes loading the reference images")
    fid.add_argument("--out", help="also write the metrics as JSON here")
    fid.set_defaults(func=_fid)

    convert = verbs.add_parser("convert", help="turn an official U-DiT checkpoint into an ffnet one")
    convert.add_argument("--checkpoint", help="official .pt (a state dict, or a DiT-style dict with 'ema' or 'model')")
    convert.add_argument("--out", help="output checkpoint for `ffnet generation sample/fid`")
    convert.add_argument("legacy_paths", nargs="*", help=argparse.SUPPRESS)  # `gen convert-udit SRC DST`
    convert.add_argument("--arch", choices=["U-DiT-S", "U-DiT-B", "U-DiT-L"],
                         help="default: the size the weights have")
    convert.add_argument("--vae", help="record this VAE folder in the checkpoint's config")
    convert.set_defaults(func=_convert)


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint of `ffnet generation train` or `convert` (EMA weights)")
    parser.add_argument("--vae", help="local AutoencoderKL folder (default: the one in the checkpoint's config)")
    parser.add_argument("--steps", type=int, default=250, help="DDPM sampling steps")
    parser.add_argument("--cfg-scale", type=float, default=1.5, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    _add_device(parser)


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _train(args: argparse.Namespace) -> None:
    """``ffnet.engine.runner.train`` (the work dir held by a run lock) with the data/VAE flags as config overrides."""
    from ffnet.engine import runner
    from ffnet.engine.errors import UserError

    options = []
    if args.latents is not None:
        options += ["train_dataloader.dataset.type=DiffusionLatentFolder",
                    f"train_dataloader.dataset.root={args.latents}"]
    elif args.data is not None:
        options.append(f"train_dataloader.dataset.root={args.data}")
    if args.vae is not None:
        options.append(f"model.vae_path={args.vae}")
    if args.max_iters is not None:
        options.append(f"train_cfg.max_iters={args.max_iters}")
    if args.batch_size is not None:
        options.append(f"train_dataloader.batch_size={args.batch_size}")
    if not Path(args.config).exists() and not Path(args.config).suffix:
        args.config += ".py"  # a shipped config named without its extension
    if args.data is None and args.latents is None:
        from mmengine.config import Config

        dataset = Config.fromfile(str(runner.resolve_config_path(args.config))).train_dataloader.dataset
        if dataset.get("root") is None and not any(o.startswith("train_dataloader.dataset.root=")
                                                   for o in args.cfg_options):
            raise UserError("no training data: give --data DIR (ImageNet layout root/<class>/<image>) "
                            "or --latents DIR (from `ffnet generation extract-latents`)")
    args.cfg_options = options + list(args.cfg_options)
    runner.train(args)


def _extract(args: argparse.Namespace) -> None:
    from ffnet.generation.data import extract_latents

    out = extract_latents(args.data, args.vae, args.out, args.image_size, args.batch_size, not args.no_hflip,
                          args.num_workers, _device(args.device))
    print(f"latents written to {out}")


def _sample(args: argparse.Namespace) -> None:
    from ffnet.generation.sample import generate, load_generator, save_grid

    generator = load_generator(args.checkpoint, args.vae, _device(args.device))
    generator.check_classes(args.classes)
    labels = [c for c in args.classes for _ in range(args.num)]
    images = generate(generator, labels, args.steps, args.cfg_scale, args.seed, args.batch_size, progress=True)
    print(f"wrote {save_grid(images, args.out, nrow=args.num)}")


def _fid(args: argparse.Namespace) -> None:
    import json

    from ffnet.engine.files import write_atomic
    from ffnet.generation.fid import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.ref, args.num, args.inception, args.vae, args.steps,
                                  args.cfg_scale, args.batch_size, args.seed, _device(args.device), args.is_splits,
                                  num_workers=args.num_workers)
    text = json.dumps(metrics, indent=1)
    print(text)
    if args.out:
        write_atomic(args.out, text + "\n")


def _convert(args: argparse.Namespace) -> None:
    from ffnet.engine.errors import UserError
    from ffnet.generation.convert import convert_official_checkpoint

    legacy = list(args.legacy_paths) + [None, None]
    source, out = args.checkpoint or legacy[0], args.out or legacy[1]
    if source is None or out is None or len(args.legacy_paths) > 2:
        raise UserError("give the official checkpoint with --checkpoint FILE and the output with --out FILE")
    print(f"wrote {convert_official_checkpoint(source, out, args.arch, args.vae)}")
