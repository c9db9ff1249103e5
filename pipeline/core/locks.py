"""One exclusive file lock for every writer that shares a file with other processes.

POSIX `flock` where it exists, `msvcrt.locking` on Windows; imported when a lock is taken, so
importing the tool never fails for want of `fcntl`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created if needed) for the block; waits for other holders."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        _lock(handle)
        try:
            yield
        finally:
            _unlock(handle)


def try_exclusive_lock(handle) -> bool:
    """Take the lock on an open file without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        if sys.platform != "win32":  # never true where msvcrt imports; tells the type checker its API is there
            raise

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        if sys.platform != "win32":  # never true where msvcrt imports; tells the type checker its API is there
            raise

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        return
    fcntl.flock(handle, fcntl.LOCK_EX)


def _unlock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        if sys.platform != "win32":  # never true where msvcrt imports; tells the type checker its API is there
            raise

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(handle, fcntl.LOCK_UN)
