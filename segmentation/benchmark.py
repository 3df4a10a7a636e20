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
    from ffnet.tables import DEFAULT_OUT_DIR

    parser.add_argument("--models", nargs="+", choices=SEGMENTORS, default=list(SEGMENTORS))
    parser.add_argument("--height", type=int, default=256, help="input height (default 256; ADE20K tests at 512)")
    parser.add_argument("--width", type=int, default=512, help="input width (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per model, model order rotated")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed passes per model before timing (default 0: the MAC count already ran each graph)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)


def _segmentor_config(name: str):
    from mmengine.config import Config

    import ffnet.segmentation
    from ffnet.classification.openmmlab.benchmark import package_config

    base = name.removesuffix("-deployed")
    if base in OWN_CONFIGS:
        cfg = Config.fromfile(str(Path(ffnet.segmentation.__file__).parent / "configs" / OWN_CONFIGS[base]))
    else:
        cfg = Config.fromfile(package_config("mmseg", MMSEG_CONFIGS[base]))
    cfg.model.backbone.init_cfg = None  # random weights: no download
    cfg.model.pop("pretrained", None)
    return cfg


def run(args: argparse.Namespace):
    """Build, count and time the segmentors; the ``BenchmarkResult`` of ``ffnet bench segmentation``."""
    import torch

    from ffnet.classification.openmmlab.benchmark import Graph, Measured, build_from_config, count_macs, make_rows, \
        plot_latency, time_models
    from ffnet.core import fuse_for_inference
    from ffnet.segmentation import reparameterize_segmentor
    from ffnet.tables import BenchmarkResult

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.height < 64 or args.width < 64 or args.rounds < 1 or args.warmup < 0:
        raise ValueError("--height/--width must be >= 64, --rounds >= 1, --warmup >= 0")
    height, width = args.height, args.width
    torch.manual_seed(0)
    inputs = torch.randn(1, 3, height, width)
    labels = {"features": "backbone", "model": "segmentor"}
    entries = []
    for name in args.models:
        model = build_from_config(_segmentor_config(name), default_scope="mmseg")
        if name.endswith("deployed"):
            fuse_for_inference(reparameterize_segmentor(model))
        graphs = {"features": Graph(model.backbone), "model": Graph(lambda x, m=model: m._forward(x))}
        for graph in graphs.values():
            graph.macs = count_macs(graph.forward, model, inputs)
        inference_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("auxiliary_head."))
        backbone = {"FFNet": "FFNet-2", "FFNetSeg": "FFNet-seg"}.get(type(model.backbone).__name__,
                                                                     type(model.backbone).__name__)
        entries.append(Measured(name, backbone, inference_params,
                                sum(p.numel() for p in model.backbone.parameters()), graphs))
        print(f"built {name}: {inference_params / 1e6:.2f}M params, {graphs['model'].macs / 1e9:.1f} GMACs", flush=True)
    time_models(entries, inputs, args.rounds, args.warmup, log=lambda line: print(line, flush=True))
    rows = make_rows(entries, REFERENCE, labels)
    notes = [
        f"Input 1x3x{height}x{width} (reduced; the paper counts UperNet FLOPs at 512x2048 and FFNet-seg at 512x512), "
        f"batch 1, float32, eval mode, random weights, torch.inference_mode, {torch.get_num_threads()} threads; "
        f"latency = median of {args.rounds} timed passes after the MAC-count pass and {args.warmup} warm-up "
        "pass(es), model order rotated each round; spread = (max - min) / median.",
        "'segmentor' graph: mmseg's tensor-mode forward (_forward: backbone + decode head, logits at stride 4 for "
        "UperNet and 8 for FFNet-seg, before the resize to the input). Params exclude UperNet's auxiliary FCN head "
        "(training only; with it UperNet FFNet-2/3/4 have the paper's 58M/80M/113M).",
        "GMACs: mmengine.analysis FlopAnalyzer (fvcore rules, 1 FMA = 1; the paper's mmcv counter also counts MACs). "
        "'-deployed' rows: ffnet.segmentation.reparameterize_segmentor (every BN, side branch and LayerScale folded), "
        "then ffnet.core.fuse_for_inference (GELUs and residual additions as oneDNN post-ops of the convs).",
        "ConvNeXt-T: mmseg's convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py (mmpretrain.ConvNeXt); Swin-T: "
        "mmseg's swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py.",
        "Paper (ADE20K val, single-scale mIoU): UperNet FFNet-2 47.1 (58M, 942G at 512x2048); FFNet-seg 50.1 "
        "(68M, 74G at 512x512).",
    ]
    title = f"ADE20K segmentors: UperNet FFNet-2 vs ConvNeXt-T vs Swin-T, and FFNet-seg, at {height}x{width}"
    return BenchmarkResult(name="segmentation", title=title, rows=rows, notes=notes,
                           plot=lambda path: plot_latency(entries, labels, title, path))
