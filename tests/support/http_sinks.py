"""What the Splunk HEC, Elasticsearch and generic HTTP sink tests share: the sample events, a
dead-letter file per test, a retry policy that does not make tests wait, and opening a sink from
its config table.

The fixtures are named ``events`` and ``dead_letter``; import ``events_fixture`` and
``dead_letter_fixture`` into the test module to use them (under those names ruff does not read a
test's ``events`` parameter as a redefinition of the import).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from forwarder.flowlog.model import FlowEvent
from forwarder.sinks.base import Sink
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetryPolicy
from tests.support.http_events import sample_events

SinkFromConfig = Callable[[Mapping[str, Any], str, DeadLetter, RetryPolicy], Sink]


@pytest.fixture(name="events", scope="module")
def events_fixture() -> list[FlowEvent]:
    return sample_events(tuples_per_minute=5, minutes=10)  # 4 blobs x 10 records x 5 tuples = 200 events


@pytest.fixture(name="dead_letter")
def dead_letter_fixture(tmp_path: Path) -> DeadLetter:
    return DeadLetter(tmp_path / "dead-letter.ndjson")


def fast_retry(**kw: Any) -> RetryPolicy:
    return RetryPolicy(initial=0.01, maximum=0.2, **kw)


def open_sink(
    from_config: SinkFromConfig,
    table: Mapping[str, Any],
    name: str,
    dead_letter: DeadLetter,
    retry: RetryPolicy | None = None,
) -> Sink:
    sink = from_config(table, name, dead_letter, retry or fast_retry())
    sink.open()
    return sink


def dead_entries(dead_letter: DeadLetter) -> list[dict[str, Any]]:
    """The dead-letter file's entries, oldest first."""
    if dead_letter.path is None or not dead_letter.path.exists():
        return []
    return [json.loads(line) for line in dead_letter.path.read_text().splitlines()]
