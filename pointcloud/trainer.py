"""Standalone trainer: Pointcept-format configs on mmengine's Runner (no Pointcept needed).

:func:`to_runner_config` translates a Pointcept config (``model``, ``data``, ``optimizer``,
``scheduler``, ``param_dicts``, ``epoch`` / ``eval_epoch``, ``batch_size``, ``mix_prob``, ...) into an
mmengine Runner config in scope ``ffnet_pointcloud``:

* Pointcept's epochs: the train set is repeated ``epoch // eval_epoch`` times per Runner epoch and
  the Runner runs ``eval_epoch`` epochs, validating (and checkpointing, keeping the best mIoU) after each;
* optimizer groups as Pointcept builds them (``param_dicts``: parameters whose name contains a
  keyword get that group's lr), and OneCycleLR stepped per iteration over the whole run;
* Mix3D in the collate, AMP and SyncBN on CUDA, DDP through torchrun (``--launcher pytorch``);
* atomic checkpoints and ``--resume``; the test loop is :class:`~ffnet.pointcloud.tester.FragmentTestLoop`.

:func:`train` holds the work dir with :class:`ffnet.engine.files.RunLock` for the run. Checkpoints are
read weights-only and must fit the model whole (:mod:`ffnet.engine.checkpoints`); error messages say
which point model a mismatched file holds (:func:`describe_point_state_dict`).
"""
from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from mmengine.model import BaseModel

from ffnet.engine.checkpoints import register_describer
from ffnet.engine.runner import launcher_rank
from ffnet.pointcloud.model import build_segmentor
from ffnet.pointcloud.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, SCOPE

CONFIG_DIR = Path(__file__).parent / "configs"
_DATASETS = {20: "scannet", 200: "scannet200", 13: "s3dis"}


def segmentor_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The segmentor's weights: ``segmentor.`` (the Runner model's prefix) removed when every key has it."""
    prefix = "segmentor."
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def describe_point_state_dict(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which FFNet point model ``state`` holds (shipped config, layout, classes), or ``None`` if none."""
    state = segmentor_state_dict(state)
    head, stem = state.get("seg_head.weight"), state.get("backbone.embedding.conv.weight")
    if head is None or stem is None:
        return None
    stages = len({k.split(".")[2] for k in state if k.startswith("backbone.enc.")})
    compat = state.get("backbone.enc.0.blocks.0.token_mixer.mixer.compat.conv.weight")
    depthwise = compat is not None and compat.dim() == 5 and compat.shape[1] == 1
    layout = {(5, 32): "release", (4, 64): "paper"}.get((stages, stem.shape[0]))
    classes = head.shape[0]
    name = None
    if layout is not None and classes in _DATASETS:
        name = f"{_DATASETS[classes]}-ffnet" + ("-paper" if layout == "paper" else "") + ("-dw" if depthwise else "")
    shape = (f"the {layout} layout" if layout else f"{stages} encoder stages, stem width {stem.shape[0]}")
    what = f"the FFNet point model ({shape}{', depthwise' if depthwise else ''}, {classes} classes)"
    return f"{what}, config {name}" if name and (CONFIG_DIR / f"{name}.py").is_file() else what


register_describer("pointcloud", describe_point_state_dict)


