"""ffnet.segmentation: FFNet models for mmseg 1.x (UperNet and FFNet-seg configs in ``configs/``).

Importing this package (``custom_imports=dict(imports=['ffnet.segmentation'])`` in a config)
registers into mmseg's registries:

* ``MODELS``: ``FFNet`` (the FFNet-1..4 backbone of :mod:`ffnet.classification.openmmlab.backbone`,
  shared with detection), ``FFNetSeg`` (the system-level backbone) and ``FFNetHead`` (its decode head);
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``FFNetLayerDecayOptimizerConstructor``.

It also applies :mod:`ffnet.checkpoints`. :func:`reparameterize_segmentor` folds a
segmentor for deployment, :func:`deploy_checkpoint` a trained checkpoint.
"""
from ffnet.checkpoints import allow_mmengine_checkpoints
from ffnet.classification.openmmlab.backbone import FFNet
from ffnet.classification.openmmlab.layer_decay import FFNetLayerDecayOptimizerConstructor
from ffnet.segmentation.deploy import deploy_checkpoint, reparameterize_segmentor
from ffnet.segmentation.ffnet_seg import FFNetSeg
from ffnet.segmentation.head import FFNetHead

__all__ = ["FFNet", "FFNetSeg", "FFNetHead", "FFNetLayerDecayOptimizerConstructor", "deploy_checkpoint",
           "reparameterize_segmentor"]


def _register_into_mmseg() -> None:
    from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    for name, module in (("FFNet", FFNet), ("FFNetSeg", FFNetSeg), ("FFNetHead", FFNetHead)):
        MODELS.register_module(name, module=module, force=True)
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(
        "FFNetLayerDecayOptimizerConstructor", module=FFNetLayerDecayOptimizerConstructor, force=True)


allow_mmengine_checkpoints()
_register_into_mmseg()
