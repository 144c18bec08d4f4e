"""Append-only newline-delimited files after a crash: a write cut short leaves a partial last line.

Whatever was being appended had not been confirmed (its chunk is sent again after the restart),
so the partial line is cut off rather than left to merge with the next entry into one bad line.
"""

from __future__ import annotations

import os
from pathlib import Path

_TAIL = 1 << 20  # bytes read from the end to find the last newline; longer lines take a second read


def trim_torn_line(path: Path) -> int:
    """Cut everything after the last newline of ``path`` and fsync; the number of bytes removed (0 if none)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if not size:
        return 0
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        start = max(0, size - _TAIL)
        f.seek(start)
        cut = f.read().rfind(b"\n")
        if cut >= 0 or start == 0:
            keep = start + cut + 1
        else:  # one line longer than the tail window: find its start the slow way
            f.seek(0)
            keep = f.read().rfind(b"\n") + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep
