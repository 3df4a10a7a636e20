"""The ``ffnet`` command: help, info, the classification benchmark (quick mode) and the engine's config checks."""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys

import pytest
import torch

from ffnet.main import main


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "ffnet", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("info", "train", "test", "bench", "tables", "export"):
        assert command in result.stdout


def test_generic_commands_do_not_import_the_domains():
    """``ffnet train CONFIG`` builds only the parsers it needs; the config's custom_imports load the domain."""
    code = ("import sys; from ffnet.main import build_parser; "
            "args = build_parser(['train', 'cfg.py']).parse_args(['train', 'cfg.py']); "
            "print(args.config, sorted(m for m in sys.modules if m.split('.')[0] in ('mmdet', 'mmseg', 'diffusers') "
            "or m.startswith('ffnet.') and m.split('.')[1] in ('detection', 'segmentation', 'generation')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cfg.py", "[]"]


def test_info_prints_versions_and_backends(capsys):
    main(["info"])
    printed = capsys.readouterr().out
    assert torch.__version__.split("+")[0] in printed
    for line in ("timm", "mmengine", "mmcv", "onnxruntime", "mmcv compiled ops", "spconv", "CUDA"):
        assert line in printed


def test_quick_classification_bench_writes_table_csv_and_plot(tmp_path, capsys):
    pytest.importorskip("fvcore")
    main(["bench", "classification", "--models", "ffnet_1", "convnext_tiny", "--batch-sizes", "1", "--rounds", "1",
          "--quick", "--out-dir", str(tmp_path)])
    for suffix in ("md", "csv", "png"):
        assert (tmp_path / f"classification.{suffix}").stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "classification.csv")))
    assert [r["model"] for r in rows] == ["ffnet_1", "convnext_tiny"]
    ffnet_row = rows[0]
    assert float(ffnet_row["params (M)"]) == pytest.approx(13.66, abs=0.005)  # deployed FFNet-1
    assert float(ffnet_row["bs1 img/s"]) > 0 and ffnet_row["bs1 layout"] in ("contiguous", "channels_last")
    assert float(rows[1]["bs1 xconvnext_tiny"]) == 1.0
    assert "QUICK" in (tmp_path / "classification.md").read_text()


def engine_args(*argv: str) -> argparse.Namespace:
    from ffnet.engine import add_train_arguments

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


def test_cfg_options_must_name_existing_keys():
    pytest.importorskip("mmengine")
    from ffnet.engine import load_config

    cfg = load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "model.model.drop_path_rate=0.2",
                                  "train_dataloader.batch_size=64", "param_scheduler.1.eta_min=0.0"))
    assert cfg.model.model.drop_path_rate == 0.2 and cfg.train_dataloader.batch_size == 64
    assert cfg.param_scheduler[1].eta_min == 0.0
    assert cfg.work_dir.endswith("work_dirs/ffnet_1_8xb128_in1k")
    with pytest.raises(KeyError, match="no top-level key 'modle'"):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "modle.model.drop_path_rate=0.2"))
    with pytest.raises(KeyError, match="'model' has no key 'modle'"):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "model.modle.drop_path_rate=0.2"))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "train_dataloader.batch_size"))
    with pytest.raises(FileNotFoundError, match="classification/ffnet_1_8xb128_in1k.py"):
        load_config(engine_args("no_such_config.py"))


def test_amp_and_resume_errors_are_clear(tmp_path):
    pytest.importorskip("mmengine")
    from ffnet.engine import build_runner

    with pytest.raises(FileNotFoundError, match="--resume checkpoint not found"):
        build_runner(engine_args("ffnet_1_8xb128_in1k.py", "--work-dir", str(tmp_path), "--resume",
                                 str(tmp_path / "missing.pth")))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="--amp needs a CUDA device"):
            build_runner(engine_args("ffnet_1_8xb128_in1k.py", "--work-dir", str(tmp_path), "--amp"))


def test_runner_checkpoints_load_weights_only_and_foreign_globals_are_refused(tmp_path):
    from mmengine.logging import HistoryBuffer
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
    from mmengine.runner.checkpoint import CheckpointLoader

    from ffnet.checkpoints import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = OneCycleParamScheduler(optimizer, "lr", eta_max=0.1, total_steps=10)
    buffer = HistoryBuffer()
    buffer.update(1.5)
    path = tmp_path / "runner.pth"
    torch.save({"message_hub": {"loss": buffer}, "param_schedulers": [scheduler.state_dict()]}, path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location="cpu")  # weights-only, torch's default
    assert loaded["message_hub"]["loss"].current() == 1.5
    assert loaded["param_schedulers"][0]["anneal_func"] is OneCycleParamScheduler._annealing_cos

    torch.save({"state_dict": {}, "args": argparse.ArgumentParser}, tmp_path / "foreign.pth")
    with pytest.raises(Exception, match="ArgumentParser"):
        CheckpointLoader.load_checkpoint(str(tmp_path / "foreign.pth"), map_location="cpu")
