"""``ffnet ts``: train, forecast, the accuracy grid, and converting the authors' checkpoints."""
from __future__ import annotations

import argparse
import functools

HORIZONS = (96, 192, 336, 720)
STANDARD = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "ECL", "Exchange", "Traffic", "Weather")


def register(subparsers) -> None:
    ts = subparsers.add_parser("ts", help="FFNet-TS long-term time-series forecasting")
    sub = ts.add_subparsers(dest="ts_command", required=True)

    train = sub.add_parser("train", help="train one model (a standard dataset or your own CSV) and test it")
    train.add_argument("--data", required=True,
                       help=f"a standard dataset ({', '.join(STANDARD)}) or 'custom' with --csv")
    train.add_argument("--data-root", help="folder holding the standard CSVs (TSLib archive layout or flat)")
    train.add_argument("--csv", help="your CSV (a date column plus numeric columns) for --data custom")
    train.add_argument("--date-column", default="date")
    train.add_argument("--columns", nargs="+", help="variables to use (default: every column but the date)")
    train.add_argument("--target", default="OT", help="column moved last, as in TSLib (if present)")
    train.add_argument("--horizon", type=int, default=96)
    train.add_argument("--seed", type=int, default=2021)
    train.add_argument("--epochs", type=int, help="maximum epochs (default: the release's 100)")
    train.add_argument("--learning-rate", type=float, help="default: the dataset's script value")
    train.add_argument("--batch-size", type=int, help="default: the dataset's script value")
    train.add_argument("--patience", type=int, help="default: the dataset's script value")
    train.add_argument("--out", help="run folder for the resume state and checkpoint.pt; rerun to resume "
                                     "(default: work_dirs/timeseries/<data>_T<horizon>_seed<seed>)")
    train.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    train.set_defaults(func=_train)

    forecast = sub.add_parser("forecast", help="forecast the steps after the last window of a CSV")
    forecast.add_argument("--checkpoint", required=True, help="checkpoint.pt from `ffnet ts train` or `convert`")
    forecast.add_argument("--csv", required=True, help="CSV with the checkpoint's date and variable columns")
    forecast.add_argument("--horizon", type=int, help="check that the checkpoint forecasts this many steps")
    forecast.add_argument("--date-column", help="default: the checkpoint's")
    forecast.add_argument("--out", help="write the forecast to this CSV")
    forecast.set_defaults(func=_forecast)

    bench = sub.add_parser("bench", help="accuracy grid: datasets × horizons × seeds, resumable; writes "
                                         "docs/results/timeseries_grid.{md,csv,png} (speed: `ffnet bench timeseries`)")
    bench.add_argument("--data-root", help="folder holding the standard CSVs (required for standard datasets)")
    bench.add_argument("--datasets", nargs="*", default=None,
                       help=f"standard datasets (default: all eight, or none when --csv is given): "
                            f"{', '.join(STANDARD)}")
    bench.add_argument("--csv", nargs="+", default=[], help="your own CSVs, added as extra datasets")
    bench.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS))
    bench.add_argument("--repeats", type=int, default=3, help="seeds per cell: 2021, 2022, …")
    bench.add_argument("--epochs", type=int, help="cap on epochs per cell (default: the release's 100)")
    bench.add_argument("--out-dir", default="docs/results")
    bench.add_argument("--results-file", help="finished cells (default: OUT_DIR/timeseries_grid_cells.json)")
    bench.add_argument("--work-dir", default="work_dirs/timeseries", help="checkpoints and resume states")
    bench.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    bench.set_defaults(func=_bench)

    convert = sub.add_parser("convert", help="make an authors' checkpoint.pth forecastable (and test it)")
    convert.add_argument("--authors-checkpoint", required=True)
    convert.add_argument("--data", required=True, help="the standard dataset it was trained on")
    convert.add_argument("--data-root", required=True)
    convert.add_argument("--out", required=True, help="output checkpoint.pt")
    convert.set_defaults(func=_convert)


def _user_errors(handler):
    """Report bad input (ValueError / FileNotFoundError) as one clear line instead of a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace):
        try:
            return handler(args)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"ffnet ts {args.ts_command}: error: {err}") from err

    return run


@_user_errors
def _train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from ffnet.timeseries.data import load_standard, read_series
    from ffnet.timeseries.train import fit, paper_configs

    if args.data.lower() == "custom":
        if not args.csv:
            raise SystemExit("--data custom needs --csv FILE")
        series = read_series(args.csv, date_column=args.date_column, columns=args.columns, target=args.target)
        preset = "custom"
    else:
        if not args.data_root:
            raise SystemExit(f"--data {args.data} needs --data-root DIR (the folder holding the standard CSVs)")
        series = load_standard(args.data_root, args.data)
        preset = series.name
    model_config, train_config = paper_configs(preset, len(series.columns), args.horizon, seed=args.seed)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate),
                                   ("batch_size", args.batch_size), ("patience", args.patience)) if v is not None}
    train_config = replace(train_config, **overrides)
    print(f"{series.name}: {len(series.values)} rows × {len(series.columns)} variables")
    print(f"{model_config}\n{train_config}")
    run_dir = args.out or f"work_dirs/timeseries/{series.name}_T{args.horizon}_seed{args.seed}"
    result = fit(series, model_config, train_config, run_dir, args.device)
    print(f"best epoch {result.best_epoch}/{result.epochs_run}, val loss {result.val_loss:.4f}, "
          f"test MSE {result.test_mse:.4f}, MAE {result.test_mae:.4f}; checkpoint {result.checkpoint}")


@_user_errors
def _forecast(args: argparse.Namespace) -> None:
    from ffnet.timeseries.forecast import forecast_csv

    frame = forecast_csv(args.checkpoint, args.csv, args.horizon, args.date_column)
    print(frame.to_string(index=False, max_rows=20))
    if args.out:
        frame.to_csv(args.out, index=False)
        print(f"wrote {len(frame)} forecast rows to {args.out}")


@_user_errors
def _bench(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ffnet.tables import write_result
    from ffnet.timeseries.grid import GRID_NAME, grid_result, load_results, run_grid, sources

    datasets = args.datasets if args.datasets is not None else ([] if args.csv else list(STANDARD))
    if datasets and not args.data_root:
        raise SystemExit("ffnet ts bench needs --data-root DIR (the folder holding the standard CSVs); for speed "
                         "numbers without data run `ffnet bench timeseries`")
    results_file = Path(args.results_file or Path(args.out_dir) / f"{GRID_NAME}_cells.json")
    try:
        run_grid(sources(datasets, args.csv), args.horizons, args.repeats, data_root=args.data_root,
                 results_file=results_file, work_dir=args.work_dir, epochs=args.epochs, device=args.device)
    finally:
        cells = load_results(results_file)
        if cells:
            write_result(grid_result(cells, args.data_root), args.out_dir)


@_user_errors
def _convert(args: argparse.Namespace) -> None:
    from ffnet.timeseries.forecast import convert_authors_checkpoint

    metrics = convert_authors_checkpoint(args.authors_checkpoint, args.data, args.data_root, args.out)
    print(f"wrote {args.out}; test MSE {metrics['mse']:.4f}, MAE {metrics['mae']:.4f}")
