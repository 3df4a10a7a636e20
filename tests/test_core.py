"""The MetaMixer core: backends, re-parameterization of every unit type, block variants."""
import pytest
import torch
from torch import nn

from ffnet.core import (
    ConvBN,
    FFNetBlock,
    MetaMixer,
    PreBNPointwiseSkip,
    RepConv,
    SelfAttention,
    backend,
    convnext_channel_mixer,
    ffn,
    ffnified_attention,
    is_reparameterized,
    reparameterize,
)
from helpers import randomize_bn


def assert_folds_exactly(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model = randomize_bn(model).eval()
    with torch.no_grad():
        before = model(x)
        reparameterize(model)
        after = model(x)
    assert is_reparameterized(model)
    scale = before.abs().max().clamp_min(1e-6)
    assert ((before - after).abs().max() / scale) <= 1e-5
    return model


@pytest.mark.parametrize(
    "unit",
    [
        lambda: ConvBN(2, 8, 8, 3, groups=8),
        lambda: ConvBN(1, 8, 16, 1),
        lambda: RepConv(2, 8, 8, 7, [3], groups=8),
        lambda: RepConv(2, 8, 8, 9, [5, (1, 9), (9, 1)], groups=8),
        lambda: RepConv(2, 8, 8, 3, [(1, 3), (3, 1)], groups=8),
        lambda: RepConv(2, 8, 16, 7, [3], stride=2, groups=8),
        lambda: RepConv(2, 8, 8, 5, [3, 1], groups=8, bn=False, identity=True),
        lambda: RepConv(1, 8, 8, 51, [5], groups=8),
        lambda: PreBNPointwiseSkip(2, 8),
    ],
    ids=["convbn-dw", "convbn-1d-1x1", "rep-7-3", "rep-strip-9", "rep-strip-3", "rep-stride2-mult2",
         "rep-identity-nobn", "rep-1d-51-5"] + ["prebn-skip"],
)
def test_every_unit_folds_into_one_conv(unit):
    module = unit()
    x = torch.randn(2, 8, 31) if module.spatial_dims == 1 else torch.randn(2, 8, 19, 17)
    holder = nn.Sequential(module)
    assert_folds_exactly(holder, x)
    assert isinstance(holder[0], (nn.Conv1d, nn.Conv2d))


def test_folded_kernel_keeps_main_geometry():
    holder = nn.Sequential(RepConv(2, 8, 16, 7, [3], stride=2, groups=8))
    assert_folds_exactly(holder, torch.randn(1, 8, 20, 20))
    conv = holder[0]
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2) and conv.groups == 8 and conv.out_channels == 16


@pytest.mark.parametrize(
    "spatial_dims,kernel,branches,layer_scale",
    [(2, 7, [3], None), (2, 7, [3], 0.3), (2, 9, [5, (1, 9), (9, 1)], 0.3), (1, 51, [5], None)],
)
def test_image_style_block_reparameterizes(spatial_dims, kernel, branches, layer_scale):
    block = FFNetBlock(
        ffnified_attention(spatial_dims, 16, kernel, branch_kernels=branches),
        convnext_channel_mixer(spatial_dims, 16, 3, kernel, branch_kernels=branches),
        channels=16, spatial_dims=spatial_dims, layer_scale=layer_scale, drop_path=0.2,
    )
    x = torch.randn(2, 16, 40) if spatial_dims == 1 else torch.randn(2, 16, 15, 15)
    folded = assert_folds_exactly(block, x)
    if layer_scale is not None:
        assert isinstance(folded.token_mixer.layer_scale, nn.Identity)
    with torch.no_grad():
        once = folded(x)
        reparameterize(folded)
        assert torch.equal(folded(x), once)


def test_fold_scales_false_keeps_layer_scale():
    block = FFNetBlock(ffnified_attention(2, 8, 3), ffn(2, 8, 16), channels=8, layer_scale=1e-6)
    reparameterize(block.eval(), fold_scales=False)
    assert not isinstance(block.token_mixer.layer_scale, nn.Identity)


