"""Incremental, checkpointed reading of one PT1H.json: only new committed bytes, in bounded chunks.

A blob is ``head + data blocks + tail``. The checkpoint offset always sits at a record boundary
inside the data, so a poll reads ``[offset - FP, size)`` where FP bytes of already-delivered data
prove the blob was not rewritten underneath us, and the tail found at the end tells where the
committed data stops. Nothing is ever assumed about block sizes: positions come from the bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

from forwarder.checkpoints.store import BlobCheckpoint
from forwarder.flowlog.issues import IssueLog, ParseIssue
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder
from forwarder.pipeline.concat import join
from forwarder.reduce.aggregate import record_time_ms
from forwarder.sources.base import BlobRef, BlobSource

log = logging.getLogger("forwarder.reader")

FP = 80  # bytes before the offset kept as a fingerprint of what was delivered: the last tuple whole, time included
FIRST = 40  # '{"time":"2026-11-25T10:00:35.3899262Z"': the first record's exact time identifies the blob
_PROBE = 256  # enough to hold any head or tail seen in the wild
VERIFY_START_EVERY = 600.0  # seconds between checks of a blob's first record, where a check costs a request
_VERIFIED_MAX = 200_000


@dataclass(slots=True)
class Chunk:
    """Events parsed from one bounded read of a blob, and the checkpoint to store once delivered."""

    key: str
    blob: BlobRef
    parts: list[Sequence[FlowEvent]]  # as the normaliser made them (formatters work part by part)
    start: int
    checkpoint: BlobCheckpoint | None  # None: part of a big record; the offset moves with the record's last part
    bytes_read: int
    complete: bool  # the checkpoint reaches the end of the blob's committed data
    window_ms: int | None = None  # with aggregation: the window (record time) all of the chunk's records are in
    first_record: int | None = None  # byte offset of the chunk's first record
    fresh: bool = False  # the first chunk read from the blob's start: a new blob, or one rewritten since

    @property
    def events(self) -> Sequence[FlowEvent]:
        return join([(p, 0, len(p)) for p in self.parts])

    @property
    def count(self) -> int:
        return sum(map(len, self.parts))


class BlobReader:
    """Reads blobs chunk by chunk; one instance serves every reader thread (each blob is read by one at a time)."""

    def __init__(
        self,
        source: BlobSource,
        issues: IssueLog,
        chunk_bytes: int = 1 << 20,
        max_events: int = 10_000,
        verify_start_every: float | None = None,
        cut_ms: int | None = None,
    ):
        self.source = source
        self.issues = issues
        self.chunk_bytes = max(chunk_bytes, 2 * _PROBE)
        self.max_events = max_events  # bounds memory whatever the size of one record
        # With aggregation: chunks end where a record starts a new window of this many ms (record time).
        self.cut_ms = cut_ms
        self.bytes_read = 0
        # How often a blob's first record is read again to rule out a rewrite from scratch that the
        # fingerprint alone cannot see. Free for local files (every read); a second request per poll
        # for storage, so there once per blob per interval, and on the first read after a start.
        if verify_start_every is None:
            verify_start_every = 0.0 if getattr(source, "cheap_reads", False) else VERIFY_START_EVERY
        self.verify_start_every = verify_start_every
        self._verified: dict[str, float] = {}  # blob key -> monotonic time of the last check
        self._cut_reported: set[str] = set()
        self._lock = threading.Lock()

    def key(self, blob: BlobRef) -> str:
        return f"{self.source.identity}/{blob.name}"

    def changed(self, blob: BlobRef, cp: BlobCheckpoint | None) -> bool:
        return cp is None or cp.etag != blob.etag or cp.size != blob.size

    def _read(self, name: str, start: int, end: int) -> bytes:
        data = self.source.read(name, start, end)
        with self._lock:
            self.bytes_read += len(data)
        return data

    def _head(self, blob: BlobRef, probe: bytes | None = None) -> int | None:
        """Length of the head block, learned from the blob (or the first bytes already read of it); None if it
        does not look like a flow log."""
        if probe is None:
            probe = self._read(blob.name, 0, min(blob.size, _PROBE))
        m = HEAD_RE.match(probe)
        if m is None:
            if probe.strip():
                detail = 'expected {"records":[ at the start'
                if probe.startswith(b"\x1f\x8b"):
                    detail = "it is gzip-compressed: store it decompressed (gunzip) where the forwarder reads"
                self.issues.report(
                    ParseIssue(
                        self.key(blob),
                        0,
                        "not a flow log blob",
                        detail=detail,
                        text=probe[:60].decode("utf-8", "replace"),
                    )
                )
            return None
        return m.end()

    def end_checkpoint(self, blob: BlobRef) -> BlobCheckpoint | None:
        """A checkpoint at the current end of the committed data, without reading the data ("start = latest")."""
        head = self._head(blob)
        if head is None:
            return None
        tail_probe = self._read(blob.name, max(head, blob.size - _PROBE), blob.size)
        m = TAIL_RE.search(tail_probe)
        end = blob.size - (len(tail_probe) - m.start()) if m else blob.size
        fp = tail_probe[: m.start()][-FP:] if m else tail_probe[-FP:]
        return BlobCheckpoint(offset=max(end, head), etag=blob.etag, size=blob.size, head=head, fingerprint=fp.hex())

    def chunks(self, blob: BlobRef, cp: BlobCheckpoint | None) -> Generator[Chunk, None, None]:
        """Yield chunks of new events. The caller stores ``chunk.checkpoint`` only after delivery."""
        key = self.key(blob)
        if cp is not None and cp.head and cp.offset >= cp.head:
            if blob.size < cp.offset:
                log.warning(
                    "Blob got shorter, so it was rewritten; reading it again from the start: "
                    "blob=%s old_offset=%d size=%d",
                    key,
                    cp.offset,
                    blob.size,
                )
                cp = None
        else:
            cp = None
        if cp is None:
            yield from self._read_new(blob, key)
        else:
            yield from self._read_from(blob, key, cp, cp.offset, bytes.fromhex(cp.fingerprint))

    def _read_new(self, blob: BlobRef, key: str) -> Iterator[Chunk]:
        """A blob read from its start: the head is learned from the first read, which also carries the first data."""
        first = self._read(blob.name, 0, self._read_end(0, blob.size))
        head = self._head(blob, first)
        if head is None:
            if not first.strip():
                log.info("Blob is empty; it is read once it has data: blob=%s size=%d", key, blob.size)
            # Remember the etag so the same bad or empty blob is not reported on every poll.
            yield Chunk(key, blob, [], 0, BlobCheckpoint(offset=0, etag=blob.etag, size=blob.size), len(first), True)
            return
        self._mark_verified(key)
        chunks = self._read_from(blob, key, BlobCheckpoint(offset=head, head=head), head, b"", first[head:])
        for n, chunk in enumerate(chunks):
            chunk.fresh = n == 0
            yield chunk

    def _read_end(self, pos: int, size: int) -> int:
        # Never leave a sliver smaller than the probe for the last read: the tail must be seen whole.
        return size if size - pos <= self.chunk_bytes + _PROBE else pos + self.chunk_bytes

    def _read_from(
        self,
        blob: BlobRef,
        key: str,
        cp: BlobCheckpoint,
        start: int,
        fingerprint: bytes,
        first_data: bytes | None = None,
    ) -> Iterator[Chunk]:
        """Chunks from ``start`` (a record boundary: the checkpoint, or the end of the head); ``first_data`` holds
        the bytes from ``start`` that were already read with the head."""
        normaliser = Normaliser(key, self.issues)
        decoder = RecordDecoder(key, start, self.issues)
        pos = start
        size = blob.size
        first = True
        delivered = cp.events
        prev_tail = fingerprint  # the FP bytes just before pos
        window: int | None = None  # the aggregation window of the records in the chunk being built
        first_record: int | None = None  # byte offset of the chunk's first record
        while True:
            if first and first_data is not None:
                data = first_data
                end = pos + len(data)
                lead = 0
                bytes_read = len(data)
            else:
                end = self._read_end(pos, size)
                lead = len(fingerprint) if first else 0
                data = self._read(blob.name, pos - lead, end)
                bytes_read = len(data)
            if first and lead:
                if data[:lead] != fingerprint or not _at_boundary(data, lead) or not self._same_start(blob, key, cp):
                    log.warning(
                        "Blob bytes before the checkpoint changed, so it was rewritten; reading it again from the "
                        "start: blob=%s old_offset=%d size=%d",
                        key,
                        cp.offset,
                        size,
                    )
                    yield from self.chunks(blob, None)
                    return
                data = data[lead:]
            first = False
            last = end >= size or len(data) < end - pos
            final = False
            if last:
                m = TAIL_RE.search(data, max(0, len(data) - _PROBE))
                if m is not None:
                    data = data[: m.start()]
                    final = True
            parts: list[Sequence[FlowEvent]] = []
            count = 0
            span = prev_tail + data  # the bytes [span_start, pos + len(data)): fingerprints come from here
            span_start = pos - len(prev_tail)

            # At the end of a blob without its tail (a file still being copied, a tail not yet written), the
            # records already whole are delivered now, not held back until some later write.
            for record in decoder.feed(data, final=final, flush=last and not final):
                if self.cut_ms:
                    t = record_time_ms(record.body.get("time"))
                    w = window if t is None else t - t % self.cut_ms
                    if w != window and count:
                        # A new aggregation window starts with this record: the chunk ends here, so that a
                        # checkpoint never falls inside a window.
                        if not cp.first and pos == cp.head:
                            cp.first = data[: min(FIRST, record.offset - cp.head)].hex()
                        delivered += count
                        at = self._fingerprint_at(blob, cp.head, span, span_start, record.offset)
                        cut = BlobCheckpoint(
                            offset=record.offset, head=cp.head, fingerprint=at.hex(), first=cp.first, events=delivered
                        )
                        yield Chunk(key, blob, parts, cp.offset, cut, bytes_read, False, window, first_record)
                        cp, fingerprint = cut, bytes.fromhex(cut.fingerprint)
                        parts, count, bytes_read, first_record = [], 0, 0, None
                    window = w
                if first_record is None:
                    first_record = record.offset
                for batch in normaliser.batches(record, self.max_events):
                    if count and count + len(batch) > self.max_events:
                        delivered += count
                        yield Chunk(key, blob, parts, cp.offset, None, bytes_read, False, window, first_record)
                        parts, count, bytes_read = [], 0, 0
                    parts.append(batch)
                    count += len(batch)
                del record  # a big record's text is referenced from its body: let it go before the next one
            if last and not final and decoder.pending:
                self._report_cut(key, decoder.consumed, size)
            new_offset = decoder.consumed
            if final and decoder.cut_at is not None:
                # The last record ends cut short. In a file still being written, what looked like the tail
                # can be a ']}' inside that record: if the blob changes, read the record again from its start.
                new_offset = decoder.cut_at
            if not cp.first and pos == cp.head and new_offset > cp.head:
                # Only bytes of delivered records: a blob seen with head and tail alone has no first record yet.
                cp.first = data[: min(FIRST, new_offset - cp.head)].hex()
            tail = (
                fingerprint
                if new_offset == cp.offset
                else self._fingerprint_at(blob, cp.head, span, span_start, new_offset)
            )
            pos += len(data)
            prev_tail = span[-FP:]
            delivered += count
            complete = last and final and decoder.pending == 0
            checkpoint = BlobCheckpoint(
                offset=new_offset,
                etag=blob.etag if complete else "",
                size=size if complete else 0,
                head=cp.head,
                fingerprint=tail.hex(),
                first=cp.first,
                events=delivered,
            )
            yield Chunk(key, blob, parts, cp.offset, checkpoint, bytes_read, complete, window, first_record)
            cp = checkpoint
            fingerprint = tail
            first_record = None
            if last:
                return

    def _fingerprint_at(self, blob: BlobRef, head: int, span: bytes, span_start: int, offset: int) -> bytes:
        """The FP bytes before ``offset``: from ``span`` (the bytes at hand from ``span_start``), else read."""
        if offset <= head:
            return b""
        if offset >= span_start:
            return span[max(0, offset - FP - span_start) : offset - span_start]
        return self._read(blob.name, max(head, offset - FP), offset)  # a record begun in an earlier read

    def _same_start(self, blob: BlobRef, key: str, cp: BlobCheckpoint) -> bool:
        """Whether the blob still begins with the first record that was delivered (when a check is due)."""
        if not cp.first:
            return True
        now = time.monotonic()
        with self._lock:
            last = self._verified.get(key)
        if self.verify_start_every and last is not None and now - last < self.verify_start_every:
            return True
        first = bytes.fromhex(cp.first)
        same = self._read(blob.name, cp.head, cp.head + len(first)) == first
        if same:
            self._mark_verified(key)
        return same

    def _report_cut(self, key: str, offset: int, size: int) -> None:
        """Once per blob: its data ends inside a record and without the tail (cut short, or still being copied)."""
        with self._lock:
            if key in self._cut_reported:
                return
            if len(self._cut_reported) >= _VERIFIED_MAX:
                self._cut_reported.clear()
            self._cut_reported.add(key)
        log.info(
            "Blob ends inside a record and without its tail (cut short, or still being written); the record is read "
            "once the rest arrives: blob=%s offset=%d size=%d",
            key,
            offset,
            size,
        )

    def _mark_verified(self, key: str) -> None:
        with self._lock:
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()  # bounded: a blob forgotten here is checked once more, nothing else
            self._verified[key] = time.monotonic()


def _at_boundary(data: bytes, at: int) -> bool:
    """Whether a checkpoint offset still falls between records: what follows it must be a separator, the next
    record or the tail. A blob rewritten underneath puts the old offset inside a record, almost always."""
    rest = data[at : at + 64].lstrip(b" \t\r\n")
    if rest[:1] == b",":
        rest = rest[1:].lstrip(b" \t\r\n")
    return rest[:1] in (b"", b"{", b"]")
