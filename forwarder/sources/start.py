"""The ``[source] start`` setting, shared by every source."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

Start = Literal["earliest", "latest"] | datetime


def parse_start(value: Any) -> Start:
    """ "earliest", "latest", or an RFC 3339 time (a time without offset is taken as UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if value in ("earliest", "latest"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            pass
        else:
            return t if t.tzinfo else t.replace(tzinfo=UTC)
    raise ValueError(f"source.start must be 'earliest', 'latest' or an RFC 3339 time (2026-11-25T10:00:00Z): {value!r}")
