"""Inference fusion (ffnet.core.fusion): same outputs as the re-parameterized model, fewer ops."""
import copy

import pytest
import timm
import torch
from torch import nn

import ffnet.classification  # noqa: F401  (registers ffnet_1..4 in timm)
from ffnet.core import (
    FFNetBlock,
    FusedConv2d,
    convnext_channel_mixer,
    ffnified_attention,
    fuse_for_inference,
    fusion,
    reparameterize,
)
from ffnet.core.fusion import CacheBlockedMixer
from helpers import randomize_bn


def fused_pair(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(re-parameterized, re-parameterized + fused) copies of ``model`` with random BN statistics."""
    deployed = reparameterize(randomize_bn(model).eval())
    return deployed, fuse_for_inference(copy.deepcopy(deployed))


def image_block(post_act=None, act="gelu", layer_scale=None) -> FFNetBlock:
    return FFNetBlock(
        ffnified_attention(2, 16, 7, branch_kernels=(3,), act=act),
        convnext_channel_mixer(2, 16, 4, 7, branch_kernels=(3,), act=act),
        channels=16, layer_scale=layer_scale, post_act=post_act,
    )


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("block_args", [dict(), dict(post_act="gelu"), dict(act="relu"), dict(layer_scale=1e-2)])
def test_fused_block_matches_the_deployed_block(block_args, layout):
    deployed, fused = fused_pair(image_block(**block_args))
    x = torch.randn(2, 16, 20, 20).contiguous(memory_format=layout)
    with torch.inference_mode():
        expected = deployed(x)
        got = fused.to(memory_format=layout)(x)  # parameters become inference tensors (no version counter)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    fused_convs = [m for m in fused.modules() if isinstance(m, FusedConv2d)]
    assert len(fused_convs) == 4  # two activations and two shortcuts
    assert all(r.fused_shortcut for r in (fused.token_mixer, fused.channel_mixer))


def test_fused_ffnet_1_matches_and_keeps_its_state_dict():
    deployed, fused = fused_pair(timm.create_model("ffnet_1", num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = deployed(x)
        got = fused(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    assert fused.state_dict().keys() == deployed.state_dict().keys()
    # the stem's GELU, one per mixer and one per residual branch, for FFNet-1's 2+2+8+2 blocks
    assert sum(isinstance(m, FusedConv2d) for m in fused.modules()) == 1 + 4 * 14
    assert not any(type(m) is nn.GELU for m in fused.modules())
    fuse_for_inference(fused)  # idempotent
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), got)
    copied = copy.deepcopy(fused)  # after a call, the packed oneDNN weights are not copied but rebuilt
    with torch.inference_mode():
        torch.testing.assert_close(copied(x), got)
    scaled = {k: v * 0.5 if k.endswith("weight") else v for k, v in deployed.state_dict().items()}
    copied.load_state_dict(scaled)  # a weight change invalidates the packed weights
    deployed.load_state_dict(scaled)
    with torch.inference_mode():
        expected = deployed(x)
        torch.testing.assert_close(copied(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_cache_blocked_ffn_matches_in_batch_chunks(monkeypatch):
    deployed, fused = fused_pair(image_block())
    assert isinstance(fused.channel_mixer.mixer, CacheBlockedMixer)
    assert not isinstance(fused.token_mixer.mixer, CacheBlockedMixer)  # depthwise convs: not an FFN pair
    x = torch.randn(5, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    hidden_bytes_per_image = 64 * 12 * 12 * 4
    monkeypatch.setattr(fusion, "_CACHE_BUDGET_BYTES", 2 * hidden_bytes_per_image)  # chunks of 2, 2 and 1 images
    batches = []
    fused.channel_mixer.mixer.compat.register_forward_hook(lambda m, args, out: batches.append(out.shape[0]))
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), deployed(x), rtol=1e-5, atol=1e-5)
    assert batches == [2, 2, 1]


def test_fused_model_falls_back_under_autograd_and_tracing():
    deployed, fused = fused_pair(image_block(post_act="gelu"))
    x = torch.randn(1, 16, 12, 12, requires_grad=True)
    fused(x).sum().backward()  # oneDNN post-ops have no autograd: the plain ops run
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():
        traced = torch.jit.trace(fused, x.detach())
        torch.testing.assert_close(traced(x.detach()), deployed(x.detach()), rtol=1e-5, atol=1e-5)


def test_fusion_refuses_train_time_or_training_models():
    with pytest.raises(ValueError, match="reparameterize"):
        fuse_for_inference(image_block().eval())
    with pytest.raises(ValueError, match="eval"):
        fuse_for_inference(reparameterize(image_block().eval()).train())
    with pytest.raises(ValueError, match="activation"):
        FusedConv2d(nn.Conv2d(4, 4, 1), "silu")


def test_modulated_blocks_keep_their_shortcuts_and_1d_models_are_left_alone():
    modulated = FFNetBlock(ffnified_attention(2, 8, 3), convnext_channel_mixer(2, 8, 2, 3), channels=8, norm="ln",
                           norm_affine=False, cond_channels=4)
    deployed, fused = fused_pair(modulated)
    assert not any(r.fused_shortcut for r in (fused.token_mixer, fused.channel_mixer))
    assert sum(isinstance(m, FusedConv2d) for m in fused.modules()) == 2  # only the conv → GELU pairs
    nn.init.normal_(fused.modulation[1].weight)
    deployed.load_state_dict(fused.state_dict())
    x, cond = torch.randn(2, 8, 9, 9), torch.randn(2, 4)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x, cond), deployed(x, cond), rtol=1e-5, atol=1e-5)
    series = FFNetBlock(ffnified_attention(1, 8, 5), convnext_channel_mixer(1, 8, 2, 5), channels=8)
    fuse_for_inference(reparameterize(series.eval()))
    assert not any(isinstance(m, FusedConv2d) for m in series.modules())


def test_fused_model_compiles_without_graph_breaks():
    deployed, fused = fused_pair(image_block())
    x = torch.randn(2, 16, 10, 10)
    with torch.inference_mode():
        explanation = torch._dynamo.explain(fused)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(fused)(x), deployed(x), rtol=1e-4, atol=1e-5)
