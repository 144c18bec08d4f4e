"""Byte counts written the way people write them in a config: 104857600, "100MiB", "64 MB"."""

from __future__ import annotations

import re
from typing import Any

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
               "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
               "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4}  # fmt: skip


def parse_size(value: Any, key: str) -> int:
    """A non-negative byte count; ValueError naming ``key`` and the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(f'{key}: expected a byte count like 104857600 or "100MiB", got {value!r}')
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        n = int(m[1]) * _SIZE_UNITS[(m[2] or "").lower()]
    else:
        raise ValueError(f'{key}: expected a byte count like 104857600 or "100MiB", got {value!r}')
    if n < 0:
        raise ValueError(f"{key}: must not be negative, got {value!r}")
    return n
