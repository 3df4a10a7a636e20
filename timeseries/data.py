"""Long-term forecasting data, Time-Series-Library protocol.

* the eight standard CSVs (ETTh1/2, ETTm1/2, electricity, exchange_rate, traffic, weather) found
  under a user-given root, or any CSV with a date column and numeric columns (``custom``);
* split borders: ETT hourly 12/4/4 months (×4 rows for 15-min data), others 70 % / 10 % / 20 %;
  val/test segments start ``seq_len`` rows early so the first target starts at the border;
* scaling: per-column standardization fitted on the train segment only, applied to the whole
  series; metrics are computed on the standardized values;
* windows: ``x = rows [s, s + L)``, ``y = rows [s + L, s + L + T)``.

Bad input (an empty, header-only or binary file, a missing date column, non-numeric columns,
NaN/inf, unsorted or duplicate dates, a series too short for look-back + horizon) raises
``ValueError`` naming the file and the problem; nothing is dropped silently.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

SEQ_LEN = 96
HORIZONS = (96, 192, 336, 720)
LAYOUTS = ("ett_hour", "ett_minute", "custom")


@dataclass(frozen=True)
class DatasetSpec:
    """A standard benchmark file: where TSLib's archive puts it and how it is split."""

    name: str
    filename: str
    folder: str
    layout: str
    num_variables: int


STANDARD_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("ETTh1", "ETTh1.csv", "ETT-small", "ett_hour", 7),
        DatasetSpec("ETTh2", "ETTh2.csv", "ETT-small", "ett_hour", 7),
        DatasetSpec("ETTm1", "ETTm1.csv", "ETT-small", "ett_minute", 7),
        DatasetSpec("ETTm2", "ETTm2.csv", "ETT-small", "ett_minute", 7),
        DatasetSpec("ECL", "electricity.csv", "electricity", "custom", 321),
        DatasetSpec("Exchange", "exchange_rate.csv", "exchange_rate", "custom", 8),
        DatasetSpec("Traffic", "traffic.csv", "traffic", "custom", 862),
        DatasetSpec("Weather", "weather.csv", "weather", "custom", 21),
    )
}
_ALIASES = {"electricity": "ECL", "exchange_rate": "Exchange", "exchange": "Exchange", "traffic": "Traffic",
            "weather": "Weather", "ecl": "ECL"}


def dataset_spec(name: str) -> DatasetSpec:
    """Look a standard dataset up by name (case-insensitive; file stems such as 'electricity' work)."""
    for key in STANDARD_DATASETS:
        if key.lower() == name.lower():
            return STANDARD_DATASETS[key]
    if name.lower() in _ALIASES:
        return STANDARD_DATASETS[_ALIASES[name.lower()]]
    raise ValueError(f"unknown dataset {name!r}: choose from {sorted(STANDARD_DATASETS)}, or use a CSV of your "
                     "own with --data custom --csv FILE")


def find_dataset_file(data_root: str | Path, spec: DatasetSpec) -> Path:
    """``ROOT/<file>``, ``ROOT/<folder>/<file>`` (TSLib's archive layout), or the first match below ROOT."""
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-root {root} is not a directory")
    for candidate in (root / spec.filename, root / spec.folder / spec.filename):
        if candidate.is_file():
            return candidate
    matches = sorted(root.rglob(spec.filename))
    if matches:
        return matches[0]
    raise FileNotFoundError(f"{spec.name}: no {spec.filename} under {root} (looked in {root} and "
                            f"{root / spec.folder}, then recursively); download the Time-Series-Library "
                            "long-term forecasting archive and pass its folder as --data-root")


@dataclass
class Series:
    """A validated multivariate series: ``values`` (rows, M) float64 in the column order used."""

    name: str
    dates: pd.DatetimeIndex
    columns: list[str]
    values: np.ndarray
    layout: str = "custom"
    date_column: str = "date"


