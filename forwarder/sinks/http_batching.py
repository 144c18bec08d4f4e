"""How the HTTP sinks turn a batch into requests: the events cut into request-sized spans, each
span's body joined from framed text without building a string per event, up to ``max_in_flight``
requests of one ``send()`` under way at once, and ``HttpBatchSink``, the sink skeleton around that
which Splunk HEC, Elasticsearch and generic HTTP share."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain
from typing import ClassVar, Protocol

from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_common import HttpClient, HttpSettings, Redactor, Response, raise_if_transient, safe_url
from forwarder.sinks.retry import RetriesExhausted, RetryPolicy, TransientError

PART = 256  # events per text part of a body (see http_common.HttpClient.body)
Work = Sequence[int]  # indexes into the batch that travel in one request: a range, or what is left of one


class Framing(Protocol):
    """A batch's events as request text: ``Framed`` (an envelope or action line per event) or plain lines."""

    def sizes(self) -> list[int]:
        """Each event's length on the wire, before compression."""
        ...

    def parts(self, work: Work) -> Iterator[str]:
        """The text of one request body for the events ``work``, a few hundred events per part."""
        ...


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

    def parts(self, work: Work) -> Iterator[str]:
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


class Resend(TransientError):
    """A 2xx answer that took some of a request's events and wants the others again (Elasticsearch's
    per-document 429 or 5xx): ``work`` is what the next attempt sends."""

    def __init__(self, message: str, work: Work):
        super().__init__(message)
        self.work = work


