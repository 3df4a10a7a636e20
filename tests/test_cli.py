"""The ``ffnet`` command: grammar, aliases, one-line errors, info, the classification benchmark (quick mode)
and the Runner launch's config checks."""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys

import pytest
import torch

from ffnet.main import main


DOMAIN_PACKAGES = ("classification", "detection", "segmentation", "superres", "pointcloud", "timeseries", "generation")


def test_help_lists_the_groups_without_importing_any_domain():
    code = ("import sys; from ffnet.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', sorted({m.split('.')[1] for m in sys.modules if m.startswith('ffnet.') "
            "and m.split('.')[1] in " + repr(DOMAIN_PACKAGES) + "} | {m for m in sys.modules if m in "
            "('mmengine', 'mmdet', 'mmseg', 'diffusers', 'pandas')}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("info", "train", "test", "tables", *DOMAIN_PACKAGES, "pointcept"):
        assert command in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "IMPORTED []"


@pytest.mark.parametrize("old, new", [
    (["ts", "train"], ["timeseries", "train"]), (["ts", "bench"], ["timeseries", "grid"]),
    (["bench", "timeseries"], ["timeseries", "bench"]), (["sr", "upscale"], ["superres", "upscale"]),
    (["gen", "convert-udit"], ["generation", "convert"]), (["det", "deploy"], ["detection", "export"]),
    (["export", "ffnet_1"], ["classification", "export", "ffnet_1"]), (["pc", "predict"], ["pointcloud", "predict"]),
])
def test_old_spellings_are_deprecated_aliases(old, new):
    from ffnet.main import resolve_aliases

    argv, notice = resolve_aliases([*old, "--x"])
    assert argv == [*new, "--x"]
    assert notice.startswith("ffnet: 'ffnet ") and "is deprecated; use 'ffnet " in notice
    assert resolve_aliases(["timeseries", "train"]) == (["timeseries", "train"], None)


def test_user_errors_are_one_line_with_exit_2_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nothing.pth"
    assert main(["test", "ffnet_1_8xb128_in1k.py", "--checkpoint", str(missing), "--work-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ffnet test: error:") and str(missing) in err[0]
    assert main(["test", "no_such_config.py", "--checkpoint", str(missing)]) == 2
    assert capsys.readouterr().err.startswith("ffnet test: error: config not found: no_such_config.py")
    with pytest.raises(FileNotFoundError):
        main(["--debug", "test", "no_such_config.py", "--checkpoint", str(missing)])


def test_train_refuses_a_pointcept_config_and_does_not_list_them(capsys):
    assert main(["train", "scannet-ffnet.py"]) == 2
    err = capsys.readouterr().err
    assert "Pointcept-format config" in err and "ffnet pointcloud train scannet-ffnet.py" in err
    assert main(["train", "no_such.py"]) == 2
    listed = capsys.readouterr().err
    assert "classification/ffnet_1_8xb128_in1k.py" in listed and "scannet" not in listed


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
    main(["classification", "bench", "--models", "ffnet_1", "convnext_tiny", "--batch-sizes", "1", "--rounds", "1",
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
    from ffnet.engine.runner import add_train_arguments

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


def test_cfg_options_must_name_existing_keys():
    from ffnet.engine.runner import load_config

    cfg = load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "model.model.drop_path_rate=0.2",
                                  "train_dataloader.batch_size=64", "param_scheduler.1.eta_min=0.0"))
    assert cfg.model.model.drop_path_rate == 0.2 and cfg.train_dataloader.batch_size == 64
    assert cfg.param_scheduler[1].eta_min == 0.0
    assert cfg.work_dir.endswith("work_dirs/ffnet_1_8xb128_in1k")
    with pytest.raises(KeyError, match="the config has no key 'modle'"):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "modle.model.drop_path_rate=0.2"))
    with pytest.raises(KeyError, match="'model' has no key 'modle'"):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "model.modle.drop_path_rate=0.2"))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "train_dataloader.batch_size"))
    with pytest.raises(FileNotFoundError, match="classification/ffnet_1_8xb128_in1k.py"):
        load_config(engine_args("no_such_config.py"))


@pytest.mark.parametrize("option, message", [
    ("default_hooks.checkpoint.intervl=5", "'default_hooks.checkpoint' has no key 'intervl' .*write "
                                           r"\+default_hooks.checkpoint.intervl"),
    ("train_dataloader.batchsize=64", "'train_dataloader' has no key 'batchsize'"),
    ("optim_wrapper.optimizer.lrr=0.1", "'optim_wrapper.optimizer' has no key 'lrr'"),
    ("train_dataloader.batch_size=big", "'train_dataloader.batch_size' is a number in the config .*not a string"),
    ("model.model.drop_path_rate=[1,2]", "is a number in the config .*not a list"),
])
def test_cfg_options_checked_to_the_leaf_before_the_runner_starts(option, message):
    from ffnet.engine.errors import ConfigError
    from ffnet.engine.runner import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", option))


def test_cfg_options_plus_adds_a_key_on_purpose():
    from ffnet.engine.runner import load_config

    cfg = load_config(engine_args("ffnet_1_8xb128_in1k.py", "--cfg-options", "+model.model.new_flag=True",
                                  "default_hooks.checkpoint.interval=5"))
    assert cfg.model.model.new_flag is True and cfg.default_hooks.checkpoint.interval == 5


def test_a_second_training_run_on_a_held_work_dir_is_refused(tmp_path, capsys):
    from ffnet.engine.files import RunLock

    with RunLock(tmp_path / "work"):
        code = ("import sys; from ffnet.main import main; sys.exit(main(['train', 'ffnet_1_8xb128_in1k.py', "
                f"'--work-dir', {str(tmp_path / 'work')!r}]))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("ffnet train: error:")
    assert "is in use by another run (pid" in result.stderr


def test_amp_and_resume_errors_are_clear(tmp_path):
    from ffnet.engine.errors import UserError
    from ffnet.engine.runner import build_runner

    with pytest.raises(FileNotFoundError, match="--resume checkpoint not found"):
        build_runner(engine_args("ffnet_1_8xb128_in1k.py", "--work-dir", str(tmp_path), "--resume",
                                 str(tmp_path / "missing.pth")))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--amp needs a CUDA device"):
            build_runner(engine_args("ffnet_1_8xb128_in1k.py", "--work-dir", str(tmp_path), "--amp"))


def test_runner_checkpoints_load_weights_only_and_foreign_globals_are_refused(tmp_path):
    from mmengine.logging import HistoryBuffer
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
    from mmengine.runner.checkpoint import CheckpointLoader

    from ffnet.engine.checkpoints import allow_mmengine_checkpoints

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