def test_block_without_norm_has_the_sr_parameter_count():
    """The SR block of the spec: no norm, 3x3 depthwise convs with bias, FFN ratio 2 at width 96."""
    block = FFNetBlock(
        ffnified_attention(2, 96, 3, conv_bn=False, query_bn=False),
        convnext_channel_mixer(2, 96, 2, 3, bn=False),
        channels=96,
    )
    assert sum(p.numel() for p in block.token_mixer.parameters()) == 11_232
    assert sum(p.numel() for p in block.channel_mixer.parameters()) == 38_112


def test_metamixer_instances_follow_the_framework():
    mixer = ffn(2, 8, 24)
    assert isinstance(mixer.query_proj, nn.Identity)
    assert mixer.compat.out_channels == 24 and mixer.aggregate.in_channels == 24
    token = ffnified_attention(2, 8, 7, branch_kernels=[3])
    assert isinstance(token.query_proj, ConvBN) and isinstance(token.compat, RepConv)
    assert token.compat.main.conv.groups == 8
    channel = convnext_channel_mixer(2, 8, 3, 3)
    assert isinstance(channel.query_proj, ConvBN) and channel.compat.out_channels == 24


def test_custom_query_projection_is_used():
    calls = []

    class Recording(nn.Module):
        def forward(self, x):
            calls.append(x.shape)
            return x

    mixer = ffnified_attention(1, 4, 5, conv_bn=False, query_proj=Recording())
    mixer(torch.randn(2, 4, 10))
    assert calls == [torch.Size([2, 4, 10])]


def test_adaln_block_is_identity_at_init_and_uses_the_condition():
    block = FFNetBlock(
        ffnified_attention(2, 8, 3, conv_bn=False, query_bn=False), ffn(2, 8, 16),
        channels=8, norm="ln", norm_affine=False, cond_channels=4,
    )
    x, cond = torch.randn(2, 8, 6, 6), torch.randn(2, 4)
    assert torch.equal(block(x, cond), x)  # adaLN-Zero: gates start at zero
    nn.init.normal_(block.modulation[1].weight)
    out_a, out_b = block(x, cond), block(x, cond + 1)
    assert not torch.allclose(out_a, out_b)
    with pytest.raises(ValueError, match="pass cond"):
        block(x)


@pytest.mark.parametrize("cosine", [False, True])
def test_self_attention_is_permutation_equivariant(cosine):
    attn = SelfAttention(16, 4, cosine=cosine).eval()
    x = torch.randn(2, 16, 3, 5)
    perm = torch.randperm(15)
    out = attn(x).flatten(2)
    out_perm = attn(x.flatten(2)[:, :, perm].reshape(x.shape)).flatten(2)
    assert torch.allclose(out[:, :, perm], out_perm, atol=1e-5)


def test_self_attention_matches_explicit_softmax():
    attn = SelfAttention(8, 2).eval()
    tokens = torch.randn(1, 5, 8)
    q = attn.query_proj(tokens).reshape(1, 5, 2, 4).transpose(1, 2)
    k, v = (t.reshape(1, 5, 2, 4).transpose(1, 2) for t in attn.key_value(tokens).chunk(2, -1))
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1)
    expected = attn.aggregate((weights @ v).transpose(1, 2).reshape(1, 5, 8))
    assert torch.allclose(attn.attend(tokens), expected, atol=1e-6)


def test_bad_configuration_errors_name_the_problem():
    with pytest.raises(ValueError, match="spatial_dims must be"):
        backend.conv(4, 8, 8, 3)
    with pytest.raises(ValueError, match="unknown norm"):
        backend.norm("gn", 2, 8)
    with pytest.raises(ValueError, match="identity branch"):
        RepConv(2, 8, 16, 3, identity=True)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SelfAttention(10, 4)
    with pytest.raises(ValueError, match="cannot centre"):
        nn.Sequential(RepConv(2, 4, 4, 7, [4], groups=4)).eval()[0].fuse()


def test_metamixer_is_composable_from_any_modules():
    mixer = MetaMixer(nn.Identity(), nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
    x = torch.randn(3, 4)
    assert torch.allclose(mixer(x), mixer.aggregate(nn.functional.gelu(mixer.compat(x))))
