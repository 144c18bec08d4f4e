"""Formatted lines kept as the compiled core renders them: one UTF-8 buffer, every line followed by a newline.

A file sink writes such a buffer as it is (a slice of it, for a batch), where a list of str would be
joined and encoded again: for a 40 MB blob that is 600 MB copied twice more. Sinks that frame each
event (HEC, Elasticsearch, syslog) read lines one by one, as str, and get them decoded on demand. Line
boundaries are found once, when first needed (cutting a batch, or reading a line).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload


class JoinedLines(Sequence[str]):
    __slots__ = ("_ends", "data", "lines")

    def __init__(self, data: bytes, lines: int):
        self.data = data
        self.lines = lines  # how many
        self._ends: array[int] | None = None  # offset just past each line's newline

    def ends(self) -> array[int]:
        if self._ends is None:
            ends = array("q")
            data, find, pos = self.data, self.data.find, 0
            for _ in range(self.lines):
                pos = find(b"\n", pos) + 1
                ends.append(pos)
            if len(ends) != self.lines or (self.lines and ends[-1] != len(data)):
                raise ValueError(f"{self.lines} lines expected in {len(data)} bytes")
            self._ends = ends
        return self._ends

    def offset(self, i: int) -> int:
        """Byte offset where line ``i`` starts (``len(self)``: the end)."""
        return 0 if i == 0 else self.ends()[i - 1]

    def span(self, start: int, stop: int) -> memoryview:
        """Lines [start, stop) with their newlines, as they are written."""
        if start == 0 and stop == self.lines:
            return memoryview(self.data)
        return memoryview(self.data)[self.offset(start) : self.offset(stop)]

    def __len__(self) -> int:
        return self.lines

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.lines))]
        if i < 0:
            i += self.lines
        if not 0 <= i < self.lines:
            raise IndexError("line index out of range")
        ends = self.ends()
        start = ends[i - 1] if i else 0
        return self.data[start : ends[i] - 1].decode("utf-8", "replace")

    def __iter__(self) -> Iterator[str]:
        start = 0
        for end in self.ends():
            yield self.data[start : end - 1].decode("utf-8", "replace")
            start = end


def line_bytes(lines: Sequence[str], start: int, stop: int) -> int:
    """Bytes of lines [start, stop) with a newline each, as a file gets them."""
    if isinstance(lines, JoinedLines):
        return lines.offset(stop) - lines.offset(start)
    return sum(len(lines[i]) for i in range(start, stop)) + (stop - start)
