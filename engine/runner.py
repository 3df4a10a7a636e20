"""``ffnet train`` / ``ffnet test``: any mmengine config (classification, mmdet, mmseg) on the mmengine Runner.

Mirrors mmdet's ``tools/train.py`` and ``tools/test.py``: the config's ``default_scope`` and
``custom_imports`` choose the registries, ``Runner.from_cfg`` honours a config's ``runner_type``,
and distributed runs are launched by torchrun (``--launcher pytorch``), slurm or MPI.

Additions: ``--cfg-options`` keys are checked against the config (a typo is an error, not a
silently added key); configs shipped inside the package can be named without a path
(``ffnet train ffnet_1_8xb128_in1k.py`` or ``classification/ffnet_1_8xb128_in1k.py``);
checkpoints on local disk are written atomically (temporary file, then ``os.replace``); without
CUDA, ``--launcher pytorch`` runs DDP on CPU with gloo.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from ffnet.engine.checkpoints import allow_mmengine_checkpoints
from ffnet.engine.errors import ConfigError, UserError

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
DOMAINS = ("classification", "detection", "segmentation", "superres", "pointcloud", "timeseries", "generation")
_ATOMIC_BACKEND = "ffnet_atomic_local"


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: ./work_dirs/<config stem>)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config entries, e.g. train_dataloader.batch_size=64 "
                             "model.model.drop_path_rate=0.2 (lists: key=[a,b]); keys must exist in the config")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none", help="job launcher (torchrun: pytorch)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file path, or the name of a config shipped with ffnet")
    _add_common_arguments(parser)
    parser.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                        help="resume from CHECKPOINT, or from the latest checkpoint in the work dir if none is given")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (AmpOptimWrapper; needs CUDA)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the lr linearly with the total batch size (config's auto_scale_lr.base_batch_size)")


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file path, or the name of a config shipped with ffnet")
    parser.add_argument("--checkpoint", help="checkpoint file to evaluate (ours, mmengine's, or the authors' release)")
    parser.add_argument("legacy_checkpoint", nargs="?", help=argparse.SUPPRESS)
    _add_common_arguments(parser)


def resolve_config_path(config: str) -> Path:
    """``config`` itself if it exists, else a config shipped in ``ffnet.<domain>.configs``.

    Shipped configs are named by file name, optionally after their domain
    (``classification/ffnet_1_8xb128_in1k.py``).
    """
    path = Path(config)
    if path.is_file():
        return path
    from importlib.util import find_spec

    wanted_domain = path.parent.name if path.parent != Path(".") else None
    shipped: list[str] = []
    for domain in DOMAINS:
        spec = find_spec(f"ffnet.{domain}")
        if spec is None or not spec.submodule_search_locations:
            continue
        configs = Path(list(spec.submodule_search_locations)[0]) / "configs"
        if wanted_domain in (None, domain) and (configs / path.name).is_file():
            return configs / path.name
        if domain != "pointcloud":  # Pointcept-format configs run with `ffnet pointcloud train`
            shipped += sorted(f"{domain}/{p.name}" for p in configs.glob("*.py") if not p.name.startswith("_"))
    raise FileNotFoundError(f"config not found: {config}. Give a path to a config file, or one of the shipped "
                            f"configs: {', '.join(shipped) or 'none'}")


def parse_cfg_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``['a.b=1', 'c=[x,y]']`` → ``{'a.b': 1, 'c': ['x', 'y']}`` with mmengine's value parsing."""
    from mmengine.config import DictAction

    for pair in pairs:
        if "=" not in pair or pair.lstrip(ADD_MARKER).startswith("="):
            raise ConfigError(f"--cfg-options expects KEY=VALUE pairs, got {pair!r}")
    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="options")(None, namespace, list(pairs))
    return dict(namespace.options)


