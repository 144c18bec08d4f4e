"""Split the data bytes of a PT1H.json (between head and tail) into records with their byte offsets.

The stdlib's C scanner (``raw_decode``) parses one object from a position and says where it ended,
which gives every record's byte offset for free and is faster here than parsing the whole chunk
at once. Input comes in chunks; a record cut by a chunk boundary is carried to the next feed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from forwarder.flowlog.issues import IssueLog, ParseIssue, excerpt

# Azure starts every record with its "time" key; after garbage this is where parsing resumes.
_RESYNC = re.compile(r',\s*\{\s*"time"\s*:')
_DECODER = json.JSONDecoder()
_WS = " \t\r\n"

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

    def __init__(self, source: str, start_offset: int, issues: IssueLog, max_record_bytes: int = 256 << 20):
        self.source = source
        self.issues = issues
        self.max_record_bytes = max_record_bytes
        self.consumed = start_offset
        self.records_seen = 0
        self._carry = b""

    def feed(self, data: bytes, final: bool = False) -> Iterator[Record]:
        """Decode ``data`` (the bytes following everything fed before); ``final`` means no more will come."""
        buf = self._carry + data if self._carry else data
        self._carry = b""
        base = self.consumed
        ascii_only = buf.isascii()
        text = buf.decode("ascii") if ascii_only else buf.decode("utf-8", "surrogateescape")

        def byte_pos(char_pos: int) -> int:
            if ascii_only:
                return base + char_pos
            return base + len(text[:char_pos].encode("utf-8", "surrogateescape"))

        pos = 0
        end = len(text)
        while True:
            while pos < end and text[pos] in _WS:
                pos += 1
            if pos < end and text[pos] == ",":
                pos += 1
                while pos < end and text[pos] in _WS:
                    pos += 1
            if pos >= end:
                self.consumed = base + len(buf)
                return
            try:
                if text[pos] != "{":
                    raise ValueError("expected '{' at the start of a record")
                body, stop = _DECODER.raw_decode(text, pos)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                nxt = _RESYNC.search(text, pos + 1)
                if nxt is None and not final:
                    rest = buf[byte_pos(pos) - base :]
                    if len(rest) <= self.max_record_bytes:
                        # Possibly a record cut by the chunk boundary: wait for the rest.
                        self.consumed = byte_pos(pos)
                        self._carry = rest
                        return
                bad_end = nxt.start() if nxt else end
                self.issues.report(
                    ParseIssue(
                        self.source,
                        byte_pos(pos),
                        "malformed record" if nxt else "truncated or malformed record",
                        detail=str(exc),
                        record_index=self.records_seen,
                        text=excerpt(text[pos:bad_end]),
                    )
                )
                self.records_seen += 1
                pos = bad_end
                self.consumed = byte_pos(pos)
                continue
            offset = byte_pos(pos)
            index = self.records_seen
            self.records_seen += 1
            pos = stop
            self.consumed = byte_pos(pos)
            if not isinstance(body, dict):
                self.issues.report(ParseIssue(self.source, offset, "record is not a JSON object", record_index=index))
                continue
            yield Record(offset, index, body)

    @property
    def pending(self) -> int:
        """Bytes held back because they may be the start of a record not yet complete."""
        return len(self._carry)
