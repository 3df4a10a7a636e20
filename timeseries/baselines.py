"""Reference forecasters on FFNet-TS's own windows and scaling: repeat-last, seasonal-naive, linear, DLinear.

All four see exactly what FFNet-TS sees: the standardized look-back ``x (n, L, M)`` of a split's
windows, and are scored like it (MSE / MAE over windows × horizon × variables).

* ``repeat-last``: every step is the last observed value.
* ``seasonal-naive``: step ``t`` repeats ``x[L − p + (t mod p)]``, the last full cycle of period
  ``p``; ``p`` is given (``--season``) or detected as the lag (2 … L) of the highest peak of the
  training segment's autocorrelation (averaged over variables); ``p = 1`` is repeat-last.
* ``linear``: per variable, least squares (with intercept, ridge ``1e-6 · n`` on the weights for
  conditioning) from the L past values to the T future ones, fitted on the training windows.
* ``DLinear``: TSLib's model (moving-average trend of 25 steps with edge replication, remainder =
  x − trend, one ``Linear(L, T)`` each, shared by all variables, weights initialised to 1/L),
  trained as the DLinear paper trains it on ETT: Adam, lr 5e-3, batch 32, at most 10 epochs,
  lr halved every epoch, early stopping on validation MSE with patience 3.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from ffnet.timeseries.data import ForecastSplits, ForecastWindows

BASELINES = ("repeat-last", "seasonal-naive", "linear", "DLinear")
Forecaster = Callable[[torch.Tensor], torch.Tensor]  # (n, L, M) -> (n, T, M)


def window_arrays(windows: ForecastWindows) -> tuple[torch.Tensor, torch.Tensor]:
    """All windows of a split at once: ``x (n, L, M)``, ``y (n, T, M)`` (float32 views, no copy)."""
    span = windows.seq_len + windows.pred_len
    stacked = windows.values.unfold(0, span, 1)[: len(windows)]  # (n, M, L + T)
    return stacked[..., : windows.seq_len].transpose(1, 2), stacked[..., windows.seq_len:].transpose(1, 2)


def detect_season(values: np.ndarray, max_period: int) -> int:
    """Period of the strongest autocorrelation peak at lags 2 … ``max_period`` of ``values (rows, M)``.

    Returns 1 when no lag has a local maximum with positive autocorrelation.
    """
    x = values - values.mean(axis=0)
    max_period = min(max_period, len(x) // 2)
    if max_period < 2:
        return 1
    denominator = (x * x).sum(axis=0)
    denominator = np.where(denominator == 0, 1.0, denominator)
    acf = np.array([((x[lag:] * x[:-lag]).sum(axis=0) / denominator).mean() for lag in range(1, max_period + 2)])
    best, period = 0.0, 1
    for lag in range(2, max_period + 1):
        value = acf[lag - 1]
        if value > best and value >= acf[lag - 2] and value >= acf[lag]:
            best, period = value, lag
    return period


def repeat_last(x: torch.Tensor, horizon: int) -> torch.Tensor:
    return x[:, -1:, :].expand(-1, horizon, -1)


def seasonal_naive(x: torch.Tensor, horizon: int, period: int) -> torch.Tensor:
    """Repeat the last ``period`` steps of ``x (n, L, M)`` over the horizon; needs ``period <= L``."""
    if not 1 <= period <= x.shape[1]:
        raise ValueError(f"the seasonal period must be between 1 and the look-back {x.shape[1]}, got {period}")
    steps = x.shape[1] - period + torch.arange(horizon) % period
    return x[:, steps, :]


def fit_linear(x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-variable least squares ``y[:, :, m] ≈ x[:, :, m] @ W[m] + b[m]``: ``W (M, L, T)``, ``b (M, T)``."""
    n, length, variables = x.shape
    gram = torch.zeros(variables, length + 1, length + 1, dtype=torch.float64)
    cross = torch.zeros(variables, length + 1, y.shape[1], dtype=torch.float64)
    for start in range(0, n, chunk):
        xs = x[start:start + chunk].double().permute(2, 0, 1)  # (M, n', L)
        xs = torch.cat([xs, torch.ones(*xs.shape[:2], 1, dtype=torch.float64)], dim=2)
        ys = y[start:start + chunk].double().permute(2, 0, 1)
        gram += xs.transpose(1, 2) @ xs
        cross += xs.transpose(1, 2) @ ys
    ridge = torch.eye(length + 1, dtype=torch.float64) * (1e-6 * n)
    ridge[-1, -1] = 0.0
    solution = torch.linalg.solve(gram + ridge, cross)  # (M, L + 1, T)
    return solution[:, :-1, :].float(), solution[:, -1, :].float()


