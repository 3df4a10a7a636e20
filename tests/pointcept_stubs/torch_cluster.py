"""Stand-in for ``torch_cluster`` (import only): NOT the real package.

torch-cluster has no wheel for this torch on PyPI (its CUDA/CPU builds come from the PyG wheel index,
which is not reachable here). Pointcept imports it at module level in ``pointcept/models/default.py``
and calls ``torch_cluster.knn`` only in ``DINOEnhancedSegmentor``, which the FFNet path does not use.
Importing this stand-in succeeds; calling anything in it raises ``NotImplementedError``. Only the
Pointcept test job (``make test-pointcept``) puts this folder on the path.
"""
from _standin import missing

__getattr__ = missing("torch_cluster", "compiled extension not installable here, needed only by other Pointcept models")
