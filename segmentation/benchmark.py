"""ADE20K segmentors: UperNet with FFNet-2, ConvNeXt-T and Swin-T, and FFNet-seg; params, MACs, CPU latency.

The UperNet models are the same mmseg 1.x segmentor (UPerHead + FCN auxiliary head) with three
backbones: FFNet-2 from this package's config, ConvNeXt-T (``mmpretrain.ConvNeXt``) and Swin-T from
mmseg's own configs. FFNet-seg is the system-level model (FFNet-seg backbone + FFNetHead). All are
measured in the same run on the same input, for the backbone alone and for the inference graph
(``_forward``: backbone and decode head, as mmseg's ``get_flops`` tool analyses it; the auxiliary
head is a training-only loss and not part of it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

SEGMENTORS = ("upernet-ffnet-2", "upernet-ffnet-2-deployed", "upernet-convnext-t", "upernet-swin-t", "ffnet-seg",
              "ffnet-seg-deployed")
REFERENCE = "upernet-ffnet-2-deployed"
OWN_CONFIGS = {"upernet-ffnet-2": "ffnet-2_upernet_8xb2-160k_ade20k-512x512.py",
               "ffnet-seg": "ffnet-seg_8xb2-160k_ade20k-512x512.py"}
MMSEG_CONFIGS = {"upernet-convnext-t": "convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py",
                 "upernet-swin-t": "swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ffnet.engine.openmmlab.benchmark import add_dense_arguments

    add_dense_arguments(parser, SEGMENTORS, 256, 512, "ADE20K tests at 512")


def _segmentor_config(name: str):
    from mmengine.config import Config

    import ffnet.segmentation
    from ffnet.engine.openmmlab.benchmark import package_config

    base = name.removesuffix("-deployed")
    if base in OWN_CONFIGS:
        cfg = Config.fromfile(str(Path(ffnet.segmentation.__file__).parent / "configs" / OWN_CONFIGS[base]))
    else:
        cfg = Config.fromfile(package_config("mmseg", MMSEG_CONFIGS[base]))
    cfg.model.backbone.init_cfg = None  # random weights: no download
    cfg.model.pop("pretrained", None)
    return cfg


def build(name: str, device: str):
    """The segmentor ``name`` on ``device`` as a ``Measured``: graphs ``'features'`` and ``'model'``."""
    from ffnet.core import fuse_for_inference
    from ffnet.engine.bench import count_parameters
    from ffnet.engine.openmmlab.benchmark import Measured, build_from_config
    from ffnet.segmentation import reparameterize_segmentor

    model = build_from_config(_segmentor_config(name), default_scope="mmseg")
    if name.endswith("deployed"):
        fuse_for_inference(reparameterize_segmentor(model))
    model.to(device)
    backbone = type(model.backbone).__name__
    return Measured(name, {"FFNet": "FFNet-2", "FFNetSeg": "FFNet-seg"}.get(backbone, backbone), model,
                    {"features": model.backbone, "model": model._forward},
                    params=count_parameters(model, exclude=("auxiliary_head.",)))


def run(args: argparse.Namespace):
    """Build, count and time the segmentors; the ``BenchmarkResult`` of ``ffnet segmentation bench``."""
    from ffnet.engine.bench import setup_bench
    from ffnet.engine.openmmlab.benchmark import COUNTER, dense_result, run_dense

    devices = setup_bench(args)
    labels = {"features": "backbone", "model": "segmentor"}
    rows, measured = run_dense(args, devices, build, labels, REFERENCE)
    notes = [
        "'segmentor' graph: mmseg's tensor-mode forward (_forward: backbone + decode head, logits at stride 4 for "
        "UperNet and 8 for FFNet-seg, before the resize to the input). Params exclude UperNet's auxiliary FCN head "
        "(training only; with it UperNet FFNet-2/3/4 have the paper's 58M/80M/113M).",
        f"{COUNTER}; the paper's mmcv counter also counts MACs. "
        "'-deployed' rows: ffnet.segmentation.reparameterize_segmentor (every BN, side branch and LayerScale folded), "
        "then ffnet.core.fuse_for_inference (GELUs and residual additions as oneDNN post-ops of the convs).",
        "ConvNeXt-T: mmseg's convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py (mmpretrain.ConvNeXt); Swin-T: "
        "mmseg's swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py.",
        "Paper (ADE20K val, single-scale mIoU): UperNet FFNet-2 47.1 (58M, 942G at 512x2048); FFNet-seg 50.1 "
        "(68M, 74G at 512x512).",
    ]
    title = (f"ADE20K segmentors: UperNet FFNet-2 vs ConvNeXt-T vs Swin-T, and FFNet-seg, at "
             f"{args.height}x{args.width}")
    return dense_result("segmentation", title, args, rows, measured, labels, "reduced; the paper counts UperNet "
                        "FLOPs at 512x2048 and FFNet-seg at 512x512", notes)
