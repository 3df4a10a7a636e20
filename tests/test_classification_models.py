"""FFNet-1..4 classifiers: sizes vs the spec, re-parameterization, timm integration, checkpoints."""
from __future__ import annotations

import argparse
import copy
import re

import pytest
import timm
import torch
from torch import nn

import ffnet.classification as cls
from ffnet.core import is_reparameterized, reparameterize

# Measured on the authors' models/ffnet.py: parameters train-time / authors-deployed, state-dict entries train / deployed.
SPEC_SIZES = {
    "ffnet_1": (13_775_656, 13_660_152, 553, 191),
    "ffnet_2": (27_208_408, 26_908_440, 1057, 311),
    "ffnet_3": (48_817_896, 48_330_632, 1593, 513),
    "ffnet_4": (79_868_968, 79_200_360, 1737, 555),
}
# fvcore MACs at 256x256, (train graph, deployed).
SPEC_MACS = {"ffnet_1": (3.018e9, 2.985e9), "ffnet_2": (6.096e9, 6.003e9)}
# The paper's Table 1 widths / depths, used for the derived fully-folded count.
SPEC_ARCH = {
    "ffnet_1": ((80, 160, 320, 640), (2, 2, 8, 2), False),
    "ffnet_2": ((88, 176, 352, 704), (3, 3, 15, 3), False),
    "ffnet_3": ((96, 192, 384, 768), (4, 4, 22, 5), True),
    "ffnet_4": ((128, 256, 512, 1024), (4, 4, 27, 3), True),
}


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def randomize(model: nn.Module) -> nn.Module:
    """Random weights (fan-in scaled so mixers matter), BN affine and running statistics, LayerScale."""
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.uniform_(0.2, 0.6)
        elif p.dim() > 1:
            p.normal_(0.0, 0.5 / p[0].numel() ** 0.5)
        elif name.endswith("weight"):  # BatchNorm scale
            p.uniform_(0.5, 1.5)
        else:
            p.normal_(0.0, 0.1)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.normal_(0.0, 0.2)
        elif name.endswith("running_var"):
            b.uniform_(0.5, 2.0)
        elif name.endswith("num_batches_tracked"):
            b.zero_()
    return model


def random_model(name: str, **kwargs) -> nn.Module:
    """The timm model with random weights, built on the meta device (skips the slow trunc-normal init)."""
    with torch.device("meta"):
        model = timm.create_model(name, **kwargs)
    model.to_empty(device="cpu")
    return randomize(model).eval()


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------------------------------------------------------------
# The authors' key layout (the authors' models/ffnet.py), stated independently of the package's converter.

def _author_unit(unit: str, kind: str) -> str:
    """Our conv-unit suffix → the authors'. kind: 'convbn' (Conv2d_BN), 'rep' (RepVGGDW), 'plain', 'prebn'."""
    if kind == "rep":
        unit = unit.replace("main.conv.", "conv.c.").replace("main.bn.", "conv.bn.")
        return unit.replace("branches.0.conv.", "conv1.c.").replace("branches.0.bn.", "conv1.bn.")
    if kind in ("convbn", "prebn"):
        unit = re.sub(r"^conv\.", "c.", unit)
        return ("conv." + unit) if kind == "prebn" else unit
    return unit  # plain or fused conv: weight / bias


