"""A malicious checkpoint through every user-facing load path: refused, nothing run, one line, exit 2.

The file looks like an ordinary checkpoint, but unpickling it would create a marker file. Every
command that takes a checkpoint (or a pickled scene) is given it; each must refuse it naming the
file, the offending global and the trust opt-in, without creating the marker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from ffnet.main import main
from helpers import write_malicious_checkpoint

Case = Callable[[Path, Path], list]


def _image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path)
    return path


def _series_csv(folder: Path) -> Path:
    import pandas as pd

    steps = 400
    frame = pd.DataFrame({"date": pd.date_range("2021-01-01", periods=steps, freq="h"),
                          "OT": np.sin(np.arange(steps) / 5.0)})
    frame.to_csv(folder / "series.csv", index=False)
    return folder / "series.csv"


def _planted_train_state(tmp: Path, evil: Path) -> list:
    """A malicious resume state planted in the run folder of `ffnet timeseries train`."""
    out = tmp / "run"
    out.mkdir()
    evil.rename(out / "train_state.pt")
    return ["timeseries", "train", "--data", "custom", "--csv", str(_series_csv(tmp)), "--horizon", "24",
            "--epochs", "1", "--out", str(out), "--device", "cpu"]


def _scene_folder(tmp: Path) -> Path:
    scene = tmp / "scene0000_00"
    scene.mkdir()
    rng = np.random.default_rng(0)
    np.save(scene / "coord.npy", rng.random((64, 3), dtype=np.float32))
    np.save(scene / "color.npy", rng.integers(0, 255, (64, 3)).astype(np.float32))
    np.save(scene / "normal.npy", rng.random((64, 3), dtype=np.float32))
    return scene


COMMANDS: dict[str, Case] = {
    "test": lambda tmp, evil: ["test", "ffnet_1_8xb128_in1k.py", "--checkpoint", str(evil),
                               "--work-dir", str(tmp / "w")],
    "train --resume": lambda tmp, evil: ["train", "ffnet_1_8xb128_in1k.py", "--resume", str(evil),
                                         "--work-dir", str(tmp / "w")],
    "classification export": lambda tmp, evil: ["classification", "export", "ffnet_1", "--checkpoint", str(evil),
                                                "--out", str(tmp / "m.onnx")],
    "timeseries forecast": lambda tmp, evil: ["timeseries", "forecast", "--checkpoint", str(evil), "--csv",
                                              str(_series_csv(tmp))],
    "timeseries train (planted resume state)": _planted_train_state,
    "superres upscale": lambda tmp, evil: ["superres", "upscale", str(_image(tmp)), str(tmp / "out.png"),
                                           "--scale", "2", "--checkpoint", str(evil), "--device", "cpu"],
    "superres convert": lambda tmp, evil: ["superres", "convert", "--checkpoint", str(evil),
                                           "--out", str(tmp / "c.pth")],
    "superres test": lambda tmp, evil: ["superres", "test", "ffnetsr_light_div2k_x2_release.py", "--checkpoint", str(evil),
                                        "--work-dir", str(tmp / "w")],
    "generation sample": lambda tmp, evil: ["generation", "sample", "--checkpoint", str(evil), "--classes", "1",
                                            "--out", str(tmp / "grid.png"), "--device", "cpu"],
    "generation fid": lambda tmp, evil: ["generation", "fid", "--checkpoint", str(evil), "--ref", str(tmp),
                                         "--device", "cpu"],
    "generation convert": lambda tmp, evil: ["generation", "convert", "--checkpoint", str(evil), "--out",
                                             str(tmp / "c.pth"), "--arch", "U-DiT-B"],
    "pointcloud predict --checkpoint": lambda tmp, evil: ["pointcloud", "predict", "--checkpoint", str(evil),
                                                          "--scene", str(_scene_folder(tmp)), "--device", "cpu"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_malicious_checkpoint_refused_by_every_command(command, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    argv = COMMANDS[command](tmp_path, evil)
    assert main(argv) == 2
    assert not marker.exists()
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "deprecated" not in line]
    assert len(err) == 1, err
    assert err[0].startswith(f"ffnet {' '.join(argv[:2]) if argv[0] not in ('test', 'train') else argv[0]}: error:")
    assert "evil.pth" in err[0] or "train_state.pt" in err[0]
    assert "--trust-checkpoint" in err[0]


def test_malicious_scene_refused_by_predict(tmp_path, capsys):
    marker = tmp_path / "pwned"
    scene = tmp_path / "scene0000_00.pth"
    write_malicious_checkpoint(scene, marker)
    evil_model = write_malicious_checkpoint(tmp_path / "model.pth", tmp_path / "other")
    # the scene is checked as well: give a model checkpoint that is itself refused only after the scene
    assert main(["pointcloud", "predict", "--checkpoint", str(evil_model), "--scene", str(scene)]) == 2
    assert not marker.exists() and not (tmp_path / "other").exists()


@pytest.mark.parametrize("loader", ["create_timm_model", "timm pretrained", "read_state_dict"])
def test_malicious_checkpoint_refused_by_python_loaders(loader, tmp_path):
    import timm

    from ffnet.engine.errors import CheckpointError

    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match="evil.pth.*--trust-checkpoint"):
        if loader == "create_timm_model":
            from ffnet.classification.training import create_timm_model

            create_timm_model("ffnet_1", checkpoint=evil)
        elif loader == "timm pretrained":
            import ffnet.classification  # noqa: F401

            timm.create_model("ffnet_1", pretrained=True, pretrained_cfg_overlay=dict(file=str(evil)))
        else:
            from ffnet.classification.training import read_state_dict

            read_state_dict(evil)
    assert not marker.exists()


def test_finetune_init_from_a_malicious_file_is_refused(tmp_path, monkeypatch, capsys):
    """``PRETRAINED_CHECKPOINT=... ffnet train ffnet_3_384_finetune.py``: refused when the model is built."""
    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    monkeypatch.setenv("PRETRAINED_CHECKPOINT", str(evil))
    assert main(["train", "ffnet_3_384_finetune.py", "--work-dir", str(tmp_path / "w")]) == 2
    assert not marker.exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ffnet train: error:")
