"""timm's model contract for FFNet: unpooled features, FX feature extraction, intermediates, TorchScript."""
from __future__ import annotations

import copy
import re

import pytest
import timm
import torch
from helpers import randomize_bn
from timm.models import FeatureGraphNet, get_notrace_functions, get_notrace_modules
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import ffnet.classification  # noqa: F401  (registers ffnet_1 … ffnet_4)
from ffnet.core import fuse_for_inference, reparameterize

STAGE_SHAPES = [(1, 80, 16, 24), (1, 160, 8, 12), (1, 320, 4, 6), (1, 640, 2, 3)]


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    """ffnet_1 (eval) with fan-in scaled random weights and random BN statistics."""
    torch.manual_seed(0)
    model = timm.create_model("ffnet_1")
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5 * p[0].numel() ** -0.5)
    return randomize_bn(model).eval()


def load_reference(model: nn.Module, reference: nn.Module) -> nn.Module:
    """Every weight of ``model`` (an FFNet or a timm feature wrapper of one) from ``reference``; eval mode."""
    weights = reference.state_dict()

    def reference_key(key: str) -> str:
        return re.sub(r"^stages_(\d+)\.", r"stages.\1.", key.removeprefix("graph_module."))

    model.load_state_dict({k: weights[reference_key(k)] for k in model.state_dict()})
    return model.eval()


def shapes(tensors) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in tensors]


# ---------------------------------------------------------------------------------------------------------------------
# global_pool='' (no pooling)

@torch.no_grad()
def test_global_pool_empty_returns_unpooled_features(reference, x):
    features = reference.forward_features(x)
    assert features.shape == (1, 640, 2, 3)

    created = load_reference(timm.create_model("ffnet_1", num_classes=0, global_pool=""), reference)
    assert torch.equal(created(x), features)

    model = copy.deepcopy(reference)
    model.reset_classifier(0, "")
    assert (model.num_classes, model.global_pool) == (0, "")
    assert torch.equal(model(x), features)
    assert torch.equal(model.forward_head(features, pre_logits=True), features)
    model.reset_classifier(0)  # keeps the pooling choice
    assert torch.equal(model(x), features)
    model.reset_classifier(0, "avg")
    assert torch.equal(model(x), features.mean((2, 3)))


@torch.no_grad()
def test_global_pool_empty_survives_deployment(reference, x):
    """The final BatchNorm has no classifier to fold into, so the deployed model keeps it."""
    model = load_reference(timm.create_model("ffnet_1", num_classes=0, global_pool=""), reference)
    deployed = reparameterize(copy.deepcopy(model))
    assert isinstance(deployed.norm, nn.BatchNorm2d)
    out = deployed(x)
    assert out.shape == (1, 640, 2, 3)
    torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-4)


def test_global_pool_errors():
    with pytest.raises(ValueError, match=r"global_pool='avg' only \(or '' for no pooling\), got 'max'"):
        ffnet.classification.FFNet(global_pool="max")
    with pytest.raises(ValueError, match="global_pool='' .* needs num_classes=0, got num_classes=1000"):
        timm.create_model("ffnet_1", global_pool="")
    with torch.device("meta"):
        model = timm.create_model("ffnet_1", num_classes=0, global_pool="")
    with pytest.raises(ValueError, match="needs num_classes=0, got num_classes=10"):
        model.reset_classifier(10)
    assert (model.num_classes, model.global_pool) == (0, "")  # unchanged by the refused reset
    model.reset_classifier(10, "avg")
    assert model.head.out_features == 10


# ---------------------------------------------------------------------------------------------------------------------
# FX: features_only with feature_cls='fx', torchvision's create_feature_extractor, plain symbolic_trace