ADD_MARKER = "+"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def check_cfg_options(cfg, options: dict[str, Any]) -> dict[str, Any]:
    """Check ``--cfg-options`` against the config down to the leaf; returns them without add markers.

    Every dotted path must exist in the config and the new value must be of the same kind as the old
    one (bool, number, string, list, dict; anything may replace ``None``). A key written with a leading
    ``+`` (``+model.backbone.new_arg=1``) adds a new leaf on purpose: its parents must still exist.
    """
    checked = {}
    root = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    for given, value in options.items():
        adding = given.startswith(ADD_MARKER)
        key = given[len(ADD_MARKER):] if adding else given
        parts = key.split(".")
        node, path = root, ""
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = f"{path!r}" if path else "the config"
            if isinstance(node, dict):
                if part not in node:
                    if last and adding:
                        break
                    known = ", ".join(map(str, node.keys()))
                    hint = f" (to add a new key on purpose, write +{key}=...)" if last else ""
                    raise ConfigError(f"--cfg-options {given}: {where} has no key {part!r}{hint}; it has: {known}")
                child = node[part]
            elif isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--cfg-options {given}: {where} is a list of {len(node)} entries; "
                                   f"{part!r} is not an index into it")
                child = node[int(part)]
            else:
                raise ConfigError(f"--cfg-options {given}: {where} is a {type(node).__name__}, not a dict")
            if last and not adding and child is not None and _kind(child) != _kind(value):
                raise ConfigError(f"--cfg-options {given}: {key!r} is a {_kind(child)} in the config "
                                 f"({child!r}), not a {_kind(value)} ({value!r})")
            node, path = child, f"{path}.{part}" if path else part
        checked[key] = value
    return checked


def _warn_about_copied_variables(cfg, options: dict[str, Any]) -> None:
    """A top-level scalar (e.g. ``data_root``) was copied into dicts when the config was parsed."""
    from mmengine.logging import print_log

    def leaves(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in node):
            for i, v in enumerate(node):
                yield from leaves(v, f"{prefix}.{i}")
        else:
            yield prefix, node

    for key in options:
        old = cfg.get(key) if "." not in key else None
        if old is None or isinstance(old, (dict, list, tuple)):
            continue
        copies = [path for path, value in leaves(cfg.to_dict(), "") if value == old and path != key]
        if copies:
            print_log(f"--cfg-options {key}: {key!r} is a config variable whose value was copied into "
                      f"{', '.join(copies[:6])} when the config was parsed; those keep {old!r}. Override them "
                      "directly (or use the environment variable the config reads, if it has one).",
                      logger="current", level=30)


