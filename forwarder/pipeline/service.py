"""The service loop: discover, read new bytes, deliver, then checkpoint; poll until stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from forwarder.checkpoints.store import CheckpointStore, CheckpointWriteError
from forwarder.flowlog.issues import IssueLog
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.reader import BlobReader, Chunk
from forwarder.pipeline.shard import Shard
from forwarder.sinks.base import SinkFatal
from forwarder.sinks.retry import Interrupted
from forwarder.sources import blobpath
from forwarder.sources.base import BlobGone, BlobRef, BlobSource, SourceError

log = logging.getLogger("forwarder.service")


@dataclass
class ServiceStats:
    polls: int = 0
    events_delivered: int = 0
    blob_errors: int = 0
    newest_flow_ms: int = 0  # time of the newest delivered flow (for lag)
    last_poll_end: float = 0.0


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
        issues: IssueLog | None = None,
        on_chunk: Callable[[Chunk], None] | None = None,
        on_poll: Callable[[Service], None] | None = None,
        shard: Shard | None = None,
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
        self.issues = issues or IssueLog()
        self.reader = BlobReader(source, self.issues, chunk_bytes)
        self.stats = ServiceStats()
        self.on_chunk = on_chunk
        self.on_poll = on_poll  # called after each discovery (readiness, status lines)
        self._first_run = not store.items()
        self.reopen_requested = threading.Event()  # SIGHUP: reopen output files between chunks
        self.heartbeat = time.monotonic()  # moves whenever the loop makes progress (health, watchdog)
        self.last_poll_error = ""
        self.checkpoint_error = ""  # why the last save failed, until one succeeds
        self._checkpoint_error_logged = 0.0
        self._last_save = time.monotonic()

    @property
    def last_alive(self) -> float:
        return max(self.heartbeat, self.delivery.last_activity)

    def run(self, once: bool = False) -> None:
        """Poll until ``stop`` is set (or once). Raises SinkFatal / SourceError, and CheckpointWriteError
        if the checkpoints cannot be saved on the way out."""
        try:
            while not self.stop.is_set():
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
                self.stop.wait(self.poll_interval)
        finally:
            self.store.save()

    def poll(self) -> None:
        began = time.monotonic()
        latest_init = self._first_run and self.start == "latest"
        self._first_run = False
        count = 0
        try:
            # Lazily: a first poll over a year of retention lists millions of blobs.
            for blob in self.source.discover():
                count += 1
                if count == 1 and self.on_poll:
                    self.on_poll(self)  # the source answered: ready
                if self.stop.is_set():
                    break
                if self.shard is not None and not self.shard.owns(blob.name):
                    continue  # another instance's share
                if latest_init:
                    self._skip_existing(blob)
                else:
                    self._read_blob(blob)
        except Interrupted:
            return  # shutdown while the source was retrying a listing
        if self.on_poll:
            self.on_poll(self)
        self.store.prune(time.time() - self.retain_seconds, _hour_of)
        self._save()
        self.stats.polls += 1
        self.heartbeat = time.monotonic()
        self.stats.last_poll_end = time.time()
        log.debug("Poll finished: blobs=%d seconds=%.2f", count, time.monotonic() - began)

    def backfill(self, blobs: list[BlobRef], progress: Callable[[BlobRef, int], None]) -> None:
        """Read the given blobs (an explicit, bounded backfill) through the same checkpoints and sinks.

        ``progress`` is called after each blob with the bytes it had; already-delivered parts are skipped,
        and hours forgotten after ``retain_days`` are read again (the range was asked for).
        """
        self.honour_horizon = False
        try:
            for blob in blobs:
                if self.stop.is_set():
                    break
                self._read_blob(blob)
                progress(blob, blob.size)
        finally:
            self.store.save()

    def _skip_existing(self, blob: BlobRef) -> None:
        key = self.reader.key(blob)
        try:
            cp = self.reader.end_checkpoint(blob)
        except BlobGone:
            return
        if cp is not None:
            self.store.put(key, cp)
            log.info("Starting at the end of existing data (start = latest): blob=%s offset=%d", key, cp.offset)

    def _save(self) -> None:
        """Save the checkpoints. A file that cannot be written (disk full, folder gone) does not stop
        delivery: the positions stay in memory and every later save tries again; only a restart before
        one succeeds sends events again. The error is logged when it starts, changes, and once a minute."""
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

    def _read_blob(self, blob: BlobRef) -> None:
        key = self.reader.key(blob)
        cp = self.store.get(key)
        if cp is None and self.honour_horizon and self.store.before_horizon(_hour_of(key)):
            return  # delivered long ago and forgotten (checkpoint retain_days)
        if not self.reader.changed(blob, cp):
            return
        try:
            for chunk in self.reader.chunks(blob, cp):
                if self.stop.is_set() and chunk.events:
                    return  # shutting down: this chunk stays unconfirmed and is read again next time
                if self.reopen_requested.is_set():
                    self.reopen_requested.clear()
                    log.info("Reopening sink outputs (SIGHUP)")
                    self.delivery.reopen()
                end = chunk.checkpoint.offset if chunk.checkpoint else chunk.start
                self.delivery.deliver(chunk.events, key, chunk.start, end)
                if chunk.checkpoint is not None:
                    self.store.put(key, chunk.checkpoint)
                self.stats.events_delivered += len(chunk.events)
                if chunk.events:
                    self.stats.newest_flow_ms = max(self.stats.newest_flow_ms, chunk.events[-1].timestamp_ms)
                self.heartbeat = time.monotonic()
                if self.on_chunk:
                    self.on_chunk(chunk)
                if chunk.checkpoint is not None and time.monotonic() - self._last_save >= self.checkpoint_interval:
                    self._save()
        except BlobGone:
            log.warning("Blob was deleted before it was read to the end (retention?); moving on: blob=%s", key)
            self.store.remove(key)
        except Interrupted:
            log.info("Shutdown interrupted delivery; the unconfirmed chunk will be sent again: blob=%s", key)
        except (SourceError, SinkFatal):
            raise
        except Exception as exc:
            # One bad blob must not stall the rest: report it and try again next poll.
            self.stats.blob_errors += 1
            log.error("Could not read blob; will retry next poll: blob=%s error=%s", key, exc)


def _hour_of(key: str) -> float | None:
    hour = blobpath.hour_in_key(key)
    return hour.timestamp() if hour else None
