"""ffnet.detection: FFNet backbones for mmdet 3.x (Cascade Mask R-CNN configs in ``configs/``).

Importing this package (``custom_imports=dict(imports=['ffnet.detection'])`` in a config)
registers into mmdet's registries:

* ``MODELS``: ``FFNet`` — the FFNet-1..4 multi-scale backbone
  (:class:`ffnet.classification.openmmlab.backbone.FFNet`, which the segmentation package registers too);
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``FFNetLayerDecayOptimizerConstructor`` (layer-wise lr decay).

It also applies the compatibility fixes of :mod:`ffnet.engine.checkpoints` (torch >= 2.6
checkpoint loading of mmengine's own files). :func:`ffnet.detection.deploy.deploy_checkpoint` folds a
trained detector for deployment.

Importing it also registers with :mod:`ffnet.engine.checkpoints` the authors' mmdet 2.28 Cascade Mask
R-CNN layout (:mod:`ffnet.detection.convert`; ``ffnet test`` converts their released detectors
automatically) and describers that name the detector and backbone variant of a state dict.
"""
from ffnet.engine.checkpoints import allow_mmengine_checkpoints
from ffnet.classification.openmmlab.backbone import FFNet
from ffnet.engine.openmmlab.layer_decay import FFNetLayerDecayOptimizerConstructor, layer_id

__all__ = ["FFNet", "FFNetLayerDecayOptimizerConstructor", "layer_id", "MMDET_AVAILABLE"]


def _register_into_mmdet() -> bool:
    """Register the backbone and the optimizer constructor; ``False`` when mmdet is not installed.

    (The ``ffnet`` command imports ``ffnet.detection.commands``, and so this package, without mmdet.)
    """
    try:
        from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    except ModuleNotFoundError as err:
        if err.name != "mmdet":
            raise
        return False
    MODELS.register_module("FFNet", module=FFNet, force=True)
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(
        "FFNetLayerDecayOptimizerConstructor", module=FFNetLayerDecayOptimizerConstructor, force=True)
    return True


def _register_checkpoint_layouts() -> None:
    from ffnet.classification.openmmlab.backbone import describe_backbone
    from ffnet.detection import convert
    from ffnet.engine.checkpoints import register_describer, register_layout

    register_layout(convert.AUTHORS_LAYOUT, convert.is_authors_layout, convert.authors_to_own)
    register_describer("two-stage detector", convert.describe_detector)
    register_describer("FFNet dense-prediction backbone", describe_backbone)


allow_mmengine_checkpoints()
_register_checkpoint_layouts()
MMDET_AVAILABLE = _register_into_mmdet()
