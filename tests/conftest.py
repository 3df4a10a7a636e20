"""Fixtures shared by the whole suite."""
from __future__ import annotations

import importlib.util

import pytest
import torch


def _pointcept_importable() -> bool:
    spec = importlib.util.find_spec("pointcept")
    return spec is not None and spec.origin is not None  # a regular package, not a stray folder


# tests/upstream_pointcept/ runs against an upstream Pointcept checkout in its own environment
# (`make test-pointcept`); where Pointcept is not importable it is not collected, and the header says so.
collect_ignore = [] if _pointcept_importable() else ["upstream_pointcept"]
_NOT_COLLECTED = ("tests/upstream_pointcept/ NOT collected: Pointcept is not importable in this environment; "
                  "`make test-pointcept POINTCEPT_ROOT=<checkout>` runs it in .venv-pointcept")


def pytest_report_header(config):
    return _NOT_COLLECTED if collect_ignore else None


def pytest_terminal_summary(terminalreporter):
    if collect_ignore and any(str(arg).rstrip("/").endswith(("tests", "upstream_pointcept"))
                              for arg in terminalreporter.config.args):
        terminalreporter.write_line(_NOT_COLLECTED, yellow=True, bold=True)


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One intra-op thread for the session: on a shared CPU the tiny models here run far faster without
    oversubscription (idle OpenMP workers otherwise spin against each other). Restored at the end."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
