"""The authors' released checkpoints (ysj9909/FFNet) load through ``ffnet test`` with no flag, and a checkpoint of
another architecture is refused in one line.

Authors'-layout files are made here from our randomly initialised models with the inverse key mappings
(``own_to_authors``); ``scripts/compare_authors_checkpoints.py`` checks the mappings against the authors' own
code. Per domain: (a) an authors'-layout file is evaluated by ``ffnet test``, which names the converter, and
the loaded weights equal the originals; (b) a checkpoint of another FFNet variant exits with status 2 and one
line saying what the file looks like, before anything is evaluated.
"""
from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path

import pytest
import torch

mmengine = pytest.importorskip("mmengine")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402

import timm  # noqa: E402
import ffnet.classification  # noqa: E402
from ffnet.engine.checkpoints import convert_layout, load_state_dict, load_weights  # noqa: E402
from ffnet.engine.errors import CheckpointError  # noqa: E402
from ffnet.engine.runner import add_test_arguments, build_runner, load_into_runner  # noqa: E402
from ffnet.main import main  # noqa: E402


def runner_with(config: str, checkpoint: Path, work_dir: Path, *options: str):
    """``ffnet test CONFIG --checkpoint FILE``'s Runner and the line it prints after loading FILE."""
    parser = argparse.ArgumentParser()
    add_test_arguments(parser)
    args = parser.parse_args([config, "--checkpoint", str(checkpoint), "--work-dir", str(work_dir),
                              *(["--cfg-options", *options] if options else [])])
    runner = build_runner(args, "test")
    return runner, load_into_runner(runner, str(checkpoint))


