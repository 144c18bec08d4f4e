"""Run the same input through the compiled core and through the pure-Python reference, in one process.

The compiled core is picked at import time (forwarder.flowlog.core); ``reference_only`` hides it from the
normaliser and the big-record parser, so that batches are plain lists of FlowEvents and every formatter
takes its Python path: exactly what a machine without the extension (or NSG_FORWARDER_PURE_PYTHON=1) runs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass

import pytest

from forwarder.flowlog import bigrecord, normalise
from forwarder.flowlog.core import core
from forwarder.flowlog.issues import IssueLog, ParseIssue
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.stream import FileConverter, NotAFlowLog
from forwarder.formats import FORMATS as ALL_FORMATS
from forwarder.formats import formatter

needs_core = pytest.mark.skipif(core is None, reason="the compiled core is not built (or NSG_FORWARDER_PURE_PYTHON=1)")


@contextmanager
def reference_only() -> Iterator[None]:
    saved = normalise.core, bigrecord.core
    normalise.core = bigrecord.core = None
    try:
        yield
    finally:
        normalise.core, bigrecord.core = saved


@dataclass
class Outcome:
    """Everything a user sees of one conversion: lines per format, the joined bytes, events and issues."""

    lines: dict[str, list[str]]
    joined: dict[str, bytes]
    events: list[tuple[object, ...]]
    issues: list[ParseIssue]
    counts: dict[str, int]
    refused: str | None
    batch_sizes: list[int]


def event_values(e: FlowEvent) -> tuple[object, ...]:
    """A FlowEvent as comparable values (contexts compare by identity, so by their fields here)."""
    return (astuple(e.ctx), *e[1:])


def convert(data: bytes, source: str, formats: Sequence[str] = ALL_FORMATS, chunk: int = 1 << 20) -> Outcome:
    issues = IssueLog(log_first=1 << 30)  # every issue kept for comparison (and logged: keep the logger quiet)
    logging.getLogger("forwarder.parse").setLevel(logging.ERROR)
    fmts = {name: formatter(name) for name in formats}
    lines: dict[str, list[str]] = {name: [] for name in formats}
    joined = {name: b"" for name in formats}
    events: list[tuple[object, ...]] = []
    sizes: list[int] = []
    refused = None
    try:
        for batch in FileConverter(io.BytesIO(data), source, issues, chunk).events():
            sizes.append(len(batch))
            for name, fmt in fmts.items():
                lines[name].extend(fmt.format_many(batch))
                joined[name] += fmt.format_joined(batch)
            events.extend(event_values(e) for e in batch)
    except NotAFlowLog as exc:
        refused = str(exc)
    finally:
        logging.getLogger("forwarder.parse").setLevel(logging.NOTSET)
    return Outcome(lines, joined, events, list(issues.first), dict(issues.counts), refused, sizes)


def both(data: bytes, source: str = "acct/insights-logs/blob/PT1H.json", **kw: object) -> tuple[Outcome, Outcome]:
    compiled = convert(data, source, **kw)  # type: ignore[arg-type]
    with reference_only():
        reference = convert(data, source, **kw)  # type: ignore[arg-type]
    return compiled, reference


def assert_same(compiled: Outcome, reference: Outcome) -> None:
    assert compiled.refused == reference.refused
    assert compiled.issues == reference.issues
    assert compiled.counts == reference.counts
    assert compiled.batch_sizes == reference.batch_sizes
    assert compiled.events == reference.events
    for name, want in reference.lines.items():
        got = compiled.lines[name]
        assert len(got) == len(want), f"{name}: {len(got)} lines, reference {len(want)}"
        for n, (a, b) in enumerate(zip(got, want, strict=True)):
            assert a == b, f"{name} line {n} differs:\ncompiled:  {a}\nreference: {b}"
        assert compiled.joined[name] == reference.joined[name]
        assert compiled.joined[name] == "".join(line + "\n" for line in want).encode()
