"""Cascade Mask R-CNN (COCO 3x): FFNet-2 beside ConvNeXt-T and Swin-T, params, MACs and CPU latency.

The three detectors are the same mmdet 3.x model (FPN, 3-stage cascade with 4conv1fc GIoU box heads,
mask head) and differ only in the backbone: FFNet-2 from this package's config, ConvNeXt-T from
mmdet's own config (``mmpretrain.ConvNeXt``), Swin-T (mmdet's ``SwinTransformer`` with its Mask R-CNN
3x settings) swapped into that config. All are measured in the same run on the same input.

Two graphs are measured: the features (backbone + FPN), and the detector as the usual detection FLOP
counts define it (mmdet 2.x ``forward_dummy``, as in the ConvNeXt and Swin papers): features, the RPN
head, the three box heads on a fixed set of proposals and the three mask heads on the first 100.
Fixed proposals make the head cost independent of the random weights; NMS and post-processing are
not part of either graph.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

DETECTORS = ("ffnet-2", "ffnet-2-deployed", "convnext-t", "swin-t")
REFERENCE = "ffnet-2-deployed"
FFNET_CONFIG = "cascade-mask-rcnn_ffnet-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py"
CONVNEXT_CONFIG = "convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py"
# mmdet's configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py backbone
SWIN_T = dict(type="SwinTransformer", embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
              mlp_ratio=4, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.2,
              patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False, convert_weights=True, init_cfg=None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ffnet.engine.openmmlab.benchmark import add_dense_arguments

    add_dense_arguments(parser, DETECTORS, 320, 512, "COCO tests at 800x1333")
    parser.add_argument("--proposals", type=int, default=300,
                        help="RoIs through the box heads (default 300; mmdet's test setting and FLOP tables use 1000)")
    parser.add_argument("--mask-rois", type=int, default=50,
                        help="RoIs through the mask heads (default 50; FLOP tables use 100)")


def _detector_config(name: str):
    from mmengine.config import Config

    import ffnet.detection
    from ffnet.engine.openmmlab.benchmark import package_config

    if name.startswith("ffnet-2"):
        cfg = Config.fromfile(str(Path(ffnet.detection.__file__).parent / "configs" / FFNET_CONFIG))
    else:
        cfg = Config.fromfile(package_config("mmdet", CONVNEXT_CONFIG))
        if name == "swin-t":
            cfg.model.backbone = dict(SWIN_T)
    cfg.model.backbone.init_cfg = None  # random weights: no download
    return cfg


def fixed_proposals(height: int, width: int, count: int, seed: int = 0):
    """``(count, 5)`` RoIs ``(batch index, x1, y1, x2, y2)`` of random sizes inside the image."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(count, 2, generator=gen) * torch.tensor([width, height])
    size = (0.05 + 0.6 * torch.rand(count, 2, generator=gen)) * torch.tensor([width, height])
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([width, height, width, height], dtype=boxes.dtype))
    return torch.cat([torch.zeros(count, 1), boxes], 1)


def detector_forward(model, rois, mask_rois: int) -> Callable[[object], object]:
    """Features, RPN head, the cascade's box heads on ``rois`` and mask heads on the first ``mask_rois``."""
    def forward(inputs):
        x = model.extract_feat(inputs)
        outputs = [model.rpn_head(x)]
        for stage in range(model.roi_head.num_stages):
            outputs.append(model.roi_head._bbox_forward(stage, x, rois)["cls_score"])
            outputs.append(model.roi_head._mask_forward(stage, x, rois[:mask_rois])["mask_preds"])
        return outputs

    return forward


def build(name: str, device: str, args: argparse.Namespace):
    """The detector ``name`` on ``device`` as a ``Measured``: graphs ``'features'`` and ``'model'``."""
    from ffnet.core import fuse_for_inference, reparameterize
    from ffnet.engine.bench import count_parameters
    from ffnet.engine.openmmlab.benchmark import Measured, build_from_config

    model = build_from_config(_detector_config(name), default_scope="mmdet")
    if name.endswith("deployed"):
        fuse_for_inference(reparameterize(model))
    model.to(device)
    rois = fixed_proposals(args.height, args.width, args.proposals).to(device)
    backbone = type(model.backbone).__name__
    return Measured(name, "FFNet-2" if backbone == "FFNet" else backbone, model,
                    {"features": model.extract_feat, "model": detector_forward(model, rois, args.mask_rois)},
                    params=count_parameters(model))


def run(args: argparse.Namespace):
    """Build, count and time the detectors; the ``BenchmarkResult`` of ``ffnet detection bench``."""
    from ffnet.engine.bench import setup_bench
    from ffnet.engine.errors import UserError
    from ffnet.engine.openmmlab.benchmark import COUNTER, dense_result, run_dense

    devices = setup_bench(args)
    if args.proposals < 1 or args.mask_rois < 1:
        raise UserError(f"--proposals and --mask-rois must be >= 1 (got {args.proposals}, {args.mask_rois})")
    labels = {"features": "backbone+FPN", "model": "detector"}
    rows, measured = run_dense(args, devices, lambda name, device: build(name, device, args), labels, REFERENCE)
    notes = [
        f"'detector' graph: backbone, FPN, RPN head, the three cascade box heads on {args.proposals} fixed proposals "
        f"and the three mask heads on the first {args.mask_rois}: the graph of mmdet 2.x forward_dummy, which "
        "detection FLOP tables run with 1000 and 100 (--proposals 1000 --mask-rois 100); no NMS or "
        "post-processing. The heads cost the same for every backbone and do not shrink with the input, so at "
        "reduced resolution they dominate the detector figures; 'backbone+FPN' is the part that differs.",
        f"{COUNTER}; mmcv's RoIAlign and activations are not counted. Params: all detector parameters; ffnet-2 is "
        "the train-time model, ffnet-2-deployed is "
        "ffnet.core.reparameterize(detector) (BN and 3x3 side branches folded), then ffnet.core.fuse_for_inference "
        "(GELUs and residual additions as oneDNN post-ops of the convs; MACs counted on the plain ops).",
        "ConvNeXt-T: mmdet's cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py "
        "(backbone mmpretrain.ConvNeXt). Swin-T: the same config with mmdet's SwinTransformer backbone as in "
        "mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py (mmdet ships no Swin Cascade Mask R-CNN config).",
        "Paper (COCO val2017, Cascade Mask R-CNN 3x): FFNet-2 51.8 box AP / 44.9 mask AP; the paper gives no "
        "detector FLOPs or CPU latency.",
    ]
    title = f"Cascade Mask R-CNN 3x, FFNet-2 vs ConvNeXt-T vs Swin-T: size and latency at {args.height}x{args.width}"
    return dense_result("detection", title, args, rows, measured, labels, "reduced from COCO's 800x1333 test size",
                        notes)
