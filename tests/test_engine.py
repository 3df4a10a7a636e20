"""ffnet.engine: the checkpoint loader, atomic writes, run-folder locks, lazy exports, the layering."""
from __future__ import annotations

import ast
import configparser
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ffnet.engine import checkpoints
from ffnet.engine.checkpoints import (CheckpointError, load_file, load_state_dict, register_describer,
                                      unwrap_state_dict)
from ffnet.engine.errors import RunFolderBusy
from ffnet.engine.files import TEMP_SUFFIX, RunLock, atomic_path, remove_stale_temporaries, save_atomic, write_atomic
from ffnet.engine.lazy import lazy_exports
from helpers import write_malicious_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_malicious_checkpoint_refused_in_one_line_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError) as err:
        load_file(path)
    message = str(err.value)
    assert not marker.exists()
    assert "\n" not in message
    assert str(path) in message and "pathlib" in message and "--trust-checkpoint" in message
    # the explicit opt-in runs it: the user said they trust the file
    load_file(path, trust=True)
    assert marker.exists()


def test_trust_environment_variable(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    monkeypatch.setenv(checkpoints.TRUST_ENV, "1")
    load_file(path)
    assert marker.exists()


@pytest.mark.parametrize("content, problem", [(b"", "empty"), (b"\x00garbage" * 10, "not a PyTorch checkpoint"), (b"\x80\x02garbage", r"is corrupt, or holds pickle code .*Unsupported operand")])
def test_unreadable_files_named_with_the_cause(tmp_path, content, problem):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=problem) as err:
        load_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_file(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_file(tmp_path)


def test_mmengine_runner_checkpoint_loads_weights_only(tmp_path):
    """The message hub's HistoryBuffer, numpy scalars and a OneCycle scheduler state are allowlisted."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

    buffer = HistoryBuffer()
    buffer.update(1.5)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = OneCycleParamScheduler(optimizer, "lr", eta_max=0.1, total_steps=10)
    obj = {"state_dict": {"w": torch.ones(1)}, "message_hub": {"log": {"loss": buffer}},
           "meta": {"seed": np.int64(3), "arr": np.arange(3)}, "param_schedulers": [scheduler.state_dict()]}
    torch.save(obj, tmp_path / "epoch_1.pth")
    loaded = load_file(tmp_path / "epoch_1.pth")
    assert loaded["message_hub"]["log"]["loss"].current() == 1.5
    assert int(loaded["meta"]["seed"]) == 3


def test_unwrap_order_and_prefixes():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    both = {"state_dict": {"module.x": a}, "state_dict_ema": {"x": b}, "model": {"x": c}}
    assert unwrap_state_dict(both)["x"] is a  # state_dict first, DDP prefix removed
    assert unwrap_state_dict(both, prefer_ema=True)["x"] is b
    assert unwrap_state_dict({"model": {"x": c}})["x"] is c
    assert unwrap_state_dict({"params": {"x": a}, "params_ema": {"x": b}})["x"] is a
    assert unwrap_state_dict({"x": a, "epoch": 3})["x"] is a
    with pytest.raises(CheckpointError, match="holds no weights"):
        unwrap_state_dict({"epoch": 3}, source="f.pth")


def _net(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))


def test_strict_load_reports_counts_keys_and_what_the_file_looks_like():
    register_describer("test-net", lambda s: f"a {s['0.weight'].shape[0]}-wide test net" if "0.weight" in s else None)
    try:
        with pytest.raises(CheckpointError) as err:
            load_state_dict(_net(4), _net(8).state_dict(), source="wide.pth")
        message = str(err.value)
        assert "3 of the wrong shape" in message and "0.weight: file (8, 3) vs model (4, 3)" in message
        assert "looks like a 8-wide test net" in message and "wide.pth" in message
        state = {"extra.weight": torch.zeros(1), **{k: v for k, v in _net().state_dict().items() if k != "2.bias"}}
        with pytest.raises(CheckpointError, match=r"1 missing \(2\.bias\); 1 unexpected \(extra\.weight\)"):
            load_state_dict(_net(), state, source="x.pth")
    finally:
        checkpoints._DESCRIBERS.pop("test-net")


def test_partial_load_prints_one_summary_line(capsys):
    source, target = _net(4), _net(8)
    state = source.state_dict()
    report = load_state_dict(target, state, source="small.pth", strict=False)
    assert len(report.mismatched) == 3 and not report.missing
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("partial load of small.pth") and "skipped 3 of the wrong shape" in err[0]
    same = _net(4)
    load_state_dict(same, {k: v.clone() for k, v in state.items()}, source="same.pth")
    assert all(torch.equal(same.state_dict()[k], v) for k, v in state.items())


def test_registered_layout_converts_automatically():
    net = _net()
    foreign = {f"authors.{k}": v for k, v in net.state_dict().items()}
    checkpoints.register_layout("the test layout", lambda s: any(k.startswith("authors.") for k in s),
                                lambda s: {k.removeprefix("authors."): v for k, v in s.items()})
    try:
        report = load_state_dict(_net(), foreign, source="authors.pth")
        assert report.converter == "the test layout" and report.complete
    finally:
        checkpoints._LAYOUTS.pop("the test layout")


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path):
    target = tmp_path / "result.txt"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    save_atomic({"w": torch.ones(2)}, tmp_path / "ckpt.pt")
    assert torch.equal(load_file(tmp_path / "ckpt.pt")["w"], torch.ones(2))


def test_stale_temporaries_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ckpt.pt.{dead.stdout.strip()}{TEMP_SUFFIX}"
    live = tmp_path / f".other.pt.{os.getpid()}{TEMP_SUFFIX}"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


_HOLD = "import sys, time; from ffnet.engine.files import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def test_run_lock_refuses_a_second_run_and_takes_over_a_killed_one(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path) as lock:  # the killed holder's lock is taken over
        assert f"pid {os.getpid()}" in (tmp_path / ".ffnet-run.lock").read_text()
        with RunLock(tmp_path):  # re-entrant in one process
            pass
    assert lock._fd is None


def test_lazy_exports():
    getattr_, names = lazy_exports("ffnet.engine", {"files": ("RunLock",)})
    assert names == ["RunLock"] and getattr_("RunLock") is RunLock
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        getattr_("nope")


# ---------------------------------------------------------------------------------------------------------------
# The layering, read from the source


def _package_dirs() -> dict[str, Path]:
    """Import name -> folder, from setup.cfg's package_dir."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    pairs = [line.split("=") for line in parser["options"]["package_dir"].strip().splitlines()]
    return {name.strip(): REPO / folder.strip() for name, folder in pairs}


def _sources():
    for name, folder in _package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            if "configs" not in path.parts:
                yield name, path


def test_torch_load_only_in_the_checkpoint_module():
    offenders = []
    for _, path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                if path != REPO / "engine" / "checkpoints.py":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"torch.load outside ffnet.engine.checkpoints: {offenders}"


def _imported_ffnet_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "ffnet" and node.level == 0:
            names = [f"ffnet.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ffnet":
                found.add(".".join(parts[:2]) if len(parts) > 1 else "ffnet")
    return found


DOMAINS = ("classification", "detection", "segmentation", "superres", "pointcloud", "timeseries", "generation")
CLI_MODULES = {"ffnet.main", "ffnet.tables", "ffnet.info", "ffnet.__main__"}


def test_import_graph():
    """Domains import core, engine and their own package (detection/segmentation also classification);
    core and engine import no domain; nothing imports the CLI."""
    problems = []
    for package, path in _sources():
        imported = _imported_ffnet_packages(path) - {package}
        where = path.relative_to(REPO)
        if package == "ffnet":
            continue
        if imported & CLI_MODULES:
            problems.append(f"{where} imports the CLI: {sorted(imported & CLI_MODULES)}")
        domains = {name for name in imported if name.split(".")[1] in DOMAINS}
        allowed = {"ffnet.classification"} if package in ("ffnet.detection", "ffnet.segmentation") else set()
        if package in ("ffnet.core", "ffnet.engine") and domains:
            problems.append(f"{where} ({package}) imports a domain: {sorted(domains)}")
        elif domains - allowed:
            problems.append(f"{where} imports another domain: {sorted(domains - allowed)}")
        if package == "ffnet.core" and "ffnet.engine" in imported:
            problems.append(f"{where}: the core imports the plumbing package")
    assert not problems, "\n".join(problems)


def test_import_graph_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from ffnet.timeseries.model import FFNetTS\nimport ffnet.main\nfrom ffnet import tables\n")
    assert _imported_ffnet_packages(bad) == {"ffnet.timeseries", "ffnet.main", "ffnet.tables"}
