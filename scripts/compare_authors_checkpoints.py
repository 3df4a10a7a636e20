"""Check the conversion of the authors' released checkpoints against the authors' own code.

    python scripts/compare_authors_checkpoints.py PATH/TO/ysj9909-FFNet-checkout [--work-dir DIR]

For each released detection/segmentation checkpoint kind, this builds the parts whose state-dict keys
move from the authors' code (a checkout of https://github.com/ysj9909/FFNet, read in place, never
copied), gives every weight and BatchNorm statistic a random value, saves the state dict in their
layout as they release it, loads the file through ``ffnet test``'s loader (``build_runner`` +
``load_into_runner``, strict, layout recognised with no flag) or the backbone's ``init_cfg``, and
compares outputs on the same inputs:

* Cascade Mask R-CNN FFNet-2/3/4 (mmdet 2.28 → our mmdet 3.3 configs): their backbone
  (``detection/mmdet_custom/models/backbones/ffnet.py``); the FPN, RPN and RoI-head keys do not move
  between mmdet 2.28 and 3.3, so the file carries our detector's own random neck/heads, and the check is
  that they come back unchanged; then backbone features, FPN features and each cascade stage's class
  scores, box deltas and mask logits on the same RoIs are compared. The FFNet-4 file also carries mmdet 2 EMA buffers (``ema_*``);
* UperNet FFNet-2/3/4 (mmseg 0.27 → mmseg 1.2): their backbone (``segmentation/.../backbones/ffnet.py``);
  UPerHead/FCNHead keys do not move; backbone features and decode/auxiliary logits are compared;
* FFNet-seg segmentor (mmseg 0.x → mmseg 1.2): their backbone (``ffnet_sys.py``) and decode head
  (``ffnet_head.py``), both built from their code; logits are compared;
* FFNet-seg ImageNet backbone (``ffnet_seg.pth.tar``): their classifier-form backbone, loaded through
  ``FFNetSeg(init_cfg=dict(type='Pretrained', ...))``; stage features are compared.

Their modules import mmcv 1.x / mmdet 2.x / mmseg 0.x, which do not install next to the OpenMMLab 2.x
stack; the few symbols they use (registries, a logger, ``DropPath``, mmseg's ``BaseDecodeHead``) are
served by small stand-ins defined here, through an import hook that applies to their files only.
Prints one line per compared output and the maximum relative difference (max |a - b| / max |b|);
exits 1 when any exceeds ``--tolerance`` (default 1e-4).
"""
from __future__ import annotations

import argparse
import builtins
import logging
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

DETECTION_BACKBONE = "detection/mmdet_custom/models/backbones/ffnet.py"
UPERNET_BACKBONE = "segmentation/mmseg_custom/models/backbones/ffnet.py"
SYSTEM_BACKBONE = "segmentation/mmseg_custom/models/backbones/ffnet_sys.py"
SYSTEM_HEAD = "segmentation/mmseg_custom/models/decode_heads/ffnet_head.py"
DETECTORS = {2: "cascade-mask-rcnn_ffnet-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py",
             3: "cascade-mask-rcnn_ffnet-3_fpn_4conv1fc-giou_ms-crop-3x_coco.py",
             4: "cascade-mask-rcnn_ffnet-4_fpn_4conv1fc-giou_ms-crop-3x_coco.py"}
UPERNETS = {2: "ffnet-2_upernet_8xb2-160k_ade20k-512x512.py", 3: "ffnet-3_upernet_8xb2-160k_ade20k-512x512.py",
            4: "ffnet-4_upernet_8xb2-160k_ade20k-512x512.py"}
SYSTEM = "ffnet-seg_8xb2-160k_ade20k-512x512.py"
# The released FFNet-seg ADE20K head (the authors' ffnet_seg_512_ade_160k.py).
SYSTEM_HEAD_ARGS = dict(in_channels=[192, 384, 768], in_index=[0, 1, 2], spatial_ks=9, channel_ks=9, head_stride=8,
                        head_width=256, head_depth=3, expansion_ratio=4, final_expansion_ratio=4, channels=1024,
                        dropout_ratio=0.1, drop_path=0.1, num_classes=150, align_corners=False)


# ---------------------------------------------------------------------------------------------------------------------
# Stand-ins for the mmcv 1.x / mmdet 2.x / mmseg 0.x symbols the authors' modules import


