"""ffnet.timeseries: FFNet-TS long-term forecasting (model, TSLib data protocol, baselines, training, grid, CLI).

Names resolve lazily so that ``ffnet`` (which imports ``ffnet.timeseries.commands``) starts
without loading torch or pandas.
"""
from __future__ import annotations

from ffnet.engine.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "model": ("FFNetTS", "FFNetTSConfig", "MODELS", "create_model", "count_parameters", "load_authors_state_dict",
              "convert_authors_state_dict", "config_from_authors_state_dict"),
    "data": ("STANDARD_DATASETS", "HORIZONS", "read_series", "series_from_frame", "load_standard", "make_splits",
             "split_borders", "Standardizer"),
    "baselines": ("BASELINES", "evaluate_baselines", "detect_season", "DLinear"),
    "public": ("PUBLIC_SERIES", "load_public"),
    "train": ("TrainConfig", "paper_configs", "fit", "train_model", "evaluate", "load_checkpoint"),
    "forecast": ("forecast_csv", "forecast_series", "test_series", "convert_authors_checkpoint"),
    "grid": ("run_grid", "grid_result"),
})
