"""ffnet.engine.openmmlab: the OpenMMLab glue that ffnet.detection and ffnet.segmentation share.

* :mod:`.layer_decay`: ``FFNetLayerDecayOptimizerConstructor``, the authors' layer-wise lr decay;
* :mod:`.scope`: building models from configs in a fixed registry scope, whatever scope is current;
* :mod:`.deploy`: re-parameterizing a trained OpenMMLab model and writing its deploy=True config;
* :mod:`.commands`: the ``export`` verb of ``ffnet detection`` / ``ffnet segmentation`` (argparse only);
* :mod:`.benchmark`: building the compared models, their graphs' MACs and latencies, rows and plots of
  the dense-prediction benchmarks.

Nothing is imported here, and nothing here imports a domain: the FFNet mm backbone itself is
:mod:`ffnet.classification.openmmlab.backbone`, registered into mmdet's and mmseg's registries by
``ffnet.detection`` and ``ffnet.segmentation``.
"""
