"""ffnet.segmentation on mmseg 1.x: FFNet-seg and FFNetHead (sizes of the authors' ffnet_sys.py, the authors' key layout,
whole-segmentor re-parameterization), every shipped config, and 2 Runner iterations + resume on an
ADE20K-format dataset written from scikit-image's photos."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

mmseg = pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from skimage import data as skdata  # noqa: E402
from PIL import Image  # noqa: E402

import ffnet.classification  # noqa: E402
import ffnet.segmentation  # noqa: E402
from ffnet.core import is_reparameterized  # noqa: E402
from ffnet.segmentation import FFNetHead, FFNetSeg, deploy_checkpoint, reparameterize_segmentor  # noqa: E402
from helpers import randomize_bn  # noqa: E402

CONFIG_DIR = Path(ffnet.segmentation.__file__).parent / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))
ADE_SEG = CONFIG_DIR / "ffnet-seg_8xb2-160k_ade20k-512x512.py"
CITY_SEG = CONFIG_DIR / "ffnet-seg_8xb2-160k_cityscapes-1024x1024.py"


@pytest.fixture(autouse=True)
def mmseg_scope():
    """mmseg's registry scope current during each test (mmengine resolves every build in the current scope,
    mmseg's own registry included); the scope of whatever ran before is restored afterwards."""
    with DefaultScope.overwrite_default_scope("mmseg"):
        yield


@pytest.fixture
def foreign_scope():
    """Another registry scope current, as a Runner of another scope (e.g. the point-cloud trainer's) leaves it."""
    with DefaultScope.overwrite_default_scope("mmengine"):
        yield DefaultScope.get_current_instance()


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN statistics/affine and LayerScale, so folding is tested away from the identity."""
    gen = torch.Generator().manual_seed(seed)
    randomize_bn(model, seed, shift_std=0.1)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale.gamma"):
            p.data.copy_(torch.rand(p.shape, generator=gen) + 0.5)


def build(config: Path, **model_overrides) -> torch.nn.Module:
    cfg = Config.fromfile(str(config))
    cfg.model.merge_from_dict(model_overrides) if model_overrides else None
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def seg_sample(height: int, width: int, num_classes: int) -> SegDataSample:
    sample = SegDataSample()
    sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width)))
    labels = torch.arange(height * width).reshape(1, height, width) // (height * width // 4) % num_classes
    sample.gt_sem_seg = PixelData(data=labels.long())
    return sample


# ---------------------------------------------------------------------------------------------------------------------
# FFNet-seg: sizes, the authors' layout, re-parameterization


def test_ffnet_seg_sizes_match_the_spec():
    """Measured on the authors' ffnet_sys.py / ffnet_head.py: totals 68.48M / 67.23M (ADE20K), 67.76M / 66.44M (Cityscapes)."""
    for config, head, total, head_deployed, total_deployed in (
        (ADE_SEG, 4_650_518, 68_476_566, 4_531_926, 67_231_574),
        (CITY_SEG, 3_932_307, 67_758_355, 3_736_403, 66_436_051),
    ):
        model = build(config)
        assert num_params(model.backbone) == 63_826_048
        assert (num_params(model.decode_head), num_params(model)) == (head, total)
        from ffnet.core import reparameterize

        reparameterize(model, fold_scales=False)  # the authors' deployed form keeps LayerScale
        assert (num_params(model.backbone), num_params(model.decode_head), num_params(model)) == (
            62_699_648, head_deployed, total_deployed)


def test_upernet_sizes_match_the_paper():
    """Paper Tab. 3: UperNet with FFNet-2/3/4 has 58M / 80M / 113M parameters."""
    sizes = {config.name.split("_")[0]: round(num_params(build(config)) / 1e6)
             for config in CONFIGS if "upernet" in config.name}
    assert sizes == {"ffnet-2": 58, "ffnet-3": 80, "ffnet-4": 113}