def to_authors_key(key: str) -> str:
    """Our state-dict key → the authors' ``models/ffnet.py`` key (train-time or fused)."""
    m = re.fullmatch(r"stem\.conv([12])\.(.+)", key)
    if m:
        return f"patch_embed.{2 * int(m[1]) - 2}." + _author_unit(m[2], "convbn")
    m = re.fullmatch(r"stages\.(\d)\.downsample\.(conv|proj)\.(.+)", key)
    if m:
        stage, part, unit = m[1], m[2], m[3]
        if part == "conv":
            return f"stages.{stage}.0.proj.0." + (_author_unit(unit, "rep") if "." in unit else unit)
        return f"stages.{stage}.0.proj.1." + (_author_unit(unit, "prebn") if "." in unit else unit)
    m = re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(token_mixer|channel_mixer)\.(.+)", key)
    if m:
        stage, block, residual, rest = int(m[1]), int(m[2]), m[3], m[4]
        index = block + (1 if stage > 0 else 0)  # PatchMerging is element 0 of stages 1..3
        head = f"stages.{stage}.{index}."
        if rest == "layer_scale.gamma":
            return head + ("token_mixer.0.layer_scale" if residual == "token_mixer" else "channel_mixer.layer_scale")
        m2 = re.fullmatch(r"mixer\.(query_proj|compat|aggregate)\.(.+)", rest)
        part, unit = m2[1], m2[2]
        kind = "rep" if unit.startswith(("main.", "branches.")) else ("convbn" if "." in unit else "plain")
        if residual == "token_mixer":
            name = {"query_proj": "fc", "compat": "conv1", "aggregate": "conv2"}[part]
            return head + f"token_mixer.0.main.{name}." + _author_unit(unit, kind)
        name = {"query_proj": "conv", "compat": "fc1", "aggregate": "fc2"}[part]
        return head + f"channel_mixer.main.{name}." + _author_unit(unit, kind)
    if re.fullmatch(r"(norm|head)\.\w+", key):
        return key
    raise AssertionError(f"no authors' key for {key}")


