"""ffnet.classification.openmmlab: the OpenMMLab glue that ffnet.detection and ffnet.segmentation share.

* :mod:`.backbone`: ``FFNet``, the FFNet-1..4 multi-scale backbone (mmengine ``BaseModule``) built
  from the classification stem and stages, and the checkpoint readers;
* :mod:`.layer_decay`: ``FFNetLayerDecayOptimizerConstructor``, the authors' layer-wise lr decay;
* :mod:`.scope`: building models from configs in a fixed registry scope, whatever scope is current;
* :mod:`.deploy`: re-parameterizing a trained OpenMMLab model and writing its deploy=True config;
* :mod:`.benchmark`: MAC counting, timing, table rows and plots of the dense-prediction benchmarks.

Nothing is imported here: ``ffnet.classification`` stays timm-only, and these modules (which need
mmengine) load only when a dense-prediction package or user imports them. The registrations into
mmdet's and mmseg's registries are done by ``ffnet.detection`` and ``ffnet.segmentation``.
"""
