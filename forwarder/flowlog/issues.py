"""Bad input is reported with where it was, counted, and skipped: never fatal for the input around it."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from forwarder.flowlog.model import utf8_safe

log = logging.getLogger("forwarder.parse")

_MAX_TEXT = 160


@dataclass(frozen=True, slots=True)
class ParseIssue:
    source: str
    offset: int  # byte offset in the blob or file where the bad input starts
    reason: str  # short, stable category used for counting ("bad tuple field count", ...)
    detail: str = ""
    record_index: int | None = None
    text: str = ""

    def describe(self) -> str:
        where = f"source={self.source} offset={self.offset}"
        if self.record_index is not None:
            where += f" record={self.record_index}"
        msg = f"Skipped bad input: {self.reason}"
        if self.detail:
            msg += f" ({self.detail})"
        msg += f"; {where}"
        if self.text:
            msg += f" text={self.text!r}"
        return msg


def excerpt(text: str | bytes) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else utf8_safe(text)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


@dataclass
class IssueLog:
    """Collects parse issues: counts every one, logs the first few per reason so a flood stays readable."""

    log_first: int = 20
    counts: Counter[str] = field(default_factory=Counter)
    first: list[ParseIssue] = field(default_factory=list)

    def report(self, issue: ParseIssue) -> None:
        self.counts[issue.reason] += 1
        n = self.counts[issue.reason]
        if n <= self.log_first:
            self.first.append(issue)
            log.warning(issue.describe())
        elif n == self.log_first + 1:
            log.warning("Further issues of this kind are counted but not logged: reason=%r", issue.reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "skipped=0"
        parts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
        return f"skipped={self.total} ({parts})"
