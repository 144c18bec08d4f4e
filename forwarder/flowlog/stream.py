"""Convert a whole PT1H.json, or a stream of records, read in bounded chunks from a file object."""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from forwarder.flowlog.issues import IssueLog, ParseIssue, excerpt
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder

_HOLD = 256  # bytes held back until EOF: the tail must be seen whole before it is stripped


class NotAFlowLog(ValueError):
    """The input is neither a PT1H.json nor a stream of flow-log records."""


class FileConverter:
    """Reads one input chunk by chunk; never holds more than one chunk plus a partial record."""

    def __init__(self, stream: BinaryIO, source: str, issues: IssueLog, chunk_bytes: int = 1 << 20):
        self.stream = stream
        self.source = source
        self.issues = issues
        self.chunk_bytes = chunk_bytes
        self.records = 0
        self.tuples = 0
        self.bytes_read = 0

    def events(self) -> Iterator[Sequence[FlowEvent]]:
        first = self.stream.read(self.chunk_bytes)
        self.bytes_read += len(first)
        m = HEAD_RE.match(first)
        bom = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
        if m is not None:
            start, whole_blob = m.end(), True
        elif first[bom:].lstrip()[:1] == b"{":
            start, whole_blob = bom, False  # records one after another (NDJSON or concatenated)
        elif not first.strip():
            raise NotAFlowLog("the input is empty")
        else:
            raise NotAFlowLog(
                f'the input starts with {first.lstrip()[:40]!r}, not {{"records":[ (a PT1H.json) nor {{ (a record)'
            )
        decoder = RecordDecoder(self.source, start, self.issues)
        normaliser = Normaliser(self.source, self.issues)
        pending = first[start:]
        while True:
            more = self.stream.read(self.chunk_bytes)
            self.bytes_read += len(more)
            if more:
                pending += more
                if len(pending) <= _HOLD:
                    continue
                feed, pending = pending[:-_HOLD], pending[-_HOLD:]
                final = False
            else:
                feed, pending = pending, b""
                if whole_blob:
                    tail = TAIL_RE.search(feed, max(0, len(feed) - _HOLD))
                    if tail is not None:
                        feed = feed[: tail.start()]
                    else:
                        self.issues.report(
                            ParseIssue(
                                self.source,
                                self.bytes_read,
                                "missing tail",
                                detail="the input ends without the ]} that closes a PT1H.json: it may be cut short",
                                text=excerpt(feed[-40:]),
                            )
                        )
                final = True
            for batch in normaliser.records_batches(decoder.feed(feed, final=final), 8192):
                self.tuples += len(batch)
                yield batch
            self.records = decoder.records_seen
            if final:
                if self.tuples == 0 and self.issues.total and not whole_blob:
                    raise NotAFlowLog("no flow-log record could be parsed from the input")
                return