class HttpBatchSink(ABC):
    """What Splunk HEC, Elasticsearch and generic HTTP do alike with a batch: frame it once, cut it into
    requests within batch_max_events / batch_max_bytes, send up to max_in_flight of them at once, retry
    each until its answer is not transient (dead-lettering its events when the retry policy gives up),
    halve a request on demand and count what was delivered.

    A subclass says how events are framed (``_frame``) and what the receiver's answers mean (``_post``).
    """

    peer: ClassVar[str]  # the receiver as the dead-letter reasons name it: "Splunk HEC", "the receiver"
    undelivered: ClassVar[str]  # a dead-letter reason's start when the retry policy gave up

    def __init__(
        self,
        name: str,
        fmt: str,
        settings: HttpSettings,
        *,
        method: str = "POST",
        path: str = "",
        headers: Mapping[str, str],
        secrets: Iterable[str | None],
        dead_letter: DeadLetter,
        retry: RetryPolicy,
    ):
        self.name = name
        self.format = fmt
        self.settings = settings
        self.method = method
        self._path = path  # below the url's own path; may carry a query
        self._headers = dict(headers)
        self._dead_letter = dead_letter
        self._retry = retry
        self._redact = Redactor(secrets)
        self._client = HttpClient(settings, name, self._redact)
        self._where = safe_url(settings.url)
        self.delivered = 0
        self._lock = threading.Lock()
        self._in_flight = InFlight(settings.max_in_flight, name)

    # -- what the pipeline's lane reads to cut batches: one send() is about one request ---------

    @property
    def batch_max_events(self) -> int:
        return self.settings.batch_max_events

    @property
    def batch_max_bytes(self) -> int:
        return self.settings.batch_max_bytes

    @property
    def max_in_flight(self) -> int:
        return self.settings.max_in_flight

    # -- Sink protocol -------------------------------------------------------------------------

    def open(self) -> None:
        self._client.open()

    def reopen(self) -> None:
        self._client.reopen()

    def close(self) -> None:
        self._in_flight.close()
        self._client.close()

    def send(self, batch: Batch) -> None:
        if not batch.lines:
            return
        framed = self._frame(batch)
        jobs = [
            partial(self._deliver, batch, framed, range(start, end))
            for start, end in spans(framed.sizes(), self.settings.batch_max_events, self.settings.batch_max_bytes)
        ]
        self._in_flight.run(jobs)

    # -- what each protocol says ---------------------------------------------------------------

    @abstractmethod
    def _frame(self, batch: Batch) -> Framing:
        """The batch's events as this protocol's request text."""

    @abstractmethod
    def _post(self, batch: Batch, framed: Framing, work: Work, todo: deque[Work], abort: threading.Event) -> None:
        """Send the events ``work`` in one request and act on the answer; what the receiver hands back to
        send again (halves, the events after a bad one) goes on ``todo``."""

    # -- shared steps --------------------------------------------------------------------------

    def _deliver(self, batch: Batch, framed: Framing, work: Work, abort: threading.Event) -> None:
        """One request's worth of events, through splits and dead letters."""
        todo: deque[Work] = deque([work])
        while todo:
            self._post(batch, framed, todo.popleft(), todo, abort)

    def _exchange(
        self,
        batch: Batch,
        framed: Framing,
        work: Work,
        what: str,
        abort: threading.Event,
        accept: Callable[[Work, Response], None] | None = None,
    ) -> tuple[Response, Work] | None:
        """Send ``work`` in one request until the answer is not transient (408, 429, 5xx and transport
        failures are retried). Returns that answer and the events it is about, or None once the retry
        policy gave up and the events are dead-lettered.

        ``accept``, called with a 2xx answer, may raise ``Resend`` to send some of the events again.
        """
        pending = work
        built: tuple[Work, bytes, dict[str, str]] | None = None  # kept while an outage repeats the same body

        def attempt() -> Response:
            nonlocal pending, built
            if abort.is_set():
                raise Aborted
            if built is None or built[0] is not pending:
                headers = dict(self._headers)
                built = (pending, self._body(framed, pending, headers), headers)
            _, body, headers = built
            resp = self._client.request(self.method, self._path, body, self._attempt_headers(headers), what)
            raise_if_transient(resp, what, self._redact)
            if accept is not None and 200 <= resp.status < 300:
                try:
                    accept(pending, resp)
                except Resend as again:
                    pending = again.work
                    raise
            return resp

        try:
            resp = self._retry.call(attempt, what, sink=self.name)
        except RetriesExhausted as exc:
            self._reject(batch, pending, f"{self.undelivered}: {exc}")
            return None
        return resp, pending

    def _body(self, framed: Framing, work: Work, headers: dict[str, str]) -> bytes:
        """The request body for ``work`` (its Content-Encoding goes into ``headers``); a subclass may check
        it before it is sent (built once per request, however often an outage makes it go again)."""
        return self._client.body(framed.parts(work), headers)

    def _attempt_headers(self, headers: dict[str, str]) -> Mapping[str, str]:
        """The headers of one attempt; a subclass adds what may change between attempts (a bearer token)."""
        return headers

    def _split(self, batch: Batch, work: Work, todo: deque[Work], alone: str) -> None:
        """Send ``work`` again in two halves, or dead-letter its one event with ``alone``."""
        if len(work) == 1:
            self._reject(batch, work, alone)
            return
        mid = len(work) // 2
        todo.appendleft(work[mid:])
        todo.appendleft(work[:mid])

    def _refused(self, resp: Response) -> str:
        """The dead-letter reason for a request the receiver refused for good."""
        return f"{self.peer} rejected the request: HTTP {resp.status} {resp.excerpt(self._redact)}".rstrip()

    def _reject(self, batch: Batch, work: Work, reason: str) -> None:
        self._dead_letter.write(self.name, reason, [(batch.events[i], batch.lines[i]) for i in work])

    def _count(self, n: int) -> None:
        with self._lock:
            self.delivered += n

    def _ask(self, method: str, path: str, headers: Mapping[str, str], what: str) -> Response:
        """One request with an empty body, for ``probe()`` (validate --connect): no retries, and a transport
        or TLS failure becomes Unreachable with the reason."""
        try:
            return self._client.request(method, path, b"", headers, what)
        except (TransientError, SinkFatal) as exc:
            reason = str(exc).removeprefix(f"{what}: ").removeprefix(f"sink {self.name}: ")
            raise Unreachable(reason) from None