def _register_atomic_backend() -> None:
    """A local-disk mmengine file backend whose writes are atomic (``ffnet.engine.files.write_atomic``)."""
    from mmengine.fileio import LocalBackend, register_backend

    from ffnet.engine.files import write_atomic

    class AtomicLocalBackend(LocalBackend):
        def put(self, obj: bytes, filepath) -> None:
            write_atomic(filepath, obj)

        def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
            write_atomic(filepath, obj, encoding)

    register_backend(_ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def use_atomic_checkpoints(cfg) -> None:
    hook = cfg.get("default_hooks", {}).get("checkpoint")
    if not hook or hook.get("backend_args") or hook.get("file_client_args"):
        return
    out_dir = hook.get("out_dir")
    if out_dir is not None and "://" in str(out_dir):
        return
    _register_atomic_backend()
    hook["backend_args"] = dict(backend=_ATOMIC_BACKEND)


def setup_launcher(cfg, launcher: str, local_rank: int) -> None:
    import torch

    cfg.launcher = launcher
    if launcher == "none":
        return
    os.environ.setdefault("LOCAL_RANK", str(local_rank))
    if torch.cuda.is_available():
        return
    if launcher != "pytorch":
        raise RuntimeError(f"--launcher {launcher} needs CUDA devices; on CPU launch with torchrun and "
                           "--launcher pytorch (DDP over gloo)")
    # mmengine's pytorch launcher selects a CUDA device and wraps DDP with device_ids; on CPU use
    # gloo and a device-less DDP instead.
    import torch.distributed as dist

    env_cfg = cfg.setdefault("env_cfg", {})
    env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = cfg.get("model_wrapper_cfg") or dict(type="MMDistributedDataParallel")
    wrapper["device_ids"] = None
    cfg.model_wrapper_cfg = wrapper


def load_config(args: argparse.Namespace):
    """The mmengine Config of ``args.config`` with ``--cfg-options``, work dir and launcher applied."""
    from mmengine.config import Config

    path = resolve_config_path(args.config)
    cfg = Config.fromfile(str(path))
    if _is_pointcept_config(cfg):
        raise UserError(f"{args.config} is a Pointcept-format config (data=dict(train=...)), which the mmengine "
                        f"Runner cannot run; use: ffnet pointcloud train {args.config}")
    options = parse_cfg_options(args.cfg_options)
    if options:
        options = check_cfg_options(cfg, options)
        _warn_about_copied_variables(cfg, options)
        cfg.merge_from_dict(options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("./work_dirs", path.stem)
    if cfg.get("experiment_name") is None:
        # mmengine names its logger "<config>_<timestamp>": a second run started within the same
        # second in one process would reuse the first run's logger and write into its log file.
        cfg.experiment_name = f"{path.stem}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
    setup_launcher(cfg, args.launcher, args.local_rank)
    use_atomic_checkpoints(cfg)
    return cfg


def _unwrapped(model):
    from mmengine.model import is_model_wrapper

    return model.module if is_model_wrapper(model) else model


def _check_fits(runner, path: str) -> None:
    """Refuse (one line) a checkpoint for ``runner.model`` that is unreadable or does not fully fit it."""
    from ffnet.engine.checkpoints import check_fits, load_weights

    config = Path(runner.cfg.filename).name if runner.cfg.filename else "the config"
    check_fits(_unwrapped(runner.model).state_dict(), load_weights(path), source=path,
               target=f"the model of {config}")


def load_into_runner(runner, path: str) -> str:
    """Strictly load checkpoint ``path`` into ``runner.model``, converting a foreign layout; returns a report line."""
    from ffnet.engine.checkpoints import load_state_dict, load_weights

    model = _unwrapped(runner.model)
    config = Path(runner.cfg.filename).name if runner.cfg.filename else "the config"
    report = load_state_dict(model, load_weights(path), source=path, target=f"the model of {config}")
    converted = f", converted from {report.converter}" if report.converter else ""
    return f"loaded {path}: all {len(model.state_dict())} tensors of the model{converted}"


def _is_pointcept_config(cfg) -> bool:
    return "train_dataloader" not in cfg and isinstance(cfg.get("data"), dict) and "train" in cfg.data


def build_runner(args: argparse.Namespace, mode: str = "train"):
    """An mmengine Runner for ``ffnet train`` (``mode='train'``) or ``ffnet test`` (``mode='test'``).

    ``ffnet test`` loads its checkpoint itself (strictly, converting the authors' layouts); the
    Runner's own ``load_from`` stays empty.
    """
    from mmengine.runner import Runner

    cfg = load_config(args)
    allow_mmengine_checkpoints()
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    resume_from = None
    if mode == "train":
        if args.amp:
            import torch

            if not torch.cuda.is_available():
                raise UserError("--amp needs a CUDA device (mmengine's AmpOptimWrapper); drop --amp on CPU")
            wrapper = cfg.optim_wrapper
            if wrapper.get("type", "OptimWrapper") != "AmpOptimWrapper":
                wrapper.type = "AmpOptimWrapper"
                wrapper.setdefault("loss_scale", "dynamic")
        if args.auto_scale_lr:
            scale = cfg.get("auto_scale_lr")
            if not scale or "base_batch_size" not in scale:
                raise UserError("--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=...) in the config")
            scale.enable = True
        if args.resume == "auto":
            from mmengine.runner import find_latest_checkpoint

            cfg.resume, cfg.load_from = True, None
            resume_from = find_latest_checkpoint(cfg.work_dir) if Path(cfg.work_dir).is_dir() else None
        elif args.resume is not None:
            if not Path(args.resume).is_file():
                raise FileNotFoundError(f"--resume checkpoint not found: {args.resume}")
            cfg.resume, cfg.load_from = True, args.resume
            resume_from = args.resume
        elif cfg.get("load_from"):
            resume_from = cfg.load_from
    else:
        cfg.load_from, cfg.resume = None, False
    runner = Runner.from_cfg(cfg)
    if resume_from is not None:
        _check_fits(runner, str(resume_from))
    return runner


def launcher_rank() -> int:
    """This process's global rank under torchrun, slurm or MPI (0 when not launched)."""
    for variable in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def _holds_work_dir(args: argparse.Namespace) -> bool:
    return args.launcher == "none" or launcher_rank() == 0


def train(args: argparse.Namespace) -> None:
    from ffnet.engine.files import RunLock

    cfg_work_dir = load_config(args).work_dir if _holds_work_dir(args) else None
    with RunLock(cfg_work_dir) if cfg_work_dir else contextlib.nullcontext():
        build_runner(args, "train").train()


def test(args: argparse.Namespace) -> None:
    checkpoint = args.checkpoint or args.legacy_checkpoint
    if checkpoint is None:
        raise UserError("give the checkpoint to evaluate with --checkpoint FILE")
    runner = build_runner(args, "test")
    print(load_into_runner(runner, checkpoint), flush=True)
    runner.test()