def authors_seg_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an FFNetSeg state dict to the authors' ffnet_sys.py keys (the authors' ffnet_sys.py module names)."""
    kernels = (3, 3, 9, 9)
    out = {}
    for key, value in state.items():
        key = re.sub(r"\.conv\.(weight)$", r".c.\1", key)
        m = re.fullmatch(r"stem\.(\d)\.(.+)", key)
        if m:
            out[f"patch_embed.{m[1]}.{m[2]}"] = value
            continue
        m = re.fullmatch(r"stages\.(\d)\.downsample\.(\d)\.(.+)", key)
        if m:
            out[f"stages.{m[1]}.0.proj.{m[2]}.{m[3]}"] = value
            continue
        m = re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(.+)", key)
        stage, index, rest = int(m[1]), int(m[2]) + (int(m[1]) > 0), m[3]
        names = ["conv2", "strip_conv1", "strip_conv2"] if kernels[stage] > 3 else ["strip_conv1", "strip_conv2"]
        rest = re.sub(r"\.main\.", ".conv1.", rest)
        rest = re.sub(r"\.branches\.(\d)\.", lambda b: f".{names[int(b[1])]}.", rest)
        rest = (rest.replace("token_mixer.mixer.query_proj", "token_mixer.0.main.fc")
                .replace("token_mixer.mixer.compat", "token_mixer.0.main.conv1")
                .replace("token_mixer.mixer.aggregate", "token_mixer.0.main.conv2")
                .replace("token_mixer.layer_scale.gamma", "token_mixer.0.layer_scale")
                .replace("channel_mixer.mixer.query_proj", "channel_mixer.main.conv")
                .replace("channel_mixer.mixer.compat", "channel_mixer.main.fc1")
                .replace("channel_mixer.mixer.aggregate", "channel_mixer.main.fc2")
                .replace("channel_mixer.layer_scale.gamma", "channel_mixer.layer_scale"))
        out[f"stages.{stage}.{index}.{rest}"] = value.reshape(-1, 1, 1) if rest.endswith("layer_scale") else value
    out["head2.3.weight"] = torch.zeros(1000, 1280)  # their ImageNet classifier, ignored by the backbone
    return out


def test_ffnet_seg_loads_the_authors_layout_and_errors(tmp_path):
    torch.manual_seed(0)
    source = FFNetSeg().eval()
    randomize(source)
    torch.save({"model": authors_seg_layout(source.state_dict())}, tmp_path / "ffnet_seg.pth.tar")
    loaded = FFNetSeg(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "ffnet_seg.pth.tar"))).eval()
    loaded.init_weights()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(source(x), loaded(x)):
            assert a.shape[1] in (192, 384, 768)
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    with pytest.raises(ValueError, match="unknown FFNet-seg arch 'ffnet_seg_3'.*does not define"):
        MODELS.build(dict(type="FFNetSeg", arch="ffnet_seg_3"))
    with pytest.raises(FileNotFoundError, match="pretrained checkpoint not found"):
        FFNetSeg(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "missing.pth"))).init_weights()
    torch.save({"state_dict": ffnet.classification.create_ffnet("ffnet_1").state_dict()}, tmp_path / "ffnet_1.pth")
    with pytest.raises(ValueError, match="does not fit the train-time ffnet_seg backbone"):
        FFNetSeg(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "ffnet_1.pth"))).init_weights()
    with pytest.raises(ValueError, match=r"channels \(512\) must equal head_width \* final_expansion_ratio \(1024\)"):
        FFNetHead(in_channels=[192, 384, 768], in_index=[0, 1, 2], channels=512, num_classes=19)


def test_whole_segmentor_reparameterizes_and_deploys(tmp_path):
    """Folding FFNet-seg + FFNetHead keeps eval-mode logits; the deployed checkpoint loads into a deploy=True config."""
    model = build(ADE_SEG).eval()
    randomize(model)
    x = torch.randn(1, 3, 64, 64)
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64))]
    with torch.no_grad():
        before = model.encode_decode(x, metas)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "trained.pth")
    reparameterize_segmentor(model)
    assert is_reparameterized(model) and model.backbone.deploy and model.decode_head.deploy
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model.encode_decode(x, metas), before, atol=1e-4, rtol=1e-4)

    out, cfg_path, diff = deploy_checkpoint(str(ADE_SEG), str(tmp_path / "trained.pth"), str(tmp_path / "deployed.pth"),
                                            input_size=(64, 64))
    assert diff < 1e-3
    cfg = Config.fromfile(str(cfg_path))
    assert cfg.model.backbone.deploy and cfg.model.decode_head.deploy
    deployed = MODELS.build(cfg.model).eval()
    deployed.load_state_dict(torch.load(out)["state_dict"], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(deployed.encode_decode(x, metas), before, atol=1e-4, rtol=1e-4)


def test_deploy_and_benchmark_build_in_the_mmseg_scope_whatever_scope_is_current(tmp_path, foreign_scope):
    """mmengine resolves even ``mmseg.registry.MODELS.build`` in the current scope; ``ffnet seg deploy`` and the
    benchmark's builder build in mmseg's scope and leave the caller's scope current."""
    from ffnet.engine.openmmlab.benchmark import build_from_config
    from ffnet.main import main

    cfg = Config.fromfile(str(CONFIGS[0]))  # UperNet + FFNet-2, one block per stage
    cfg.model.backbone.update(depths=(1, 1, 1, 1), init_cfg=None)
    cfg.model.pop("_scope_")  # as in a config on relative (copied) mmseg bases: only default_scope names mmseg
    cfg.dump(str(tmp_path / "small.py"))
    with pytest.raises(KeyError, match="EncoderDecoder is not in the mmengine::model registry"):
        MODELS.build(cfg.model)  # the failure the scoped builds avoid
    torch.manual_seed(0)
    model = build_from_config(cfg)
    randomize(model)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "trained.pth")
    main(["seg", "deploy", str(tmp_path / "small.py"), str(tmp_path / "trained.pth"),
          "--out", str(tmp_path / "deployed.pth"), "--check-size", "64", "64"])
    deployed = build_from_config(Config.fromfile(str(tmp_path / "deployed.py")))
    assert deployed.backbone.deploy
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.backbone.modules())
    deployed.load_state_dict(torch.load(tmp_path / "deployed.pth")["state_dict"], strict=True)
    x = torch.randn(1, 3, 64, 64)
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64))]
    with torch.no_grad():
        torch.testing.assert_close(deployed.encode_decode(x, metas), model.encode_decode(x, metas),
                                   atol=1e-4, rtol=1e-4)
    assert DefaultScope.get_current_instance().instance_name == foreign_scope.instance_name  # left as it was


