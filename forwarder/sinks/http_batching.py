"""How the HTTP sinks turn a batch into requests: the events cut into request-sized spans, each
span's body joined from framed text without building a string per event, and up to
``max_in_flight`` requests of one ``send()`` under way at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

PART = 256  # events per text part of a body (see http_common.HttpClient.body)


class Framed:
    """Each event of a batch as head + body + tail (an HEC envelope around the formatted line, a bulk
    action line before it), kept as three lists so that no string is built per event: a body is
    joined straight from them, PART events at a time."""

    __slots__ = ("bodies", "heads", "tails")

    def __init__(self, heads: Sequence[str], bodies: Sequence[str], tails: Sequence[str]):
        self.heads = heads
        self.bodies = bodies
        self.tails = tails  # usually a few shared strings repeated: a list of references, not copies

    def sizes(self) -> list[int]:
        lengths = zip(map(len, self.heads), map(len, self.bodies), map(len, self.tails), strict=True)
        return [h + b + t for h, b, t in lengths]

    def parts(self, work: Sequence[int]) -> Iterator[str]:
        heads, bodies, tails = self.heads, self.bodies, self.tails
        if isinstance(work, range) and work.step == 1:
            for i in range(work.start, work.stop, PART):
                j = min(i + PART, work.stop)
                yield "".join(chain.from_iterable(zip(heads[i:j], bodies[i:j], tails[i:j], strict=True)))
            return
        for i in range(0, len(work), PART):
            yield "".join(chain.from_iterable((heads[k], bodies[k], tails[k]) for k in work[i : i + PART]))


def spans(sizes: Sequence[int], max_events: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut [0, len(sizes)) into consecutive ranges of at most ``max_events`` items and ``max_bytes``
    (an item larger than ``max_bytes`` travels alone: the peer decides, with a 413, whether it fits)."""
    out: list[tuple[int, int]] = []
    start = 0
    total = 0
    n = len(sizes)
    for i in range(n):
        size = sizes[i]
        if i > start and (i - start >= max_events or total + size > max_bytes):
            out.append((start, i))
            start = i
            total = 0
        total += size
    if start < n:
        out.append((start, n))
    return out


class Aborted(Exception):
    """Another request of the same send() failed for good: stop this one at its next attempt."""


class InFlight:
    """Runs the requests of one send() with up to ``max_in_flight`` of them under way at once.

    While one request waits for its answer the next is being built and compressed (zlib lets go of
    the GIL), which is what keeps a remote collector's round trip from capping throughput. With
    ``max_in_flight = 1`` requests go one after another, in order.
    """

    def __init__(self, size: int, sink: str):
        self.size = size
        self.sink = sink
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, jobs: Sequence[Callable[[threading.Event], None]]) -> None:
        abort = threading.Event()
        if self.size == 1 or len(jobs) == 1:
            for job in jobs:
                job(abort)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=f"{self.sink}-http")
            pool = self._pool
        futures = [pool.submit(job, abort) for job in jobs]
        first: BaseException | None = None
        for future in futures:
            try:
                future.result()
            except Aborted:
                pass
            except BaseException as exc:  # SinkFatal, Interrupted, a bug: the others stop at their next attempt
                if first is None:
                    first = exc
                    abort.set()
        if first is not None:
            raise first

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
