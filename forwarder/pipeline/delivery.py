"""The sinks' side of the pipeline: route each chunk to every sink (filtered, aggregated and formatted as
that sink asks), hand the results to the sinks' lanes, and turn their confirmations into acknowledgements.

Sinks that share a format, a filter and an aggregation share a **route**, so a chunk is filtered and
formatted once per route, not once per sink. A route with aggregation keeps one open window per blob:
the chunks of a window are acknowledged for its sinks only once the window's aggregates are delivered,
so a blob's checkpoint never moves past tuples whose aggregate has not been delivered.

Formatters keep caches and are not shared between threads: each reader thread gets its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from forwarder.flowlog.core import CoreEvents
from forwarder.flowlog.model import Event, FlowEvent
from forwarder.formats import formatter
from forwarder.formats.aggregates import format_aggregates
from forwarder.formats.base import Formatter
from forwarder.pipeline.acks import AckTracker, Ticket
from forwarder.pipeline.budget import Budget
from forwarder.pipeline.concat import join
from forwarder.pipeline.lane import LaneStats, Piece, SinkLane
from forwarder.pipeline.lines import JoinedLines, line_bytes
from forwarder.pipeline.reader import Chunk
from forwarder.reduce.aggregate import AggregateSpec, WindowAggregator
from forwarder.reduce.config import Reduction
from forwarder.sinks.base import Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter

# Batching of sinks that do not say their own limits (files, syslog): big enough that an fsync or a
# write covers many NICs, small enough to bound what one batch holds.
DEFAULT_BATCH_EVENTS = 10_000
DEFAULT_BATCH_BYTES = 8 << 20
DEFAULT_LINGER = 1.0
EVENT_BYTES = 100  # what a queued event costs besides its line, roughly
# A window closes when a record of a later window arrives, or this long after its end by the clock when
# none does (a NIC gone quiet, the last window of an hour): Azure commits a minute's block within ~2 minutes.
WINDOW_GRACE_MS = 180_000


@dataclass
class Route:
    format: str
    reduction: Reduction
    sinks: list[Sink]
    lanes: list[SinkLane] = field(default_factory=list)
    windows: dict[str, _OpenWindow] = field(default_factory=dict)  # blob key -> its open window
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _OpenWindow:
    aggregator: WindowAggregator
    tickets: list[Ticket] = field(default_factory=list)  # chunks whose acknowledgement waits for the window


class Delivery:
    """Every sink behind its own lane; a chunk counts as delivered once every sink confirmed it."""

    def __init__(
        self,
        sinks: list[Sink],
        dead_letter: DeadLetter | None = None,
        linger: float = DEFAULT_LINGER,
        reductions: Sequence[Reduction] | None = None,
    ):
        self.sinks = sinks
        self.dead_letter = dead_letter
        self.linger = linger
        self.reductions = list(reductions) if reductions is not None else [Reduction() for _ in sinks]
        self.retries: Counter[str] = Counter()  # bumped by RetryPolicy.on_retry
        self.filtered: Counter[tuple[str, str]] = Counter()  # (sink, reason) -> tuples dropped
        self.aggregated: Counter[str] = Counter()  # sink -> aggregates produced
        self.healthy: dict[str, bool] = {s.name: True for s in sinks}
        self.last_activity = time.monotonic()
        self.fatal: SinkFatal | None = None
        self.halt = threading.Event()  # set when a sink failed for good: the service stops
        self.tracker: AckTracker | None = None
        self.budget = Budget(1 << 62)
        self.routes = _routes(sinks, self.reductions)
        self._local = threading.local()
        self._lanes: list[SinkLane] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._outstanding = 0  # pieces handed to lanes and not yet confirmed or failed

    @property
    def formats(self) -> list[str]:
        return sorted({r.format for r in self.routes})

    @property
    def cut_ms(self) -> int | None:
        """Where the reader must end chunks for the aggregating routes (None: no aggregation)."""
        from forwarder.reduce.aggregate import cut_ms

        return cut_ms([r.reduction.aggregate for r in self.routes if r.reduction.aggregate])

    def attach(self, tracker: AckTracker, budget: Budget) -> None:
        """The service's acknowledgement tracker and byte budget (before the first chunk)."""
        self.tracker = tracker
        self.budget = budget
        budget.on_wait = self.flush
        tracker.on_fail = self._blob_failed

    # -- lanes ----------------------------------------------------------------------------------

    def _started(self) -> list[SinkLane]:
        """The sinks' lanes, started on first use."""
        with self._lock:
            if not self._lanes:
                for route in self.routes:
                    route.lanes = [self._lane(s) for s in route.sinks]
                    self._lanes += route.lanes
            return self._lanes

    def _lane(self, sink: Sink) -> SinkLane:
        return SinkLane(
            sink,
            max_events=int(getattr(sink, "batch_max_events", DEFAULT_BATCH_EVENTS)),
            max_bytes=int(getattr(sink, "batch_max_bytes", DEFAULT_BATCH_BYTES)),
            linger=float(getattr(sink, "linger", self.linger)),
            max_in_flight=int(getattr(sink, "max_in_flight", 1)),
            on_fatal=self._on_fatal,
            on_result=self._on_result,
            on_piece=self._piece_done,
        )

    @property
    def stats(self) -> dict[str, LaneStats]:
        return {lane.sink.name: lane.stats for lane in self._lanes} or {s.name: LaneStats() for s in self.sinks}

    # -- the reader threads' side ---------------------------------------------------------------

    def _formatter(self, name: str) -> Formatter:
        mine: dict[str, Formatter] | None = getattr(self._local, "formatters", None)
        if mine is None:
            mine = self._local.formatters = {}
        f = mine.get(name)
        if f is None:
            f = mine[name] = formatter(name)
        return f

    def take(self, chunk: Chunk, estimate: int) -> Ticket:
        """Route a chunk to every sink: its ticket, already failed if the blob failed earlier in this poll.
        ``estimate``: the bytes the reader took from the budget for it, settled here against what is held."""
        assert self.tracker is not None, "attach() first"
        lanes = self._started()
        count = chunk.count
        ticket = self.tracker.add(chunk.key, chunk.checkpoint, count, _newest_ms(chunk.parts), len(lanes))
        held = 0
        if not ticket.failed:
            for route in self.routes:
                held += self._route(route, chunk, ticket)
        self.budget.adjust(held - estimate)
        return ticket

    def _route(self, route: Route, chunk: Chunk, ticket: Ticket) -> int:
        """One route's share of a chunk; returns the budget bytes its pieces hold."""
        parts: Sequence[Sequence[FlowEvent]] = chunk.parts
        flt = route.reduction.filter
        if flt is not None:
            kept_parts = []
            for part in parts:
                kept, dropped = flt.apply(part)
                if dropped:
                    for sink in route.sinks:
                        for reason, n in dropped.items():
                            self.filtered[(sink.name, reason)] += n
                if len(kept):
                    kept_parts.append(kept)
            parts = kept_parts
        spec = route.reduction.aggregate
        if spec is not None:
            return self._aggregate(route, spec, chunk, parts, ticket)
        count = sum(map(len, parts))
        if not count:
            for _ in route.sinks:
                self._ack(ticket)  # nothing left for these sinks: delivered, as far as the checkpoint goes
            return 0
        f = self._formatter(route.format)
        events = join([(p, 0, len(p)) for p in parts])
        if all(type(p) is CoreEvents for p in parts):
            # The compiled core renders straight into one buffer: sinks that write lines as they are (files)
            # take it without joining and encoding one str per event again.
            data = b"".join([f.format_joined(p) for p in parts]) if len(parts) > 1 else f.format_joined(parts[0])
            return self._put(route, events, JoinedLines(data, count), [ticket], chunk.key)
        lines: list[str] = []
        for part in parts:
            lines += f.format_many(part)
        return self._put(route, events, lines, [ticket], chunk.key)

    def _aggregate(
        self, route: Route, spec: AggregateSpec, chunk: Chunk, parts: Sequence[Sequence[FlowEvent]], ticket: Ticket
    ) -> int:
        held = 0
        # Records without a time of their own fall in the window of their first tuple (or the open one).
        at = chunk.window_ms if chunk.window_ms is not None else _first_ms(chunk.parts)
        with route.lock:
            if ticket.failed:
                return 0
            window = route.windows.get(chunk.key)
            if window is not None and at is not None and spec.window_of(at) != window.aggregator.window_ms:
                held += self._close(route, chunk.key, window)
                window = None
            if window is None:
                start = spec.window_of(at) if at is not None else 0
                aggregator = WindowAggregator(spec, chunk.key, start, chunk.first_record or 0)
                window = route.windows[chunk.key] = _OpenWindow(aggregator)
            for part in parts:
                window.aggregator.add(part)
            window.tickets.append(ticket)
        return held

    def _close(self, route: Route, key: str, window: _OpenWindow) -> int:
        """Close a blob's open window (route lock held): its aggregates go to the route's lanes, and their
        confirmation acknowledges every chunk of the window."""
        route.windows.pop(key, None)
        aggs = window.aggregator.close()
        if not aggs:
            for ticket in window.tickets:
                for _ in route.sinks:
                    self._ack(ticket)
            return 0
        for sink in route.sinks:
            self.aggregated[sink.name] += len(aggs)
        lines = format_aggregates(route.format, aggs)
        return self._put(route, aggs, lines, window.tickets, key)

    def close_windows(self, now_ms: int | None = None) -> None:
        """Close every open window whose end is more than the grace in the past (or all, ``now_ms`` None:
        ``run --once`` has read all there is)."""
        for route in self.routes:
            if route.reduction.aggregate is None:
                continue
            held = 0
            length = route.reduction.aggregate.window_ms
            with route.lock:
                for key, window in list(route.windows.items()):
                    if now_ms is None or window.aggregator.window_ms + length + WINDOW_GRACE_MS <= now_ms:
                        held += self._close(route, key, window)
            self.budget.adjust(held)

    def _put(self, route: Route, events: Sequence[Event], lines: Sequence[str], tickets: list[Ticket], key: str) -> int:
        """Hand the lines to every lane of the route; returns the budget bytes the pieces hold (released as each
        piece is confirmed or fails)."""
        size = len(lines.data) if isinstance(lines, JoinedLines) else line_bytes(lines, 0, len(lines))
        budget = size + len(lines) * EVENT_BYTES
        with self._idle:
            self._outstanding += len(route.lanes)
        for lane in route.lanes:
            lane.put(Piece(events, lines, size, budget, tickets, key))
        return budget * len(route.lanes)

    def _piece_done(self, lane: SinkLane, piece: Piece, error: str | None) -> None:
        assert self.tracker is not None
        for ticket in piece.tickets:
            if error is None:
                self._ack(ticket)
            else:
                self.tracker.fail(ticket, error)
        self.budget.release(piece.budget)
        with self._idle:
            self._outstanding -= 1
            self._idle.notify_all()

    def _ack(self, ticket: Ticket) -> None:
        assert self.tracker is not None
        self.tracker.ack(ticket)

    def _blob_failed(self, key: str) -> None:
        """A chunk of the blob failed in some sink (the tracker failed all its chunks): what its open windows
        hold is read again from the checkpoint, so it is dropped here."""
        for route in self.routes:
            if route.reduction.aggregate is not None:
                with route.lock:
                    route.windows.pop(key, None)

    def flush(self) -> None:
        for lane in self._lanes:
            lane.flush()

    def wait_idle(self, abandon: Callable[[], bool], poll: float = 0.2) -> bool:
        """Wait until every piece handed to a lane is confirmed or failed; False if ``abandon()`` turned true."""
        self.flush()
        with self._idle:
            while self._outstanding:
                if abandon():
                    return False
                self._idle.wait(poll)
            return True

    def open_windows(self) -> int:
        return sum(len(r.windows) for r in self.routes)

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


def _routes(sinks: list[Sink], reductions: list[Reduction]) -> list[Route]:
    routes: dict[tuple[object, ...], Route] = {}
    for sink, red in zip(sinks, reductions, strict=True):
        key = (sink.format, red.filter_key if red.filter else None, red.aggregate)
        route = routes.get(key)
        if route is None:
            route = routes[key] = Route(sink.format, red, [])
        route.sinks.append(sink)
    return list(routes.values())


def _first_ms(parts: Sequence[Sequence[Event]]) -> int | None:
    for part in parts:
        if len(part):
            return part[0].timestamp_ms
    return None


def _newest_ms(parts: Sequence[Sequence[Event]]) -> int:
    """The time of the last event of a chunk (for the lag metric): events come in the blob's order."""
    for part in reversed(parts):
        if len(part):
            return part[-1].timestamp_ms
    return 0