def to_authors_layout(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        value = value.clone()
        if key.endswith("layer_scale.gamma"):
            value = value.reshape(-1, 1, 1)
        out[to_authors_key(key)] = value
    assert len(out) == len(state)
    return out


def saver_dict(state: dict) -> dict:
    """A timm CheckpointSaver-style file body with DDP-prefixed keys."""
    return {
        "epoch": 299, "arch": "ffnet", "metric": 81.3, "version": 2,
        "args": argparse.Namespace(model="ffnet", lr=1e-3),
        "state_dict": {"module." + k: v for k, v in state.items()},
    }


# ---------------------------------------------------------------------------------------------------------------------
# Sizes

@pytest.mark.parametrize("name", list(SPEC_SIZES))
def test_parameter_counts_match_spec(name):
    params_train, params_deployed, entries_train, entries_deployed = SPEC_SIZES[name]
    with torch.device("meta"):  # shapes only: no weight initialization
        model = timm.create_model(name)
        assert num_params(model) == params_train
        assert len(model.state_dict()) == entries_train
        reparameterize(model, fold_scales=False)  # the authors' fuse
        assert is_reparameterized(model)
        assert num_params(model) == params_deployed
        assert len(model.state_dict()) == entries_deployed
        reparameterize(model)  # also folds LayerScale (2 per block) and the head BN affine
    widths, depths, layer_scale = SPEC_ARCH[name]
    folded_away = 2 * widths[-1] + (2 * sum(w * d for w, d in zip(widths, depths)) if layer_scale else 0)
    assert num_params(model) == params_deployed - folded_away


@pytest.mark.parametrize("name", list(SPEC_MACS))
def test_fvcore_macs_match_spec(name):
    fvcore_nn = pytest.importorskip("fvcore.nn")
    model = random_model(name)
    x = torch.randn(1, 3, 256, 256)
    for form, expected in zip(("train", "deployed"), SPEC_MACS[name]):
        if form == "deployed":
            reparameterize(model, fold_scales=False)
        counter = fvcore_nn.FlopCountAnalysis(model, x)
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert counter.total() == pytest.approx(expected, rel=5e-3), form


# ---------------------------------------------------------------------------------------------------------------------
# Re-parameterization

@pytest.mark.parametrize("name", list(SPEC_SIZES))
def test_reparameterize_preserves_outputs(name):
    torch.manual_seed(0)
    model = random_model(name, num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        reparameterize(model, fold_scales=False)  # the authors' deployed form
        assert is_reparameterized(model) and isinstance(model.norm, nn.BatchNorm2d)
        assert max_rel_diff(model(x), reference) <= 1e-4

        reparameterize(model)  # fully folded
        assert model.head_bn_folded
        assert not any(isinstance(m, (nn.BatchNorm2d, timm.layers.LayerScale2d)) for m in model.modules())
        deployed = model(x)
        assert max_rel_diff(deployed, reference) <= 1e-4

        state = {k: v.clone() for k, v in model.state_dict().items()}
        reparameterize(model)  # idempotent
        assert model.state_dict().keys() == state.keys()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
        assert torch.equal(model(x), deployed)


def test_deploy_kwarg_and_channels_last():
    torch.manual_seed(0)
    model = timm.create_model("ffnet_1", deploy=True, num_classes=10).eval()
    assert is_reparameterized(model) and model.head_bn_folded
    reference = random_model("ffnet_1", num_classes=10)
    model.load_state_dict(reparameterize(copy.deepcopy(reference)).state_dict())
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        y = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        y_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
        assert max_rel_diff(y, reference(x)) <= 1e-4
    assert max_rel_diff(y_cl, y) <= 1e-5
    with pytest.raises(RuntimeError, match="folded into its classifier"):
        model.reset_classifier(5)


# ---------------------------------------------------------------------------------------------------------------------
# timm integration

def test_timm_registration_and_pretrained_cfg():
    assert {"ffnet_1", "ffnet_2", "ffnet_3", "ffnet_4"} <= set(timm.list_models("ffnet_*"))
    model = timm.create_model("ffnet_1", num_classes=7, drop_path_rate=0.3)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 256, 256) and cfg["crop_pct"] == 0.9 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert cfg["crop_mode"] == "center" and cfg["fixed_input_size"] and cfg["num_classes"] == 1000
    assert cfg["classifier"] == "head" and isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    assert model.get_classifier() is model.head and model.head.out_features == 7
    rates = [blk.channel_mixer.drop_path.drop_prob for stage in model.stages for blk in stage.blocks
             if not isinstance(blk.channel_mixer.drop_path, nn.Identity)]
    assert len(rates) == 13 and rates[-1] == pytest.approx(0.3)  # linspace over 14 blocks, first is 0

    with torch.device("meta"):
        ffnet3 = timm.create_model("ffnet_3")
    assert ffnet3.pretrained_cfg["crop_pct"] == 0.95 and ffnet3.pretrained_cfg["input_size"] == (3, 256, 256)
    assert ffnet3.stages[0].blocks[0].token_mixer.layer_scale.gamma.shape == (96,)
    assert timm.models.get_pretrained_cfg("ffnet_3.in1k_384").input_size == (3, 384, 384)
    assert timm.models.get_pretrained_cfg("ffnet_4").input_size == (3, 384, 384)  # FFNet-4 was released at 384 only

    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 640, 2, 2)
        assert model.forward_head(features, pre_logits=True).shape == (2, 640)
        assert model(x).shape == (2, 7)
        model.reset_classifier(0)
        assert model(x).shape == (2, 640)


def test_features_only_and_intermediates():
    model = timm.create_model("ffnet_1", features_only=True, out_indices=(0, 1, 2, 3)).eval()
    assert model.feature_info.channels() == [80, 160, 320, 640]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = model(x)
    assert [tuple(f.shape) for f in features] == [(1, 80, 16, 24), (1, 160, 8, 12), (1, 320, 4, 6), (1, 640, 2, 3)]

    classifier = timm.create_model("ffnet_1").eval()
    classifier.load_state_dict({re.sub(r"^stages_(\d)", r"stages.\1", k): v for k, v in model.state_dict().items()},
                               strict=False)
    with torch.no_grad():
        intermediates = classifier.forward_intermediates(x, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(intermediates, features))


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints in the authors' layout and our own

@pytest.fixture(scope="module")
def ffnet1_train():
    torch.manual_seed(0)
    return random_model("ffnet_1")


