"""ffnet.classification.openmmlab: the FFNet classifier as an OpenMMLab backbone.

* :mod:`.backbone`: ``FFNet``, the FFNet-1..4 multi-scale backbone (mmengine ``BaseModule``) built
  from the classification stem and stages, and the checkpoint readers.

Nothing is imported here: ``ffnet.classification`` stays timm-only, and the backbone (which needs
mmengine) loads only when a dense-prediction package or user imports it. It is registered into mmdet's
and mmseg's registries by ``ffnet.detection`` and ``ffnet.segmentation``; the rest of their shared
OpenMMLab glue (layer decay, deployment, benchmark helpers) is :mod:`ffnet.engine.openmmlab`.
"""
