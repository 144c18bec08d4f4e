"""Split the data bytes of a PT1H.json (between head and tail) into records with their byte offsets.

The stdlib's C scanner (``raw_decode``) parses one object from a position and says where it ended,
which gives every record's byte offset for free. Input comes in chunks, and a record (one minute of
one NIC: up to tens of MB) may span many of them. Parsing a partial record only to find it cut would
make a big record cost quadratic time, so the decoder first looks for the start of the *next*
record (Azure starts every record with ``{"time":``) with a plain substring search, and parses only
what is known to be complete: the bytes before such a start, or everything once no more will come.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from forwarder.flowlog.bigrecord import BIG, parse_big_record
from forwarder.flowlog.issues import IssueLog, ParseIssue, excerpt

# Where the next record starts, as Azure writes it (compact); after garbage, a looser form of it, without
# the comma: garbage right after a comma, a record's comma lost or a head written twice must not take the
# next record with them.
_NEXT = ',{"time":'
_RESYNC = re.compile(r'\{\s*"time"\s*:')
_DECODER = json.JSONDecoder()
_HEAD_CHARS = 240  # of a record's text kept for messages about it
_WS = " \t\r\n"
_WS_SEP = " \t\r\n,"

# Head and tail are learned from the blob: '{"records":[' and ']}' today, other sizes in older blobs. A UTF-8
# byte order mark (a blob saved by an editor or a tool that adds one) belongs to the head.
HEAD_RE = re.compile(rb'^(?:\xef\xbb\xbf)?\s*\{\s*"records"\s*:\s*\[\s*')
TAIL_RE = re.compile(rb"\s*\]\s*\}\s*$")


@dataclass(frozen=True, slots=True)
class Record:
    offset: int  # byte offset of the record's "{" in the blob
    index: int  # position of the record in this read (for messages only)
    body: dict[str, Any]
    head: str = ""  # the record's first characters as written: what a message about it shows


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
        # After a blind parse found the record still incomplete, the next waits for twice as much: a big
        # record without a marker after it (the last one before the tail) costs a few parses, not one per read.
        self._blind_at = blind_parse_bytes
        self.consumed = start_offset
        self.records_seen = 0
        # Blob offset of a record that final input cut short, if the last feed ended with one: a reader
        # that may have taken an inner ']}' for the tail of a file still being written resumes there.
        self.cut_at: int | None = None
        # The carry is kept as text: bytes are decoded once, as they arrive, and a record spanning many
        # reads grows in place instead of existing as bytes and as text at the same time.
        self._text = ""
        self._ascii = True
        self._utf8 = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    @property
    def pending(self) -> int:
        """Characters held back because they may be the start of a record not yet complete."""
        return len(self._text)

    def feed(self, data: bytes, final: bool = False, flush: bool = False) -> Iterator[Record]:
        """Decode ``data`` (the bytes following everything fed before); ``final`` means no more will come.

        ``flush``: more may come, but nothing is known to be on its way (the end of a blob without its
        tail): parse what is pending now, keeping back only a record that is still incomplete.
        """
        self.cut_at = None
        piece = self._utf8.decode(data, final)
        text, self._text = self._text, ""
        text += piece  # in place: this frame holds the only reference
        ascii_only = self._ascii and piece.isascii()
        base = self.consumed  # blob offset of text[0]

        def nbytes(chars: str) -> int:
            return len(chars) if ascii_only else len(chars.encode("utf-8", "surrogateescape"))

        pos = 0
        while True:
            while pos < len(text) and text[pos] in _WS_SEP:
                pos += 1
            if pos >= len(text):
                self.consumed = base + nbytes(text)
                self._ascii = True
                return
            nxt = text.find(_NEXT, pos + 1)
            if nxt >= 0:
                end, segment_final = nxt, True  # the record before a record start is complete
            elif final:
                end, segment_final = len(text), True
            elif flush or len(text) - pos >= self._blind_at:
                end, segment_final = len(text), False
            else:
                self._text = text[pos:] if pos else text
                self._ascii = ascii_only or self._text.isascii()
                self.consumed = base + nbytes(text[:pos])
                return
            if segment_final:
                self._blind_at = self.blind_parse_bytes
            segment = self._segment(text, pos, end, base + nbytes(text[:pos]), segment_final, nxt >= 0, ascii_only)
            # Keep only what follows the segment: the segment's own text lives as long as its records need it.
            base += nbytes(text[:end])
            text, pos = text[end:], 0
            if not ascii_only:
                ascii_only = text.isascii()
            rest = yield from segment
            if rest:
                # Only a segment parsed blind can end in a partial record: wait for the rest.
                self._text = rest + text
                self._ascii = self._text.isascii()
                self._blind_at = max(self.blind_parse_bytes, 2 * len(self._text))
                self.consumed = base - len(rest.encode("utf-8", "surrogateescape"))
                if len(self._text) > self.max_record_bytes:
                    self._report(self.consumed, "record too large", self._text[:200], "over max_record_bytes")
                    self.consumed += len(self._text.encode("utf-8", "surrogateescape"))
                    self._text = ""
                return

    def _segment(
        self, text: str, start: int, end: int, base: int, final: bool, followed: bool, ascii_only: bool
    ) -> Generator[Record, None, str]:
        """Parse the records of text[start:end] (base = its blob offset); returns the unparsed tail to carry
        (only when not final)."""

        def byte_pos(char_pos: int) -> int:
            if ascii_only:
                return base + char_pos - start
            return base + len(text[start:char_pos].encode("utf-8", "surrogateescape"))

        pos = start
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
                if stop > end:
                    raise ValueError("the record runs into the next one")
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                nxt = _RESYNC.search(text, pos + 1, end)
                if nxt is None and not final:
                    return text[pos:end]
                bad_end = nxt.start() if nxt else end
                if nxt is None and not followed:
                    self.cut_at = byte_pos(pos)
                self._report(
                    byte_pos(pos),
                    "malformed record" if nxt or followed else "truncated or malformed record",
                    text[pos:bad_end],
                    "JSON nested too deeply to parse" if isinstance(exc, RecursionError) else str(exc),
                )
                pos = bad_end
                continue
            offset = byte_pos(pos)
            head = text[pos : min(stop, pos + _HEAD_CHARS)]
            index = self.records_seen
            self.records_seen += 1
            pos = stop
            if not text[stop : min(end, stop + 64)].strip(_WS + ",") and not text[stop:end].strip(_WS + ","):
                text, pos, end = "", 0, 0  # the segment's last record: free its text before the events are built
            if not isinstance(body, dict):
                self.issues.report(ParseIssue(self.source, offset, "record is not a JSON object", record_index=index))
                continue
            yield Record(offset, index, body, head)

    def _report(self, offset: int, reason: str, text: str | bytes, detail: str) -> None:
        self.issues.report(
            ParseIssue(self.source, offset, reason, detail=detail, record_index=self.records_seen, text=excerpt(text))
        )
        self.records_seen += 1