def test_authors_layout_is_the_spec_layout(ffnet1_train):
    train_keys = to_authors_layout(ffnet1_train.state_dict())
    spec_shapes = {
        "patch_embed.2.c.weight": (80, 64, 3, 3),
        "stages.0.0.token_mixer.0.main.fc.c.weight": (80, 80, 1, 1),
        "stages.0.0.token_mixer.0.main.conv1.weight": (80, 1, 3, 3),
        "stages.0.0.token_mixer.0.main.conv2.bias": (80,),
        "stages.2.1.token_mixer.0.main.conv1.conv.c.weight": (320, 1, 7, 7),
        "stages.2.1.token_mixer.0.main.conv2.conv1.bn.running_var": (320,),
        "stages.0.1.channel_mixer.main.conv.c.weight": (80, 1, 3, 3),
        "stages.0.1.channel_mixer.main.fc1.weight": (240, 80, 1, 1),
        "stages.1.0.proj.0.conv.c.weight": (160, 1, 7, 7),
        "stages.1.0.proj.0.conv1.bn.weight": (160,),
        "stages.1.0.proj.1.conv.bn.num_batches_tracked": (),
        "stages.1.0.proj.1.conv.c.weight": (160, 160, 1, 1),
        "stages.3.2.channel_mixer.main.fc2.bias": (640,),
        "norm.running_mean": (640,),
        "head.weight": (1000, 640),
    }
    assert {k: tuple(train_keys[k].shape) for k in spec_shapes} == spec_shapes
    deployed = to_authors_layout(reparameterize(copy.deepcopy(ffnet1_train), fold_scales=False).state_dict())
    assert len(deployed) == 191
    assert tuple(deployed["stages.1.0.proj.0.weight"].shape) == (160, 1, 7, 7)
    assert tuple(deployed["stages.2.1.token_mixer.0.main.conv1.weight"].shape) == (320, 1, 7, 7)
    assert "stages.0.0.channel_mixer.main.conv.bias" in deployed and "norm.weight" in deployed


def test_authors_checkpoints_load_train_and_deployed(ffnet1_train, tmp_path):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = ffnet1_train(x)
    authors_train = saver_dict(to_authors_layout(ffnet1_train.state_dict()))

    # train-time → train-time: exact
    model = timm.create_model("ffnet_1").eval()
    model.load_state_dict(cls.checkpoint_filter_fn(authors_train, model), strict=True)
    with torch.no_grad():
        assert torch.equal(model(x), reference)

    # train-time → fully folded deployed model
    deployed = timm.create_model("ffnet_1", deploy=True).eval()
    deployed.load_state_dict(cls.checkpoint_filter_fn(authors_train, deployed), strict=True)
    with torch.no_grad():
        assert max_rel_diff(deployed(x), reference) <= 1e-4

    # authors' fused checkpoint → authors-form and fully folded models
    authors_fused = to_authors_layout(reparameterize(copy.deepcopy(ffnet1_train), fold_scales=False).state_dict())
    for target in (reparameterize(timm.create_model("ffnet_1"), fold_scales=False),
                   timm.create_model("ffnet_1", deploy=True)):
        target.eval().load_state_dict(cls.checkpoint_filter_fn(authors_fused, target), strict=True)
        with torch.no_grad():
            assert max_rel_diff(target(x), reference) <= 1e-4

    # deployed → train-time cannot be un-folded
    with pytest.raises(ValueError, match="cannot be un-folded"):
        cls.checkpoint_filter_fn(authors_fused, model)

    # timm pretrained path with a released-style file (CheckpointSaver dict with argparse args)
    path = tmp_path / "ffnet_1.pth.tar"
    torch.save(authors_train, path)
    loaded = timm.create_model("ffnet_1", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    loaded_deployed = timm.create_model("ffnet_1", pretrained=True, deploy=True,
                                        pretrained_cfg_overlay=dict(file=str(path))).eval()
    new_head = timm.create_model("ffnet_1", pretrained=True, num_classes=5,
                                 pretrained_cfg_overlay=dict(file=str(path))).eval()
    backbone = timm.create_model("ffnet_1", pretrained=True, features_only=True,
                                 pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), reference)
        assert max_rel_diff(loaded_deployed(x), reference) <= 1e-4
        assert torch.equal(new_head.forward_features(x), ffnet1_train.forward_features(x))
        assert new_head(x).shape == (2, 5)
        assert torch.equal(backbone(x)[-1], ffnet1_train.stages(ffnet1_train.stem(x)))
    with pytest.raises(ValueError, match="classifier cannot be replaced"):
        timm.create_model("ffnet_1", pretrained=True, deploy=True, num_classes=5,
                          pretrained_cfg_overlay=dict(file=str(path)))


