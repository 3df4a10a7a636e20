"""The reference forecasters (repeat-last, seasonal-naive, linear, DLinear) on known series."""
import numpy as np
import pandas as pd
import pytest
import torch

from ffnet.timeseries.baselines import (DLinear, comparison_lines, detect_season, evaluate_baselines, fit_linear,
                                        gain_over_best, linear_forecast, repeat_last, seasonal_naive, window_arrays)
from ffnet.timeseries.data import ForecastWindows, make_splits, series_from_frame


def _series(values: np.ndarray):
    frame = pd.DataFrame(values, columns=[f"v{i}" for i in range(values.shape[1])])
    frame.insert(0, "date", pd.date_range("2020-01-01", periods=len(values), freq="h"))
    return series_from_frame(frame, target=None)


def test_window_arrays_are_the_dataset_items():
    values = np.arange(60, dtype=float).reshape(30, 2)
    windows = ForecastWindows(values, 5, 3)
    x, y = window_arrays(windows)
    assert x.shape == (23, 5, 2) and y.shape == (23, 3, 2)
    for i in (0, 7, 22):
        assert torch.equal(x[i], windows[i][0]) and torch.equal(y[i], windows[i][1])


def test_detect_season_finds_the_daily_cycle():
    t = np.arange(2000)
    rng = np.random.default_rng(0)
    values = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], 1)
    values += 0.1 * rng.standard_normal((2000, 2))
    assert detect_season(values, 96) == 24
    assert detect_season(rng.standard_normal((2000, 1)).cumsum(0), 96) == 1  # a random walk has no peak


def test_naive_forecasts_index_the_look_back():
    x = torch.arange(10.0).reshape(1, 10, 1)
    assert repeat_last(x, 3).flatten().tolist() == [9.0, 9.0, 9.0]
    assert seasonal_naive(x, 7, 3).flatten().tolist() == [7.0, 8.0, 9.0, 7.0, 8.0, 9.0, 7.0]
    with pytest.raises(ValueError, match="between 1 and the look-back 10"):
        seasonal_naive(x, 4, 11)


def test_linear_least_squares_recovers_a_linear_map_per_variable():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((500, 6, 2)), dtype=torch.float32)
    weight = torch.tensor(rng.standard_normal((2, 6, 4)), dtype=torch.float32)
    bias = torch.tensor([[0.5, -1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    y = linear_forecast(x, weight, bias)
    fitted_weight, fitted_bias = fit_linear(x, y, chunk=128)
    torch.testing.assert_close(fitted_weight, weight, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(fitted_bias, bias, rtol=1e-3, atol=1e-3)


def test_dlinear_decomposition_is_tslibs_moving_average():
    x = torch.randn(2, 30, 3)
    remainder, trend = DLinear(30, 5).decompose(x)
    padded = torch.cat([x[:, :1].repeat(1, 12, 1), x, x[:, -1:].repeat(1, 12, 1)], dim=1)
    expected = torch.stack([padded[:, i:i + 25].mean(1) for i in range(30)], dim=1).transpose(1, 2)
    torch.testing.assert_close(trend, expected)
    torch.testing.assert_close(remainder + trend, x.transpose(1, 2))


def test_on_a_periodic_series_seasonal_naive_is_exact_and_wins():
    t = np.arange(1500)
    values = np.stack([np.sin(2 * np.pi * t / 24), (t // 6) % 2 * 2.0 - 1], 1)  # periods 24 and 12
    splits = make_splits(_series(values), pred_len=48)
    result = evaluate_baselines(splits)
    assert result["season"] == 24
    assert result["seasonal-naive"]["mse"] < 1e-12
    assert result["repeat-last"]["mse"] > 0.5
    assert gain_over_best(0.01, result)[0] == "seasonal-naive"
    assert evaluate_baselines(splits, season=12)["seasonal-naive"]["mse"] > 0.1  # the sine needs 24
    with pytest.raises(ValueError, match="--season 200"):
        evaluate_baselines(splits, season=200)
    lines = comparison_lines(0.02, 0.1, result)
    assert lines[-1].startswith("FFNet-TS vs the best baseline (seasonal-naive)") and "WORSE" in lines[-1]


def test_on_an_autoregressive_series_linear_is_near_the_noise_floor():
    rng = np.random.default_rng(3)
    values = np.zeros((3000, 1))
    for i in range(2, 3000):
        values[i] = 1.6 * values[i - 1] - 0.8 * values[i - 2] + rng.standard_normal()
    splits = make_splits(_series(values), pred_len=4)
    result = evaluate_baselines(splits)
    assert result["linear"]["mse"] < result["repeat-last"]["mse"]
    assert result["linear"]["mse"] < 1.05 * result["DLinear"]["mse"]
