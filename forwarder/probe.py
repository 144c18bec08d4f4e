"""What ``validate --connect`` asks of the source and of every sink: reach your endpoint, send no events.

A part that can be checked has ``probe()``: it makes the one or two requests that show the endpoint is
there and accepts the credentials (a listing of one page, a health endpoint, an empty request) and
returns what it found, or raises ``Unreachable`` saying why not in words an operator can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Unreachable(Exception):
    """The endpoint cannot be used as configured; the message says why (never a secret)."""


class Probed(Protocol):
    def probe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    part: str  # "source devstoreaccount1/insights-logs-..." or "sink splunk_hec[1]"
    ok: bool
    detail: str


def probe(part: str, target: object) -> Outcome:
    """Probe one source or sink; a part without ``probe()`` is reported as not checked, not as fine."""
    check = getattr(target, "probe", None)
    if check is None:
        return Outcome(part, True, "not checked: this kind of sink has no connection check")
    try:
        return Outcome(part, True, str(check()))
    except Unreachable as exc:
        return Outcome(part, False, str(exc))
