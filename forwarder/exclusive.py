"""One process per file: an advisory lock on a sibling ``.<name>.lock``, released by the kernel when the
process ends, however it ends (SIGKILL included), so a crash never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def hold_exclusive(path: Path) -> int | None:
    """Lock ``path`` for this process: the lock's descriptor (keep it open), or None if another process holds it.

    Raises OSError if the lock file cannot be created.
    """
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
