"""The sinks' side of the pipeline: format each chunk once per format, hand it to every sink's lane,
and keep what the metrics and health checks read (per-sink counters, retries, health).

Formatters keep caches and are not shared between threads: each reader thread gets its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

from forwarder.flowlog.model import FlowEvent
from forwarder.formats import formatter
from forwarder.formats.base import Formatter
from forwarder.pipeline.acks import AckTracker, Ticket
from forwarder.pipeline.lane import LaneStats, Piece, SinkLane
from forwarder.sinks.base import Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter

# Batching of sinks that do not say their own limits (files, syslog): big enough that an fsync or a
# write covers many NICs, small enough to bound what one batch holds.
DEFAULT_BATCH_EVENTS = 10_000
DEFAULT_BATCH_BYTES = 8 << 20
DEFAULT_LINGER = 1.0


class Delivery:
    """Every sink behind its own lane; a chunk counts as delivered once every lane confirmed it."""

    def __init__(self, sinks: list[Sink], dead_letter: DeadLetter | None = None, linger: float = DEFAULT_LINGER):
        self.sinks = sinks
        self.dead_letter = dead_letter
        self.linger = linger
        self.formats = sorted({s.format for s in sinks})
        self.retries: Counter[str] = Counter()  # bumped by RetryPolicy.on_retry
        self.healthy: dict[str, bool] = {s.name: True for s in sinks}
        self.last_activity = time.monotonic()
        self.fatal: SinkFatal | None = None
        self.halt = threading.Event()  # set when a sink failed for good: the service stops
        self._local = threading.local()
        self._lanes: list[SinkLane] = []
        self._lock = threading.Lock()

    # -- lanes ----------------------------------------------------------------------------------

    def lanes(self, tracker: AckTracker) -> list[SinkLane]:
        """The sinks' lanes, started on first use."""
        with self._lock:
            if not self._lanes:
                self._lanes = [self._lane(s, tracker) for s in self.sinks]
            return self._lanes

    def _lane(self, sink: Sink, tracker: AckTracker) -> SinkLane:
        return SinkLane(
            sink,
            tracker,
            max_events=int(getattr(sink, "batch_max_events", DEFAULT_BATCH_EVENTS)),
            max_bytes=int(getattr(sink, "batch_max_bytes", DEFAULT_BATCH_BYTES)),
            linger=float(getattr(sink, "linger", self.linger)),
            max_in_flight=int(getattr(sink, "max_in_flight", 1)),
            on_fatal=self._on_fatal,
            on_result=self._on_result,
        )

    @property
    def stats(self) -> dict[str, LaneStats]:
        return {lane.sink.name: lane.stats for lane in self._lanes} or {s.name: LaneStats() for s in self.sinks}

    # -- the reader threads' side ---------------------------------------------------------------

    def format(self, events: Sequence[FlowEvent]) -> dict[str, list[str]]:
        """The chunk's lines in every configured format, with this thread's formatters."""
        mine: dict[str, Formatter] | None = getattr(self._local, "formatters", None)
        if mine is None:
            mine = self._local.formatters = {name: formatter(name) for name in self.formats}
        return {name: f.format_many(events) for name, f in mine.items()}

    def submit(self, events: Sequence[FlowEvent], lines: dict[str, list[str]], ticket: Ticket,
               tracker: AckTracker) -> None:  # fmt: skip
        for lane in self.lanes(tracker):
            fmt_lines = lines[lane.sink.format]
            lane.put(Piece(events, fmt_lines, sum(map(len, fmt_lines)) + len(fmt_lines), ticket))

    def flush(self) -> None:
        for lane in self._lanes:
            lane.flush()

    # -- health and counters --------------------------------------------------------------------

    def count_retry(self, sink: str) -> None:
        self.retries[sink] += 1
        self.healthy[sink] = False
        self.last_activity = time.monotonic()  # retrying through an outage is alive, not stalled

    def dead_lettered(self) -> dict[str, int]:
        counts = self.dead_letter.counts if self.dead_letter else {}
        return {s.name: counts.get(s.name, 0) for s in self.sinks}

    def _on_result(self, sink: str, ok: bool) -> None:
        self.healthy[sink] = ok
        self.last_activity = time.monotonic()

    def _on_fatal(self, exc: SinkFatal) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.halt.set()

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        for s in self.sinks:
            s.open()

    def reopen(self) -> None:
        if not self._lanes:  # nothing sent yet: no batch can be in the way
            for s in self.sinks:
                s.reopen()
        for lane in self._lanes:
            lane.request_reopen()

    def close(self, timeout: float | None = 5.0) -> None:
        for lane in self._lanes:
            lane.close(timeout)
        for s in self.sinks:
            s.close()
