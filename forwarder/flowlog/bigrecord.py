"""Parse a big record without turning every flow tuple into a JSON string object at once.

One minute of a busy NIC is a record of tens of MB, almost all of it ``"flowTuples":["...","..."]``.
Decoded as JSON it costs about twice its size again in string objects. Here the tuple arrays are cut
out of the text and the small rest is parsed as JSON; each array becomes a TupleSpan that hands out
its tuples a slice at a time, so memory stays near the size of the record's text.

Only the plain form Azure writes takes this path (no escapes, no blanks between tuples); anything
else returns None and the caller decodes the record as ordinary JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from forwarder.flowlog.core import core

_KEY = '"flowTuples":['
_SEP = '","'
BIG = 1 << 16  # records smaller than this are parsed as plain JSON
_DECODER = json.JSONDecoder()


class TupleSpan:
    """The tuples of one flowTuples array, as a read-only sequence over the record's text."""

    def __init__(self, text: str, start: int, end: int, length: int | None = None):
        self._text = text
        self._start = start  # first character inside the opening quote of the first tuple
        self._end = end  # the closing quote of the last tuple; start - 1 for an empty array
        # start == end is one empty tuple ([""]): a bad tuple to report, as the plain JSON path does.
        if length is None:
            length = 0 if end < start else text.count(_SEP, start, end) + 1
        self._len = length
        self._cursor = (0, start)  # (tuple index, text position): slices are taken in order

    def __len__(self) -> int:
        return self._len

    def _position(self, index: int) -> int:
        i, pos = self._cursor
        if index < i:
            i, pos = 0, self._start
        text = self._text
        while i < index:
            pos = text.index(_SEP, pos, self._end) + 3
            i += 1
        self._cursor = (i, pos)
        return pos

    def __getitem__(self, key: slice) -> list[str]:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("TupleSpan supports contiguous slices only")
        first, stop, _ = key.indices(self._len)
        if first >= stop:
            return []
        begin = self._position(first)
        if stop >= self._len:
            return self._text[begin : self._end].split(_SEP)
        want = stop - first
        # Split a stretch a little longer than the tuples wanted (tuples are about the same length),
        # widening it until enough came out; the cursor then moves past them without a scan.
        guess = (self._end - self._start) // self._len + 8
        while True:
            limit = min(self._end, begin + guess * want + guess)
            parts = self._text[begin:limit].split(_SEP, want)
            if len(parts) > want or limit == self._end:
                break
            guess *= 2
        tuples = parts[:want]
        self._cursor = (stop, begin + sum(map(len, tuples)) + 3 * want)
        return tuples

    def __iter__(self) -> Iterator[str]:
        return iter(self[0 : self._len])

    @property
    def text_is_ascii(self) -> bool:
        """The compiled core reads the text in place when it is ASCII (str.isascii is O(1) in CPython)."""
        return self._text.isascii()

    def raw_from(self, index: int) -> tuple[str, int, int]:
        """The text, where tuple ``index`` starts in it, and where the last tuple ends."""
        return self._text, self._position(index), self._end

    def moved_to(self, index: int, pos: int) -> None:
        """Someone read the tuples before ``index``, which starts at ``pos``: continue from there."""
        self._cursor = (index, pos)


def _count_tuples(text: str, open_at: int, close: int) -> int:
    """Tuples in the array text[open_at:close] (first to last quote) in the plain form: no backslash, and
    every quote one of the two ends or part of a separator (no blanks, no odd strings); -1 otherwise."""
    if core is not None:
        counted: int = core.count_tuples(text, open_at, close)
        if counted != -2:  # -2: not ASCII text, counted below
            return counted
    if text[open_at] != '"' or text[close - 1] != '"' or text.find("\\", open_at, close) >= 0:
        return -1
    separators = text.count(_SEP, open_at, close)
    return separators + 1 if text.count('"', open_at, close) == 2 * (separators + 1) else -1


def parse_big_record(text: str, pos: int, end: int) -> tuple[dict[str, Any], int] | None:
    """The record at text[pos:] (which must be the only one before ``end``) with TupleSpans, or None."""
    pieces: list[str] = []
    spans: list[tuple[int, int, int]] = []
    cursor = pos
    while True:
        key = text.find(_KEY, cursor, end)
        if key < 0:
            break
        open_at = key + len(_KEY)
        close = text.find("]", open_at, end)
        if close < 0:
            return None
        if close > open_at:
            count = _count_tuples(text, open_at, close)
            if count < 0:
                return None
            spans.append((open_at + 1, close - 1, count))
        else:
            spans.append((open_at, open_at - 1, 0))
        pieces.append(text[cursor:open_at])
        cursor = close
    if not spans:
        return None
    pieces.append(text[cursor:end])
    rest = "".join(pieces)
    try:
        body, stop = _DECODER.raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(body, dict) or rest[stop:].strip(" \t\r\n,"):
        return None
    arrays = list(_tuple_lists(body))
    if len(arrays) != len(spans):
        return None
    for (holder, field), (start, stop_at, count) in zip(arrays, spans, strict=True):
        holder[field] = TupleSpan(text, start, stop_at, count)
    return body, end


def _tuple_lists(node: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """Every dict holding a "flowTuples" list, in document order (the order the arrays were cut)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "flowTuples" and isinstance(value, list):
                yield node, key
            else:
                yield from _tuple_lists(value)
    elif isinstance(node, list):
        for item in node:
            yield from _tuple_lists(item)
