"""ffnet.segmentation: FFNet models for mmseg 1.x (UperNet and FFNet-seg configs in ``configs/``).

Importing this package (``custom_imports=dict(imports=['ffnet.segmentation'])`` in a config)
registers into mmseg's registries:

* ``MODELS``: ``FFNet`` (the FFNet-1..4 backbone of :mod:`ffnet.classification.openmmlab.backbone`,
  shared with detection), ``FFNetSeg`` (the system-level backbone) and ``FFNetHead`` (its decode head);
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``FFNetLayerDecayOptimizerConstructor``.

It also applies :mod:`ffnet.engine.checkpoints`. :func:`reparameterize_segmentor` folds a
segmentor for deployment, :func:`deploy_checkpoint` a trained checkpoint.

Importing it also registers with :mod:`ffnet.engine.checkpoints` the authors' mmseg 0.x UperNet and
FFNet-seg segmentor layouts and their FFNet-seg ImageNet layout (:mod:`ffnet.segmentation.convert`;
``ffnet test`` converts their released segmentors automatically), and describers that name the
segmentor and backbone of a state dict.
"""
from ffnet.engine.checkpoints import allow_mmengine_checkpoints
from ffnet.classification.openmmlab.backbone import FFNet
from ffnet.engine.openmmlab.layer_decay import FFNetLayerDecayOptimizerConstructor
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


def _register_checkpoint_layouts() -> None:
    from ffnet.classification.openmmlab.backbone import describe_backbone
    from ffnet.engine.checkpoints import register_describer, register_layout
    from ffnet.segmentation import convert, ffnet_seg

    register_layout(convert.UPERNET_LAYOUT, convert.is_authors_upernet, convert.upernet_authors_to_own)
    register_layout(convert.SYSTEM_LAYOUT, convert.is_authors_system, convert.system_authors_to_own)
    register_layout(convert.IMAGENET_LAYOUT, ffnet_seg.is_authors_imagenet, ffnet_seg.authors_to_own)
    register_describer("encoder-decoder segmentor", convert.describe_segmentor)
    register_describer("FFNet dense-prediction backbone", describe_backbone)
    register_describer("FFNet-seg backbone", ffnet_seg.describe_backbone)


allow_mmengine_checkpoints()
_register_into_mmseg()
_register_checkpoint_layouts()