def test_layer_scale_checkpoints_round_trip(tmp_path):
    """LayerScale (C,1,1) tensors and 7x7∥3x3 channel mixers, on a small custom FFNet."""
    torch.manual_seed(0)
    arch = dict(widths=(16, 32, 64, 128), depths=(1, 1, 2, 1), channel_mixer_kernels=(7, 7, 7, 7), layer_scale=1e-6,
                num_classes=10)
    source = randomize(cls.FFNet(**arch)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = source(x)
    authors_train = to_authors_layout(source.state_dict())
    assert authors_train["stages.1.1.channel_mixer.layer_scale"].shape == (32, 1, 1)
    assert "stages.1.1.channel_mixer.main.conv.conv1.c.weight" in authors_train
    authors_fused = to_authors_layout(reparameterize(copy.deepcopy(source), fold_scales=False).state_dict())
    assert authors_fused["stages.3.1.token_mixer.0.layer_scale"].shape == (128, 1, 1)

    train = cls.FFNet(**arch).eval()
    train.load_state_dict(cls.checkpoint_filter_fn({"state_dict_ema": authors_train}, train), strict=True)
    deployed = cls.FFNet(**arch, deploy=True).eval()
    deployed.load_state_dict(cls.checkpoint_filter_fn({"model": authors_fused}, deployed), strict=True)
    own_folded = reparameterize(copy.deepcopy(source)).state_dict()  # our own deployed checkpoint
    deployed_own = cls.FFNet(**arch, deploy=True).eval()
    deployed_own.load_state_dict(cls.checkpoint_filter_fn(own_folded, deployed_own), strict=True)
    with torch.no_grad():
        assert torch.equal(train(x), reference)
        assert max_rel_diff(deployed(x), reference) <= 1e-4
        assert max_rel_diff(deployed_own(x), reference) <= 1e-4
    with pytest.raises(ValueError, match="cannot be un-folded"):
        cls.checkpoint_filter_fn(own_folded, reparameterize(cls.FFNet(**arch), fold_scales=False))


def test_checkpoint_for_another_variant_is_rejected(ffnet1_train):
    with torch.device("meta"):
        ffnet2 = timm.create_model("ffnet_2")
    with pytest.raises(ValueError, match=r"checkpoint .* is for ffnet_1 .* the model is ffnet_2"):
        cls.checkpoint_filter_fn(to_authors_layout(ffnet1_train.state_dict()), ffnet2)
    with pytest.raises(ValueError, match="unrecognised key"):
        cls.checkpoint_filter_fn({"patch_embed.0.c.weight": torch.zeros(64, 3, 3, 3), "blocks.0.w": torch.zeros(1)},
                                 ffnet1_train)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input

def test_bad_input_errors(ffnet1_train):
    with pytest.raises(ValueError, match="expected 3-channel input"):
        ffnet1_train(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="smaller than the total stride 32"):
        ffnet1_train(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match="unknown FFNet variant 'ffnet_9'"):
        cls.create_ffnet("ffnet_9")
    with pytest.raises(ValueError, match="global_pool='avg' only"):
        cls.FFNet(global_pool="max")
