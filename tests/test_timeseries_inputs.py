"""User files: unreadable CSVs and duplicate dates are refused with one line; run folders and checkpoints."""
import re

import numpy as np
import pandas as pd
import pytest
import torch

from ffnet.engine.checkpoints import CheckpointError, describe_state_dict, load_file
from ffnet.engine.errors import RunFolderBusy
from ffnet.engine.files import RunLock
from ffnet.timeseries.data import make_splits, read_series, series_from_frame
from ffnet.timeseries.model import FFNetTS, FFNetTSConfig
from ffnet.timeseries.train import (CHECKPOINT_FILE, STATE_FILE, TrainConfig, TrainHistory, fit, learning_rate_at,
                                    load_checkpoint)


def _frame(rows: int, variables: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((rows, variables)).cumsum(0), columns=[f"v{i}" for i in range(variables)])
    frame.insert(0, "date", pd.date_range("2021-01-01", periods=rows, freq="h"))
    return frame


def test_duplicate_time_stamps_are_refused_naming_the_first(tmp_path):
    frame = _frame(20)
    frame.loc[7, "date"] = frame.loc[6, "date"]
    frame.loc[12, "date"] = frame.loc[11, "date"]
    frame.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match=r"dup.csv: duplicate time stamp 2021-01-01 06:00:00 \(rows 6 and 7; "
                                         r"2 duplicates in all\)"):
        read_series(tmp_path / "dup.csv")


@pytest.mark.parametrize("content,reason", [
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    (b"date,value\n", "has a header (date, value) but no data rows"),
    (b"PK\x03\x04\x00\x00binary\x00zip", "is not a CSV text file (it contains binary data)"),
    (b"\xff\xfe\xfa\xfb,\x81\n1,2\n", "is not a readable CSV file"),
])
def test_unreadable_files_name_the_file_and_the_cause(tmp_path, content, reason):
    path = tmp_path / "series.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(reason)) as err:
        read_series(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_plateau_schedule_halves_after_two_bad_epochs():
    config = TrainConfig(learning_rate=1e-3, lradj="plateau")
    history = TrainHistory()
    lrs = []
    for epoch, bad in enumerate([0, 0, 1, 2, 0, 1, 2, 3, 4], start=1):
        lr = learning_rate_at(epoch, config, history)
        lrs.append(lr)
        history.epochs.append({"epoch": epoch, "lr": lr})
        history.bad_epochs = bad
    assert lrs == [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    assert learning_rate_at(80, TrainConfig(learning_rate=1e-4)) == pytest.approx(1e-4 * 0.9 ** 76)


def test_run_files_load_weights_only_and_the_folder_is_locked(tmp_path):
    series = series_from_frame(_frame(600), target=None)
    config = FFNetTSConfig(num_variables=2, pred_len=8, dim=8)
    run_dir = tmp_path / "run"
    train = TrainConfig(learning_rate=1e-3, batch_size=64, epochs=1, patience=1, lradj="plateau")
    with RunLock(run_dir):
        pass  # a finished holder leaves the folder free
    result = fit(series, config, train, run_dir, "cpu", progress=False)
    assert set(result.baselines) == {"season", "repeat-last", "seasonal-naive", "linear", "DLinear"}
    for name in (STATE_FILE, CHECKPOINT_FILE):
        payload = load_file(run_dir / name)  # weights-only unpickler: plain types and tensors only
        assert isinstance(payload, dict)
    assert load_checkpoint(run_dir / CHECKPOINT_FILE).info["baselines"] == result.baselines

    import subprocess
    import sys
    import textwrap
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from ffnet.engine.files import RunLock
        with RunLock({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            fit(series, config, train, run_dir, "cpu", progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_a_mismatched_state_dict_is_described(tmp_path):
    eth = FFNetTS(FFNetTSConfig(num_variables=7, pred_len=96))
    assert describe_state_dict(eth.state_dict()) == ("FFNet-TS (ours; 7 variables, horizon 96, D 64, CIFFN ratio 2: "
                                                     "shaped like ETTh1)")
    torch.save({"format": "ffnet-ts/1", "model_config": FFNetTSConfig(num_variables=2, pred_len=8).to_dict(),
                "state_dict": eth.state_dict(), "scaler": {"mean": [0, 0], "std": [1, 1]}, "columns": ["a", "b"],
                "date_column": "date"}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="shaped like ETTh1"):
        load_checkpoint(tmp_path / "c.pt")
    splits = make_splits(series_from_frame(_frame(600), target=None), 8)  # noqa: F841 (splits build fine)
