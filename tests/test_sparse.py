"""Submanifold sparse conv: parity with dense ``conv3d``, gradients, caching, spconv adapter, errors."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ffnet.core import sparse
from ffnet.core.backend import FeatureWise
from ffnet.core.sparse import SparseTensor, SubMConv3d, neighbour_map, submanifold_conv3d


def random_sites(channels, batch=2, shape=(8, 7, 6), occupancy=0.3, dtype=torch.float64, seed=0):
    """A SparseTensor on random active voxels, and its zero-filled dense grid ``(B, C, X, Y, Z)``."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, *shape, generator=gen) < occupancy
    dense = torch.randn(batch, channels, *shape, generator=gen, dtype=dtype) * mask.unsqueeze(1)
    return SparseTensor.from_dense(dense, mask), dense, mask


def dense_reference(dense, mask, weight, bias, groups):
    padding = tuple(k // 2 for k in weight.shape[2:])
    return F.conv3d(dense, weight, bias, padding=padding, groups=groups).movedim(1, -1)[mask]


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel, groups",
    [(4, 6, 3, 1), (4, 4, 3, 4), (4, 8, 3, 4), (4, 6, (3, 1, 5), 2), (3, 5, (3, 1, 5), 1), (2, 2, 1, 1)],
    ids=["dense", "depthwise", "depthwise-x2", "grouped-noncubic", "noncubic", "1x1"],
)
def test_matches_dense_conv3d(in_channels, out_channels, kernel, groups):
    x, dense, mask = random_sites(in_channels)
    conv = SubMConv3d(in_channels, out_channels, kernel, groups=groups, backend="torch").double()
    out = conv(x)
    expected = dense_reference(dense, mask, conv.weight, conv.bias, groups)
    assert out.coords is x.coords
    torch.testing.assert_close(out.features, expected, rtol=1e-10, atol=1e-10)


def test_dense_round_trip_and_add():
    x, dense, mask = random_sites(3)
    torch.testing.assert_close(x.dense(dense.shape[2:]), dense)
    doubled = x + x.replace(x.features * 2)
    torch.testing.assert_close(doubled.features, x.features * 3)
    assert doubled.cache is x.cache
    other, _, _ = random_sites(3, seed=1)
    with pytest.raises(ValueError, match="different active sites"):
        x + other


@pytest.mark.parametrize("in_channels, out_channels, groups", [(3, 2, 1), (3, 3, 3), (3, 6, 3), (4, 2, 2)])
def test_gradcheck(in_channels, out_channels, groups):
    x, _, _ = random_sites(in_channels, batch=1, shape=(4, 3, 4), occupancy=0.5)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(out_channels, in_channels // groups, 3, 1, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(out_channels, generator=gen, dtype=torch.float64)
    inputs = (x.features.clone().requires_grad_(), weight.requires_grad_(), bias.requires_grad_())
    assert torch.autograd.gradcheck(lambda f, w, b: submanifold_conv3d(x.replace(f), w, b, groups).features, inputs)


def test_neighbour_map_cache(monkeypatch):
    builds = []
    build = sparse.build_neighbour_map
    monkeypatch.setattr(sparse, "build_neighbour_map", lambda *args: builds.append(args) or build(*args))
    x, _, _ = random_sites(4)
    first = SubMConv3d(4, 4, 3, backend="torch")
    second = SubMConv3d(4, 4, (3, 3, 3), groups=4, backend="torch")
    y = FeatureWise(nn.Linear(4, 4).double())(first.double()(x))
    second.double()(y)
    assert len(builds) == 1 and y.cache is x.cache
    cached = neighbour_map(x, 3)
    assert neighbour_map(y.replace(y.features[:, :2]), (3, 3, 3)) is cached
    SubMConv3d(4, 4, 5, backend="torch").double()(y)
    assert len(builds) == 2 and neighbour_map(x, 5) is not cached


@pytest.mark.parametrize("kernel", [3, (3, 1, 5)])
def test_spconv_matches_torch(kernel):
    pytest.importorskip("spconv.pytorch")
    x, _, _ = random_sites(4, dtype=torch.float32)
    conv = SubMConv3d(4, 6, kernel, backend="torch")
    adapter = SubMConv3d(4, 6, kernel, backend="spconv")
    adapter.load_state_dict(conv.state_dict())
    expected = conv(x).features
    with torch.no_grad():
        torch.testing.assert_close(adapter(x).features, expected, rtol=1e-5, atol=1e-5)
        cached = x.cache[("spconv", conv.kernel_size)]
        torch.testing.assert_close(adapter.eval()(x.replace(x.features)).features, expected, rtol=1e-5, atol=1e-5)
    assert x.cache[("spconv", conv.kernel_size)] is cached


def test_backend_choice():
    x, _, _ = random_sites(4, dtype=torch.float32)
    assert not SubMConv3d(4, 4, 3)._uses_spconv(x)
    assert "backend='auto'" in repr(SubMConv3d(4, 4, 3, groups=2))


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty point set"):
        SparseTensor(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 3))
    with pytest.raises(TypeError, match="integer"):
        SparseTensor(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        SparseTensor(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        SparseTensor(torch.tensor([[0, -1, 0, 0]]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="3 rows but coords have 2 points"):
        SparseTensor(torch.zeros(2, 4, dtype=torch.long), torch.zeros(3, 3))
    x, _, _ = random_sites(4, dtype=torch.float32)
    with pytest.raises(ValueError, match="expected 3 input channels, got 4"):
        SubMConv3d(3, 3, 3)(x)
    with pytest.raises(TypeError, match="expects a SparseTensor"):
        SubMConv3d(4, 4, 3)(x.features)
    with pytest.raises(ValueError, match="odd"):
        SubMConv3d(4, 4, 2)
    with pytest.raises(ValueError, match="spconv has no grouped convolution"):
        SubMConv3d(4, 4, 3, groups=4, backend="spconv")
    coords = torch.tensor([[0, 1, 2, 3], [1, 1, 2, 3], [0, 1, 2, 3]])
    duplicated = SparseTensor(coords, torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"duplicate coordinates.*batch 0, voxel \(1, 2, 3\).*grid-sampling"):
        SubMConv3d(4, 4, 3)(duplicated)


def test_inference_reuses_the_weight_layout_until_the_weight_changes():
    coords = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2], [0, 2, 1, 1], [0, 3, 3, 3]])
    x = SparseTensor(coords, torch.randn(4, 3))
    conv = SubMConv3d(3, 5, 3, backend="torch").eval()
    with torch.no_grad():
        first = conv(x).features
        cached = conv._layout_cache[1]
        assert conv(x).features.equal(first) and conv._layout_cache[1] is cached
        conv.load_state_dict({"weight": 2 * conv.weight, "bias": conv.bias})  # an in-place copy_: new version
        second = conv(x).features
    torch.testing.assert_close(second - conv.bias, 2 * (first - conv.bias))
    with torch.inference_mode():
        moved = copy.deepcopy(conv).double()  # its parameters are inference tensors, without a version counter
        torch.testing.assert_close(moved(SparseTensor(coords, x.features.double())).features, second.double())
    conv.train()
    conv(x).features.sum().backward()  # training converts on every call, so the weight gets its gradient
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
