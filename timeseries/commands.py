"""``ffnet timeseries``: train, test, forecast, the accuracy grid, and converting the authors' checkpoints.

The ``bench`` verb (speed) comes from :mod:`ffnet.timeseries.benchmark`, added by the CLI.
"""
from __future__ import annotations

import argparse
import functools

HORIZONS = (96, 192, 336, 720)
STANDARD = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "ECL", "Exchange", "Traffic", "Weather")
PUBLIC = ("seattle-temps", "city-temps", "seattle-weather", "co2")  # ffnet.timeseries.public.PUBLIC_SERIES
DEVICE_HELP = "torch device (default: cuda if available, else cpu)"
SEASON_HELP = ("period of the seasonal-naive baseline in rows (default: detected from the training segment's "
               "autocorrelation, lags 2-96)")


def register(subparsers) -> None:
    group = subparsers.add_parser("timeseries", help="FFNet-TS long-term time-series forecasting")
    sub = group.add_subparsers(dest="verb", required=True)

    train = sub.add_parser("train", help="train one model (a standard dataset or your own CSV), test it against "
                                         "four baselines")
    train.add_argument("--data", required=True,
                       help=f"a standard dataset ({', '.join(STANDARD)}) or 'custom' with --csv")
    train.add_argument("--data-root", help="folder holding the standard CSVs (TSLib archive layout or flat)")
    train.add_argument("--csv", help="your CSV (a date column plus numeric columns) for --data custom")
    train.add_argument("--date-column", default="date")
    train.add_argument("--columns", nargs="+", help="variables to use (default: every column but the date)")
    train.add_argument("--target", default="OT", help="column moved last, as in TSLib (if present)")
    train.add_argument("--horizon", type=int, default=96)
    train.add_argument("--seed", type=int, default=2021)
    train.add_argument("--epochs", type=int, help="maximum epochs (default: the preset's: 100 for the release's "
                                                  "datasets, 30 for custom)")
    train.add_argument("--learning-rate", type=float, help="default: the preset's")
    train.add_argument("--batch-size", type=int, help="default: the preset's")
    train.add_argument("--patience", type=int, help="default: the preset's")
    train.add_argument("--season", type=int, help=SEASON_HELP)
    train.add_argument("--out", help="run folder for the resume state and checkpoint.pt; rerun to resume; one run "
                                     "at a time (default: work_dirs/timeseries/<data>_T<horizon>_seed<seed>)")
    train.add_argument("--device", help=DEVICE_HELP)
    train.set_defaults(func=_train)

    test = sub.add_parser("test", help="test a checkpoint on a CSV's test split (last 20%%) against the baselines")
    test.add_argument("--checkpoint", required=True, help="checkpoint.pt from `ffnet timeseries train` or `convert`")
    test.add_argument("--csv", required=True, help="CSV with the checkpoint's date and variable columns")
    test.add_argument("--date-column", help="default: the checkpoint's")
    test.add_argument("--season", type=int, help=SEASON_HELP)
    test.add_argument("--device", help=DEVICE_HELP)
    test.set_defaults(func=_test)

    forecast = sub.add_parser("forecast", help="forecast the steps after the last window of a CSV (and, when the CSV "
                                               "is long enough for a test split, compare with the baselines)")
    forecast.add_argument("--checkpoint", required=True, help="checkpoint.pt from `ffnet timeseries train` or "
                                                              "`convert`")
    forecast.add_argument("--csv", required=True, help="CSV with the checkpoint's date and variable columns")
    forecast.add_argument("--horizon", type=int, help="check that the checkpoint forecasts this many steps")
    forecast.add_argument("--date-column", help="default: the checkpoint's")
    forecast.add_argument("--season", type=int, help=SEASON_HELP)
    forecast.add_argument("--out", help="write the forecast to this CSV")
    forecast.add_argument("--device", help=DEVICE_HELP)
    forecast.set_defaults(func=_forecast)

    grid = sub.add_parser("grid", help="accuracy grid: datasets × horizons × seeds with baselines, resumable; writes "
                                       "OUT_DIR/NAME.{md,csv,png}")
    grid.add_argument("--data-root", help="folder holding the standard CSVs (required for standard datasets)")
    grid.add_argument("--datasets", nargs="*", default=None,
                      help=f"standard datasets (default: all eight, or none when --csv/--public is given): "
                           f"{', '.join(STANDARD)}")
    grid.add_argument("--csv", nargs="+", default=[], help="your own CSVs, added as extra datasets (custom preset)")
    grid.add_argument("--public", nargs="+", default=[], choices=PUBLIC,
                      help="public series shipped in vega_datasets/statsmodels (custom preset)")
    grid.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS))
    grid.add_argument("--repeats", type=int, default=3, help="seeds per cell: 2021, 2022, …")
    grid.add_argument("--epochs", type=int, help="cap on epochs per cell (default: each preset's)")
    grid.add_argument("--season", type=int, help=SEASON_HELP)
    grid.add_argument("--name", default="timeseries_grid", help="table name (files OUT_DIR/NAME.{md,csv,png})")
    grid.add_argument("--out-dir", default="docs/results")
    grid.add_argument("--results-file", help="finished cells (default: OUT_DIR/NAME_cells.json)")
    grid.add_argument("--work-dir", default="work_dirs/timeseries", help="checkpoints and resume states")
    grid.add_argument("--device", help=DEVICE_HELP)
    grid.set_defaults(func=_grid)

    convert = sub.add_parser("convert", help="make an authors' checkpoint.pth forecastable (and test it)")
    convert.add_argument("--checkpoint", "--authors-checkpoint", dest="checkpoint", required=True,
                         help="the authors' checkpoint.pth")
    convert.add_argument("--data", required=True, help="the standard dataset it was trained on")
    convert.add_argument("--data-root", required=True)
    convert.add_argument("--out", required=True, help="output checkpoint.pt")
    convert.set_defaults(func=_convert)