def read_csv_frame(csv_path: str | Path) -> pd.DataFrame:
    """``pandas.read_csv`` with one-line errors for a missing, empty, header-only or non-CSV file."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV file {csv_path} does not exist")
    with open(csv_path, "rb") as handle:
        head = handle.read(4096)
    if not head.strip():
        raise ValueError(f"{csv_path} is empty: expected a CSV with a header line (a date column and value columns) "
                         "and one row per time step")
    if b"\0" in head:
        raise ValueError(f"{csv_path} is not a CSV text file (it contains binary data); export the series as "
                         "comma-separated text with a date column")
    try:
        frame = pd.read_csv(csv_path)
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{csv_path} is not a readable CSV file ({reason}); expected comma-separated text with a "
                         "header line") from None
    if frame.empty:
        raise ValueError(f"{csv_path} has a header ({', '.join(map(str, frame.columns[:6]))}) but no data rows")
    return frame


def read_series(
    csv_path: str | Path,
    *,
    date_column: str = "date",
    columns: Sequence[str] | None = None,
    target: str | None = "OT",
    name: str | None = None,
    layout: str = "custom",
) -> Series:
    """Read and validate a CSV: a date column plus numeric columns.

    ``columns`` selects the variables (default: every column except the date). With the
    ``custom`` layout the ``target`` column (if present) is moved last, as TSLib does.
    """
    csv_path = Path(csv_path)
    frame = read_csv_frame(csv_path)
    return series_from_frame(frame, date_column=date_column, columns=columns, target=target,
                             name=name or csv_path.stem, layout=layout, source=str(csv_path))


def series_from_frame(
    frame,
    *,
    date_column: str = "date",
    columns: Sequence[str] | None = None,
    target: str | None = "OT",
    name: str = "custom",
    layout: str = "custom",
    source: str = "the data frame",
) -> Series:
    """Validate a ``pandas.DataFrame`` (see :func:`read_series`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: use one of {LAYOUTS}")
    if date_column not in frame.columns:
        raise ValueError(f"{source} has no {date_column!r} column (columns: {list(frame.columns)[:10]}); the first "
                         "column must hold the time stamps: name it 'date' or pass --date-column NAME")
    if columns is None:
        columns = [c for c in frame.columns if c != date_column]
    else:
        columns = list(columns)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{source} has no column(s) {missing}; available: {list(frame.columns)}")
    if not columns:
        raise ValueError(f"{source} has no value columns besides {date_column!r}")
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ValueError(f"{source}: column(s) {non_numeric} are not numeric; remove or encode them, or choose "
                         "the numeric variables with --columns")
    if layout == "custom" and target is not None and target in columns:
        columns = [c for c in columns if c != target] + [target]
    values = frame[columns].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {columns[j]: int(n) for j, n in enumerate(bad.sum(axis=0)) if n}
        first_row = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{source}: missing or infinite values (NaN/inf) in {counts}, first at row {first_row}; "
                         "fill them (e.g. pandas interpolate()/ffill()) before training or forecasting: "
                         "nothing is dropped or imputed silently")
    try:
        dates = pd.DatetimeIndex(pd.to_datetime(frame[date_column]))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{source}: column {date_column!r} does not parse as dates ({err})") from None
    if dates.isna().any():
        raise ValueError(f"{source}: column {date_column!r} has empty dates at rows "
                         f"{np.flatnonzero(dates.isna())[:5].tolist()}")
    duplicated = dates.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(dates == dates[row])[0])
        raise ValueError(f"{source}: duplicate time stamp {dates[row]} (rows {first} and {row}; "
                         f"{int(duplicated.sum())} duplicates in all); keep one row per time step (e.g. pandas "
                         "drop_duplicates or groupby().mean())")
    if len(dates) > 1 and (np.diff(dates.asi8) < 0).any():
        row = int(np.flatnonzero(np.diff(dates.asi8) < 0)[0]) + 1
        raise ValueError(f"{source}: dates are not in increasing order (row {row} goes back in time); sort the "
                         f"file by {date_column!r}")
    return Series(name=name, dates=dates, columns=[str(c) for c in columns], values=values, layout=layout,
                  date_column=date_column)


def load_standard(data_root: str | Path, dataset: str) -> Series:
    """Load one of the eight standard datasets from ``data_root`` and check its width."""
    spec = dataset_spec(dataset)
    path = find_dataset_file(data_root, spec)
    series = read_series(path, name=spec.name, layout=spec.layout)
    if len(series.columns) != spec.num_variables:
        raise ValueError(f"{path} has {len(series.columns)} value columns, {spec.name} has {spec.num_variables}: "
                         "is this the right file?")
    return series


