"""ffnet.detection: FFNet backbones for mmdet 3.x (Cascade Mask R-CNN configs in ``configs/``).

Importing this package (``custom_imports=dict(imports=['ffnet.detection'])`` in a config)
registers into mmdet's registries:

* ``MODELS``: ``FFNet`` — the FFNet-1..4 multi-scale backbone
  (:class:`ffnet.classification.openmmlab.backbone.FFNet`, which the segmentation package registers too);
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``FFNetLayerDecayOptimizerConstructor`` (layer-wise lr decay).

It also applies the compatibility fixes of :mod:`ffnet.checkpoints` (torch >= 2.6
checkpoint loading of mmengine's own files). :func:`ffnet.detection.deploy.deploy_checkpoint` folds a
trained detector for deployment.
"""
from ffnet.checkpoints import allow_mmengine_checkpoints
from ffnet.classification.openmmlab.backbone import FFNet
from ffnet.classification.openmmlab.layer_decay import FFNetLayerDecayOptimizerConstructor, layer_id

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


allow_mmengine_checkpoints()
MMDET_AVAILABLE = _register_into_mmdet()
