"""The ``[source] start`` setting, shared by every source, and the RFC 3339 times it and ``backfill`` take."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

Start = Literal["earliest", "latest"] | datetime

EXAMPLE = "2026-11-25T10:00:00Z"


def parse_time(value: Any, key: str) -> datetime:
    """An RFC 3339 time with its UTC offset (``Z`` or ``+01:00``); a time without one is refused rather
    than guessed, since the hours read depend on it. ``key`` names the setting in the message."""
    if isinstance(value, datetime):
        t = value
        text = value.isoformat()
    elif isinstance(value, str):
        text = value.strip()
        try:
            t = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
        except ValueError:
            raise ValueError(f"{key}: expected an RFC 3339 time such as {EXAMPLE}, got {value!r}") from None
    else:
        raise ValueError(f"{key}: expected an RFC 3339 time such as {EXAMPLE}, got {value!r}")
    if t.tzinfo is None:
        full = text if len(text) > 10 else f"{text}T00:00:00"  # a date alone
        raise ValueError(
            f"{key}: {text!r} has no UTC offset, and RFC 3339 times need one: write {full}Z for UTC, or add "
            f"the offset of the time zone meant (such as {full}+01:00)"
        )
    return t


def parse_start(value: Any) -> Start:
    """ "earliest", "latest", or an RFC 3339 time with its offset."""
    if value in ("earliest", "latest"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, datetime) or (isinstance(value, str) and value[:1].isdigit()):
        return parse_time(value, "source.start")
    raise ValueError(
        f"source.start: expected 'earliest', 'latest' or an RFC 3339 time such as {EXAMPLE}, got {value!r}"
    )
