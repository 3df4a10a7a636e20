"""Resumable training and grid, the `ffnet timeseries` commands, forecasting a user's CSV (real data, CPU)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from vega_datasets import local_data

from ffnet.main import main
from ffnet.timeseries.data import make_splits, read_series
from ffnet.timeseries.grid import load_results, run_grid, sources
from ffnet.timeseries.model import FFNetTS, FFNetTSConfig
from ffnet.timeseries.train import TrainConfig, load_checkpoint, seed_everything, train_model


@pytest.fixture(scope="module")
def weather():
    return pd.read_csv(local_data.seattle_weather.filepath)


def write_csv(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, weather):
    series = read_series(write_csv(weather[["date", "temp_max", "wind"]].iloc[:400], tmp_path / "a.csv"))
    splits = make_splits(series, pred_len=8)

    def run(run_dir, epochs):
        seed_everything(0)
        model = FFNetTS(FFNetTSConfig(num_variables=2, pred_len=8, dim=8))
        config = TrainConfig(learning_rate=1e-3, batch_size=32, epochs=epochs, patience=5, lradj="constant")
        return model, train_model(model, splits.train, splits.val, config, run_dir, "cpu", progress=False)

    straight, straight_history = run(tmp_path / "straight", 2)
    run(tmp_path / "interrupted", 1)  # stops after epoch 1, as if killed
    resumed, resumed_history = run(tmp_path / "interrupted", 2)  # a new process continues the run
    assert [e["epoch"] for e in resumed_history.epochs] == [1, 2]
    assert [e["val_loss"] for e in resumed_history.epochs] == [e["val_loss"] for e in straight_history.epochs]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ValueError, match="other settings"):
        seed_everything(0)
        train_model(FFNetTS(FFNetTSConfig(num_variables=2, pred_len=8, dim=16)), splits.train, splits.val,
                    TrainConfig(epochs=3), tmp_path / "interrupted", "cpu", progress=False)


def test_grid_resumes_and_writes_the_table(tmp_path, weather):
    good = write_csv(weather[["date", "temp_max", "wind"]].iloc[:400], tmp_path / "seattle_a.csv")
    broken_frame = weather[["date", "temp_min", "precipitation"]].iloc[400:800].copy()
    broken_frame.iloc[50, 1] = np.nan
    broken = write_csv(broken_frame, tmp_path / "seattle_b.csv")
    results, work = tmp_path / "cells.json", tmp_path / "work"
    grid = dict(horizons=[8], results_file=results, work_dir=work, epochs=1, progress=False)

    with pytest.raises(ValueError, match="NaN"):
        run_grid(sources(csv_files=[good, broken]), repeats=1, **grid)
    first = load_results(results)
    assert [(c["dataset"], c["seed"]) for c in first] == [("seattle_a", 2021)]
    assert not (work / "seattle_a_T8_seed2021" / "train_state.pt").exists()

    # The user fixes the file and reruns with more seeds.
    write_csv(broken_frame.assign(temp_min=broken_frame["temp_min"].interpolate()), broken)
    trained = run_grid(sources(csv_files=[good, broken]), repeats=2, **grid)
    assert [(c["dataset"], c["seed"]) for c in trained] == [("seattle_a", 2022), ("seattle_b", 2021),
                                                            ("seattle_b", 2022)]
    cells = load_results(results)
    assert cells[0] == first[0] and len(cells) == 4
    assert all(np.isfinite(c["test_mse"]) and c["epochs_run"] == 1 for c in cells)
    with pytest.raises(ValueError, match="settings"):
        run_grid(sources(csv_files=[good]), repeats=1, **{**grid, "epochs": 2})

    checkpoint = work / "seattle_a_T8_seed2021" / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    out = tmp_path / "results"
    main(["timeseries", "grid", "--csv", good, broken, "--horizons", "8", "--repeats", "2", "--epochs", "1",
          "--results-file", str(results), "--work-dir", str(work), "--out-dir", str(out)])
    assert checkpoint.stat().st_mtime_ns == stamp  # nothing retrained
    table = pd.read_csv(out / "timeseries_grid.csv")
    assert table["Dataset"].tolist() == ["seattle_a", "seattle_a", "seattle_b", "seattle_b"]
    assert table["Horizon"].tolist() == ["8", "avg(8)", "8", "avg(8)"]
    assert table["Seeds"].iloc[0] == 2
    assert {"Repeat-last MSE", "Seasonal-naive MSE", "Linear MSE", "DLinear MSE", "Best baseline",
            "Gain vs best (%)", "Beats all"} <= set(table.columns)
    cells_a = [c for c in load_results(results) if c["dataset"] == "seattle_a"]
    assert table["Linear MSE"].iloc[0] == round(np.mean([c["baselines"]["linear"]["mse"] for c in cells_a]), 4)
    assert "CAPPED RUN" in (out / "timeseries_grid.md").read_text()
    assert (out / "timeseries_grid.png").stat().st_size > 10_000


def test_train_and_forecast_commands_on_a_users_csv(tmp_path, weather, capsys):
    csv = write_csv(weather[["date", "temp_max", "temp_min", "wind"]].iloc[:500], tmp_path / "mine.csv")
    run_dir = tmp_path / "run"
    main(["timeseries", "train", "--data", "custom", "--csv", csv, "--horizon", "8", "--epochs", "1",
          "--out", str(run_dir),
          "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "FFNet-TS" in printed and "seasonal-naive (period" in printed and "DLinear" in printed
    checkpoint = run_dir / "checkpoint.pt"
    out = tmp_path / "forecast.csv"
    main(["timeseries", "forecast", "--checkpoint", str(checkpoint), "--csv", csv, "--horizon", "8", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "test split of mine" in printed and "FFNet-TS vs the best baseline" in printed
    assert main(["timeseries", "test", "--checkpoint", str(checkpoint), "--csv", csv, "--season", "7"]) == 0
    assert "seasonal-naive (period 7)" in capsys.readouterr().out
    forecast = pd.read_csv(out, parse_dates=["date"])
    assert list(forecast.columns) == ["date", "temp_max", "temp_min", "wind"]
    last = pd.Timestamp(weather["date"].iloc[499])
    assert forecast["date"].tolist() == list(pd.date_range(last, periods=9, freq="D")[1:])

    loaded = load_checkpoint(checkpoint)
    history = weather[["temp_max", "temp_min", "wind"]].iloc[-96 + 500:500].to_numpy()
    with torch.no_grad():
        scaled = loaded.model(torch.tensor(loaded.scaler.transform(history), dtype=torch.float32)[None])[0]
    expected = loaded.scaler.inverse_transform(scaled.double().numpy())
    np.testing.assert_allclose(forecast[["temp_max", "temp_min", "wind"]].to_numpy(), expected, rtol=1e-5, atol=1e-5)

    capsys.readouterr()
    assert main(["timeseries", "forecast", "--checkpoint", str(checkpoint), "--csv", csv, "--horizon", "96"]) == 2
    assert "trained for horizon 8, not 96" in capsys.readouterr().err
    short = write_csv(weather[["date", "temp_max", "temp_min", "wind"]].iloc[:50], tmp_path / "short.csv")
    assert main(["timeseries", "forecast", "--checkpoint", str(checkpoint), "--csv", short]) == 2
    assert "has 50 rows, the model needs the last 96" in capsys.readouterr().err
    extra = write_csv(weather[["date", "temp_max", "temp_min", "wind", "precipitation"]], tmp_path / "extra.csv")
    assert main(["timeseries", "forecast", "--checkpoint", str(checkpoint), "--csv", extra]) == 2
    assert "['precipitation'] that the checkpoint was not trained on" in capsys.readouterr().err
    torch.save(loaded.model.state_dict(), tmp_path / "raw.pth")
    assert main(["timeseries", "forecast", "--checkpoint", str(tmp_path / "raw.pth"), "--csv", csv]) == 2
    assert "not an FFNet-TS checkpoint of this package" in capsys.readouterr().err
    json.dumps(loaded.info["metrics"])  # metrics are plain numbers
