"""Incremental, checkpointed reading of one PT1H.json: only new committed bytes, in bounded chunks.

A blob is ``head + data blocks + tail``. The checkpoint offset always sits at a record boundary
inside the data, so a poll reads ``[offset - FP, size)`` where FP bytes of already-delivered data
prove the blob was not rewritten underneath us, and the tail found at the end tells where the
committed data stops. Nothing is ever assumed about block sizes: positions come from the bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from forwarder.checkpoints.store import BlobCheckpoint
from forwarder.flowlog.issues import IssueLog, ParseIssue
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder
from forwarder.sources.base import BlobRef, BlobSource

log = logging.getLogger("forwarder.reader")

FP = 16  # bytes before the offset kept as a fingerprint of what was already delivered
FIRST = 40  # '{"time":"2026-11-25T10:00:35.3899262Z"': the first record's exact time identifies the blob
_PROBE = 256  # enough to hold any head or tail seen in the wild


@dataclass(slots=True)
class Chunk:
    """Events parsed from one bounded read of a blob, and the checkpoint to store once delivered."""

    key: str
    blob: BlobRef
    events: list[FlowEvent]
    start: int
    checkpoint: BlobCheckpoint | None  # None: part of a big record; the offset moves with the record's last part
    bytes_read: int
    complete: bool  # the checkpoint reaches the end of the blob's committed data


class BlobReader:
    def __init__(self, source: BlobSource, issues: IssueLog, chunk_bytes: int = 1 << 20, max_events: int = 10_000):
        self.source = source
        self.issues = issues
        self.chunk_bytes = max(chunk_bytes, 2 * _PROBE)
        self.max_events = max_events  # bounds memory whatever the size of one record
        self.bytes_read = 0

    def key(self, blob: BlobRef) -> str:
        return f"{self.source.identity}/{blob.name}"

    def changed(self, blob: BlobRef, cp: BlobCheckpoint | None) -> bool:
        return cp is None or cp.etag != blob.etag or cp.size != blob.size

    def _read(self, name: str, start: int, end: int) -> bytes:
        data = self.source.read(name, start, end)
        self.bytes_read += len(data)
        return data

    def _head(self, blob: BlobRef) -> int | None:
        """Length of the head block, learned from the blob; None if it does not look like a flow log."""
        probe = self._read(blob.name, 0, min(blob.size, _PROBE))
        m = HEAD_RE.match(probe)
        if m is None:
            if probe.strip():
                self.issues.report(
                    ParseIssue(
                        self.key(blob),
                        0,
                        "not a flow log blob",
                        detail='expected {"records":[ at the start',
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

    def chunks(self, blob: BlobRef, cp: BlobCheckpoint | None) -> Iterator[Chunk]:
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
            head = self._head(blob)
            if head is None:
                # Remember the etag so the same bad blob is not reported on every poll.
                yield Chunk(key, blob, [], 0, BlobCheckpoint(offset=0, etag=blob.etag, size=blob.size), 0, True)
                return
            start, fingerprint = head, b""
            cp = BlobCheckpoint(offset=head, head=head)
        else:
            start = cp.offset
            fingerprint = bytes.fromhex(cp.fingerprint)
        yield from self._read_from(blob, key, cp, start, fingerprint)

    def _read_from(
        self, blob: BlobRef, key: str, cp: BlobCheckpoint, start: int, fingerprint: bytes
    ) -> Iterator[Chunk]:
        normaliser = Normaliser(key, self.issues)
        decoder = RecordDecoder(key, start, self.issues)
        pos = start
        size = blob.size
        first = True
        delivered = cp.events
        prev_tail = fingerprint  # the FP bytes just before pos
        while True:
            # Never leave a sliver smaller than the probe for the last read: the tail must be seen whole.
            end = size if size - pos <= self.chunk_bytes + _PROBE else pos + self.chunk_bytes
            lead = len(fingerprint) if first else 0
            data = self._read(blob.name, pos - lead, end)
            bytes_read = len(data)
            if first and lead:
                if data[:lead] != fingerprint or not self._same_start(blob, cp):
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
            events: list[FlowEvent] = []
            # At the end of a blob without its tail (a file still being copied, a tail not yet written), the
            # records already whole are delivered now, not held back until some later write.
            records = decoder.feed(data, final=final, flush=last and not final)
            for batch in normaliser.records_batches(records, self.max_events):
                if events and len(events) + len(batch) > self.max_events:
                    delivered += len(events)
                    yield Chunk(key, blob, events, cp.offset, None, bytes_read, False)
                    events, bytes_read = [], 0
                events.extend(batch)
            new_offset = decoder.consumed
            if final and decoder.cut_at is not None:
                # The last record ends cut short. In a file still being written, what looked like the tail
                # can be a ']}' inside that record: if the blob changes, read the record again from its start.
                new_offset = decoder.cut_at
            if not cp.first and pos == cp.head and new_offset > cp.head:
                # Only bytes of delivered records: a blob seen with head and tail alone has no first record yet.
                cp.first = data[: min(FIRST, new_offset - cp.head)].hex()
            window = prev_tail + data
            window_start = pos - len(prev_tail)
            if new_offset <= cp.head:
                tail = b""
            elif new_offset == cp.offset:
                tail = fingerprint
            elif new_offset >= window_start:
                tail = window[max(0, new_offset - FP - window_start) : new_offset - window_start]
            else:  # a cut record that began in an earlier read
                tail = self._read(blob.name, max(cp.head, new_offset - FP), new_offset)
            pos += len(data)
            prev_tail = window[-FP:]
            delivered += len(events)
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
            yield Chunk(key, blob, events, cp.offset, checkpoint, bytes_read, complete)
            cp = checkpoint
            fingerprint = tail
            if last:
                return

    def _same_start(self, blob: BlobRef, cp: BlobCheckpoint) -> bool:
        if not cp.first:
            return True
        first = bytes.fromhex(cp.first)
        return self._read(blob.name, cp.head, cp.head + len(first)) == first
