"""One process per data directory, enforced with an OS file lock.

Two peers on one data directory would share one key and both write ``seq 1``
with different texts: the room would see an equivocation and split for good.
So a peer holds an exclusive ``flock`` on ``DIR/lock`` for as long as it runs;
the kernel releases it when the process ends, even after ``kill -9``, so a stale
lock can never block a restart. The file also holds the owner's process id, to
say who has it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["DataDirectoryInUse", "DataDirectoryLock"]

LOCK_NAME = "lock"


class DataDirectoryInUse(RuntimeError):
    """Another running process holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"this data directory is in use by {who}: {data_dir}")
        self.data_dir = data_dir
        self.pid = pid


class DataDirectoryLock:
    """Hold ``data_dir`` for this process: ``with DataDirectoryLock(path): ...``.

    Creates the directory if needed. Raises :class:`DataDirectoryInUse` at once
    (never waits) when another process holds it.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirectoryInUse(self.data_dir, _read_pid(self.data_dir / LOCK_NAME)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> DataDirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
