"""Fixtures shared by the whole suite."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One intra-op thread for the session: on a shared CPU the tiny models here run far faster without
    oversubscription (idle OpenMP workers otherwise spin against each other). Restored at the end."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
