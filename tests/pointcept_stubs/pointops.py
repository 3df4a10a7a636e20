"""Stand-in for Pointcept's ``pointops`` (import only): NOT the real extension.

``pointops`` is a CUDA-only extension built from Pointcept's ``libs/pointops`` (not on PyPI, and it
cannot be built without a CUDA toolkit). Pointcept imports it at module level in code that the FFNet
path never runs (PTv1/PTv2, Sonata/Concerto, ModelNet sampling, the instance-segmentation evaluator,
the part-segmentation tester). Importing this stand-in succeeds; calling anything in it raises
``NotImplementedError``. Only the Pointcept test job (``make test-pointcept``) puts this folder on the path.
"""
from _standin import missing

__getattr__ = missing("pointops", "CUDA-only extension from Pointcept's libs/, needed only by other Pointcept models")