# ---------------------------------------------------------------------------------------------------------------------
# The shipped configs


def test_every_config_is_shipped():
    assert [p.name for p in CONFIGS] == [
        "ffnet-2_upernet_8xb2-160k_ade20k-512x512.py", "ffnet-3_upernet_8xb2-160k_ade20k-512x512.py",
        "ffnet-4_upernet_8xb2-160k_ade20k-512x512.py", "ffnet-seg_8xb2-160k_ade20k-512x512.py",
        "ffnet-seg_8xb2-160k_cityscapes-1024x1024.py"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem.replace("_8xb2-160k", ""))
def test_config_has_the_spec_values(config):
    cfg = Config.fromfile(str(config))
    assert cfg.custom_imports.imports == ["ffnet.segmentation"]
    assert cfg.train_cfg == dict(type="IterBasedTrainLoop", max_iters=160000, val_interval=4000)
    warmup, poly = cfg.param_scheduler
    assert (warmup.start_factor, warmup.end, poly.power, poly.eta_min, poly.end) == (1e-6, 1500, 1.0, 0.0, 160000)
    assert cfg.train_dataloader.batch_size == 2
    if "upernet" in config.name:
        arch = cfg.model.backbone.arch
        assert cfg.model.decode_head.type == "UPerHead" and cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
        assert cfg.model.backbone.drop_path_rate == {"ffnet_2": 0.2, "ffnet_3": 0.3, "ffnet_4": 0.3}[arch]
        assert cfg.optim_wrapper.constructor == "FFNetLayerDecayOptimizerConstructor"
        assert cfg.optim_wrapper.paramwise_cfg == dict(
            decay_type="layer_wise", **({"decay_rate": 1.0, "num_layers": 9} if arch == "ffnet_2"
                                        else {"decay_rate": 0.9, "num_layers": 12}))
        assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05)
        assert [t.type for t in cfg.test_pipeline][:3] == ["LoadImageFromFile", "Resize", "ResizeToMultiple"]
    else:
        head = cfg.model.decode_head
        cityscapes = "cityscapes" in config.name
        assert cfg.model.backbone.type == "FFNetSeg" and head.type == "FFNetHead"
        assert (head.head_depth, head.expansion_ratio, head.drop_path, head.num_classes) == (
            (5, 1, 0.0, 19) if cityscapes else (3, 4, 0.1, 150))
        assert cfg.model.backbone.drop_path_rate == (0.35 if cityscapes else 0.3)
        assert cfg.optim_wrapper.optimizer.lr == 6e-5
        assert cfg.optim_wrapper.optimizer.weight_decay == (0.02 if cityscapes else 0.05)
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys["head"] == dict(lr_mult=10.0)
        assert cfg.model.test_cfg == (dict(mode="slide", crop_size=(1024, 1024), stride=(768, 768)) if cityscapes
                                      else dict(mode="whole"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem.replace("_8xb2-160k", ""))
def test_config_builds_and_runs_loss_and_predict(config):
    """Each config's full segmentor, built through mmseg's registry, on two 96x128 crops of a photo
    (UperNet's 1x1 pooling branch has a BatchNorm, which needs more than one value per channel)."""
    cfg = Config.fromfile(str(config))
    num_classes = cfg.model.decode_head.num_classes
    if cfg.model.test_cfg.mode == "slide":
        cfg.model.test_cfg.update(crop_size=(64, 64), stride=(48, 48))
    cfg.model.data_preprocessor.size = (96, 128)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    photo = torch.from_numpy(skdata.astronaut().copy()).permute(2, 0, 1).float()
    images = [photo[:, :192:2, :256:2], photo[:, 200:392:2, 100:356:2]]
    model.train()
    samples = [seg_sample(96, 128, num_classes) for _ in images]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    losses = model(**data, mode="loss")
    assert "decode.loss_ce" in losses and torch.isfinite(losses["decode.loss_ce"])
    assert ("aux.loss_ce" in losses) == ("upernet" in config.name)
    model.eval()
    data = model.data_preprocessor(dict(inputs=images[:1], data_samples=samples[:1]), training=False)
    with torch.no_grad():
        result = model(**data, mode="predict")[0]
    assert result.seg_logits.data.shape == (num_classes, 96, 128)
    assert result.pred_sem_seg.data.shape == (1, 96, 128)


# ---------------------------------------------------------------------------------------------------------------------
# Training with the mmengine Runner


def write_ade20k(root: Path) -> None:
    """ADEChallengeData2016 layout: images/{training,validation}/*.jpg, annotations/.../*.png.

    Labels: each photo's pixels quantised into 4 colour clusters (k-means in RGB), stored as 1..4
    (0 is ADE20K's "other", removed by reduce_zero_label)."""
    photos = {"training": ["chelsea", "coffee"], "validation": ["astronaut"]}
    for split, names in photos.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for name in names:
            image = getattr(skdata, name)()[::3, ::3]
            pixels = image.reshape(-1, 3).astype(np.float32)
            centres = pixels[np.linspace(0, len(pixels) - 1, 4).astype(int)]
            for _ in range(10):
                assign = ((pixels[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
                centres = np.stack([pixels[assign == k].mean(0) if (assign == k).any() else centres[k]
                                    for k in range(4)])
            Image.fromarray(image).save(root / "images" / split / f"{name}.jpg", quality=95)
            labels = (assign.reshape(image.shape[:2]) + 1).astype(np.uint8)
            Image.fromarray(labels).save(root / "annotations" / split / f"{name}.png")


def test_runner_trains_two_iterations_and_resumes(tmp_path):
    """UperNet + FFNet-2 (one block per stage) on 64x64 crops: 2 iterations, mIoU evaluation, resume to a 3rd."""
    write_ade20k(tmp_path / "ade")
    cfg = Config.fromfile(str(CONFIGS[0]))
    cfg.model.backbone.update(depths=(1, 1, 1, 1), init_cfg=None)
    cfg.model.data_preprocessor.size = (64, 64)
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[split].update(num_workers=0, persistent_workers=False)
        cfg[split].dataset.data_root = str(tmp_path / "ade")
        for transform in cfg[split].dataset.pipeline:
            if transform.type in ("RandomResize", "Resize"):
                transform.scale = (256, 64)
            if transform.type == "RandomCrop":
                transform.crop_size = (64, 64)
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / "work")

    runner = Runner.from_cfg(copy.deepcopy(cfg))
    runner.train()
    assert runner.iter == 2 and (tmp_path / "work" / "iter_2.pth").is_file()
    assert "val/mIoU" in runner.message_hub.log_scalars
    assert list((tmp_path / "work").glob("best_mIoU_iter_2.pth"))

    cfg.train_cfg.max_iters = 3
    cfg.resume = True
    resumed = Runner.from_cfg(cfg)
    resumed.train()  # loads iter_2.pth with the weights-only unpickler (ffnet.checkpoints)
    assert resumed.iter == 3
    assert len(resumed.message_hub.get_scalar("train/loss").data[0]) == 3
    stem = resumed.model.backbone.stem.conv1.conv.weight
    assert int(resumed.optim_wrapper.optimizer.state[stem]["step"]) == 3
