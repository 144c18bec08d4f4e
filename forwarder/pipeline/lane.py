"""One sink's lane: a queue of formatted chunks from any blob, cut into batches, sent with up to
``max_in_flight`` requests under way, each chunk's part acknowledged back to its ticket.

A batch closes when it holds ``max_events`` events or ``max_bytes`` bytes, when ``linger`` seconds
passed since its first event arrived, or at once when the pipeline flushes (the end of a poll: nothing
more is coming, so waiting would only add latency). One HEC or ``_bulk`` request thus carries the new
events of many NICs. Stream sinks (files, syslog) get one sender, so their output stays in order.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from forwarder.flowlog.model import Event
from forwarder.pipeline.acks import Ticket
from forwarder.pipeline.concat import Run, join
from forwarder.pipeline.lines import JoinedLines
from forwarder.sinks.base import Batch, Sink, SinkFatal
from forwarder.sinks.retry import Interrupted

log = logging.getLogger("forwarder.pipeline")


def fit(lines: Sequence[str], start: int, stop: int, limit: int, at_least_one: bool) -> tuple[int, int]:
    """The longest run of lines [start, stop') within ``limit`` bytes (one line at least when ``at_least_one``:
    a line bigger than a batch travels alone), and its size."""
    if isinstance(lines, JoinedLines):
        base = lines.offset(start)
        ends = lines.ends()
        end = bisect_right(ends, base + limit, start, stop)  # lines [start, end) end within the limit
        if end == start and at_least_one:
            end = start + 1
        return end, lines.offset(end) - base
    size = 0
    for i in range(start, stop):
        n = len(lines[i]) + 1
        if size + n > limit and (i > start or not at_least_one):
            return i, size
        size += n
    return stop, size


class Piece:
    """Events in one sink's format (a chunk's, or a closed window's aggregates), the tickets their
    confirmation acknowledges, and how much of it went into batches so far."""

    __slots__ = ("budget", "events", "failed", "key", "lines", "out", "size", "taken", "tickets")

    def __init__(
        self, events: Sequence[Event], lines: Sequence[str], size: int, budget: int, tickets: list[Ticket], key: str
    ):
        self.events = events
        self.lines = lines
        self.size = size  # bytes of its lines with a newline each: what batches are measured in
        self.budget = budget  # what it holds of the pipeline's byte budget
        self.tickets = tickets
        self.key = key  # the blob it came from
        self.taken = 0  # events [0, taken) are in batches
        self.out = 0  # batches holding part of this piece that are not confirmed yet
        self.failed = False  # a batch holding part of it failed: it is reported once, and never confirmed


@dataclass
class LaneStats:
    events: int = 0  # confirmed by the sink
    batches: int = 0
    seconds: float = 0.0  # spent in send()
    queued_events: int = 0
    in_flight: int = 0  # batches being sent now
    last_batch_events: int = 0


class SinkLane:
    def __init__(
        self,
        sink: Sink,
        *,
        max_events: int,
        max_bytes: int,
        linger: float,
        max_in_flight: int,
        on_fatal: Callable[[SinkFatal], None],
        on_result: Callable[[str, bool], None],
        on_piece: Callable[[SinkLane, Piece, str | None], None],
    ):
        self.sink = sink
        self.on_piece = on_piece  # a piece is confirmed (None) or failed (why), once per piece
        self.max_events = max(1, max_events)
        self.max_bytes = max(1, max_bytes)
        self.linger = max(0.0, linger)
        self.max_in_flight = max(1, max_in_flight)
        self.on_fatal = on_fatal
        self.on_result = on_result  # (sink name, delivered) after each batch: health and activity
        self.stats = LaneStats()
        self._queue: deque[Piece] = deque()
        self._queued_bytes = 0
        self._first_at = 0.0  # when the oldest queued event arrived
        self._flushing = False
        self._closing = False
        self._reopen = threading.Event()
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(self.max_in_flight)
        self._senders = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix=f"send-{sink.name}")
        self._thread = threading.Thread(target=self._run, name=f"lane-{sink.name}", daemon=True)
        self._thread.start()

    # -- what the pipeline calls -------------------------------------------------------------------

    def put(self, piece: Piece) -> None:
        with self._cond:
            if not self._queue:
                self._first_at = time.monotonic()
            self._queue.append(piece)
            self._queued_bytes += piece.size
            self.stats.queued_events += len(piece.events)
            self._cond.notify_all()

    def flush(self) -> None:
        """Send what is queued without waiting for more (until the queue has been empty once)."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    def request_reopen(self) -> None:
        """SIGHUP: reopen the sink's outputs between batches, when none is being sent."""
        with self._cond:
            self._reopen.set()
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, then stop; ``timeout`` bounds the wait (the process is ending anyway)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._senders.shutdown(wait=timeout is None, cancel_futures=timeout is not None)

    # -- the lane's thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._slots.acquire()  # while every slot is busy, the queue fills and the next batch gets fuller
            if self._reopen.is_set():
                self._reopen_now()
            batch = self._next_batch()
            if batch is None:
                self._slots.release()
                if self._reopen.is_set():
                    continue
                return
            self._senders.submit(self._send, *batch)

    def _next_batch(self) -> tuple[Batch, list[Piece]] | None:
        with self._cond:
            while True:
                if self._reopen.is_set() and not self._queue:
                    return None
                if self._queue:
                    full = self.stats.queued_events >= self.max_events or self._queued_bytes >= self.max_bytes
                    wait = self._first_at + self.linger - time.monotonic()
                    if full or self._flushing or self._closing or wait <= 0 or self._reopen.is_set():
                        return self._take()
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._flushing = False
                    self._cond.wait()

    def _take(self) -> tuple[Batch, list[Piece]]:
        """Cut the next batch from the queue's head (called with the lock held)."""
        runs: list[Run[Event]] = []
        line_runs: list[Run[str]] = []
        spans: list[memoryview] | None = []
        pieces: list[Piece] = []
        events = nbytes = 0
        while self._queue and events < self.max_events and nbytes < self.max_bytes:
            piece = self._queue[0]
            start = piece.taken
            stop = min(len(piece.events), start + self.max_events - events)
            if start == 0 and stop == len(piece.events) and nbytes + piece.size <= self.max_bytes:
                size = piece.size
            else:
                stop, size = fit(piece.lines, start, stop, self.max_bytes - nbytes, at_least_one=not events)
            if stop == start:
                break
            runs.append((piece.events, start, stop))
            line_runs.append((piece.lines, start, stop))
            if spans is not None and isinstance(piece.lines, JoinedLines):
                spans.append(piece.lines.span(start, stop))
            else:
                spans = None
            piece.taken = stop
            piece.out += 1
            pieces.append(piece)
            events += stop - start
            nbytes += size
            self._queued_bytes -= size
            if stop == len(piece.events):
                self._queue.popleft()
        self.stats.queued_events -= events
        self._first_at = time.monotonic() if self._queue else 0.0
        keys = {p.key for p in pieces}
        source = next(iter(keys)) if len(keys) == 1 else f"{len(keys)} blobs"
        return Batch(join(runs), join(line_runs), source, 0, 0, spans), pieces

    def _reopen_now(self) -> None:
        """Hold every slot (so no batch is being sent), reopen, let go."""
        self._reopen.clear()
        for _ in range(self.max_in_flight - 1):
            self._slots.acquire()
        try:
            log.info("Reopening sink outputs (SIGHUP): sink=%s", self.sink.name)
            self.sink.reopen()
        except Exception as exc:
            log.error("Could not reopen the sink's outputs: sink=%s error=%s", self.sink.name, exc)
        finally:
            for _ in range(self.max_in_flight - 1):
                self._slots.release()

    def _send(self, batch: Batch, pieces: list[Piece]) -> None:
        began = time.perf_counter()
        with self._cond:
            self.stats.in_flight += 1
        try:
            self.sink.send(batch)
        except Interrupted:
            return  # shutting down: the chunks stay unconfirmed and are sent again after the restart
        except SinkFatal as exc:
            self.on_result(self.sink.name, False)
            self.on_fatal(exc)
            return
        except Exception as exc:
            self.on_result(self.sink.name, False)
            log.error(
                "A sink could not deliver a batch; its blobs are read again from their checkpoints next poll: "
                "sink=%s events=%d blobs=%s error=%s",
                self.sink.name,
                len(batch.lines),
                batch.source,
                exc,
            )
            with self._cond:
                newly = [p for p in pieces if not p.failed]
                for piece in newly:
                    piece.failed = True
            for piece in newly:
                self.on_piece(self, piece, f"sink {self.sink.name}: {exc}")
            return
        finally:
            with self._cond:
                self.stats.in_flight -= 1
            self._slots.release()
        self.on_result(self.sink.name, True)
        done: list[Piece] = []
        with self._cond:
            s = self.stats
            s.events += len(batch.lines)
            s.batches += 1
            s.seconds += time.perf_counter() - began
            s.last_batch_events = len(batch.lines)
            for piece in pieces:
                piece.out -= 1
                if piece.out == 0 and piece.taken == len(piece.events) and not piece.failed:
                    done.append(piece)
        for piece in done:
            self.on_piece(self, piece, None)
