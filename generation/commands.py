"""``ffnet gen ...``: train, extract latents, sample image grids, FID/IS, convert official U-DiT weights."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    gen = subparsers.add_parser("gen", help="class-conditional latent diffusion with U-DiT / U-FFNet backbones")
    commands = gen.add_subparsers(dest="gen_command", required=True)

    train = commands.add_parser("train", help="train with the mmengine Runner (DDP: torchrun ... --launcher pytorch)")
    train.add_argument("config", help="config file or shipped name (udit_b, uffnet_b, uffnet_b_plain, ...)")
    train.add_argument("--work-dir", required=True, help="logs and checkpoints go here")
    data = train.add_mutually_exclusive_group()
    data.add_argument("--data", help="image folder in ImageNet layout root/<class>/<image>")
    data.add_argument("--latents", help="folder written by `ffnet gen extract-latents`")
    train.add_argument("--vae", help="local diffusers AutoencoderKL folder (needed with --data)")
    train.add_argument("--resume", nargs="?", const=True, default=False,
                       help="resume from the latest checkpoint of --work-dir, or from the given checkpoint")
    train.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    train.add_argument("--amp", action="store_true", help="mixed precision (mmengine AmpOptimWrapper; needs CUDA)")
    train.add_argument("--max-iters", type=int)
    train.add_argument("--batch-size", type=int, help="per-process batch size")
    train.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                       help="override config entries, e.g. train_dataloader.num_workers=4")
    train.set_defaults(func=_train)

    extract = commands.add_parser("extract-latents", help="encode an image folder once with the VAE, for --latents")
    extract.add_argument("--data", required=True, help="image folder in ImageNet layout")
    extract.add_argument("--vae", required=True, help="local diffusers AutoencoderKL folder")
    extract.add_argument("--out", required=True, help="output folder")
    extract.add_argument("--image-size", type=int, default=256)
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--no-hflip", action="store_true", help="do not also store the flipped images' latents")
    extract.add_argument("--num-workers", type=int, default=4)
    extract.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    extract.set_defaults(func=_extract)

    sample = commands.add_parser("sample", help="write a grid of class-conditional samples")
    _add_sampling_arguments(sample)
    sample.add_argument("--classes", type=int, nargs="+", required=True, help="class ids, one grid row each")
    sample.add_argument("--num", type=int, default=8, help="samples per class")
    sample.add_argument("--out", required=True, help="PNG path")
    sample.set_defaults(func=_sample)

    fid = commands.add_parser("fid", help="sample N images and compute FID and IS against a reference folder")
    _add_sampling_arguments(fid)
    fid.add_argument("--ref", required=True, help="reference image folder (searched recursively)")
    fid.add_argument("--num", type=int, default=50_000, help="number of generated images")
    fid.add_argument("--inception", help="local torch-fidelity Inception weights (pt_inception-2015-12-05)")
    fid.add_argument("--is-splits", type=int, default=10)
    fid.add_argument("--num-workers", type=int, default=8, help="processes loading the reference images")
    fid.add_argument("--out", help="also write the metrics as JSON here")
    fid.set_defaults(func=_fid)

    convert = commands.add_parser("convert-udit", help="turn an official U-DiT checkpoint into an ffnet one")
    convert.add_argument("source", help="official .pt (a state dict, or a dict with 'ema' or 'model')")
    convert.add_argument("dest", help="output checkpoint for `ffnet gen sample/fid`")
    convert.add_argument("--arch", choices=["U-DiT-S", "U-DiT-B", "U-DiT-L"], required=True)
    convert.add_argument("--vae", help="record this VAE folder in the checkpoint's config")
    convert.set_defaults(func=_convert)


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint of `ffnet gen train` (EMA weights)")
    parser.add_argument("--vae", help="local AutoencoderKL folder (default: the one in the checkpoint's config)")
    parser.add_argument("--steps", type=int, default=250, help="DDPM sampling steps")
    parser.add_argument("--cfg-scale", type=float, default=1.5, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _train(args: argparse.Namespace) -> None:
    """Run ``ffnet.engine`` (the project's mmengine Runner) with the data/VAE flags as config overrides."""
    from ffnet import engine

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
    resume = None if args.resume is False else ("auto" if args.resume is True else args.resume)
    config = args.config
    if not Path(config).exists() and not Path(config).suffix:
        config += ".py"  # a shipped config named without its extension
    if args.data is None and args.latents is None:
        from mmengine.config import Config

        dataset = Config.fromfile(engine.resolve_config_path(config)).train_dataloader.dataset
        if dataset.get("root") is None and not any(o.startswith("train_dataloader.dataset.root=")
                                                   for o in args.cfg_options):
            raise ValueError("no training data: give --data DIR (ImageNet layout root/<class>/<image>) "
                             "or --latents DIR (from `ffnet gen extract-latents`)")
    engine_args = argparse.Namespace(config=config, work_dir=args.work_dir, cfg_options=options + args.cfg_options,
                                     launcher=args.launcher, local_rank=0, resume=resume, amp=args.amp,
                                     auto_scale_lr=False)
    runner = engine.build_runner(engine_args, "train")
    runner.train()


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
    import os

    from ffnet.generation.fid import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.ref, args.num, args.inception, args.vae, args.steps,
                                  args.cfg_scale, args.batch_size, args.seed, _device(args.device), args.is_splits,
                                  num_workers=args.num_workers)
    text = json.dumps(metrics, indent=1)
    print(text)
    if args.out:
        tmp = f"{args.out}.partial"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)


def _convert(args: argparse.Namespace) -> None:
    from ffnet.generation.convert import convert_official_checkpoint

    print(f"wrote {convert_official_checkpoint(args.source, args.dest, args.arch, args.vae)}")
