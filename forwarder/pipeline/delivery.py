"""Fan one chunk of events out to every sink and return only when all of them confirmed it."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from forwarder.flowlog.model import FlowEvent
from forwarder.formats import formatter
from forwarder.formats.base import Formatter
from forwarder.sinks.base import Batch, Sink
from forwarder.sinks.deadletter import DeadLetter


@dataclass
class SinkCounters:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0


@dataclass
class Delivery:
    """Formats each chunk once per distinct format and sends it to all sinks in parallel.

    A chunk counts as delivered only when every sink's ``send`` returned; a slow or down sink
    therefore holds back the checkpoint (and, through it, reading) for all of them. That is the
    price of at-least-once with one checkpoint per blob, and it is what keeps an outage from
    becoming loss.
    """

    sinks: list[Sink]
    dead_letter: DeadLetter | None = None
    counters: dict[str, SinkCounters] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)  # bumped by RetryPolicy.on_retry
    healthy: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._formatters: dict[str, Formatter] = {s.format: formatter(s.format) for s in self.sinks}
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.sinks)), thread_name_prefix="sink")
        self.counters = {s.name: SinkCounters() for s in self.sinks}
        self.healthy = {s.name: True for s in self.sinks}
        self.last_activity = time.monotonic()

    def count_retry(self, sink: str) -> None:
        self.retries[sink] += 1
        self.healthy[sink] = False
        self.last_activity = time.monotonic()  # retrying through an outage is alive, not stalled

    def dead_lettered(self) -> dict[str, int]:
        counts = self.dead_letter.counts if self.dead_letter else {}
        return {s.name: counts.get(s.name, 0) for s in self.sinks}

    def deliver(self, events: list[FlowEvent], source: str, start: int, end: int) -> None:
        if not events:
            return
        lines = {name: f.format_many(events) for name, f in self._formatters.items()}
        batches = {s.name: Batch(events, lines[s.format], source, start, end) for s in self.sinks}
        if len(self.sinks) == 1:
            self._send(self.sinks[0], batches[self.sinks[0].name])
        else:
            futures = [self._pool.submit(self._send, s, batches[s.name]) for s in self.sinks]
            errors = [f.exception() for f in futures]  # waits for all: no sink is left mid-send
            for exc in errors:
                if exc is not None:
                    raise exc

    def _send(self, sink: Sink, batch: Batch) -> None:
        began = time.perf_counter()
        try:
            sink.send(batch)
        except BaseException:
            self.healthy[sink.name] = False
            raise
        self.healthy[sink.name] = True
        c = self.counters[sink.name]
        c.events += len(batch.events)
        c.batches += 1
        c.seconds += time.perf_counter() - began

    def open(self) -> None:
        for s in self.sinks:
            s.open()

    def reopen(self) -> None:
        for s in self.sinks:
            s.reopen()

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
