"""``ffnet info``: versions of the stack and which optional backends are usable here."""
from __future__ import annotations

import argparse
import importlib
import platform
from importlib import metadata

PACKAGES = (
    ("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"), ("mmengine", "mmengine"),
    ("mmcv", "mmcv"), ("mmdet", "mmdet"), ("mmseg", "mmsegmentation"), ("spconv", None),
    ("diffusers", "diffusers"), ("onnxruntime", "onnxruntime"),
)


def package_version(module: str, distribution: str | None) -> str:
    """Installed version of ``module`` (from its distribution metadata), or ``'not installed'``."""
    from importlib.util import find_spec

    if find_spec(module) is None:
        return "not installed"
    names = [distribution] if distribution else []
    if module == "spconv":  # published per CUDA version: spconv-cu120, spconv-cu118, ...
        names += sorted(d.metadata["Name"] for d in metadata.distributions()
                        if (d.metadata["Name"] or "").lower().startswith("spconv"))
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    version = getattr(importlib.import_module(module), "__version__", None)
    return str(version) if version else "installed (version unknown)"


def check_mmcv_ops() -> str:
    """Whether mmcv's compiled ops load and run (NMS on a tiny CPU tensor)."""
    try:
        import torch
        from mmcv.ops import nms, roi_align  # noqa: F401
    except ImportError as err:
        return f"unavailable ({err})"
    except Exception as err:  # a broken build raises from the extension loader
        return f"broken ({type(err).__name__}: {err})"
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    try:
        _, keep = nms(boxes, scores, iou_threshold=0.5)
    except Exception as err:
        return f"broken (nms failed: {type(err).__name__}: {err})"
    if keep.tolist() != [0, 2]:
        return f"broken (nms kept {keep.tolist()}, expected [0, 2])"
    return "usable (nms, roi_align)"


def check_spconv() -> str:
    """Whether spconv's compiled core loads (importing ``spconv.pytorch`` itself takes tens of seconds)."""
    try:
        import spconv
        import spconv.core_cc  # noqa: F401
        import torch
    except ImportError as err:
        return f"unavailable ({err})"
    except Exception as err:  # e.g. missing CUDA runtime libraries
        return f"broken ({type(err).__name__}: {err})"
    if torch.cuda.is_available():
        return f"{spconv.__version__}, compiled core loads; CUDA available (forward and backward)"
    return (f"{spconv.__version__}, compiled core loads; no CUDA: forward only (ConvAlgo.Native), "
            "ffnet's pure-PyTorch sparse conv covers training")


def check_cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"not available (torch built with CUDA {torch.version.cuda})" if torch.version.cuda else "not available"
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return f"{torch.cuda.device_count()} device(s): {names}; CUDA {torch.version.cuda}"


def main(args: argparse.Namespace | None = None) -> None:
    import ffnet

    rows = [("ffnet", ffnet.__version__), ("python", platform.python_version())]
    rows += [(module, package_version(module, dist)) for module, dist in PACKAGES]
    backends = [("mmcv compiled ops", check_mmcv_ops()), ("spconv", check_spconv()), ("CUDA", check_cuda())]
    width = max(len(name) for name, _ in rows + backends)
    print("versions")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("backends")
    for name, value in backends:
        print(f"  {name:<{width}}  {value}")
