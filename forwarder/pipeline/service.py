"""The service loop: discover the blobs that changed, read many of them at once, let every sink batch
their events, and advance each blob's checkpoint as the acknowledgements come back; poll until stopped.

::

    discover ─▶ read × concurrency ─▶ parse + format ─▶ lane per sink ─▶ batches in flight ─┐
       ▲        (ranged GETs)         (reader threads)   (events of many    (max_in_flight)    │ acks
       │                                                  blobs per batch)                    │
       └──── checkpoint per blob, in order, once every sink confirmed ◀── AckTracker ◀────────┘

A poll ends when everything it read is confirmed (or failed): the checkpoints are then saved and the
next poll starts ``poll_interval`` after this one started. A slow sink fills the byte budget and
pauses reading; a sink that is down holds the poll until it is back (an outage costs time, not events).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from forwarder.checkpoints.store import BlobCheckpoint, CheckpointStore, CheckpointWriteError
from forwarder.flowlog.issues import IssueLog
from forwarder.pipeline.acks import AckTracker, Ticket
from forwarder.pipeline.budget import Budget
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.reader import BlobReader, Chunk
from forwarder.pipeline.shard import Shard
from forwarder.sinks.base import SinkFatal
from forwarder.sinks.retry import Interrupted
from forwarder.sources import blobpath
from forwarder.sources.base import BlobGone, BlobRef, BlobSource, SourceError

log = logging.getLogger("forwarder.service")

DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_BYTES_IN_FLIGHT = 64 << 20
BEHIND_AFTER = 60.0  # a poll longer than this cannot keep up with blobs that change every minute
# What a chunk costs in memory per byte read, before it is formatted: the events, and each format's lines.
_EVENTS_PER_BYTE = 4
_FORMAT_PER_BYTE = 15
_EVENT_BYTES = 200  # a FlowEvent and its strings, roughly


@dataclass
class ServiceStats:
    polls: int = 0
    events_delivered: int = 0
    blob_errors: int = 0
    newest_flow_ms: int = 0  # time of the newest delivered flow (for lag)
    last_poll_end: float = 0.0
    last_poll_seconds: float = 0.0
    last_poll_blobs: int = 0  # blobs read in the last poll
    reading: int = 0  # blobs being read now


class Service:
    def __init__(
        self,
        source: BlobSource,
        store: CheckpointStore,
        delivery: Delivery,
        *,
        start: str = "earliest",
        poll_interval: float = 30.0,
        chunk_bytes: int = 1 << 20,
        checkpoint_interval: float = 0.0,
        retain_days: float = 14.0,
        stop: threading.Event | None = None,
        abort: threading.Event | None = None,
        issues: IssueLog | None = None,
        on_chunk: Callable[[Ticket], None] | None = None,
        on_poll: Callable[[Service], None] | None = None,
        shard: Shard | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_bytes_in_flight: int = DEFAULT_MAX_BYTES_IN_FLIGHT,
    ):
        self.source = source
        self.shard = shard  # this instance's share of the NICs; None: all of them
        self.store = store
        self.delivery = delivery
        self.start = start
        self.poll_interval = poll_interval
        self.checkpoint_interval = checkpoint_interval
        self.retain_seconds = retain_days * 86400
        self.honour_horizon = True  # backfill reads forgotten hours again, on purpose
        self.stop = stop or threading.Event()
        self.abort = abort or self.stop  # in-flight delivery is abandoned once this is set (shutdown grace over)
        self.issues = issues or IssueLog()
        self.reader = BlobReader(source, self.issues, chunk_bytes, cut_ms=delivery.cut_ms)
        self.concurrency = max(1, concurrency)
        self.budget = Budget(max_bytes_in_flight)
        self.tracker = AckTracker(store, self._on_delivered)
        delivery.attach(self.tracker, self.budget)
        # Where each blob's next read starts when it is ahead of the stored checkpoint: chunks read but not yet
        # confirmed (an open aggregation window holds its chunks' acknowledgements for minutes).
        self.cursors: dict[str, BlobCheckpoint] = {}
        self.drain_windows = False  # close every open window at the end of a poll (run --once)
        self.stats = ServiceStats()
        self.on_chunk = on_chunk  # called with each chunk's ticket as its checkpoint is stored, in blob order
        self.on_poll = on_poll  # called after each discovery (readiness, status lines)
        self._first_run = store.empty
        self.heartbeat = time.monotonic()  # moves whenever the loop makes progress (health, watchdog)
        self.poll_began = 0.0  # monotonic start of the poll under way (0 between polls)
        self.last_poll_error = ""
        self.checkpoint_error = ""  # why the last save failed, until one succeeds
        self._checkpoint_error_logged = 0.0
        self._last_save = time.monotonic()
        self._save_lock = threading.Lock()
        self._save_due = threading.Event()
        self._saver: threading.Thread | None = None
        self._fatal: BaseException | None = None  # a source failure no retry can fix, seen by a reader thread
        self._skipped = 0  # blobs whose existing data a first run with start = latest skipped
        self._lock = threading.Lock()

    @property
    def last_alive(self) -> float:
        return max(self.heartbeat, self.delivery.last_activity)

    @property
    def behind(self) -> float:
        """How long the poll under way (or else the last one) took beyond a minute; 0 while keeping up."""
        running = time.monotonic() - self.poll_began if self.poll_began else 0.0
        return max(0.0, max(running, self.stats.last_poll_seconds) - BEHIND_AFTER)

    def reopen(self) -> None:
        """SIGHUP: reopen the sinks' output files between batches (logrotate)."""
        self.delivery.reopen()

    # -- the loop -------------------------------------------------------------------------------

    def run(self, once: bool = False) -> None:
        """Poll until ``stop`` is set (or once). Raises SinkFatal / SourceError, and CheckpointWriteError
        if the checkpoints cannot be saved on the way out."""
        self.drain_windows = once
        try:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    self.poll()
                    self.last_poll_error = ""
                except (SourceError, SinkFatal):
                    raise
                except Exception as exc:
                    if once or self.stats.polls == 0:
                        raise
                    # Storage unreachable for longer than the source's own retries: keep trying, report unready.
                    self.last_poll_error = str(exc)
                    log.error("Poll failed; trying again after the poll interval: error=%s", exc)
                if once:
                    break
                self.heartbeat = time.monotonic()
                self.stop.wait(max(0.0, self.poll_interval - (time.monotonic() - began)))
        finally:
            with self._save_lock:
                self.store.save()

    def poll(self) -> None:
        began = self.poll_began = time.monotonic()
        latest_init = self._first_run and self.start == "latest"
        self._first_run = False
        for key in self.tracker.new_poll():
            self.cursors.pop(key, None)  # a sink failed part of it: read again from the stored checkpoint
        count = self._skipped = 0
        try:
            # Lazily: a first poll over a year of retention lists millions of blobs.
            blobs = self.source.discover()
            if latest_init:
                self._run_blobs(blobs, self._skip_existing, first=self._answered)
            else:
                count = self._run_blobs(self._owned_changed(blobs), self._read_blob, first=self._answered)
        except Interrupted:
            return  # shutdown while the source was retrying a listing
        finally:
            self.poll_began = 0.0
        if latest_init:
            log.info(
                "Starting at the end of the existing data (start = latest): source=%s blobs=%d",
                self.source.identity,
                self._skipped,
            )
        self._raise_fatal()
        self.store.prune(time.time() - self.retain_seconds, _hour_of)
        self._save()
        self.stats.polls += 1
        self.heartbeat = time.monotonic()
        self.stats.last_poll_end = time.time()
        self.stats.last_poll_seconds = time.monotonic() - began
        self.stats.last_poll_blobs = count
        if self.on_poll:
            self.on_poll(self)
        log.debug("Poll finished: blobs=%d seconds=%.2f", count, self.stats.last_poll_seconds)
        if self.stats.last_poll_seconds > BEHIND_AFTER:
            log.warning(
                "A poll took longer than a minute, so blobs that change every minute are falling behind; raise "
                "[reader] concurrency or add shards: seconds=%.0f blobs=%d concurrency=%d",
                self.stats.last_poll_seconds,
                count,
                self.concurrency,
            )

    def backfill(self, blobs: list[BlobRef], progress: Callable[[BlobRef, int], None]) -> None:
        """Read the given blobs (an explicit, bounded backfill) through the same checkpoints and sinks.

        ``progress`` is called as each blob is read, with the bytes it had; already-delivered parts are skipped,
        and hours forgotten after ``retain_days`` are read again (the range was asked for).
        """
        self.honour_horizon = False
        self.drain_windows = True
        for key in self.tracker.new_poll():
            self.cursors.pop(key, None)

        def read_and_report(blob: BlobRef) -> None:
            self._read_blob(blob)
            progress(blob, blob.size)

        try:
            self._run_blobs(self._owned_changed(blobs, report=progress), read_and_report)
            self._raise_fatal()
        finally:
            with self._save_lock:
                self.store.save()

    def close(self, timeout: float | None = 5.0) -> None:
        self.delivery.close(timeout)

    # -- running blobs through the pipeline ---------------------------------------------------

    def _answered(self) -> None:
        if self.on_poll:
            self.on_poll(self)  # the source answered: ready

    def _owned_changed(
        self, blobs: Iterable[BlobRef], report: Callable[[BlobRef, int], None] | None = None
    ) -> Iterable[BlobRef]:
        """The blobs of this instance's share that may hold data not yet delivered (cheap: no I/O)."""
        for blob in blobs:
            if self.shard is not None and not self.shard.owns(blob.name):
                continue  # another instance's share
            key = self.reader.key(blob)
            cp = self.cursors.get(key) or self.store.get(key)
            hour = _hour_of(key)
            # Delivered long ago and forgotten (checkpoint retain_days), or of a settled hour and unchanged since.
            forgotten = cp is None and (
                (self.honour_horizon and self.store.before_horizon(hour))
                or self.store.settled_done(hour, blob.last_modified.timestamp())
            )
            if forgotten or not self.reader.changed(blob, cp):
                if report is not None:
                    report(blob, blob.size)
                continue
            yield blob

    def _run_blobs(
        self, blobs: Iterable[BlobRef], task: Callable[[BlobRef], None], first: Callable[[], None] | None = None
    ) -> int:
        """Run ``task`` over the blobs with up to ``concurrency`` at once, then wait until everything they handed
        to the sinks is confirmed, failed, or abandoned at shutdown. Returns how many blobs were handled."""
        count = 0
        busy: set[str] = set()
        slots = threading.Semaphore(2 * self.concurrency)  # discovery stays a little ahead of the readers
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="read")

        def run(blob: BlobRef) -> None:
            try:
                with self._lock:
                    self.stats.reading += 1
                task(blob)
            except Exception as exc:  # tasks handle what they expect; this is a bug, but not a reason to stall
                log.error("A reader failed unexpectedly: blob=%s error=%r", blob.name, exc)
            finally:
                with self._lock:
                    self.stats.reading -= 1
                slots.release()

        try:
            for blob in blobs:
                if count == 0 and first is not None:
                    first()
                if self._halted():
                    break
                if blob.name in busy:
                    continue  # listed twice (an hour in the backlog and live): one reader per blob
                busy.add(blob.name)
                count += 1
                while not slots.acquire(timeout=0.2):
                    if self._halted():
                        break
                else:
                    pool.submit(run, blob)
        finally:
            pool.shutdown(wait=True)
            if not self._halted():
                # Windows whose end passed without a record of the next one (a quiet NIC, the end of an hour), or
                # every window when this is the last poll of run --once or a backfill.
                self.delivery.close_windows(None if self.drain_windows else int(time.time() * 1000))
            self.delivery.wait_idle(self._abandon)
        return count

    def _halted(self) -> bool:
        return self.stop.is_set() or self.delivery.halt.is_set() or self._fatal is not None

    def _abandon(self) -> bool:
        """Whether to stop waiting for in-flight delivery: the shutdown grace is over, or a sink or the
        source failed for good."""
        return self.abort.is_set() or self.delivery.halt.is_set() or self._fatal is not None

    def _raise_fatal(self) -> None:
        if self.delivery.fatal is not None:
            raise self.delivery.fatal
        if self._fatal is not None:
            raise self._fatal

    def _skip_existing(self, blob: BlobRef) -> None:
        if self.shard is not None and not self.shard.owns(blob.name):
            return
        try:
            cp = self.reader.end_checkpoint(blob)
        except BlobGone:
            return
        except (SourceError, Interrupted) as exc:
            self._fatal = self._fatal or exc
            return
        if cp is not None:
            self.store.put(self.reader.key(blob), cp)
            with self._lock:
                self._skipped += 1

    def _read_blob(self, blob: BlobRef) -> None:
        """Read one blob's new data chunk by chunk and hand each chunk to every sink (in a reader thread)."""
        key = self.reader.key(blob)
        cp = self.cursors.get(key) or self.store.get(key)
        left = blob.size - (cp.offset if cp is not None else 0)
        chunks = self.reader.chunks(blob, cp)
        try:
            while True:
                estimate = self._estimate(min(max(left, 4096), self.reader.chunk_bytes))
                if not self.budget.acquire(estimate, self._halted):
                    return
                try:
                    chunk = next(chunks, None)
                except BaseException:
                    self.budget.release(estimate)
                    raise
                if chunk is None:
                    self.budget.release(estimate)
                    return
                left -= chunk.bytes_read
                if not self._hand_over(chunk, estimate):
                    return
        except BlobGone:
            log.warning("Blob was deleted before it was read to the end (retention?); moving on: blob=%s", key)
            self.tracker.forget(key)
        except Interrupted:
            log.info("Shutdown interrupted reading; what was not confirmed is sent again: blob=%s", key)
        except SourceError as exc:
            self._fatal = self._fatal or exc
        except Exception as exc:
            # One bad blob must not stall the rest: report it and try again next poll.
            with self._lock:
                self.stats.blob_errors += 1
            log.error("Could not read blob; will retry next poll: blob=%s error=%s", key, exc)
        finally:
            chunks.close()

    def _hand_over(self, chunk: Chunk, estimate: int) -> bool:
        """Route a chunk to every sink; False when reading this blob should stop."""
        if chunk.count and (self._halted() or self.tracker.blob_failed(chunk.key)):
            # Shutting down, or a sink failed an earlier chunk of this blob: this one stays unconfirmed
            # and is read again from the checkpoint.
            self.budget.release(estimate)
            return False
        if chunk.fresh and chunk.key in self.cursors:
            # Rewritten while chunks of it were unconfirmed (held by an open aggregation window): fail them, so that
            # the old bytes' tuples are not mixed into the new ones; the next poll reads the blob from the start.
            self.budget.release(estimate)
            self.tracker.fail_blob(chunk.key, "the blob was rewritten while chunks of it were unconfirmed")
            return False
        if chunk.checkpoint is not None:
            # Before take(): a chunk confirmed at once (nothing in it for any sink) removes the cursor again.
            with self._lock:
                self.cursors[chunk.key] = chunk.checkpoint
        ticket = self.delivery.take(chunk, estimate)
        if ticket.failed:
            return False
        self.heartbeat = time.monotonic()
        return True

    def _estimate(self, raw: int) -> int:
        return raw * (1 + _EVENTS_PER_BYTE + _FORMAT_PER_BYTE * max(1, len(self.delivery.formats)))

    def _on_delivered(self, ticket: Ticket) -> None:
        """A chunk is confirmed by every sink and its checkpoint stored (under the tracker's lock: keep it short)."""
        s = self.stats
        s.events_delivered += ticket.events
        if ticket.newest_ms > s.newest_flow_ms:
            s.newest_flow_ms = ticket.newest_ms
        self.heartbeat = time.monotonic()
        if self.on_chunk is not None:
            self.on_chunk(ticket)
        if ticket.checkpoint is not None:
            with self._lock:
                if self.cursors.get(ticket.key) is ticket.checkpoint:
                    del self.cursors[ticket.key]  # the stored checkpoint has caught up with reading
            self._request_save()

    # -- checkpoints ----------------------------------------------------------------------------

    def _request_save(self) -> None:
        """Have the saver thread write the file soon: as soon as it can with interval 0 (a save covers every
        checkpoint stored while the previous one was being written), else at most once per interval."""
        self._save_due.set()
        if self._saver is None:
            with self._lock:
                if self._saver is None:
                    self._saver = threading.Thread(target=self._save_loop, name="checkpoint-saver", daemon=True)
                    self._saver.start()

    def _save_loop(self) -> None:
        while True:
            self._save_due.wait()
            wait = self._last_save + self.checkpoint_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._save_due.clear()
            self._save()

    def _save(self) -> None:
        """Save the checkpoints. A file that cannot be written (disk full, folder gone) does not stop
        delivery: the positions stay in memory and every later save tries again; only a restart before
        one succeeds sends events again. The error is logged when it starts, changes, and once a minute."""
        with self._save_lock:
            self._last_save = time.monotonic()
            try:
                self.store.save()
            except CheckpointWriteError as exc:
                now = time.monotonic()
                if str(exc) != self.checkpoint_error or now - self._checkpoint_error_logged >= 60:
                    log.error("%s; delivery goes on and the next save tries again", exc)
                    self._checkpoint_error_logged = now
                self.checkpoint_error = str(exc)
                return
            if self.checkpoint_error:
                log.info("The checkpoint file is written again: path=%s", self.store.path)
                self.checkpoint_error = ""


def _hour_of(key: str) -> float | None:
    hour = blobpath.hour_in_key(key)
    return hour.timestamp() if hour else None
