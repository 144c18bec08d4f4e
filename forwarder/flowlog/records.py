"""Split the data bytes of a PT1H.json (between head and tail) into records with their byte offsets.

The stdlib's C scanner (``raw_decode``) parses one object from a position and says where it ended,
which gives every record's byte offset for free. Input comes in chunks, and a record (one minute of
one NIC: up to tens of MB) may span many of them. Parsing a partial record only to find it cut would
make a big record cost quadratic time, so the decoder first looks for the start of the *next*
record (Azure starts every record with ``{"time":``) with a plain substring search, and parses only
what is known to be complete: the bytes before such a start, or everything once no more will come.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from forwarder.flowlog.bigrecord import BIG, parse_big_record
from forwarder.flowlog.issues import IssueLog, ParseIssue, excerpt

# Where the next record starts, as Azure writes it (compact); after garbage, a looser form of it.
_NEXT = b',{"time":'
_RESYNC = re.compile(r',\s*\{\s*"time"\s*:')
_DECODER = json.JSONDecoder()
_WS = " \t\r\n"
_WS_BYTES = b" \t\r\n,"

# Head and tail are learned from the blob: '{"records":[' and ']}' today, other sizes in older blobs.
HEAD_RE = re.compile(rb'^\s*\{\s*"records"\s*:\s*\[\s*')
TAIL_RE = re.compile(rb"\s*\]\s*\}\s*$")


@dataclass(frozen=True, slots=True)
class Record:
    offset: int  # byte offset of the record's "{" in the blob
    index: int  # position of the record in this read (for messages only)
    body: dict[str, Any]


class RecordDecoder:
    """Feeds blob bytes in order and yields complete records.

    ``consumed`` is the blob offset up to which every byte has been turned into records or
    reported as bad: a checkpoint may advance to it, never further.
    """

    def __init__(
        self,
        source: str,
        start_offset: int,
        issues: IssueLog,
        max_record_bytes: int = 256 << 20,
        blind_parse_bytes: int = 8 << 20,
    ):
        self.source = source
        self.issues = issues
        self.max_record_bytes = max_record_bytes
        # Without a next-record marker in sight (records not written by Azure, pretty-printed JSON),
        # try a parse anyway once this much is pending: bounds memory, and the waste to a few parses.
        self.blind_parse_bytes = blind_parse_bytes
        self.consumed = start_offset
        self.records_seen = 0
        self._carry = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back because they may be the start of a record not yet complete."""
        return len(self._carry)

    def feed(self, data: bytes, final: bool = False) -> Iterator[Record]:
        """Decode ``data`` (the bytes following everything fed before); ``final`` means no more will come."""
        if self._carry:
            # In place: a record spanning many reads must not be copied whole on every read.
            self._carry += data
            buf: bytes | bytearray = self._carry
            self._carry = bytearray()
        else:
            buf = data
        base = self.consumed  # blob offset of buf[0]
        ascii_only = buf.isascii()
        pos = 0
        while True:
            while pos < len(buf) and buf[pos] in _WS_BYTES:
                pos += 1
            if pos >= len(buf):
                self.consumed = base + len(buf)
                return
            nxt = buf.find(_NEXT, pos + 1)
            if nxt >= 0:
                segment_end, segment_final = nxt, True  # the record before a record start is complete
            elif final:
                segment_end, segment_final = len(buf), True
            elif len(buf) - pos >= self.blind_parse_bytes:
                segment_end, segment_final = len(buf), False
            else:
                self._carry = bytearray(buf[pos:]) if pos or isinstance(buf, bytes) else buf
                self.consumed = base + pos
                return
            with memoryview(buf) as view:
                text = str(view[pos:segment_end], "ascii" if ascii_only else "utf-8", "surrogateescape")
            seg_base = base + pos
            # Keep only what follows the segment, so that a big record's bytes are freed while it is parsed.
            base, buf, pos = base + segment_end, buf[segment_end:], 0
            segment = self._segment(text, seg_base, segment_final, nxt >= 0, ascii_only)
            del text
            rest = yield from segment
            if rest:
                # Only a segment parsed blind can end in a partial record: wait for the rest.
                self._carry = bytearray(rest.encode("utf-8", "surrogateescape")) + buf
                self.consumed = base - (len(self._carry) - len(buf))
                if len(self._carry) > self.max_record_bytes:
                    self._report(self.consumed, "record too large", bytes(self._carry[:200]), "over max_record_bytes")
                    self.consumed += len(self._carry)
                    self._carry = bytearray()
                return

    def _segment(
        self, text: str, base: int, final: bool, followed: bool, ascii_only: bool
    ) -> Generator[Record, None, str]:
        """Parse the records of one segment; returns the unparsed tail to carry (only when not final)."""

        def byte_pos(char_pos: int) -> int:
            if ascii_only:
                return base + char_pos
            return base + len(text[:char_pos].encode("utf-8", "surrogateescape"))

        pos, end = 0, len(text)
        while True:
            while pos < end and text[pos] in _WS:
                pos += 1
            if pos < end and text[pos] == ",":
                pos += 1
                while pos < end and text[pos] in _WS:
                    pos += 1
            if pos >= end:
                return ""
            try:
                if text[pos] != "{":
                    raise ValueError("expected '{' at the start of a record")
                big = parse_big_record(text, pos, end) if end - pos >= BIG and (followed or final) else None
                body, stop = big or _DECODER.raw_decode(text, pos)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                nxt = _RESYNC.search(text, pos + 1)
                if nxt is None and not final:
                    return text[pos:]
                bad_end = nxt.start() if nxt else end
                self._report(
                    byte_pos(pos),
                    "malformed record" if nxt or followed else "truncated or malformed record",
                    text[pos:bad_end],
                    str(exc),
                )
                pos = bad_end
                continue
            offset = byte_pos(pos)
            index = self.records_seen
            self.records_seen += 1
            pos = stop
            last = not text[stop : stop + 64].strip(_WS + ",") and not text[stop:].strip(_WS + ",")
            if last:
                text, end = "", 0  # free the record's text before its events are built
            if not isinstance(body, dict):
                self.issues.report(ParseIssue(self.source, offset, "record is not a JSON object", record_index=index))
                continue
            yield Record(offset, index, body)

    def _report(self, offset: int, reason: str, text: str | bytes, detail: str) -> None:
        self.issues.report(
            ParseIssue(self.source, offset, reason, detail=detail, record_index=self.records_seen, text=excerpt(text))
        )
        self.records_seen += 1