def assert_same_weights(loaded: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> None:
    assert loaded.keys() == original.keys()
    differ = [k for k in original if not torch.equal(loaded[k], original[k])]
    assert not differ, differ[:5]


def ffnet_test(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["test", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, checkpoint: Path, looks_like: str) -> None:
    """Exit status 2, a one-line ``ffnet test: error:`` naming the file and what it looks like, nothing evaluated."""
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("ffnet test: error: ") and str(checkpoint) in last, last
    assert "does not fit the model of" in last and f"the file looks like {looks_like}" in last, last
    assert "loaded " not in out and "Epoch(test)" not in out + err


def random_model(build, seed: int = 0, meta: bool = True) -> torch.nn.Module:
    """``build()``'s model with every tensor random: weights and BatchNorm means ~ N(0, 0.02), BatchNorm variances
    ~ U(0.5, 1.5), counters 0. Built on the meta device (no slow weight init) unless ``meta=False`` (FFNetHead
    cannot be built there)."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = build()
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                tensor.zero_()
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.02)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# Classification: the nine ImageNet checkpoints (timm CheckpointSaver dicts in the authors' key layout)

IMAGENET_CONFIG = "ffnet_1_8xb128_in1k.py"
PHOTOS = ("astronaut", "coffee", "chelsea")


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory) -> Path:
    """An ImageNet-layout val folder: one class per scikit-image photo, one image each."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (root / "val" / name).mkdir(parents=True)
        Image.fromarray(getattr(skdata, name)()).resize((72, 72)).save(root / "val" / name / "0.jpg")
    return root


def imagenet_options(root: Path) -> list[str]:
    """3 classes, one block per stage, 64x64 inputs, the photo folder as the test set."""
    return [f"model.model.num_classes={len(PHOTOS)}", "+model.model.depths=[1,1,1,1]", "test_evaluator.topk=[1]",
            "test_dataloader.batch_size=3", "test_dataloader.num_workers=0",
            "test_dataloader.persistent_workers=False", "test_dataloader.pin_memory=False",
            f"test_dataloader.dataset.data_root={root}", "test_dataloader.dataset.transform.input_size=64"]


def test_authors_imagenet_layout_is_evaluated_by_ffnet_test(photo_root, tmp_path, capsys):
    ours = random_model(lambda: timm.create_model("ffnet_1", num_classes=len(PHOTOS), depths=(1, 1, 1, 1)))
    authors = ffnet.classification.own_to_authors(ours.state_dict())
    assert authors["patch_embed.0.c.weight"].shape == (64, 3, 3, 3)  # the authors' models/ffnet.py keys
    assert "stages.1.0.proj.1.conv.c.weight" in authors and "stages.0.0.token_mixer.0.main.conv1.bias" in authors
    checkpoint = tmp_path / "ffnet_1.pth.tar"
    torch.save({"state_dict": authors, "epoch": 299, "args": argparse.Namespace(model="ffnet_1")}, checkpoint)

    code, out, err = ffnet_test(capsys, IMAGENET_CONFIG, "--checkpoint", str(checkpoint), "--work-dir",
                                str(tmp_path / "test"), "--cfg-options", *imagenet_options(photo_root))
    assert code == 0, err
    assert (f"loaded {checkpoint}: all {len(authors)} tensors of the model, converted from the authors' "
            "ImageNet layout (ysj9909/FFNet models/ffnet.py)") in out
    assert "accuracy/top1" in out + err
    runner, _ = runner_with(IMAGENET_CONFIG, checkpoint, tmp_path / "load", *imagenet_options(photo_root))
    assert_same_weights(runner.model.state_dict(), ours.state_dict())


def test_wrong_imagenet_variant_is_refused(tmp_path, capsys):
    checkpoint = tmp_path / "ffnet_2.pth.tar"
    ffnet_2 = random_model(lambda: timm.create_model("ffnet_2"))
    torch.save({"state_dict": ffnet.classification.own_to_authors(ffnet_2.state_dict())}, checkpoint)
    code, out, err = ffnet_test(capsys, IMAGENET_CONFIG, "--checkpoint", str(checkpoint), "--work-dir",
                                str(tmp_path / "test"))
    assert_refused(code, out, err, checkpoint, "ffnet_2 (train-time)")


# ---------------------------------------------------------------------------------------------------------------------
# Detection: casc_mask_rcnn_ffnet_{2,3,4}_fpn_3x_coco.pth (mmdet 2.28)


@pytest.fixture
def det_config(tmp_path) -> Path:
    """The shipped FFNet-2 detector config on a one-image COCO val set at 1/5 scale, lighter test-time sampling."""
    pytest.importorskip("mmdet")
    from test_detection import CONFIG_DIR, light_heads, shrink_pipeline, write_coco

    write_coco(tmp_path / "coco")
    cfg = Config.fromfile(str(CONFIG_DIR / "cascade-mask-rcnn_ffnet-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py"))
    light_heads(cfg)
    root = str(tmp_path / "coco") + "/"
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader.dataset.data_root = root
    shrink_pipeline(cfg.test_dataloader.dataset.pipeline)
    cfg.test_evaluator.ann_file = root + "annotations/instances_val2017.json"
    cfg.test_evaluator.classwise = False
    cfg.dump(str(tmp_path / "det.py"))
    return tmp_path / "det.py"


def build_model(config: Path | str, scope: str) -> torch.nn.Module:
    import importlib

    cfg = Config.fromfile(str(config))
    for name in cfg.custom_imports.imports:
        importlib.import_module(name)
    with DefaultScope.overwrite_default_scope(scope):
        return importlib.import_module(f"{scope}.registry").MODELS.build(cfg.model)


def test_authors_detector_is_evaluated_by_ffnet_test(det_config, tmp_path, capsys):
    from ffnet.detection import convert

    ours = random_model(lambda: build_model(det_config, "mmdet"))
    authors = convert.own_to_authors(ours.state_dict())
    # The FFNet-4 release also carries mmdet 2's EMA buffers (the raw weights; the model keys hold the EMA ones).
    authors.update({"ema_" + k.replace(".", "_"): torch.zeros_like(v) for k, v in list(authors.items())})
    assert "backbone.patch_embed.2.c.weight" in authors and "backbone.norm3.weight" in authors
    assert "roi_head.bbox_head.2.fc_cls.weight" in authors and "neck.fpn_convs.0.conv.weight" in authors
    checkpoint = tmp_path / "casc_mask_rcnn_ffnet_2_fpn_3x_coco.pth"
    torch.save({"meta": {"mmdet_version": "2.28.1"}, "state_dict": authors}, checkpoint)

    code, out, err = ffnet_test(capsys, str(det_config), "--checkpoint", str(checkpoint), "--work-dir",
                                str(tmp_path / "test"))
    assert code == 0, err
    assert (f"loaded {checkpoint}: all {len(ours.state_dict())} tensors of the model, converted from the authors' "
            "mmdet 2.28 Cascade Mask R-CNN layout (ysj9909/FFNet detection/)") in out
    assert "coco/bbox_mAP" in out + err
    runner, _ = runner_with(str(det_config), checkpoint, tmp_path / "load")
    assert_same_weights(runner.model.state_dict(), ours.state_dict())


def test_wrong_detector_variant_is_refused(tmp_path, capsys):
    pytest.importorskip("mmdet")
    from test_detection import CONFIG_DIR

    ffnet_2 = CONFIG_DIR / "cascade-mask-rcnn_ffnet-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py"
    checkpoint = tmp_path / "ffnet_2_detector.pth"
    torch.save({"state_dict": random_model(lambda: build_model(ffnet_2, "mmdet")).state_dict()}, checkpoint)
    code, out, err = ffnet_test(capsys, "cascade-mask-rcnn_ffnet-3_fpn_4conv1fc-giou_ms-crop-3x_coco.py",
                                "--checkpoint", str(checkpoint), "--work-dir", str(tmp_path / "test"))
    assert_refused(code, out, err, checkpoint,
                   "a Cascade Mask R-CNN (3 stages, 80 classes) with backbone ffnet_2 (train-time)")


# ---------------------------------------------------------------------------------------------------------------------
# Segmentation: upernet_ffnet_{2,3,4}_512_160k_ade20k.pth, ffnet_seg_sys_*.pth (mmseg 0.x), ffnet_seg.pth.tar


@pytest.fixture
def ade_root(tmp_path) -> Path:
    pytest.importorskip("mmseg")
    from test_segmentation import write_ade20k

    write_ade20k(tmp_path / "ade")
    return tmp_path / "ade"


def seg_config(shipped: str, root: Path, out: Path) -> Path:
    """A shipped segmentation config tested on ``root``'s one validation image at short side 64."""
    from test_segmentation import CONFIG_DIR

    cfg = Config.fromfile(str(CONFIG_DIR / shipped))
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader.dataset.data_root = str(root)
    for transform in cfg.test_dataloader.dataset.pipeline:
        if transform.type == "Resize":
            transform.scale = (256, 64)
    cfg.dump(str(out))
    return out


@pytest.mark.parametrize("shipped, convert_name, layout", [
    ("ffnet-2_upernet_8xb2-160k_ade20k-512x512.py", "upernet_own_to_authors",
     "the authors' mmseg 0.27 UperNet layout (ysj9909/FFNet segmentation/)"),
    ("ffnet-seg_8xb2-160k_ade20k-512x512.py", "system_own_to_authors",
     "the authors' mmseg 0.x FFNet-seg segmentor layout (ysj9909/FFNet segmentation/, ffnet_sys.py + ffnet_head.py)"),
], ids=["upernet", "ffnet-seg"])
def test_authors_segmentor_is_evaluated_by_ffnet_test(shipped, convert_name, layout, ade_root, tmp_path, capsys):
    from ffnet.segmentation import convert

    config = seg_config(shipped, ade_root, tmp_path / "seg.py")
    ours = random_model(lambda: build_model(config, "mmseg"), meta="upernet" in shipped)
    authors = getattr(convert, convert_name)(ours.state_dict())
    if "ffnet-seg" in shipped:  # the authors' ffnet_sys.py names: Conv2d_BN c/bn, RepVGGDW conv1/conv2/strip_conv1/strip_conv2
        assert authors["backbone.patch_embed.5.c.weight"].shape == (96, 96, 3, 3)
        assert authors["backbone.stages.2.1.token_mixer.0.main.conv1.conv2.c.weight"].shape == (384, 1, 5, 5)
        assert authors["decode_head.head_blocks.0.channel_mixer.main.conv.strip_conv2.c.weight"].shape == (256, 1, 9, 1)
        assert authors["decode_head.squeeze.0.c.weight"].shape == (1344, 1344, 1, 1)
    else:
        assert "backbone.stages.3.0.proj.0.conv1.c.weight" in authors
        assert "decode_head.psp_modules.0.1.conv.weight" in authors
    checkpoint = tmp_path / "released.pth"
    torch.save({"meta": {"mmseg_version": "0.27.0"}, "state_dict": authors}, checkpoint)

    code, out, err = ffnet_test(capsys, str(config), "--checkpoint", str(checkpoint), "--work-dir",
                                str(tmp_path / "test"))
    assert code == 0, err
    assert f"loaded {checkpoint}: all {len(ours.state_dict())} tensors of the model, converted from {layout}" in out
    assert "mIoU" in out + err
    runner, _ = runner_with(str(config), checkpoint, tmp_path / "load")
    assert_same_weights(runner.model.state_dict(), ours.state_dict())


def test_wrong_segmentor_variant_is_refused(tmp_path, capsys):
    pytest.importorskip("mmseg")
    from test_segmentation import CONFIG_DIR

    checkpoint = tmp_path / "upernet_ffnet_2.pth"
    model = random_model(lambda: build_model(CONFIG_DIR / "ffnet-2_upernet_8xb2-160k_ade20k-512x512.py", "mmseg"))
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    code, out, err = ffnet_test(capsys, "ffnet-3_upernet_8xb2-160k_ade20k-512x512.py", "--checkpoint",
                                str(checkpoint), "--work-dir", str(tmp_path / "test"))
    assert_refused(code, out, err, checkpoint, "an UperNet segmentor (150 classes) with backbone ffnet_2 (train-time)")

    system = tmp_path / "ffnet_seg_sys.pth"
    ffnet_seg = random_model(lambda: build_model(CONFIG_DIR / "ffnet-seg_8xb2-160k_ade20k-512x512.py", "mmseg"),
                             meta=False)
    torch.save({"state_dict": ffnet_seg.state_dict()}, system)
    code, out, err = ffnet_test(capsys, "ffnet-2_upernet_8xb2-160k_ade20k-512x512.py", "--checkpoint", str(system),
                                "--work-dir", str(tmp_path / "test"))
    assert_refused(code, out, err, system, "an FFNet-seg segmentor (3 head blocks, 150 classes) with backbone the "
                                           "FFNet-seg backbone (train-time)")


def test_ffnet_seg_imagenet_layout_converts_and_loads_strictly(tmp_path):
    """``ffnet_seg.pth.tar``: recognised by the loader (its ImageNet classifier dropped) and by the backbone's
    init_cfg."""
    pytest.importorskip("mmseg")
    from ffnet.segmentation import FFNetSeg
    from ffnet.segmentation.ffnet_seg import own_to_authors

    ours = random_model(FFNetSeg)
    authors = own_to_authors(ours.state_dict())
    authors.update({"head1.0.c.weight": torch.zeros(1024, 768, 1, 1), "head2.3.weight": torch.zeros(1000, 1280)})
    checkpoint = tmp_path / "ffnet_seg.pth.tar"
    torch.save({"state_dict": authors, "epoch": 299}, checkpoint)
    converted, name = convert_layout(load_weights(checkpoint))
    assert name == "the authors' FFNet-seg ImageNet layout (ffnet_seg.pth.tar)"
    target = random_model(FFNetSeg, seed=1)
    report = load_state_dict(target, load_weights(checkpoint), source=str(checkpoint))
    assert report.converter == name
    assert_same_weights(target.state_dict(), ours.state_dict())
    from_init_cfg = random_model(lambda: FFNetSeg(init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint))), seed=2)
    from_init_cfg.init_weights()
    assert_same_weights(from_init_cfg.state_dict(), ours.state_dict())
    with pytest.raises(CheckpointError, match=re.escape("the file looks like the FFNet-seg backbone (train-time)")):
        load_state_dict(random_model(lambda: timm.create_model("ffnet_2")), load_weights(checkpoint), source="x")
