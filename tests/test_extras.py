"""Each extra alone gives a working CLI for its domain (other domains' libraries made unimportable).

The CLI runs in a subprocess where the packages that the extra does not install look absent (their
``sys.modules`` entries are ``None``), as a fresh ``pip install "ffnet[<extra>]"`` would leave them.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

# Packages that only some extras install (the base install has torch, timm, numpy, tqdm, tabulate).
OPTIONAL = {"mmengine", "mmcv", "mmdet", "mmseg", "mmpretrain", "pycocotools", "spconv", "diffusers", "torchmetrics",
            "torch_fidelity", "fvcore", "onnx", "onnxruntime", "onnxscript", "skimage", "bicubic_pytorch",
            "segmentation_models_pytorch", "pandas", "statsmodels", "vega_datasets", "matplotlib"}
EXTRA_PACKAGES = {
    "timeseries": {"pandas", "statsmodels", "vega_datasets", "matplotlib"},
    "superres": {"mmengine", "skimage", "bicubic_pytorch", "fvcore", "matplotlib"},
}

_RUNNER = textwrap.dedent("""
    import sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None  # `import name` fails and importlib.util.find_spec(name) is None, as when absent
    from ffnet.main import main
    sys.exit(main(sys.argv[2:]))
""")

def run_with_only(extra: str | None, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    blocked = OPTIONAL - (EXTRA_PACKAGES[extra] if extra else set())
    return subprocess.run([sys.executable, "-c", _RUNNER, ",".join(sorted(blocked)), *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_help_needs_no_extra():
    result = run_with_only(None, "--help")
    assert result.returncode == 0, result.stderr
    for group in ("classification", "detection", "segmentation", "superres", "pointcloud", "timeseries",
                  "generation"):
        assert group in result.stdout


def test_timeseries_extra_alone_trains_and_forecasts(tmp_path):
    import pandas as pd

    steps = 600
    t = np.arange(steps)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=steps, freq="h"),
                          "OT": np.sin(2 * np.pi * t / 24) + 0.01 * t})
    csv = tmp_path / "series.csv"
    frame.to_csv(csv, index=False)
    assert run_with_only("timeseries", "timeseries", "--help").returncode == 0
    out = tmp_path / "run"
    trained = run_with_only("timeseries", "timeseries", "train", "--data", "custom", "--csv", str(csv),
                            "--horizon", "24", "--epochs", "1", "--out", str(out), "--device", "cpu")
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = next(out.rglob("checkpoint.pt"))
    forecast = run_with_only("timeseries", "timeseries", "forecast", "--checkpoint", str(checkpoint), "--csv", str(csv),
                             "--out", str(tmp_path / "forecast.csv"))
    assert forecast.returncode == 0, forecast.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "forecast.csv")) == 24


@pytest.fixture
def tiny_sr_checkpoint(tmp_path):
    from ffnet.superres.checkpoint import save_as_mmengine_checkpoint
    from ffnet.superres.models import FFNetSR

    model = FFNetSR(scale=2, dim=8, depth=1)
    return save_as_mmengine_checkpoint(model, tmp_path / "sr_x2.pth")


def test_superres_extra_alone_upscales(tmp_path, tiny_sr_checkpoint):
    from PIL import Image

    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(image)
    result = run_with_only("superres", "superres", "upscale", str(image), str(tmp_path / "out.png"), "--scale", "2",
                           "--checkpoint", str(tiny_sr_checkpoint), "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(tmp_path / "out.png").size == (48, 40)


def test_missing_extra_is_one_line_naming_it(tmp_path, tiny_sr_checkpoint):
    result = run_with_only("timeseries", "superres", "upscale", str(tmp_path / "x.png"), str(tmp_path / "y.png"),
                           "--scale", "2", "--checkpoint", str(tiny_sr_checkpoint))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ffnet superres upscale: error:")
    assert 'pip install "ffnet[superres]"' in lines[0]
