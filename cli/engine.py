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
import os
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
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
    parser.add_argument("checkpoint", help="checkpoint file to evaluate")
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

    from ffnet.main import DOMAINS

    wanted_domain = path.parent.name if path.parent != Path(".") else None
    shipped: list[str] = []
    for domain in DOMAINS:
        spec = find_spec(f"ffnet.{domain}")
        if spec is None or not spec.submodule_search_locations:
            continue
        configs = Path(list(spec.submodule_search_locations)[0]) / "configs"
        if wanted_domain in (None, domain) and (configs / path.name).is_file():
            return configs / path.name
        shipped += sorted(f"{domain}/{p.name}" for p in configs.glob("*.py") if not p.name.startswith("_"))
    raise FileNotFoundError(f"config not found: {config}. Give a path to a config file, or one of the shipped "
                            f"configs: {', '.join(shipped) or 'none'}")


def parse_cfg_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``['a.b=1', 'c=[x,y]']`` → ``{'a.b': 1, 'c': ['x', 'y']}`` with mmengine's value parsing."""
    from mmengine.config import DictAction

    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise ValueError(f"--cfg-options expects KEY=VALUE pairs, got {pair!r}")
    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="options")(None, namespace, list(pairs))
    return dict(namespace.options)


def check_cfg_options(cfg, options: dict[str, Any]) -> None:
    """Raise if an override names a top-level key or an intermediate entry the config does not have.

    A new leaf inside an existing dict is allowed (e.g. an extra keyword argument of a model).
    """
    for key in options:
        parts = key.split(".")
        if parts[0] not in cfg:
            raise KeyError(f"--cfg-options {key}: the config has no top-level key {parts[0]!r}. Check the spelling; "
                           f"its top-level keys are: {', '.join(sorted(cfg.keys()))}")
        node, path = cfg[parts[0]], parts[0]
        for part in parts[1:-1]:
            if isinstance(node, dict):
                if part not in node:
                    raise KeyError(f"--cfg-options {key}: {path!r} has no key {part!r}; it has: "
                                   f"{', '.join(map(str, node.keys()))}")
                node = node[part]
            elif isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise KeyError(f"--cfg-options {key}: {path!r} is a list of {len(node)} entries; "
                                   f"{part!r} is not an index into it")
                node = node[int(part)]
            else:
                raise KeyError(f"--cfg-options {key}: {path!r} is a {type(node).__name__}, not a dict")
            path = f"{path}.{part}"


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
    """A local-disk mmengine file backend whose writes go to a temporary file, then ``os.replace``."""
    from mmengine.fileio import LocalBackend, register_backend

    class AtomicLocalBackend(LocalBackend):
        def put(self, obj: bytes, filepath) -> None:
            filepath = os.fspath(filepath)
            os.makedirs(os.path.dirname(filepath) or ".", exist_ok=True)
            tmp = f"{filepath}.tmp{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)

        def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
            self.put(obj.encode(encoding), filepath)

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
    options = parse_cfg_options(args.cfg_options)
    if options:
        check_cfg_options(cfg, options)
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


def build_runner(args: argparse.Namespace, mode: str = "train"):
    """An mmengine Runner for ``ffnet train`` (``mode='train'``) or ``ffnet test`` (``mode='test'``)."""
    from mmengine.runner import Runner

    from ffnet.checkpoints import allow_mmengine_checkpoints

    cfg = load_config(args)
    allow_mmengine_checkpoints()
    if mode == "train":
        if args.amp:
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("--amp needs a CUDA device (mmengine's AmpOptimWrapper); drop --amp on CPU")
            wrapper = cfg.optim_wrapper
            if wrapper.get("type", "OptimWrapper") != "AmpOptimWrapper":
                wrapper.type = "AmpOptimWrapper"
                wrapper.setdefault("loss_scale", "dynamic")
        if args.auto_scale_lr:
            scale = cfg.get("auto_scale_lr")
            if not scale or "base_batch_size" not in scale:
                raise KeyError("--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=...) in the config")
            scale.enable = True
        if args.resume == "auto":
            cfg.resume, cfg.load_from = True, None
        elif args.resume is not None:
            if not Path(args.resume).is_file():
                raise FileNotFoundError(f"--resume checkpoint not found: {args.resume}")
            cfg.resume, cfg.load_from = True, args.resume
    elif mode == "test":
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
        cfg.load_from = args.checkpoint
        cfg.resume = False
    else:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    return Runner.from_cfg(cfg)


def train(args: argparse.Namespace) -> None:
    build_runner(args, "train").train()


def test(args: argparse.Namespace) -> None:
    build_runner(args, "test").test()