class _Registry:
    """``BACKBONES`` / ``HEADS``: ``@register_module()`` keeps the class as it is."""

    def register_module(self, *args: Any, **kwargs: Any) -> Callable[[type], type]:
        return lambda cls: cls


class _BaseDecodeHead(nn.Module):
    """What the authors' ``FFNetHead`` uses of mmseg 0.x's ``BaseDecodeHead``: ``in_channels``,
    ``align_corners`` and ``cls_seg`` (dropout, then the 1x1 ``conv_seg`` classifier)."""

    def __init__(self, in_channels: Sequence[int], channels: int, *, num_classes: int, dropout_ratio: float = 0.1,
                 align_corners: bool = False, **unused: Any):
        super().__init__()
        self.in_channels = list(in_channels)
        self.channels = channels
        self.align_corners = align_corners
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)


def _stand_ins() -> types.ModuleType:
    from timm.layers import DropPath

    def no_checkpoint(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the comparison builds the authors' modules without a checkpoint")

    module = types.ModuleType("authors_openmmlab_stand_ins")
    module.BACKBONES = module.HEADS = _Registry()
    module.get_root_logger = lambda *args, **kwargs: logging.getLogger("authors")
    module._load_checkpoint = no_checkpoint
    module.DropPath = DropPath
    module.BaseDecodeHead = _BaseDecodeHead
    return module


def load_authors_module(path: Path) -> types.ModuleType:
    """Execute one of the authors' files from their checkout; its mmcv/mmdet/mmseg and relative imports get
    the stand-ins, everything else (torch, timm) the real modules."""
    stand_ins = _stand_ins()
    real_import = builtins.__import__

    def hooked_import(name: str, globals_: Any = None, locals_: Any = None, fromlist: Sequence[str] = (),
                      level: int = 0) -> Any:
        if level > 0 or name.split(".")[0] in ("mmcv", "mmdet", "mmseg"):
            return stand_ins
        return real_import(name, globals_, locals_, fromlist, level)

    module = types.ModuleType(f"authors_{path.stem}")
    module.__file__ = str(path)
    module.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": hooked_import}
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


# ---------------------------------------------------------------------------------------------------------------------
# Random weights, plain BatchNorm, comparisons


def plain_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every SyncBatchNorm (the authors' ``use_sync_bn=True``) by a BatchNorm2d: same keys, runs on CPU."""
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            plain = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            plain_batchnorm(child)
    return module


@torch.no_grad()
def randomize(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random values for every weight, bias, LayerScale and BatchNorm statistic, at scales that keep deep
    networks' activations finite."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.running_mean.copy_(torch.randn(sub.running_mean.shape, generator=generator) * 0.1)
            sub.running_var.copy_(torch.rand(sub.running_var.shape, generator=generator) + 0.5)
    for name, param in module.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if "layer_scale" in name or name.endswith("gamma"):
            param.copy_(0.3 + 0.1 * noise)
        elif param.ndim > 1:
            param.copy_(noise / param[0].numel() ** 0.5)
        else:
            param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
    return module


def flatten(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flatten(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in flatten(item)]
    return []


class Report:
    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.worst = 0.0
        self.failed: list[str] = []

    def compare(self, what: str, ours: Any, theirs: Any) -> None:
        ours, theirs = flatten(ours), flatten(theirs)
        if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
            self.failed.append(what)
            print(f"  {what}: shapes differ: {[tuple(t.shape) for t in ours]} vs {[tuple(t.shape) for t in theirs]}")
            return
        rel = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(ours, theirs))
        self.worst = max(self.worst, rel)
        ok = rel <= self.tolerance
        if not ok:
            self.failed.append(what)
        print(f"  {what}: {len(ours)} tensors, max relative difference {rel:.2e}{'' if ok else '  FAIL'}")

    def same_tensors(self, what: str, loaded: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
        differ = [k for k, v in saved.items() if k not in loaded or not torch.equal(loaded[k], v)]
        if differ:
            self.failed.append(what)
        print(f"  {what}: {len(saved)} tensors {'come back unchanged' if not differ else f'differ, e.g. {differ[:3]}'}")


# ---------------------------------------------------------------------------------------------------------------------
# Loading through ffnet test


def _runner(config: str, checkpoint: Path, work_dir: Path):
    from ffnet.engine.runner import add_test_arguments, build_runner

    parser = argparse.ArgumentParser()
    add_test_arguments(parser)
    return build_runner(parser.parse_args([config, "--checkpoint", str(checkpoint), "--work-dir", str(work_dir),
                                           "--cfg-options", "log_level=WARNING"]), "test")


def _model(runner) -> nn.Module:
    return (runner.model.module if hasattr(runner.model, "module") else runner.model).eval()


def model_of(config: str, work_dir: Path) -> nn.Module:
    """The model ``ffnet test CONFIG`` builds (nothing loaded)."""
    return _model(_runner(config, work_dir / "unused.pth", work_dir))


def load_through_ffnet_test(config: str, checkpoint: Path, work_dir: Path) -> tuple[nn.Module, str]:
    """The model of ``ffnet test CONFIG --checkpoint FILE`` with the file loaded, and the line it prints."""
    from ffnet.engine.runner import load_into_runner

    runner = _runner(config, checkpoint, work_dir)
    line = load_into_runner(runner, str(checkpoint))
    return _model(runner), line


def save_release(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """An mmcv-style release file: ``state_dict`` plus ``meta``, as the authors' checkpoints are."""
    torch.save({"meta": {"mmdet_version": "2.28.1"}, "state_dict": state}, path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# The checks


def _release_state(authors, variant: int, config: str, work_dir: Path, generator: torch.Generator):
    """``(their backbone, our neck/head tensors, the release-layout state dict of both)``, all randomised."""
    kwargs = dict(layer_scale_init_value=1.0) if variant > 2 else {}
    theirs = getattr(authors, f"ffnet_{variant}")(drop_path_rate=0.0, init_cfg=dict(checkpoint=None), **kwargs)
    theirs = randomize(plain_batchnorm(theirs), generator).eval()
    heads = {k: v for k, v in randomize(model_of(config, work_dir), generator).state_dict().items()
             if not k.startswith("backbone.")}
    return theirs, heads, {**{f"backbone.{k}": v for k, v in theirs.state_dict().items()}, **heads}


def check_detectors(checkout: Path, work_dir: Path, report: Report, generator: torch.Generator) -> None:
    import ffnet.detection  # noqa: F401  (registers the layouts)
    from mmdet.structures.bbox import bbox2roi

    authors = load_authors_module(checkout / DETECTION_BACKBONE)
    x = torch.randn(2, 3, 128, 160, generator=generator)
    for variant, config in DETECTORS.items():
        print(f"Cascade Mask R-CNN FFNet-{variant} ({config})")
        theirs, heads, state = _release_state(authors, variant, config, work_dir, generator)
        if variant == 4:  # trained with mmdet 2's ExpMomentumEMAHook: the raw weights sit in ema_* buffers
            state.update({"ema_" + k.replace(".", "_"): torch.zeros_like(v) for k, v in list(state.items())})
        path = save_release(work_dir / f"casc_mask_rcnn_ffnet_{variant}_fpn_3x_coco.pth", state)
        model, line = load_through_ffnet_test(config, path, work_dir)
        print(f"  {line}")
        report.same_tensors("neck, RPN and RoI heads (keys unchanged from mmdet 2.28)", model.state_dict(), heads)
        with torch.no_grad():
            feats_theirs, feats_ours = theirs(x), model.backbone(x)
            report.compare("backbone features (4 stages, after norm0..3)", feats_ours, feats_theirs)
            fpn_theirs, fpn_ours = model.neck(tuple(feats_theirs)), model.neck(feats_ours)
            report.compare("FPN features", fpn_ours, fpn_theirs)
            boxes = []
            for _ in range(x.shape[0]):
                xy = torch.rand(12, 2, generator=generator) * torch.tensor([120.0, 90.0])
                boxes.append(torch.cat([xy, xy + torch.rand(12, 2, generator=generator) * 30 + 8], 1))
            rois = bbox2roi(boxes)
            head = model.roi_head
            for stage in range(head.num_stages):  # each stage on the same RoIs (no refinement in between)
                report.compare(f"RoI head stage {stage + 1} on the same proposals (class scores, boxes, masks)",
                               _stage_outputs(head, stage, fpn_ours, rois), _stage_outputs(head, stage, fpn_theirs, rois))


def _stage_outputs(head, stage: int, feats, rois: torch.Tensor) -> list[torch.Tensor]:
    bbox = head._bbox_forward(stage, feats, rois)
    return [bbox["cls_score"], bbox["bbox_pred"], head._mask_forward(stage, feats, rois)["mask_preds"]]


def check_upernets(checkout: Path, work_dir: Path, report: Report, generator: torch.Generator) -> None:
    import ffnet.segmentation  # noqa: F401

    authors = load_authors_module(checkout / UPERNET_BACKBONE)
    x = torch.randn(2, 3, 128, 128, generator=generator)
    for variant, config in UPERNETS.items():
        print(f"UperNet FFNet-{variant} ({config})")
        theirs, heads, state = _release_state(authors, variant, config, work_dir, generator)
        path = save_release(work_dir / f"upernet_ffnet_{variant}_512_160k_ade20k.pth", state)
        model, line = load_through_ffnet_test(config, path, work_dir)
        print(f"  {line}")
        report.same_tensors("UPerHead and auxiliary FCNHead (keys unchanged from mmseg 0.27)", model.state_dict(),
                            heads)
        with torch.no_grad():
            feats_theirs, feats_ours = theirs(x), model.backbone(x)
            report.compare("backbone features (4 stages, after norm0..3)", feats_ours, feats_theirs)
            report.compare("decode and auxiliary logits",
                           [model.decode_head(feats_ours), model.auxiliary_head(feats_ours)],
                           [model.decode_head(list(feats_theirs)), model.auxiliary_head(list(feats_theirs))])


def check_system(checkout: Path, work_dir: Path, report: Report, generator: torch.Generator) -> None:
    import ffnet.segmentation  # noqa: F401

    print(f"FFNet-seg segmentor, ADE20K ({SYSTEM})")
    backbone = load_authors_module(checkout / SYSTEM_BACKBONE)
    head = load_authors_module(checkout / SYSTEM_HEAD)
    their_backbone = randomize(plain_batchnorm(backbone.ffnet_seg(drop_path_rate=0.0,
                                                                  init_cfg=dict(checkpoint=None))), generator).eval()
    their_head = randomize(plain_batchnorm(head.FFNetHead(**SYSTEM_HEAD_ARGS)), generator).eval()
    state = {**{f"backbone.{k}": v for k, v in their_backbone.state_dict().items()},
             **{f"decode_head.{k}": v for k, v in their_head.state_dict().items()}}
    path = save_release(work_dir / "ffnet_seg_sys_512_160k_ade20k.pth", state)
    model, line = load_through_ffnet_test(SYSTEM, path, work_dir)
    print(f"  {line}")
    x = torch.randn(2, 3, 128, 128, generator=generator)
    with torch.no_grad():
        feats_theirs, feats_ours = their_backbone(x), model.backbone(x)
        report.compare("backbone features (stages 2-4)", feats_ours, feats_theirs)
        report.compare("logits (stride 8)", model.decode_head(feats_ours), their_head(feats_theirs))

    print("FFNet-seg ImageNet backbone (ffnet_seg.pth.tar) through FFNetSeg init_cfg")
    from ffnet.segmentation import FFNetSeg

    classifier = randomize(plain_batchnorm(backbone.ffnet_seg(drop_path_rate=0.0)), generator).eval()
    path = work_dir / "ffnet_seg.pth.tar"
    torch.save({"state_dict": classifier.state_dict(), "epoch": 300}, path)
    ours = FFNetSeg(init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    ours.init_weights()
    classifier.for_pretrain = False  # their forward then returns the stage 2-4 features
    with torch.no_grad():
        report.compare("backbone features (stages 2-4)", ours.eval()(x), classifier(x))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of https://github.com/ysj9909/FFNet")
    parser.add_argument("--work-dir", type=Path, help="where the checkpoint files go (default: a temporary folder)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed relative difference")
    parser.add_argument("--only", choices=("detection", "upernet", "system"), action="append",
                        help="run only these checks (repeatable; default: all)")
    args = parser.parse_args(argv)
    missing = [p for p in (DETECTION_BACKBONE, UPERNET_BACKBONE, SYSTEM_BACKBONE, SYSTEM_HEAD)
               if not (args.checkout / p).is_file()]
    if missing:
        print(f"{args.checkout}: not a checkout of ysj9909/FFNet (missing {', '.join(missing)}); "
              "git clone https://github.com/ysj9909/FFNet and pass its folder", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    report = Report(args.tolerance)
    checks = {"detection": check_detectors, "upernet": check_upernets, "system": check_system}
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        for name in args.only or checks:
            checks[name](args.checkout, work_dir, report, generator)
    print(f"max relative difference over all checks: {report.worst:.2e} (tolerance {args.tolerance:g})")
    if report.failed:
        print(f"FAILED: {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
