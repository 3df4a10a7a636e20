"""Pointcept plugin: ``import ffnet.pointcloud.pointcept`` registers the FFNet point backbone upstream.

With a Pointcept checkout on ``PYTHONPATH`` (Pointcept is not on PyPI), importing this module registers

* the backbone as ``"FFNet-v1m1"`` in ``pointcept.models.builder.MODELS``: a ``PointModule`` that takes
  Pointcept's ``Point`` (or the collated dict: ``coord``, ``grid_coord``, ``feat``, ``offset``) and
  returns the same ``Point`` with 64-channel ``feat`` at full resolution, so ``DefaultSegmentorV2``
  puts its Linear head on it;
* the release's colour normalization as ``"NormalizeColorSymmetric"`` (``[-1, 1]``) in
  ``pointcept.datasets.transform.TRANSFORMS`` (upstream's own ``NormalizeColor`` gives ``[0, 1]``).

Without Pointcept the module still imports; :func:`register` puts the same classes into any registry
with mmengine's ``register_module`` / ``build`` API (Pointcept's registry is a copy of it).

It is also the launcher behind ``ffnet pointcept train|test`` (:func:`launch`): Pointcept's own
``tools/train.py`` / ``tools/test.py`` workers, plus what Pointcept lacks for a machine without CUDA.
Pointcept's trainer, evaluator hooks and tester call ``.cuda()`` on the model and every batch, count
IoU with ``torch.histc`` on integer labels (CUDA-only), build AMP for device ``"cuda"`` and load
checkpoints onto the GPU. On any other device :func:`on_device` redirects those calls while the run
lasts, swaps in a device-agnostic IoU count, and :func:`launch` turns AMP off; Pointcept's files are
not edited, and on CUDA nothing is changed.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from ffnet.pointcloud.model import FFNetPointBackbone
from ffnet.pointcloud.transforms import NormalizeColorSymmetric

BACKBONE_NAME = "FFNet-v1m1"
COLOR_TRANSFORM_NAME = "NormalizeColorSymmetric"


def pointcept_available() -> bool:
    """Whether a Pointcept checkout (the ``pointcept`` package) is importable."""
    spec = importlib.util.find_spec("pointcept")
    return spec is not None and spec.origin is not None  # a package, not a stray folder named pointcept


if pointcept_available():
    from pointcept.datasets.transform import TRANSFORMS as POINTCEPT_TRANSFORMS
    from pointcept.models.builder import MODELS as POINTCEPT_MODELS
    from pointcept.models.modules import PointModule
    from pointcept.models.utils.structure import Point
else:
    POINTCEPT_MODELS = POINTCEPT_TRANSFORMS = Point = None
    PointModule = nn.Module


class PointceptFFNet(PointModule):
    """FFNet point backbone as a Pointcept ``PointModule``: ``Point`` → the same ``Point`` with ``(N, 64)`` ``feat``.

    Takes :class:`~ffnet.pointcloud.model.FFNetPointBackbone`'s arguments. Without Pointcept the input
    dict is returned (a plain ``dict`` copy) with ``feat`` replaced.
    """

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.net = FFNetPointBackbone(**kwargs)

    @property
    def out_channels(self) -> int:
        return self.net.out_channels

    def forward(self, point: Mapping):
        out = self.net(point)
        if Point is not None:
            point = point if isinstance(point, Point) else Point(point)
        else:
            point = dict(point)
        point["feat"] = out.feat
        return point


def register(models_registry, transforms_registry=None, force: bool = False) -> None:
    """Register :class:`PointceptFFNet` as ``"FFNet-v1m1"`` (and the colour transform) into the given registries."""
    models_registry.register_module(name=BACKBONE_NAME, module=PointceptFFNet, force=force)
    if transforms_registry is not None:
        transforms_registry.register_module(name=COLOR_TRANSFORM_NAME, module=NormalizeColorSymmetric, force=force)


if POINTCEPT_MODELS is not None:
    register(POINTCEPT_MODELS, POINTCEPT_TRANSFORMS, force=True)



def _main_worker(cfg) -> None:
    """Pointcept's ``tools/train.py`` worker; importable so spawned DDP workers re-register the plugin."""
    from pointcept.engines.defaults import default_setup
    from pointcept.engines.train import TRAINERS

    cfg = default_setup(cfg)
    TRAINERS.build(dict(type=cfg.train.type, cfg=cfg)).train()


def _test_worker(cfg) -> None:
    """Pointcept's ``tools/test.py`` worker."""
    from pointcept.engines.defaults import default_setup
    from pointcept.engines.test import TESTERS

    cfg = default_setup(cfg)
    TESTERS.build(dict(cfg=cfg, **cfg.test)).test()


