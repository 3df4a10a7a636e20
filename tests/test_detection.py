"""ffnet.detection on the real OpenMMLab stack: mmcv ops, the FFNet mm backbone, layer-wise lr decay,
every shipped Cascade Mask R-CNN config, and 2 training iterations + resume with the mmengine Runner
on a COCO-format dataset written from scikit-image's photos."""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

mmdet = pytest.importorskip("mmdet")
mmcv_ops = pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope, init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from skimage import data as skdata  # noqa: E402
from PIL import Image  # noqa: E402

import timm  # noqa: E402
import ffnet.classification  # noqa: E402,F401
import ffnet.detection  # noqa: E402,F401
from ffnet.core import reparameterize  # noqa: E402
from ffnet.detection import FFNet, layer_id  # noqa: E402
from helpers import randomize_bn  # noqa: E402

CONFIG_DIR = Path(ffnet.detection.__file__).parent / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))
WIDTHS = {"ffnet_2": [88, 176, 352, 704], "ffnet_3": [96, 192, 384, 768], "ffnet_4": [128, 256, 512, 1024]}


def authors_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a train-time classification state dict to the authors' key layout of the authors' models/ffnet.py."""
    unit = [(r"main\.conv\.", "conv.c."), (r"main\.bn\.", "conv.bn."), (r"branches\.0\.conv\.", "conv1.c."),
            (r"branches\.0\.bn\.", "conv1.bn."), (r"conv\.", "c."), (r"bn\.", "bn.")]

    def conv_unit(rest: str) -> str:
        for pattern, repl in unit:
            if re.match(pattern, rest):
                return re.sub("^" + pattern, repl, rest)
        return rest

    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"stem\.conv([12])\.(.+)", key)
        if m:
            out[f"patch_embed.{2 * (int(m[1]) - 1)}." + conv_unit(m[2])] = value
            continue
        m = re.fullmatch(r"stages\.(\d)\.downsample\.(conv|proj)\.(.+)", key)
        if m:
            prefix = f"stages.{m[1]}.0.proj."
            out[prefix + ("0." + conv_unit(m[3]) if m[2] == "conv" else "1.conv." + conv_unit(m[3]))] = value
            continue
        m = re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(token|channel)_mixer\.(.+)", key)
        if m:
            index = int(m[2]) + (1 if m[1] != "0" else 0)
            head = f"stages.{m[1]}.{index}."
            rest = m[4]
            if rest == "layer_scale.gamma":
                name = "token_mixer.0.layer_scale" if m[3] == "token" else "channel_mixer.layer_scale"
                out[head + name] = value.reshape(-1, 1, 1)
                continue
            part, sub = rest.split(".", 2)[1], rest.split(".", 2)[2]
            if m[3] == "token":
                name = {"query_proj": "fc", "compat": "conv1", "aggregate": "conv2"}[part]
                out[head + f"token_mixer.0.main.{name}." + conv_unit(sub)] = value
            else:
                name = {"query_proj": "conv", "compat": "fc1", "aggregate": "fc2"}[part]
                out[head + f"channel_mixer.main.{name}." + (conv_unit(sub) if name == "conv" else sub)] = value
            continue
        out[key] = value  # norm.*, head.*
    return out


# ---------------------------------------------------------------------------------------------------------------------
# mmcv compiled ops


def test_mmcv_compiled_ops_run_on_cpu():
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))
    # On the ramp f(y, x) = x, RoIAlign (aligned, bilinear, 2x2 samples per bin) returns each bin's x centre.
    ramp = torch.arange(16.0).repeat(16, 1)[None, None]
    rois = torch.tensor([[0.0, 2.0, 3.0, 10.0, 11.0]])  # batch index, x1, y1, x2, y2 in pixels
    pooled = RoIAlign(output_size=(2, 4), spatial_scale=1.0, sampling_ratio=2, aligned=True)(ramp, rois)
    bin_centres = 2.0 + (torch.arange(4) + 0.5) * 2.0 - 0.5
    assert torch.allclose(pooled[0, 0], bin_centres.expand(2, 4), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# A COCO-format dataset from scikit-image's photos

# (photo, COCO class, object box x1, y1, x2, y2): hand-placed boxes around the main object.
PHOTOS = [
    ("chelsea", "cat", (95, 20, 390, 300)),
    ("coffee", "cup", (140, 40, 460, 330)),
    ("astronaut", "person", (20, 10, 460, 512)),
    ("motorcycle", "motorcycle", (40, 60, 700, 480)),
]


def photo(name: str) -> np.ndarray:
    if name == "motorcycle":
        return skdata.stereo_motorcycle()[0]
    return getattr(skdata, name)()


def ellipse_polygon(box: tuple[int, int, int, int], points: int = 16) -> list[float]:
    """A polygon (COCO ``segmentation``) of the ellipse inscribed in ``box``."""
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1).round(1).ravel().tolist()


def write_coco(root: Path) -> None:
    """``root/{train2017,val2017}/*.jpg`` and ``root/annotations/instances_{train,val}2017.json``."""
    from mmdet.datasets import CocoDataset

    classes = CocoDataset.METAINFO["classes"]
    categories = [dict(id=i + 1, name=name, supercategory="none") for i, name in enumerate(classes)]
    splits = {"train2017": PHOTOS[:2], "val2017": PHOTOS[2:]}
    (root / "annotations").mkdir(parents=True)
    ann_id = 1
    for split, items in splits.items():
        (root / split).mkdir()
        images, annotations = [], []
        for image_id, (name, cls, box) in enumerate(items, start=1):
            img = photo(name)
            Image.fromarray(img).save(root / split / f"{name}.jpg", quality=95)
            images.append(dict(id=image_id, file_name=f"{name}.jpg", height=img.shape[0], width=img.shape[1]))
            x1, y1, x2, y2 = box
            annotations.append(dict(id=ann_id, image_id=image_id, category_id=classes.index(cls) + 1,
                                    bbox=[x1, y1, x2 - x1, y2 - y1], area=math.pi * (x2 - x1) * (y2 - y1) / 4,
                                    segmentation=[ellipse_polygon(box)], iscrowd=0))
            ann_id += 1
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def light_heads(cfg: Config) -> None:
    """Fewer proposals/RoI samples and a zero score threshold, so CPU runs are short and predict returns boxes.

    Only sampling sizes change; the architecture and losses are the config's.
    """
    train_cfg, test_cfg = cfg.model.train_cfg, cfg.model.test_cfg
    train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=50)
    for stage in train_cfg.rcnn:
        stage.sampler.num = 16
    test_cfg.rpn.update(nms_pre=100, max_per_img=10)
    test_cfg.rcnn.update(score_thr=0.0, max_per_img=5)


def shrink_pipeline(pipeline: list, factor: int = 5) -> list:
    """Divide every resize scale / crop size of a pipeline by ``factor`` (keeps its transforms)."""
    for transform in pipeline:
        for group in transform.get("transforms", []):
            shrink_pipeline(group, factor)
        if "scales" in transform:
            transform["scales"] = [(w // factor, h // factor) for w, h in transform["scales"]]
        if transform.get("type") == "Resize":
            transform["scale"] = tuple(s // factor for s in transform["scale"])
        if transform.get("type") == "RandomCrop":
            transform["crop_size"] = tuple(s // factor for s in transform["crop_size"])
    return pipeline


def det_sample(height: int, width: int) -> DetDataSample:
    """An image-sized sample with two boxes (and their box masks) of COCO classes 3 and 17."""
    sample = DetDataSample()
    sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1.0, 1.0)))
    boxes = torch.tensor([[8.0, 12.0, 80.0, 100.0], [40.0, 30.0, width - 10.0, height - 6.0]])
    masks = np.zeros((2, height, width), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
    sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([3, 17]),
                                       masks=BitmapMasks(masks, height, width))
    return sample


# ---------------------------------------------------------------------------------------------------------------------
# The backbone


def save_classifier(path: Path, model: torch.nn.Module, layout: str = "own") -> Path:
    state = model.state_dict()
    torch.save({"state_dict": authors_layout(state) if layout == "authors" else state, "epoch": 300}, path)
    return path


@pytest.mark.parametrize("layout", ["own", "authors"])
def test_backbone_loads_classification_checkpoint_unchanged(tmp_path, layout):
    """ImageNet weights (ffnet train's layout, or the authors' train-time layout of the authors' models/ffnet.py) load through
    the classification filter: the stage outputs equal the classifier's intermediates."""
    torch.manual_seed(0)
    classifier = timm.create_model("ffnet_2").eval()
    randomize_bn(classifier, shift_std=0.1)
    ckpt = save_classifier(tmp_path / "ffnet_2.pth.tar", classifier, layout)
    backbone = FFNet("ffnet_2", out_norm=None, init_cfg=dict(type="Pretrained", checkpoint=str(ckpt))).eval()
    backbone.init_weights()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = classifier.forward_intermediates(x, intermediates_only=True)
        features = backbone(x)
    assert [f.shape[1] for f in features] == WIDTHS["ffnet_2"]
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)


def test_backbone_outputs_norms_freezing_and_deploy(tmp_path):
    torch.manual_seed(0)
    backbone = FFNet("ffnet_2", out_indices=(1, 3), frozen_stages=2)
    assert backbone.out_channels == (176, 704)
    assert {k.split(".")[0] for k in backbone.state_dict() if k.startswith("norm")} == {"norm1", "norm3"}
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("stem.", "stages.0.", "stages.1.", "norm1.")) for n in frozen)
    backbone.train()
    assert not backbone.stages[1].training and backbone.stages[2].training
    outs = backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 176, 8, 8), (2, 704, 2, 2)]
    # per-output LayerNorm: zero mean / unit variance over channels at every position
    torch.testing.assert_close(outs[0].mean(1), torch.zeros(2, 8, 8), atol=1e-5, rtol=0)
    # a truncated out_indices builds only the stages it needs
    assert len(FFNet("ffnet_2", out_indices=(0, 1)).stages) == 2

    # deploy: a train-time checkpoint folds into the re-parameterized backbone, same outputs in eval mode
    train_time = FFNet("ffnet_2").eval()
    randomize_bn(train_time, shift_std=0.1)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in train_time.state_dict().items()}}, tmp_path / "det.pth")
    deployed = FFNet("ffnet_2", deploy=True,
                     init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "det.pth"), prefix="backbone.")).eval()
    deployed.init_weights()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(train_time(x), deployed(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_backbone_bad_input_errors(tmp_path):
    init_default_scope("mmdet")
    with pytest.raises(ValueError, match="unknown FFNet arch 'ffnet_9'.*ffnet_1, ffnet_2"):
        MODELS.build(dict(type="FFNet", arch="ffnet_9"))
    with pytest.raises(ValueError, match="ffnet_2 has no LayerScale"):
        FFNet("ffnet_2", layer_scale_init_value=1.0)
    with pytest.raises(ValueError, match="out_indices"):
        FFNet("ffnet_2", out_indices=(0, 4))
    missing = FFNet("ffnet_2", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(FileNotFoundError, match="pretrained checkpoint not found.*init_cfg.checkpoint"):
        missing.init_weights()
    ffnet_1 = save_classifier(tmp_path / "ffnet_1.pth", timm.create_model("ffnet_1"))
    wrong = FFNet("ffnet_2", init_cfg=dict(type="Pretrained", checkpoint=str(ffnet_1)))
    with pytest.raises(ValueError, match="does not fit the ffnet_2 backbone.*is for ffnet_1"):
        wrong.init_weights()
    torch.save({"state_dict": {"backbone.stem.conv1.conv.weight": torch.zeros(1)}}, tmp_path / "det.pth")
    nested = FFNet("ffnet_2", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "det.pth")))
    with pytest.raises(ValueError, match="add prefix='backbone.'"):
        nested.init_weights()
    deployed_classifier = reparameterize(timm.create_model("ffnet_2"))
    folded = save_classifier(tmp_path / "folded.pth", deployed_classifier)
    with pytest.raises(ValueError, match="re-parameterized .* cannot be un-folded .* deploy=True"):
        FFNet("ffnet_2", init_cfg=dict(type="Pretrained", checkpoint=str(folded))).init_weights()


# ---------------------------------------------------------------------------------------------------------------------
# Layer-wise lr decay


def test_layer_decay_groups_follow_the_authors_rule():
    from ffnet.detection import FFNetLayerDecayOptimizerConstructor

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = FFNet("ffnet_3", depths=(1, 1, 9, 1), layer_scale_init_value=1.0)
            self.neck = torch.nn.Conv2d(8, 8, 1)

    model = Detector()
    constructor = FFNetLayerDecayOptimizerConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05)),
        dict(decay_rate=0.8, decay_type="layer_wise", num_layers=12))
    optimizer = constructor(model).optimizer
    lr_of, wd_of = {}, {}
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            lr_of[name], wd_of[name] = group["lr"], group["weight_decay"]
    expect = {
        "backbone.stem.conv1.conv.weight": 1.0,  # the stem lands in the "rest" group (as the authors' layer ids do)
        "backbone.stages.0.blocks.0.channel_mixer.mixer.compat.weight": 0.8 ** 12,
        "backbone.stages.1.downsample.proj.conv.weight": 0.8 ** 11,
        "backbone.stages.2.downsample.proj.conv.weight": 0.8 ** 10,  # element 0 → id 3
        "backbone.stages.2.blocks.1.channel_mixer.mixer.compat.weight": 0.8 ** 10,  # element 2 → id 3
        "backbone.stages.2.blocks.2.channel_mixer.mixer.compat.weight": 0.8 ** 9,  # element 3 → id 4
        "backbone.stages.2.blocks.8.channel_mixer.mixer.compat.weight": 0.8 ** 7,  # element 9 → id 6
        "backbone.stages.3.blocks.0.channel_mixer.mixer.compat.weight": 0.8,
        "backbone.norm3.weight": 1.0,
        "neck.weight": 1.0,
    }
    for name, scale in expect.items():
        assert lr_of[name] == pytest.approx(1e-4 * scale), name
    assert wd_of["backbone.stages.2.blocks.0.channel_mixer.mixer.compat.weight"] == 0.05
    assert wd_of["backbone.stages.2.blocks.0.channel_mixer.mixer.compat.bias"] == 0.0
    assert wd_of["backbone.norm0.weight"] == 0.0
    assert wd_of["backbone.stages.2.blocks.0.token_mixer.layer_scale.gamma"] == 0.05  # (C,1,1) in the release
    assert set(lr_of) == {n for n, p in model.named_parameters()}
    assert layer_id("backbone.stages.2.blocks.26.x", 12) == 12  # FFNet-4's last stage-3 blocks reach id 12
    with pytest.raises(ValueError, match="raise paramwise_cfg.num_layers to at least 13"):
        layer_id("backbone.stages.2.blocks.29.x", 12)


# ---------------------------------------------------------------------------------------------------------------------
# The shipped configs


def test_every_config_is_shipped():
    assert [p.name for p in CONFIGS] == [f"cascade-mask-rcnn_ffnet-{v}_fpn_4conv1fc-giou_ms-crop-3x_coco.py"
                                         for v in (2, 3, 4)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name.split("_")[1])
def test_config_has_the_spec_values(config):
    cfg = Config.fromfile(str(config))
    arch = cfg.model.backbone.arch
    assert cfg.custom_imports.imports == ["ffnet.detection"]
    assert cfg.model.type == "CascadeRCNN" and cfg.model.backbone.type == "FFNet"
    assert cfg.model.neck.in_channels == WIDTHS[arch]
    assert cfg.model.backbone.drop_path_rate == {"ffnet_2": 0.35, "ffnet_3": 0.6, "ffnet_4": 0.6}[arch]
    assert cfg.model.backbone.get("layer_scale_init_value") == (None if arch == "ffnet_2" else 1.0)
    checkpoint = cfg.model.backbone.init_cfg.checkpoint
    assert checkpoint.endswith({"ffnet_2": "ffnet_2_distillation.pth.tar", "ffnet_3": "ffnet_3_distillation.pth.tar",
                                "ffnet_4": "ffnet_4_384.pth.tar"}[arch])
    heads = cfg.model.roi_head.bbox_head
    assert [h.bbox_coder.target_stds for h in heads] == [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                                                         [0.033, 0.033, 0.067, 0.067]]
    assert all(h.type == "ConvFCBBoxHead" and h.num_shared_convs == 4 and h.num_shared_fcs == 1 and h.reg_decoded_bbox
               and h.loss_bbox == dict(type="GIoULoss", loss_weight=10.0) for h in heads)
    assert cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert (warmup.start_factor, warmup.end, steps.milestones) == (0.001, 500, [27, 33])
    assert cfg.optim_wrapper.constructor == "FFNetLayerDecayOptimizerConstructor"
    assert cfg.optim_wrapper.paramwise_cfg == dict(decay_rate=0.8, decay_type="layer_wise", num_layers=12)
    assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05)
    assert "clip_grad" not in cfg.optim_wrapper and cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.dataset.type == "CocoDataset"
    choice = next(t for t in cfg.train_pipeline if t.type == "RandomChoice")
    assert [s[0] for s in choice.transforms[0][0].scales] == list(range(480, 801, 32))
    assert cfg.val_evaluator.metric == ["bbox", "segm"] and cfg.val_evaluator.classwise
    ema = [h for h in cfg.get("custom_hooks", []) if h.type == "EMAHook"]
    assert (len(ema) == 1) == (arch == "ffnet_4")
    if ema:
        assert ema[0].ema_type == "ExpMomentumEMA" and ema[0].momentum == 0.0001


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name.split("_")[1])
def test_config_builds_and_runs_loss_and_predict(config):
    """The full Cascade Mask R-CNN of each config, built through mmdet's registry, on one 128x160 image."""
    cfg = Config.fromfile(str(config))
    light_heads(cfg)
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert isinstance(model.backbone, FFNet) and model.backbone.arch == cfg.model.backbone.arch
    image = torch.from_numpy(photo("chelsea")[:128 * 2:2, 60:60 + 160 * 2:2].copy()).permute(2, 0, 1).float()
    sample = det_sample(128, 160)
    model.train()
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), training=True)
    losses = model(**data, mode="loss")
    total = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if "loss" in k)
    assert {f"s{i}.loss_mask" for i in range(3)} <= losses.keys() and torch.isfinite(total)
    if config == CONFIGS[0]:
        total.backward()
        assert model.backbone.stem.conv1.conv.weight.grad.abs().sum() > 0
    model.eval()
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[det_sample(128, 160)]), training=False)
    with torch.no_grad():
        result = model(**data, mode="predict")[0].pred_instances
    assert result.bboxes.shape == (5, 4) and result.masks.shape == (5, 128, 160)


# ---------------------------------------------------------------------------------------------------------------------
# Training with the mmengine Runner


def test_runner_trains_two_iterations_and_resumes(tmp_path):
    """2 iterations (2 epochs of one batch of 2 COCO images), COCO evaluation, then resume for a 3rd epoch.

    The backbone is FFNet-2 with one block per stage, initialised from a classification checkpoint."""
    write_coco(tmp_path / "coco")
    classifier = ffnet.classification.create_ffnet("ffnet_2", depths=(1, 1, 1, 1))
    imagenet = save_classifier(tmp_path / "imagenet.pth", classifier)
    cfg = Config.fromfile(str(CONFIGS[0]))
    light_heads(cfg)
    cfg.model.backbone.update(depths=(1, 1, 1, 1), init_cfg=dict(type="Pretrained", checkpoint=str(imagenet)))
    root = str(tmp_path / "coco") + "/"
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[split].update(num_workers=0, persistent_workers=False)
        cfg[split].dataset.data_root = root
        shrink_pipeline(cfg[split].dataset.pipeline)
    cfg.val_evaluator.ann_file = root + "annotations/instances_val2017.json"
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=2, val_interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / "work")

    runner = Runner.from_cfg(copy.deepcopy(cfg))
    runner.train()
    assert (runner.epoch, runner.iter) == (2, 2)
    assert (tmp_path / "work" / "epoch_2.pth").is_file()
    stem = runner.model.backbone.stem.conv1.conv.weight.detach().clone()
    assert not torch.equal(stem, classifier.stem.conv1.conv.weight)  # trained on from the ImageNet weights
    assert {"val/coco/bbox_mAP", "val/coco/segm_mAP"} <= runner.message_hub.log_scalars.keys()
    assert list((tmp_path / "work").glob("best_coco_bbox_mAP_epoch_2.pth"))

    cfg.train_cfg.max_epochs = 3
    cfg.resume = True
    resumed = Runner.from_cfg(cfg)
    resumed.train()  # loads epoch_2.pth with the weights-only unpickler (ffnet.checkpoints)
    assert (resumed.epoch, resumed.iter) == (3, 3)
    assert len(resumed.message_hub.get_scalar("train/loss").data[0]) == 3  # 2 logged before the resume + 1
    stem_param = resumed.model.backbone.stem.conv1.conv.weight
    assert int(resumed.optim_wrapper.optimizer.state[stem_param]["step"]) == 3  # AdamW state carried over


def test_det_deploy_command_folds_a_trained_detector(tmp_path):
    """``ffnet detection export``: the folded detector's features match; its config rebuilds it with deploy=True."""
    from ffnet.main import main

    cfg = Config.fromfile(str(CONFIGS[0]))
    cfg.model.backbone.update(depths=(1, 1, 1, 1), init_cfg=None)
    cfg.dump(str(tmp_path / "small.py"))
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    randomize_bn(model.backbone, shift_std=0.1)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "trained.pth")
    main(["detection", "export", str(tmp_path / "small.py"), "--checkpoint", str(tmp_path / "trained.pth"),
          "--out", str(tmp_path / "deployed.pth"), "--check-size", "64", "96"])
    deployed_cfg = Config.fromfile(str(tmp_path / "deployed.py"))
    assert deployed_cfg.model.backbone.deploy is True
    deployed = MODELS.build(deployed_cfg.model).eval()
    deployed.load_state_dict(torch.load(tmp_path / "deployed.pth")["state_dict"], strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model.extract_feat(x), deployed.extract_feat(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.fixture
def foreign_scope():
    """Another registry scope current, as a Runner of another scope (e.g. the point-cloud trainer's) leaves it."""
    with DefaultScope.overwrite_default_scope("mmengine"):
        yield DefaultScope.get_current_instance()


def test_deploy_and_benchmark_build_in_the_mmdet_scope_whatever_scope_is_current(tmp_path, foreign_scope):
    """mmengine resolves even ``mmdet.registry.MODELS.build`` in the current scope; ``ffnet det deploy`` and the
    benchmark's builder build in mmdet's scope and leave the caller's scope current."""
    from ffnet.engine.openmmlab.benchmark import build_from_config
    from ffnet.main import main

    cfg = Config.fromfile(str(CONFIGS[0]))
    cfg.model.backbone.update(depths=(1, 1, 1, 1), init_cfg=None)
    cfg.model.pop("_scope_")  # as in a config on relative (copied) mmdet bases: only default_scope names mmdet
    cfg.dump(str(tmp_path / "small.py"))
    with pytest.raises(KeyError, match="CascadeRCNN is not in the mmengine::model registry"):
        MODELS.build(cfg.model)  # the failure the scoped builds avoid
    torch.manual_seed(0)
    model = build_from_config(cfg)
    assert isinstance(model.backbone, FFNet) and not model.training
    randomize_bn(model.backbone, shift_std=0.1)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "trained.pth")
    main(["det", "deploy", str(tmp_path / "small.py"), str(tmp_path / "trained.pth"),
          "--out", str(tmp_path / "deployed.pth"), "--check-size", "64", "64"])
    deployed = build_from_config(Config.fromfile(str(tmp_path / "deployed.py")))
    assert deployed.backbone.deploy
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.backbone.modules())
    deployed.load_state_dict(torch.load(tmp_path / "deployed.pth")["state_dict"], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model.extract_feat(x), deployed.extract_feat(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert DefaultScope.get_current_instance().instance_name == foreign_scope.instance_name  # left as it was
