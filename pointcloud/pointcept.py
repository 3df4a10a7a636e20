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
"""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from torch import nn

from ffnet.pointcloud.model import FFNetPointBackbone
from ffnet.pointcloud.transforms import NormalizeColorSymmetric

BACKBONE_NAME = "FFNet-v1m1"
COLOR_TRANSFORM_NAME = "NormalizeColorSymmetric"


def pointcept_available() -> bool:
    """Whether a Pointcept checkout (``pointcept.models``) is importable."""
    return importlib.util.find_spec("pointcept") is not None


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


def launch(mode: str, argv: list[str]) -> None:
    """Run Pointcept's own train (``mode="train"``) or test entry with Pointcept's argument parser on ``argv``."""
    if POINTCEPT_MODELS is None:
        raise ImportError("Pointcept is not importable: pass --pointcept-root (a Pointcept checkout) or set PYTHONPATH")
    from pointcept.engines.defaults import default_argument_parser, default_config_parser
    from pointcept.engines.launch import launch as pointcept_launch

    args = default_argument_parser().parse_args(argv)
    cfg = default_config_parser(args.config_file, args.options)
    pointcept_launch(
        _main_worker if mode == "train" else _test_worker,
        num_gpus_per_machine=args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        cfg=(cfg,),
    )