def default_device() -> str:
    """``"cuda"`` when a GPU is usable, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def intersection_and_union(output: torch.Tensor, target: torch.Tensor, k: int, ignore_index: int = -1):
    """Per-class ``(intersection, union, target)`` point counts as float tensors, on any device.

    Same counts as Pointcept's ``intersection_and_union_gpu`` (labels outside ``[0, k)`` and points whose
    target is ``ignore_index`` are not counted), which uses ``torch.histc`` on integer tensors, a CUDA-only
    kernel. Unlike it, ``output`` is not modified.
    """
    output, target = output.reshape(-1), target.reshape(-1)
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in size")
    keep = target != ignore_index
    output, target = output[keep].long(), target[keep].long()

    def count(labels: torch.Tensor) -> torch.Tensor:
        labels = labels[(labels >= 0) & (labels < k)]
        return torch.bincount(labels, minlength=k).float()

    area_intersection = count(output[output == target])
    area_output, area_target = count(output), count(target)
    return area_intersection, area_output + area_target - area_intersection, area_target


# Pointcept modules that bind ``intersection_and_union_gpu`` by name at import.
_IOU_MODULES = ("pointcept.engines.hooks.evaluator", "pointcept.engines.test")
_INHERITED = object()


@contextlib.contextmanager
def on_device(device: str | torch.device) -> Iterator[torch.device]:
    """While inside, Pointcept's CUDA-only calls act on ``device`` (a no-op for a CUDA device).

    Patched for the duration (and restored after): ``torch.Tensor.cuda`` and ``torch.nn.Module.cuda`` move
    to ``device`` instead (the trainer's ``model.cuda()``, every ``.cuda(non_blocking=True)`` of a batch in
    ``run_step``, the evaluator hooks and the tester, the tester's vote buffer); ``torch.load`` maps
    storages onto ``device`` (checkpoints saved on a GPU, and ``CheckpointLoader``'s
    ``storage.cuda()`` map); Pointcept's ``intersection_and_union_gpu`` in its evaluator hooks and tester
    becomes :func:`intersection_and_union`. AMP is a config switch, set by :func:`launch`.
    """
    device = torch.device(device)
    if device.type == "cuda":
        yield device
        return

    def tensor_to_device(self, *args, non_blocking: bool = False, **kwargs):
        return self.to(device, non_blocking=non_blocking)

    def module_to_device(self, *args, **kwargs):
        return self.to(device)

    torch_load = torch.load

    def load_onto_device(f, *args, **kwargs):
        if args:  # map_location given positionally
            args = args[1:]
        kwargs["map_location"] = device
        return torch_load(f, *args, **kwargs)

    patches = [(torch.Tensor, "cuda", tensor_to_device), (nn.Module, "cuda", module_to_device),
               (torch, "load", load_onto_device)]
    patches += [(importlib.import_module(name), "intersection_and_union_gpu", intersection_and_union)
                for name in _IOU_MODULES]
    # torch.Tensor inherits .cuda from its C base: restoring means deleting the override again
    saved = [(owner, name, owner.__dict__.get(name, _INHERITED)) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield device
    finally:
        for owner, name, value in saved:
            if value is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def launch(mode: str, argv: Sequence[str], device: str | torch.device | None = None) -> None:
    """Run Pointcept's own train (``mode="train"``) or test entry on ``argv`` (Pointcept's arguments).

    ``argv`` is what Pointcept's ``tools/train.py`` / ``tools/test.py`` take (``--config-file``, ``--num-gpus``,
    ``--options KEY=VALUE ...``). ``device`` (default: CUDA when available, else CPU) other than CUDA runs
    one process under :func:`on_device` with ``enable_amp=False``.
    """
    if POINTCEPT_MODELS is None:
        raise ImportError("Pointcept is not importable: pass --pointcept-root (a Pointcept checkout) "
                          "or set POINTCEPT_ROOT")
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    from pointcept.engines.defaults import default_argument_parser, default_config_parser
    from pointcept.engines.launch import launch as pointcept_launch

    device = torch.device(device or default_device())
    args = default_argument_parser().parse_args(list(argv))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is usable here; pass --device cpu")
    if device.type != "cuda" and args.num_gpus * args.num_machines != 1:
        raise ValueError(f"on {device.type} Pointcept runs as one process: --num-gpus 1 (got {args.num_gpus}) "
                         f"on one machine (got {args.num_machines})")
    cfg = default_config_parser(args.config_file, args.options)
    if device.type != "cuda":
        cfg.enable_amp = False  # Pointcept's autocast and GradScaler are built for device "cuda"
    with on_device(device):
        pointcept_launch(
            _main_worker if mode == "train" else _test_worker,
            num_gpus_per_machine=args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            cfg=(cfg,),
        )