@MODELS.register_module()
class FFNetPointSegModel(BaseModel):
    """mmengine wrapper of :class:`~ffnet.pointcloud.model.FFNetPointSegmentor` built from a Pointcept ``model`` config.

    ``forward(mode, **batch)`` takes the collated dict: ``"loss"`` → ``{"loss"}``, ``"predict"`` → one
    sample dict with ``seg_logits`` ``(N, K)`` and the batch's labels, ``"tensor"`` → logits.
    """

    def __init__(self, segmentor: Mapping, data_preprocessor: Mapping | None = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor or dict(type="BaseDataPreprocessor"), init_cfg=init_cfg)
        self.segmentor = build_segmentor(segmentor)

    def predict_logits(self, batch: Mapping) -> torch.Tensor:
        """``(N, num_classes)`` logits of a collated batch."""
        return self.segmentor.seg_head(self.segmentor.backbone(batch).feat)

    def forward(self, mode: str = "tensor", **batch: Any):
        if mode == "loss":
            return {"loss": self.segmentor(batch)["loss"]}
        logits = self.predict_logits(batch)
        if mode == "tensor":
            return logits
        if mode == "predict":
            labels = {key: batch[key] for key in ("segment", "origin_segment", "inverse") if key in batch}
            return [dict(seg_logits=logits, **labels)]
        raise ValueError(f"unknown mode {mode!r}: use 'loss', 'predict' or 'tensor'")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PointceptParamGroupsConstructor:
    """Pointcept's optimizer groups: group 0 holds every parameter no keyword matches (the base lr);
    group ``i + 1`` holds those whose name contains ``param_dicts[i]["keyword"]`` (first match wins),
    with that entry's ``lr`` (or ``lr_scale`` × base lr), ``momentum`` and ``weight_decay``.
    """

    def __init__(self, optim_wrapper_cfg: Mapping, paramwise_cfg: Mapping | None = None):
        self.optim_wrapper_cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        self.param_dicts = [dict(d) for d in (paramwise_cfg or {}).get("param_dicts") or []]
        for entry in self.param_dicts:
            if "keyword" not in entry:
                raise KeyError(f"every param_dicts entry needs a 'keyword', got {entry}")

    def __call__(self, model: torch.nn.Module):
        from mmengine.optim import OptimWrapper  # noqa: F401  (registers the wrappers)
        from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

        model = model.module if hasattr(model, "module") else model
        wrapper_cfg = copy.deepcopy(self.optim_wrapper_cfg)
        optimizer_cfg = dict(wrapper_cfg.pop("optimizer"))
        base_lr = optimizer_cfg["lr"]
        groups: list[dict] = [dict(params=[])]
        for entry in self.param_dicts:
            group = {k: v for k, v in entry.items() if k in ("lr", "momentum", "weight_decay")}
            if "lr_scale" in entry:
                group["lr"] = base_lr * entry["lr_scale"]
            groups.append(dict(params=[], **group))
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            index = next((i + 1 for i, d in enumerate(self.param_dicts) if d["keyword"] in name), 0)
            groups[index]["params"].append(param)
        optimizer_cfg["params"] = groups
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))


def resolve_config(config: str | os.PathLike) -> Path:
    """A config path, or the name of a shipped config (``scannet-ffnet``, ``s3dis-ffnet.py``, ...)."""
    path = Path(config)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".py" else f"{path.name}.py")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))
    raise FileNotFoundError(
        f"config not found: {config}; give a path or one of the shipped configs: {', '.join(names)}")


