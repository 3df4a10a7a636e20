"""The wheel: the folder-to-package mapping of setup.cfg gives ``ffnet.*`` modules, configs included, no tests/docs."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("build")
REPO = Path(__file__).resolve().parents[1]
NOT_SOURCES = (".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", "work_dirs", ".pytest_cache", "*.onnx")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> list[str]:
    # Build from a copy so the checkout gets no build/ or egg-info side effects.
    source = tmp_path_factory.mktemp("src") / "ffnet"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
                            cwd=source, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("ffnet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_maps_folders_to_ffnet_packages(wheel_files):
    for path in ("ffnet/__init__.py", "ffnet/main.py", "ffnet/tables.py", "ffnet/engine/runner.py",
                 "ffnet/engine/checkpoints.py", "ffnet/engine/bench.py", "ffnet/classification/export.py",
                 "ffnet/info.py", "ffnet/core/block.py", "ffnet/core/reparam.py", "ffnet/classification/ffnet.py",
                 "ffnet/classification/training.py", "ffnet/classification/benchmark.py",
                 "ffnet/classification/openmmlab/backbone.py", "ffnet/engine/openmmlab/deploy.py"):
        assert path in wheel_files, path


def test_wheel_ships_the_classification_configs(wheel_files):
    configs = {Path(p).name for p in wheel_files if p.startswith("ffnet/classification/configs/")}
    shipped = {p.name for p in (REPO / "classification" / "configs").glob("*.py")}
    assert shipped and shipped <= configs
    assert {"_base_in1k.py", "ffnet_1_8xb128_in1k.py", "ffnet_4_384_finetune.py"} <= configs


def test_wheel_has_no_tests_or_docs(wheel_files):
    assert not [p for p in wheel_files if p.startswith(("tests/", "docs/", "ffnet/tests/", "ffnet/docs/"))]
    top_level = {p.split("/")[0] for p in wheel_files}
    assert top_level <= {"ffnet"} | {p for p in top_level if p.endswith(".dist-info")}
