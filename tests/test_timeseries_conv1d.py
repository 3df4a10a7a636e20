"""The core's matrix-product 1-D convs (ffnet.core.conv1d) against F.conv1d: values and gradients."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ffnet.core import backend
from ffnet.core.conv1d import DepthwiseConv1d, PointwiseConv1d, depthwise_conv1d, plain_conv1d, pointwise_conv1d


def _grads(out: torch.Tensor, inputs, seed: int = 0):
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, upstream)


@pytest.mark.parametrize("batch,channels,length,kernel,padding,block", [
    (2, 5, 48, 51, 25, 64),   # FFNet-TS: one block
    (3, 4, 97, 51, 25, 16),   # odd length, several blocks, last one partial
    (2, 3, 7, 51, 25, 64),    # kernel longer than the input
    (1, 6, 33, 5, 2, 8),
    (2, 2, 40, 7, 0, 64),     # no padding (valid conv)
    (2, 3, 19, 4, 1, 5),      # even kernel, asymmetric band
])
@pytest.mark.parametrize("with_bias", [True, False])
def test_depthwise_matches_conv1d(batch, channels, length, kernel, padding, block, with_bias):
    gen = torch.Generator().manual_seed(kernel + length)
    x = torch.randn(batch, channels, length, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(channels, 1, kernel, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(channels, generator=gen, dtype=torch.float64, requires_grad=True) if with_bias else None
    inputs = (x, w) + ((b,) if with_bias else ())
    ref = F.conv1d(x, w, b, padding=padding, groups=channels)
    out = depthwise_conv1d(x, w, b, padding, block=block)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(_grads(out, inputs), _grads(ref, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cin,cout,groups", [(64, 128, 64), (128, 64, 64), (12, 6, 1), (14, 21, 7)])
def test_pointwise_matches_conv1d(cin, cout, groups):
    gen = torch.Generator().manual_seed(cin * cout)
    x = torch.randn(3, cin, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin // groups, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = F.conv1d(x, w, b, groups=groups)
    out = pointwise_conv1d(x, w, b, groups)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(_grads(out, (x, w, b)), _grads(ref, (x, w, b))):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_depthwise_rejects_non_depthwise_weight():
    with pytest.raises(ValueError, match=r"depthwise weight must be \(4, 1, K\)"):
        depthwise_conv1d(torch.zeros(1, 4, 10), torch.zeros(4, 2, 3))


def test_backend_builds_them_with_conv1d_state_dict_keys():
    dw = backend.conv(1, 8, 8, 51, groups=8)
    pw = backend.pointwise(1, 8, 16)
    assert type(dw) is DepthwiseConv1d and dw.padding == (25,)
    assert type(pw) is PointwiseConv1d
    reference = nn.Conv1d(8, 8, 51, padding=25, groups=8)
    assert list(dw.state_dict()) == list(reference.state_dict()) == ["weight", "bias"]
    assert type(backend.conv(1, 8, 16, 3)) is nn.Conv1d  # dense and strided convs stay nn.Conv1d
    assert type(backend.conv(1, 8, 8, 3, stride=2, groups=8)) is nn.Conv1d
    assert type(backend.conv(2, 8, 8, 7, groups=8)) is nn.Conv2d


def test_modules_match_plain_conv1d_and_fall_back_for_other_geometries():
    torch.manual_seed(0)
    dw = backend.conv(1, 6, 6, 51, groups=6)
    plain = plain_conv1d(copy.deepcopy(dw))
    assert type(plain) is nn.Conv1d
    x = torch.randn(2, 6, 30)
    torch.testing.assert_close(dw(x), plain(x), rtol=1e-5, atol=1e-5)
    dilated = DepthwiseConv1d(6, 6, 3, padding=2, dilation=2, groups=6)  # not the matmul path: plain conv
    torch.testing.assert_close(dilated(x), F.conv1d(x, dilated.weight, dilated.bias, padding=2, dilation=2, groups=6))


def test_ffnet_ts_training_step_matches_plain_conv1d():
    """Same seed, same dropout masks: train-mode outputs and every parameter gradient agree."""
    from ffnet.timeseries.model import FFNetTS, FFNetTSConfig

    torch.manual_seed(0)
    ours = FFNetTS(FFNetTSConfig(num_variables=2, pred_len=24, dim=16))
    plain = plain_conv1d(copy.deepcopy(ours))
    assert not any(isinstance(m, (DepthwiseConv1d, PointwiseConv1d)) for m in plain.modules())
    assert sum(isinstance(m, DepthwiseConv1d) for m in ours.modules()) == 4  # 2 token-mixer + 51∥5 taps
    x, y = torch.randn(8, 96, 2), torch.randn(8, 24, 2)
    outputs = []
    for model in (ours, plain):
        torch.manual_seed(1)
        out = model.train()(x)
        F.mse_loss(out, y).backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(ours.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_speed_rows_time_ours_and_the_plain_conv_model(tmp_path):
    from ffnet.timeseries.speed import load_authors_model, speed_rows

    lines = []
    rows = speed_rows([1], batch=4, rounds=2, warmup=0, log=lines.append)
    assert len(rows) == 1 and rows[0]["Variables"] == 1 and rows[0]["Batch"] == 4
    assert {"ours steps/s", "ours, nn.Conv1d steps/s", "speed-up vs nn.Conv1d"} <= set(rows[0])
    assert "speed-up vs authors" not in rows[0]
    assert len(lines) == 2 and lines[0].startswith("M=1: round 1/2")
    with pytest.raises(FileNotFoundError, match="time_series_forecasting/models/FFNet.py"):
        load_authors_model(tmp_path, 1, 96)