def linear_forecast(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nlm,mlt->ntm", x, weight) + bias.T.unsqueeze(0)


class DLinear(nn.Module):
    """TSLib's DLinear (shared across variables): ``(n, L, M) → (n, T, M)``."""

    def __init__(self, seq_len: int, pred_len: int, moving_average: int = 25):
        super().__init__()
        self.moving_average = moving_average
        self.seasonal = nn.Linear(seq_len, pred_len)
        self.trend = nn.Linear(seq_len, pred_len)
        with torch.no_grad():
            self.seasonal.weight.fill_(1.0 / seq_len)
            self.trend.weight.fill_(1.0 / seq_len)

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (n, L, M)`` → remainder and trend, each ``(n, M, L)``."""
        pad = (self.moving_average - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)
        trend = nn.functional.avg_pool1d(padded.transpose(1, 2), self.moving_average, stride=1)
        return x.transpose(1, 2) - trend, trend

    def head(self, seasonal: torch.Tensor, trend: torch.Tensor) -> torch.Tensor:
        """Remainder and trend ``(n, M, L)`` → forecast ``(n, T, M)``."""
        return (self.seasonal(seasonal) + self.trend(trend)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(*self.decompose(x))


def fit_dlinear(train: ForecastWindows, val: ForecastWindows, seed: int = 2021, epochs: int = 10,
                learning_rate: float = 5e-3, batch_size: int = 32, patience: int = 3) -> DLinear:
    """Train :class:`DLinear` (schedule in the module docstring); returns the best-validation model."""
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed)
    model = DLinear(train.seq_len, train.pred_len)
    torch.set_rng_state(torch_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    x_train, y_train = window_arrays(train)
    x_val, y_val = window_arrays(val)
    with torch.no_grad():  # the decomposition has no parameters: compute it once
        parts_train, parts_val = model.decompose(x_train), model.decompose(x_val)
    best, best_state, bad = math.inf, None, 0
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * 0.5 ** epoch
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad()
            nn.functional.mse_loss(model.head(*(p[index] for p in parts_train)), y_train[index]).backward()
            optimizer.step()
        with torch.no_grad():
            loss = nn.functional.mse_loss(model.head(*parts_val), y_val).item()
        if loss < best:
            best, best_state, bad = loss, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    return model.eval()


def metrics(forecaster: Forecaster, windows: ForecastWindows, chunk: int = 2048) -> dict[str, float]:
    """MSE and MAE over all windows × horizon × variables of ``windows``."""
    x, y = window_arrays(windows)
    squared = absolute = 0.0
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            error = (forecaster(x[start:start + chunk]) - y[start:start + chunk]).double()
            squared += error.square().sum().item()
            absolute += error.abs().sum().item()
    count = y.numel()
    return {"mse": squared / count, "mae": absolute / count}


def baseline_forecasters(splits: ForecastSplits, season: int | None = None,
                         seed: int = 2021) -> tuple[dict[str, Forecaster], int]:
    """The four forecasters fitted on ``splits``' training (and, for DLinear, validation) windows.

    Returns them by name and the seasonal period used.
    """
    seq_len, horizon = splits.train.seq_len, splits.train.pred_len
    if season is None:
        start, end = splits.borders["train"]
        season = detect_season(splits.series.values[start:end], seq_len)
    elif not 1 <= season <= seq_len:
        raise ValueError(f"--season {season}: the period must be between 1 and the look-back ({seq_len}); "
                         "seasonal-naive repeats the last cycle of the look-back window")
    weight, bias = fit_linear(*window_arrays(splits.train))
    dlinear = fit_dlinear(splits.train, splits.val, seed)
    forecasters = {
        "repeat-last": lambda x: repeat_last(x, horizon),
        "seasonal-naive": lambda x: seasonal_naive(x, horizon, season),
        "linear": lambda x: linear_forecast(x, weight, bias),
        "DLinear": dlinear,
    }
    return forecasters, season


def evaluate_baselines(splits: ForecastSplits, split: str = "test", season: int | None = None,
                       seed: int = 2021) -> dict:
    """``{"season": p, "repeat-last": {"mse", "mae"}, …}`` on one split (default: test)."""
    forecasters, season = baseline_forecasters(splits, season, seed)
    windows = getattr(splits, split)
    return {"season": season, **{name: metrics(f, windows) for name, f in forecasters.items()}}


def relative_gain(mse: float, reference: float) -> float:
    """``1 − mse/reference`` (> 0: better than the reference); a perfect reference gives 0 or −inf."""
    if reference == 0:
        return 0.0 if mse == 0 else -math.inf
    return 1.0 - mse / reference


def gain_over_best(mse: float, baselines: dict) -> tuple[str, float]:
    """The baseline with the lowest MSE and FFNet-TS's :func:`relative_gain` over it."""
    name = min(BASELINES, key=lambda b: baselines[b]["mse"])
    return name, relative_gain(mse, baselines[name]["mse"])


def comparison_lines(mse: float, mae: float, baselines: dict) -> list[str]:
    """A small text table: FFNet-TS and the four baselines, MSE / MAE, and the gain over the best."""
    names = {"seasonal-naive": f"seasonal-naive (period {baselines['season']})"}
    lines = [f"{'model':<30} {'MSE':>8} {'MAE':>8}", f"{'FFNet-TS':<30} {mse:>8.4f} {mae:>8.4f}"]
    lines += [f"{names.get(b, b):<30} {baselines[b]['mse']:>8.4f} {baselines[b]['mae']:>8.4f}" for b in BASELINES]
    best, gain = gain_over_best(mse, baselines)
    verdict = "better" if gain > 0 else "WORSE"
    lines.append(f"FFNet-TS vs the best baseline ({best}): {abs(gain) * 100:.1f}% {verdict} MSE")
    return lines


__all__ = ["BASELINES", "window_arrays", "detect_season", "repeat_last", "seasonal_naive", "fit_linear",
           "linear_forecast", "DLinear", "fit_dlinear", "metrics", "baseline_forecasters", "evaluate_baselines",
           "relative_gain", "gain_over_best", "comparison_lines"]
