"""Forecasting a user's CSV with a trained checkpoint, converting the authors' checkpoints, plots."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ffnet.engine.checkpoints import load_file, unwrap_state_dict
from ffnet.timeseries.baselines import evaluate_baselines
from ffnet.timeseries.data import Series, future_dates, last_window, load_standard, make_splits, read_csv_frame, \
    series_from_frame
from ffnet.timeseries.model import FFNetTS, config_from_authors_state_dict, load_authors_state_dict
from ffnet.timeseries.presets import preset_for
from ffnet.timeseries.train import LoadedCheckpoint, evaluate, load_checkpoint, save_checkpoint


def read_for_checkpoint(csv_path: str | Path, checkpoint: LoadedCheckpoint, date_column: str | None = None) -> Series:
    """Read ``csv_path`` with exactly the checkpoint's variables, in its column order.

    Columns the checkpoint was not trained on are an error (not dropped silently).
    """
    csv_path = Path(csv_path)
    frame = read_csv_frame(csv_path)
    date_column = date_column or checkpoint.date_column
    missing = [c for c in checkpoint.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks the column(s) {missing} that the checkpoint was trained on "
                         f"({checkpoint.columns})")
    extra = [c for c in frame.columns if c not in checkpoint.columns and c != date_column]
    if extra:
        raise ValueError(f"{csv_path} has column(s) {extra} that the checkpoint was not trained on; remove them "
                         f"(the model forecasts exactly {checkpoint.columns})")
    return series_from_frame(frame, date_column=date_column, columns=checkpoint.columns, target=None,
                             name=csv_path.stem, source=str(csv_path))


@torch.no_grad()
def forecast_series(checkpoint: LoadedCheckpoint, series: Series, horizon: int | None = None) -> pd.DataFrame:
    """Forecast the ``T`` steps after the last ``L`` rows of ``series``, in the series' own units.

    Returns a frame with the future time stamps and one column per variable.
    """
    config = checkpoint.model.config
    if horizon is not None and horizon != config.pred_len:
        raise ValueError(f"the checkpoint was trained for horizon {config.pred_len}, not {horizon}; train one for "
                         f"horizon {horizon} (ffnet ts train --horizon {horizon}) or drop --horizon")
    device = next(checkpoint.model.parameters()).device
    window = last_window(series, checkpoint.scaler, config.seq_len).to(device)
    scaled = checkpoint.model.eval()(window)[0].double().cpu().numpy()
    values = checkpoint.scaler.inverse_transform(scaled)
    frame = pd.DataFrame(values, columns=checkpoint.columns)
    frame.insert(0, series.date_column, future_dates(series.dates, config.pred_len))
    return frame


def has_test_split(checkpoint: LoadedCheckpoint, series: Series) -> bool:
    """Whether ``series`` is long enough for train/val/test windows of the checkpoint's look-back and horizon."""
    config = checkpoint.model.config
    try:
        make_splits(series, config.pred_len, config.seq_len)
    except ValueError:
        return False
    return True


def test_series(checkpoint: LoadedCheckpoint, series: Series, season: int | None = None,
                batch_size: int = 256) -> tuple[dict[str, float], dict]:
    """Test metrics of the checkpoint and of the four baselines on ``series``' test split.

    The split, its train-fitted scaling and its windows follow the TSLib protocol (70/10/20 for
    user CSVs), exactly as ``ffnet timeseries train`` made them.
    """
    config = checkpoint.model.config
    layout = checkpoint.info.get("layout", "custom")
    splits = make_splits(replace(series, layout=layout), config.pred_len, config.seq_len)
    device = next(checkpoint.model.parameters()).device
    metrics = evaluate(checkpoint.model, splits.test, batch_size, device)
    return metrics, evaluate_baselines(splits, "test", season)


def forecast_csv(checkpoint_path: str | Path, csv_path: str | Path, horizon: int | None = None,
                 date_column: str | None = None) -> pd.DataFrame:
    """:func:`forecast_series` for a checkpoint file and a CSV file."""
    checkpoint = load_checkpoint(checkpoint_path)
    return forecast_series(checkpoint, read_for_checkpoint(csv_path, checkpoint, date_column), horizon)


def convert_authors_checkpoint(authors_checkpoint: str | Path, dataset: str, data_root: str | Path,
                               out: str | Path, batch_size: int = 256) -> dict[str, float]:
    """Turn a release ``checkpoint.pth`` into a forecastable checkpoint and return its test metrics.

    The scaler is refitted on the dataset's train split, exactly as the release's loader does.
    """
    state_dict = unwrap_state_dict(load_file(authors_checkpoint), source=str(authors_checkpoint))
    series = load_standard(data_root, dataset)
    config = config_from_authors_state_dict(state_dict)
    preset = preset_for(series.name, config.pred_len)
    config = replace(config, dropout=preset.dropout, head_dropout=preset.head_dropout)
    if config.num_variables != len(series.columns):
        raise ValueError(f"the checkpoint has {config.num_variables} variables, {series.name} has "
                         f"{len(series.columns)}: wrong --data?")
    model = load_authors_state_dict(FFNetTS(config), state_dict)
    splits = make_splits(series, config.pred_len, config.seq_len)
    metrics = evaluate(model, splits.test, batch_size, torch.device("cpu"))
    save_checkpoint(out, model, splits, None, metrics)
    return metrics


def plot_forecast(path: str | Path, history: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                  title: str) -> None:
    """Look-back, ground truth and forecast of one variable on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    past = np.arange(-len(history), 0)
    future = np.arange(len(truth))
    ax.plot(past, history, color="0.4", label="look-back")
    ax.plot(future, truth, color="tab:blue", label="ground truth")
    ax.plot(future, prediction, color="tab:orange", label="FFNet-TS forecast")
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_xlabel("step (0 = first forecast step)")
    ax.set_ylabel("standardized value")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["read_for_checkpoint", "forecast_series", "has_test_split", "test_series", "forecast_csv",
           "convert_authors_checkpoint", "plot_forecast"]