def _user_errors(handler):
    """Report bad input (ValueError / FileNotFoundError) as a one-line :class:`UserError`."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace):
        from ffnet.engine.errors import UserError

        try:
            return handler(args)
        except UserError:
            raise
        except (ValueError, FileNotFoundError) as err:
            raise UserError(str(err)) from err

    return run


def _device(args: argparse.Namespace):
    from ffnet.timeseries.train import default_device

    return args.device or default_device()


@_user_errors
def _train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from ffnet.timeseries.baselines import comparison_lines
    from ffnet.timeseries.data import load_standard, read_series
    from ffnet.timeseries.train import fit, paper_configs

    if args.data.lower() == "custom":
        if not args.csv:
            raise ValueError("--data custom needs --csv FILE")
        series = read_series(args.csv, date_column=args.date_column, columns=args.columns, target=args.target)
        preset = "custom"
    else:
        if not args.data_root:
            raise ValueError(f"--data {args.data} needs --data-root DIR (the folder holding the standard CSVs)")
        series = load_standard(args.data_root, args.data)
        preset = series.name
    model_config, train_config = paper_configs(preset, len(series.columns), args.horizon, seed=args.seed)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate),
                                   ("batch_size", args.batch_size), ("patience", args.patience)) if v is not None}
    train_config = replace(train_config, **overrides)
    print(f"{series.name}: {len(series.values)} rows × {len(series.columns)} variables")
    print(f"{model_config}\n{train_config}")
    run_dir = args.out or f"work_dirs/timeseries/{series.name}_T{args.horizon}_seed{args.seed}"
    result = fit(series, model_config, train_config, run_dir, _device(args), season=args.season)
    print(f"best epoch {result.best_epoch}/{result.epochs_run}, val loss {result.val_loss:.4f}; checkpoint "
          f"{result.checkpoint}\ntest split (standardized values, same windows for every model):")
    print("\n".join(comparison_lines(result.test_mse, result.test_mae, result.baselines)))


def _print_test(checkpoint, series, season) -> None:
    from ffnet.timeseries.baselines import comparison_lines
    from ffnet.timeseries.forecast import test_series

    metrics, baselines = test_series(checkpoint, series, season)
    print(f"test split of {series.name} (last 20% of the rows; standardized values, same windows for every model):")
    print("\n".join(comparison_lines(metrics["mse"], metrics["mae"], baselines)))


@_user_errors
def _test(args: argparse.Namespace) -> None:
    from ffnet.timeseries.forecast import read_for_checkpoint
    from ffnet.timeseries.train import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint, _device(args))
    _print_test(checkpoint, read_for_checkpoint(args.csv, checkpoint, args.date_column), args.season)


@_user_errors
def _forecast(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ffnet.engine.files import write_atomic
    from ffnet.timeseries.forecast import forecast_series, has_test_split, read_for_checkpoint
    from ffnet.timeseries.train import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint, _device(args))
    series = read_for_checkpoint(args.csv, checkpoint, args.date_column)
    frame = forecast_series(checkpoint, series, args.horizon)
    print(frame.to_string(index=False, max_rows=20))
    if args.out:
        write_atomic(Path(args.out), frame.to_csv(index=False))
        print(f"wrote {len(frame)} forecast rows to {args.out}")
    if has_test_split(checkpoint, series):
        _print_test(checkpoint, series, args.season)


@_user_errors
def _grid(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ffnet.engine.bench import write_result
    from ffnet.timeseries.grid import grid_result, load_results, run_grid, sources

    datasets = args.datasets if args.datasets is not None else ([] if args.csv or args.public else list(STANDARD))
    if datasets and not args.data_root:
        raise ValueError("ffnet timeseries grid needs --data-root DIR (the folder holding the standard CSVs) for "
                         f"{', '.join(datasets)}; for speed numbers without data run `ffnet timeseries bench`")
    results_file = Path(args.results_file or Path(args.out_dir) / f"{args.name}_cells.json")
    try:
        run_grid(sources(datasets, args.csv, args.public), args.horizons, args.repeats, data_root=args.data_root,
                 results_file=results_file, work_dir=args.work_dir, epochs=args.epochs, device=_device(args),
                 season=args.season)
    finally:
        cells = load_results(results_file)
        if cells:
            write_result(grid_result(cells, args.data_root, args.name), args.out_dir)


@_user_errors
def _convert(args: argparse.Namespace) -> None:
    from ffnet.timeseries.forecast import convert_authors_checkpoint

    metrics = convert_authors_checkpoint(args.checkpoint, args.data, args.data_root, args.out)
    print(f"wrote {args.out}; test MSE {metrics['mse']:.4f}, MAE {metrics['mae']:.4f}")
