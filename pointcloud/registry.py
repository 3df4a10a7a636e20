"""mmengine registries of the standalone point-cloud trainer (scope ``ffnet_pointcloud``).

Each is a child of mmengine's root registry, so a config with ``default_scope="ffnet_pointcloud"``
finds this package's datasets, transforms, model, metric, loop and collate functions first and
mmengine's own optimizers, schedulers, hooks and loops through the parent.
"""
from mmengine import registry as engine
from mmengine.registry import DATASETS as ENGINE_DATASETS
from mmengine.registry import FUNCTIONS as ENGINE_FUNCTIONS
from mmengine.registry import LOOPS as ENGINE_LOOPS
from mmengine.registry import METRICS as ENGINE_METRICS
from mmengine.registry import MODELS as ENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as ENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as ENGINE_TRANSFORMS
from mmengine.registry import DefaultScope, Registry

SCOPE = "ffnet_pointcloud"

TRANSFORMS = Registry("transform", parent=ENGINE_TRANSFORMS, scope=SCOPE, locations=["ffnet.pointcloud.transforms"])
DATASETS = Registry("dataset", parent=ENGINE_DATASETS, scope=SCOPE, locations=["ffnet.pointcloud.data"])
FUNCTIONS = Registry("function", parent=ENGINE_FUNCTIONS, scope=SCOPE, locations=["ffnet.pointcloud.data"])
MODELS = Registry("model", parent=ENGINE_MODELS, scope=SCOPE, locations=["ffnet.pointcloud.trainer"])
METRICS = Registry("metric", parent=ENGINE_METRICS, scope=SCOPE, locations=["ffnet.pointcloud.tester"])
LOOPS = Registry("loop", parent=ENGINE_LOOPS, scope=SCOPE, locations=["ffnet.pointcloud.tester"])
OPTIM_WRAPPER_CONSTRUCTORS = Registry("optimizer wrapper constructor", parent=ENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope=SCOPE, locations=["ffnet.pointcloud.trainer"])

# Empty children of the mmengine registries this scope uses as they are, so that building with
# default_scope="ffnet_pointcloud" resolves through them to mmengine without scope warnings.
_PASS_THROUGH = {
    name: Registry(name.lower(), parent=getattr(engine, name), scope=SCOPE)
    for name in ("DATA_SAMPLERS", "HOOKS", "OPTIM_WRAPPERS", "OPTIMIZERS", "PARAM_SCHEDULERS", "LOG_PROCESSORS",
                 "VISUALIZERS", "VISBACKENDS", "EVALUATOR", "RUNNERS", "RUNNER_CONSTRUCTORS", "WEIGHT_INITIALIZERS",
                 "MODEL_WRAPPERS")
}


def build_in_scope(registry: Registry, cfg: dict, **kwargs):
    """Build ``cfg`` from one of this package's registries, whatever default scope is current.

    mmengine resolves a build through the current default scope, so a Runner of another scope
    created earlier in the process (e.g. an mmdet one) would otherwise hide these modules.
    """
    with DefaultScope.overwrite_default_scope(SCOPE):
        return registry.build(cfg, **kwargs)