@torch.no_grad()
def test_fx_features_only_equals_hook_features(reference, x):
    fx = load_reference(timm.create_model("ffnet_1", features_only=True, feature_cls="fx"), reference)
    hooks = load_reference(timm.create_model("ffnet_1", features_only=True, feature_cls="hook"), reference)
    assert isinstance(fx, FeatureGraphNet)
    fx_features, hook_features = fx(x), hooks(x)
    assert shapes(fx_features) == shapes(hook_features) == STAGE_SHAPES
    assert all(torch.equal(a, b) for a, b in zip(fx_features, hook_features))
    with pytest.raises(ValueError, match="expected 3-channel input"):  # the input check is a leaf in the graph
        fx(torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_torchvision_feature_extractor_with_timm_notrace_lists(reference, x, train):
    # No DropPath: the extractor's dead-code elimination drops timm DropPath's in-place 1/keep_prob scaling.
    model = load_reference(timm.create_model("ffnet_1", drop_path_rate=0.0), reference).train(train)
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    extractor = create_feature_extractor(model, {"stages.1": "stage1", "head": "logits"}, tracer_kwargs=tracer_kwargs)
    out = extractor(x)  # train mode: BatchNorm uses the batch statistics, as in the eager calls below
    _, (stage1,) = model.forward_intermediates(x, indices=[1], stop_early=True)
    logits = model(x)
    assert out["stage1"].shape == STAGE_SHAPES[1] and out["logits"].shape == (1, 1000)
    assert torch.equal(out["stage1"], stage1)
    assert torch.equal(out["logits"], logits)
    if train:
        out["logits"].square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="smaller than the total stride 32"):
        extractor(torch.randn(1, 3, 16, 64))


@torch.no_grad()
def test_plain_symbolic_trace(reference, x):
    traced = torch.fx.symbolic_trace(reference)
    assert torch.equal(traced(x), reference(x))
    with pytest.raises(ValueError, match="expected 3-channel input"):
        traced(torch.randn(1, 1, 64, 64))


# ---------------------------------------------------------------------------------------------------------------------
# forward_intermediates

@torch.no_grad()
def test_forward_intermediates(reference, x):
    features = reference.forward_features(x)
    final, intermediates = reference.forward_intermediates(x)
    assert torch.equal(final, features)
    assert shapes(intermediates) == STAGE_SHAPES

    stages = []
    h = reference.stem(x)
    for stage in reference.stages:
        h = stage(h)
        stages.append(h)
    assert all(torch.equal(a, b) for a, b in zip(intermediates, stages))
    assert torch.equal(reference.norm(stages[-1]), features)

    _, normed = reference.forward_intermediates(x, indices=[3], norm=True)
    assert torch.equal(normed[0], features)
    last, (early,) = reference.forward_intermediates(x, indices=[1], stop_early=True)
    assert torch.equal(early, stages[1]) and torch.equal(last, stages[1])
    only = reference.forward_intermediates(x, indices=2, intermediates_only=True)  # the last two
    assert all(torch.equal(a, b) for a, b in zip(only, stages[2:])) and len(only) == 2


# ---------------------------------------------------------------------------------------------------------------------
# TorchScript

@torch.no_grad()
def test_torchscript_train_time_model(reference, x, tmp_path):
    scripted = torch.jit.script(reference)
    torch.testing.assert_close(scripted(x), reference(x))
    path = tmp_path / "ffnet_1.pt"
    torch.jit.save(scripted, str(path))
    torch.testing.assert_close(torch.jit.load(str(path))(x), reference(x))
    with pytest.raises(torch.jit.Error, match="smaller than the total stride 32"):
        scripted(torch.randn(1, 3, 16, 64))


@torch.no_grad()
def test_torchscript_deployed_model_and_fused_refusal(reference, x):
    deployed = reparameterize(copy.deepcopy(reference))
    assert deployed.head_bn_folded
    scripted = torch.jit.script(deployed)
    torch.testing.assert_close(scripted(x), deployed(x))
    torch.testing.assert_close(scripted(x), reference(x), rtol=1e-4, atol=1e-4)

    fused = fuse_for_inference(deployed)
    with pytest.raises(RuntimeError, match="fused by ffnet.core.fuse_for_inference cannot be scripted") as error:
        torch.jit.script(fused)
    assert "\n" not in str(error.value)


@torch.no_grad()
def test_torchscript_fx_features(reference, x):
    fx = load_reference(timm.create_model("ffnet_1", features_only=True, feature_cls="fx"), reference)
    scripted = torch.jit.script(fx)
    expected = reference.forward_intermediates(x, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(scripted(x), expected))
