"""ffnet.pointcloud: the FFNet point model (PTv3 skeleton with FFNet blocks on submanifold convs).

Model, Pointcept-format data and transforms, the standalone mmengine trainer and TTA tester, and
the Pointcept plugin (``import ffnet.pointcloud.pointcept``). Names resolve lazily, so that the
``ffnet`` command (which imports ``ffnet.pointcloud.commands``) starts without loading torch.
"""
from ffnet.engine.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "model": ("ARCHS", "FFNetPointBackbone", "FFNetPointSegmentor", "build_backbone", "build_segmentor",
              "ffnet_point_block", "set_sparse_backend"),
    "structure": ("PointCloud", "point_cloud_from_dict"),
    "pooling": ("GridPooling", "GridUnpooling", "grid_cells"),
    "losses": ("Criteria", "CrossEntropyLoss", "LovaszLoss"),
    "data": ("ScanNetDataset", "ScanNet200Dataset", "S3DISDataset", "SceneError", "collate_fn", "point_collate_fn"),
    "tester": ("intersection_and_union", "segmentation_metrics", "vote_fragments"),
    "trainer": ("build_runner", "load_pointcept_config", "to_runner_config"),
    "checkpoint": ("convert_release_state_dict",),
    "predict": ("predict_scene",),
})
