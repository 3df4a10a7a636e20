"""Writes that never leave a half-written file, and run folders that one run holds at a time.

* :func:`atomic_path` / :func:`write_atomic` / :func:`save_atomic`: write to a temporary file in the
  target's folder, flush it to disk, then ``os.replace`` it over the target; on failure the temporary
  file is removed. Temporary files are named ``.<target name>.<pid>.ffnet-tmp``, so one left behind by a
  killed process is recognised and removed by :func:`remove_stale_temporaries` (called when a run
  folder is locked).
* :class:`RunLock`: an exclusive ``flock`` on ``<folder>/.ffnet-run.lock``. A second run on the same
  folder is refused with the holder's pid; the kernel releases the lock of a killed process, so the
  next run takes it over.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from ffnet.engine.errors import RunFolderBusy

TEMP_SUFFIX = ".ffnet-tmp"
LOCK_NAME = ".ffnet-run.lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove ``*.ffnet-tmp`` files under ``folder`` whose writing process is gone; returns them."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.rglob(f"*{TEMP_SUFFIX}"):
        pid = tmp.name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class RunLock:
    """Hold ``folder`` for this process: ``with RunLock(work_dir): ...`` (or :meth:`acquire` / :meth:`release`).

    Raises :class:`~ffnet.engine.errors.RunFolderBusy` naming the holder's pid when another live process
    holds it. Re-entrant within one process (a nested lock of the same folder is a no-op).
    """

    _held: dict[Path, int] = {}

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).resolve()
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self.folder in RunLock._held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(f"{self.folder} is in use by another run ({holder}); wait for it to finish or "
                                "choose another folder") from None
        os.ftruncate(fd, 0)
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {command}\n".encode(), 0)
        self._fd = fd
        RunLock._held[self.folder] = fd
        remove_stale_temporaries(self.folder)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        RunLock._held.pop(self.folder, None)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
