"""One sequence over slices of several others, without copying them.

A sink's batch joins the events of many chunks (many blobs). Chunks from the compiled core hold
their events as columns and build a ``FlowEvent`` only when one is asked for, so joining them with
``list(...)`` would build every event of the batch; ``Joined`` indexes through to the parts instead.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import TypeVar, overload

T = TypeVar("T")

Run = tuple[Sequence[T], int, int]  # a sequence and the [start, stop) of it that belongs to the whole


class Joined(Sequence[T]):
    __slots__ = ("_len", "_runs", "_starts")

    def __init__(self, runs: Sequence[Run[T]]):
        self._runs = [r for r in runs if r[2] > r[1]]
        self._starts: list[int] = []
        total = 0
        for _, start, stop in self._runs:
            self._starts.append(total)
            total += stop - start
        self._len = total

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("Joined index out of range")
        k = bisect_right(self._starts, index) - 1
        seq, start, _ = self._runs[k]
        return seq[start + index - self._starts[k]]

    def __iter__(self) -> Iterator[T]:
        for seq, start, stop in self._runs:
            if start == 0 and stop == len(seq):
                yield from seq
            else:  # by index: skipping through an iterator would build the events it skips
                for i in range(start, stop):
                    yield seq[i]


def join(runs: Sequence[Run[T]]) -> Sequence[T]:
    """The runs as one sequence: a plain list when they are lists (copying references is cheap), else ``Joined``."""
    if len(runs) == 1 and runs[0][1] == 0 and runs[0][2] == len(runs[0][0]):
        return runs[0][0]
    if all(type(seq) is list for seq, _, _ in runs):
        out: list[T] = []
        for seq, start, stop in runs:
            out += seq[start:stop]  # type: ignore[index]
        return out
    return Joined(runs)