def load_pointcept_config(config: str | os.PathLike, options: Mapping[str, Any] | None = None,
                          data_root: str | None = None):
    """The Pointcept-format config as an mmengine ``Config``, with ``options`` merged and ``data_root`` applied."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(resolve_config(config)))
    if options:
        cfg.merge_from_dict(dict(options))
    if data_root is not None:
        for split in ("train", "val", "test"):
            if split in cfg.data:
                cfg.data[split]["data_root"] = str(data_root)
    return cfg


def _scheduler(cfg) -> list[dict]:
    scheduler = dict(cfg.scheduler)
    kind = scheduler.pop("type")
    if kind != "OneCycleLR":
        raise ValueError(f"the standalone trainer supports Pointcept's OneCycleLR scheduler, got {kind!r}")
    max_lr = scheduler.pop("max_lr")
    if isinstance(max_lr, (list, tuple)) and len(max_lr) > 1:
        # mmengine's OptimWrapper adds a pseudo group (the optimizer's base lr, for logging) after the real ones
        max_lr = [*max_lr, cfg.optimizer.lr]
    return [dict(type="OneCycleLR", eta_max=max_lr, total_steps=int(cfg.eval_epoch), by_epoch=True,
                 convert_to_iter_based=True, **scheduler)]


def to_runner_config(cfg, work_dir: str | os.PathLike, world_size: int = 1, launcher: str = "none",
                     use_amp: bool | None = None, save_every: int = 1):
    """An mmengine Runner ``Config`` (scope ``ffnet_pointcloud``) equivalent to Pointcept config ``cfg``.

    ``batch_size`` and ``num_worker`` are totals over ``world_size`` processes, as in Pointcept.
    ``use_amp`` defaults to ``cfg.enable_amp`` on CUDA (AMP needs CUDA here).
    """
    from mmengine.config import Config

    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is a total over GPUs: it must divide by world size {world_size}")
    if cfg.epoch % cfg.eval_epoch:
        raise ValueError(f"epoch ({cfg.epoch}) must be a multiple of eval_epoch ({cfg.eval_epoch})")
    workers = cfg.num_worker // world_size
    loader = dict(num_workers=workers, persistent_workers=workers > 0)
    data = cfg.data
    metric = dict(type="SemSegMetric", num_classes=data.num_classes, ignore_index=data.ignore_index,
                  class_names=list(data.names))
    if use_amp is None:
        use_amp = bool(cfg.get("enable_amp")) and torch.cuda.is_available()
    if use_amp:
        wrapper = dict(type="AmpOptimWrapper", dtype=cfg.get("amp_dtype", "float16"))
    else:
        wrapper = dict(type="OptimWrapper")
    wrapper.update(optimizer=dict(cfg.optimizer), constructor="PointceptParamGroupsConstructor",
                   paramwise_cfg=dict(param_dicts=list(cfg.get("param_dicts") or [])))
    if cfg.get("clip_grad"):
        wrapper["clip_grad"] = dict(max_norm=cfg.clip_grad)
    checkpoint = dict(type="CheckpointHook", interval=save_every, max_keep_ckpts=2, save_last=True)
    evaluate = cfg.get("evaluate", True) and "val" in data
    if evaluate:
        checkpoint.update(save_best="mIoU", rule="greater")
    runner = dict(
        default_scope=SCOPE,
        work_dir=str(work_dir),
        launcher=launcher,
        model=dict(type="FFNetPointSegModel", segmentor=dict(cfg.model)),
        train_dataloader=dict(
            batch_size=cfg.batch_size // world_size, drop_last=True, sampler=dict(type="DefaultSampler", shuffle=True),
            collate_fn=dict(type=f"{SCOPE}.point_collate_fn", mix_prob=cfg.get("mix_prob", 0.0)),
            dataset=dict(data.train, loop=cfg.epoch // cfg.eval_epoch), **loader),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=int(cfg.eval_epoch), val_interval=1),
        optim_wrapper=wrapper,
        param_scheduler=_scheduler(cfg),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=10),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=checkpoint,
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl" if torch.cuda.is_available() else "gloo")),
        log_processor=dict(by_epoch=True),
        randomness=dict(seed=cfg.get("seed")),
        resume=False,
        load_from=None,
    )
    if cfg.get("sync_bn") and world_size > 1 and torch.cuda.is_available():
        runner["sync_bn"] = "torch"  # torch's SyncBatchNorm needs CUDA; on CPU each process keeps its own statistics
    if evaluate:
        runner.update(
            val_dataloader=dict(batch_size=1, sampler=dict(type="DefaultSampler", shuffle=False),
                                collate_fn=dict(type=f"{SCOPE}.collate_fn"), dataset=dict(data.val), **loader),
            val_cfg=dict(type="ValLoop"), val_evaluator=metric)
    if "test" in data:
        runner.update(
            test_dataloader=dict(batch_size=1, sampler=dict(type="DefaultSampler", shuffle=False),
                                 collate_fn=dict(type=f"{SCOPE}.first_item"), dataset=dict(data.test), **loader),
            test_cfg=dict(type="FragmentTestLoop"), test_evaluator=metric)
    return Config(runner)


def default_work_dir(config: str | os.PathLike) -> str:
    """``work_dirs/<config name>``."""
    return os.path.join("work_dirs", resolve_config(config).stem)


def _model(runner) -> torch.nn.Module:
    from mmengine.model import is_model_wrapper

    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def build_runner(config: str | os.PathLike, work_dir: str | os.PathLike | None = None, *,
                 options: Mapping[str, Any] | None = None, data_root: str | None = None, launcher: str = "none",
                 resume: str | None = None, load_from: str | None = None, use_amp: bool | None = None,
                 save_every: int = 1, num_workers: int | None = None):
    """An mmengine Runner for a Pointcept-format config (path or shipped name).

    ``resume``: ``"auto"`` (latest checkpoint in ``work_dir``) or a checkpoint path; ``load_from``
    loads weights only (``test``), strictly and weights-only, before the Runner returns.
    ``num_workers`` overrides the config's data-loader workers. Raises
    :class:`~ffnet.engine.errors.CheckpointError` when the checkpoint does not fit the config's model.
    """
    from mmengine.runner import Runner, find_latest_checkpoint

    import ffnet.pointcloud.data  # noqa: F401  (registers datasets and collate functions)
    import ffnet.pointcloud.tester  # noqa: F401  (registers the metric and the test loop)
    from ffnet.engine.checkpoints import allow_mmengine_checkpoints, check_fits, load_state_dict, load_weights
    from ffnet.engine.runner import setup_launcher, use_atomic_checkpoints

    cfg = load_pointcept_config(config, options, data_root)
    if num_workers is not None:
        cfg.num_worker = num_workers
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if launcher != "none" else 1
    work_dir = work_dir or default_work_dir(config)
    runner_cfg = to_runner_config(cfg, work_dir, world_size, launcher, use_amp, save_every)
    setup_launcher(runner_cfg, launcher, int(os.environ.get("LOCAL_RANK", 0)))
    use_atomic_checkpoints(runner_cfg)
    resume_from = None
    if resume == "auto":
        runner_cfg.resume = True
        resume_from = find_latest_checkpoint(str(work_dir)) if Path(work_dir).is_dir() else None
    elif resume is not None:
        runner_cfg.resume, runner_cfg.load_from = True, str(resume)
        resume_from = str(resume)
    runner = Runner.from_cfg(runner_cfg)
    model = _model(runner)
    if resume_from is not None:
        check_fits(model.state_dict(), load_weights(resume_from), source=str(resume_from),
                   target=f"the model of {config}")
    if load_from is not None:
        load_state_dict(model.segmentor, segmentor_state_dict(load_weights(load_from)), source=str(load_from),
                        target=f"the segmentor of {config}")
    allow_mmengine_checkpoints()  # for mmengine's own load when it resumes
    return runner


def train(config: str | os.PathLike, work_dir: str | os.PathLike | None = None, *, launcher: str = "none",
          **options: Any):
    """Train with :func:`build_runner` (same arguments), holding ``work_dir`` for the whole run; returns the Runner.

    The lock (:class:`ffnet.engine.files.RunLock`) is taken by rank 0 only under a launcher; a second
    run on the same work dir raises :class:`~ffnet.engine.errors.RunFolderBusy` naming the holder's pid.
    """
    from ffnet.engine.files import RunLock

    work_dir = work_dir or default_work_dir(config)
    holds = launcher == "none" or launcher_rank() == 0
    with RunLock(work_dir) if holds else contextlib.nullcontext():
        runner = build_runner(config, work_dir, launcher=launcher, **options)
        runner.train()
    return runner


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["epoch=2", "data.train.loop=1"]`` → a dict for :func:`load_pointcept_config` (mmengine value parsing)."""
    from ffnet.engine.runner import parse_cfg_options

    return parse_cfg_options(pairs)