def split_borders(num_rows: int, layout: str, seq_len: int = SEQ_LEN) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` of the train / val / test segments (TSLib borders)."""
    if layout in ("ett_hour", "ett_minute"):
        per_month = 30 * 24 * (4 if layout == "ett_minute" else 1)
        train_end, val_end, test_end = 12 * per_month, 16 * per_month, 20 * per_month
        if num_rows < test_end:
            raise ValueError(f"the {layout} layout (12/4/4 months) needs {test_end} rows, the series has "
                             f"{num_rows}; use --data custom (70/10/20 split) for other files")
        return {"train": (0, train_end), "val": (train_end - seq_len, val_end),
                "test": (val_end - seq_len, test_end)}
    if layout != "custom":
        raise ValueError(f"unknown layout {layout!r}: use one of {LAYOUTS}")
    num_train = int(num_rows * 0.7)
    num_test = int(num_rows * 0.2)
    num_val = num_rows - num_train - num_test
    return {"train": (0, num_train), "val": (num_train - seq_len, num_train + num_val),
            "test": (num_rows - num_test - seq_len, num_rows)}


@dataclass
class Standardizer:
    """Per-column ``(x − mean) / std`` (population std; constant columns get std 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "Standardizer":
        std = values.std(axis=0)
        return cls(mean=values.mean(axis=0), std=np.where(std == 0, 1.0, std))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> "Standardizer":
        return cls(mean=np.asarray(values["mean"], dtype=np.float64), std=np.asarray(values["std"], dtype=np.float64))


class ForecastWindows(Dataset):
    """Sliding windows over one segment: item ``s`` is ``(x (L, M), y (T, M))`` float32."""

    def __init__(self, values: np.ndarray, seq_len: int, pred_len: int):
        self.values = torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float32)
        self.seq_len = seq_len
        self.pred_len = pred_len

    def __len__(self) -> int:
        return max(0, len(self.values) - self.seq_len - self.pred_len + 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        end = index + self.seq_len
        return self.values[index:end], self.values[end:end + self.pred_len]


@dataclass
class ForecastSplits:
    """Scaled train / val / test windows of one series, and the scaler fitted on train."""

    train: ForecastWindows
    val: ForecastWindows
    test: ForecastWindows
    scaler: Standardizer
    borders: dict[str, tuple[int, int]]
    series: Series


def make_splits(series: Series, pred_len: int, seq_len: int = SEQ_LEN) -> ForecastSplits:
    """Split, fit the scaler on the train rows only, scale everything and cut windows."""
    borders = split_borders(len(series.values), series.layout, seq_len)
    needed = seq_len + pred_len
    for split, (start, end) in borders.items():
        if start < 0 or end - start < needed:
            raise ValueError(f"{series.name}: the series is too short for look-back {seq_len} + horizon {pred_len} "
                             f"= {needed} rows per split: the {split} segment has {end - max(start, 0)} rows "
                             f"({len(series.values)} rows in all); use a shorter horizon or a longer series")
    train_start, train_end = borders["train"]
    scaler = Standardizer.fit(series.values[train_start:train_end])
    scaled = scaler.transform(series.values)
    windows = {split: ForecastWindows(scaled[start:end], seq_len, pred_len) for split, (start, end) in borders.items()}
    return ForecastSplits(windows["train"], windows["val"], windows["test"], scaler, borders, series)


def last_window(series: Series, scaler: Standardizer, seq_len: int) -> torch.Tensor:
    """The scaled last ``seq_len`` rows as a ``(1, L, M)`` float32 tensor."""
    if len(series.values) < seq_len:
        raise ValueError(f"{series.name}: the series has {len(series.values)} rows, the model needs the last "
                         f"{seq_len} (its look-back window)")
    window = scaler.transform(series.values[-seq_len:])
    return torch.as_tensor(window, dtype=torch.float32).unsqueeze(0)


def future_dates(dates, steps: int):
    """``steps`` time stamps after the last one, at the series' inferred frequency.

    Falls back to the most common spacing when pandas cannot name the frequency.
    """
    tail = dates[-min(len(dates), 1000):]
    with warnings.catch_warnings():  # pandas 3 warns that infer_freq will return an offset; both work below
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(tail) if len(tail) >= 3 else None
    if freq is not None:
        return pd.date_range(tail[-1], periods=steps + 1, freq=freq)[1:]
    if len(tail) < 2:
        raise ValueError("cannot infer the sampling interval from fewer than two dates")
    step = pd.Series(tail[1:] - tail[:-1]).mode().iloc[0]
    return pd.DatetimeIndex([tail[-1] + step * (i + 1) for i in range(steps)])


__all__ = [
    "SEQ_LEN", "HORIZONS", "LAYOUTS", "DatasetSpec", "STANDARD_DATASETS", "dataset_spec", "find_dataset_file",
    "Series", "read_csv_frame", "read_series", "series_from_frame", "load_standard", "split_borders", "Standardizer",
    "ForecastWindows", "ForecastSplits", "make_splits", "last_window", "future_dates",
]
