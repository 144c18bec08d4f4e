"""Generic HTTP: newline-delimited events (one formatted event per line, trailing newline) POSTed or
PUT to any URL, for collectors that take NDJSON (Vector, Fluent Bit, Logstash http input, Cribl,
cloud log APIs behind a gateway).

2xx delivered; 408/429/5xx retried (Retry-After honoured); 401/403/404/405 and redirects stop the
sink; 413 halves the request; any other 4xx dead-letters that request's events with the status and
an excerpt of the answer. Header values may be credentials: they are sent, never logged.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from forwarder.formats import FORMATS
from forwarder.sinks.base import Batch, Sink
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_batching import PART, Aborted, InFlight, spans
from forwarder.sinks.http_common import (
    COMMON_KEYS,
    HttpClient,
    HttpSettings,
    Redactor,
    Response,
    SinkConfigError,
    check_keys,
    fatal_for_status,
    get_str,
    raise_if_transient,
    safe_url,
    settings_from,
)
from forwarder.sinks.retry import RetriesExhausted, RetryPolicy

log = logging.getLogger("forwarder.sinks.http")

DEFAULT_BATCH_MAX_EVENTS = 1000
DEFAULT_BATCH_MAX_BYTES = 1_000_000
CONTENT_TYPES = {"ecs": "application/x-ndjson", "ocsf": "application/x-ndjson", "cef": "text/plain; charset=utf-8"}
# Set by the sink itself; a `headers` entry must not fight it.
_RESERVED = frozenset({"content-length", "content-encoding", "transfer-encoding", "host", "connection"})

KEYS = COMMON_KEYS | {"headers", "method"}


class HttpSink:
    def __init__(
        self,
        name: str,
        fmt: str,
        settings: HttpSettings,
        *,
        method: str,
        headers: Mapping[str, str],
        dead_letter: DeadLetter,
        retry: RetryPolicy,
    ):
        self.name = name
        self.format = fmt
        self.settings = settings
        self.method = method
        self._dead_letter = dead_letter
        self._retry = retry
        self._redact = Redactor(headers.values())
        self._client = HttpClient(settings, name, self._redact)
        self._where = safe_url(settings.url)
        self._headers = {"Content-Type": CONTENT_TYPES[fmt]}
        if any(key.lower() == "content-type" for key in headers):
            del self._headers["Content-Type"]
        self._headers.update(headers)
        self.delivered = 0
        self._lock = threading.Lock()
        self._in_flight = InFlight(settings.max_in_flight, name)

    def open(self) -> None:
        self._client.open()

    def reopen(self) -> None:
        self._client.reopen()

    def close(self) -> None:
        self._in_flight.close()
        self._client.close()

    def send(self, batch: Batch) -> None:
        lines = batch.lines
        if not lines:
            return
        sizes = [n + 1 for n in map(len, lines)]
        jobs = [
            partial(self._deliver, batch, start, end)
            for start, end in spans(sizes, self.settings.batch_max_events, self.settings.batch_max_bytes)
        ]
        self._in_flight.run(jobs)

    def _deliver(self, batch: Batch, start: int, end: int, abort: threading.Event) -> None:
        todo: deque[tuple[int, int]] = deque([(start, end)])
        while todo:
            s, e = todo.popleft()
            self._post(batch, s, e, todo, abort)

    def _post(self, batch: Batch, start: int, end: int, todo: deque[tuple[int, int]], abort: threading.Event) -> None:
        headers = dict(self._headers)
        body = self._client.body(_ndjson_parts(batch.lines, start, end), headers)
        what = f"{self.method} of {end - start} events from {batch.source}"

        def attempt() -> Response:
            if abort.is_set():
                raise Aborted
            resp = self._client.request(self.method, "", body, headers, what)
            raise_if_transient(resp, what, self._redact)
            return resp

        try:
            resp = self._retry.call(attempt, what, sink=self.name)
        except RetriesExhausted as exc:
            self._reject(batch, start, end, f"not delivered: {exc}")
            return
        if 200 <= resp.status < 300:
            with self._lock:
                self.delivered += end - start
            return
        if resp.status == 413:
            if end - start == 1:
                self._reject(batch, start, end, "HTTP 413: the event alone is larger than the receiver accepts")
                return
            mid = (start + end) // 2
            todo.appendleft((mid, end))
            todo.appendleft((start, mid))
            return
        fatal = fatal_for_status(
            resp,
            self.name,
            f"{self._where}",
            self._redact,
            " (check the credentials in headers)" if resp.status in (401, 403) else "",
        )
        if fatal is not None:
            raise fatal
        self._reject(
            batch,
            start,
            end,
            f"the receiver rejected the request: HTTP {resp.status} {resp.excerpt(self._redact)}".rstrip(),
        )

    def _reject(self, batch: Batch, start: int, end: int, reason: str) -> None:
        self._dead_letter.write(self.name, reason, [(batch.events[i], batch.lines[i]) for i in range(start, end)])


def _ndjson_parts(lines: Sequence[str], start: int, end: int) -> Iterator[str]:
    for i in range(start, end, PART):
        yield "\n".join(lines[i : min(i + PART, end)])
        yield "\n"


def from_config(cfg: Mapping[str, Any], name: str, dead_letter: DeadLetter, retry: RetryPolicy) -> Sink:
    check_keys(cfg, KEYS, name)
    fmt = get_str(cfg, "format", name, "ecs") or "ecs"
    if fmt not in FORMATS:
        raise SinkConfigError(f"sink {name}: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    settings = settings_from(
        cfg,
        name,
        batch_max_events=DEFAULT_BATCH_MAX_EVENTS,
        batch_max_bytes=DEFAULT_BATCH_MAX_BYTES,
        timeout=30.0,
        allow_query=True,
    )
    method = (get_str(cfg, "method", name, "POST") or "POST").upper()
    if method not in ("POST", "PUT"):
        raise SinkConfigError(f"sink {name}: method must be POST or PUT, got {method!r}")
    raw = cfg.get("headers", {})
    if not isinstance(raw, Mapping):
        raise SinkConfigError(f"sink {name}: headers must be a table of strings")
    headers: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or any(c in key for c in " \t\r\n:"):
            raise SinkConfigError(f"sink {name}: headers has a bad header name {key!r}")
        if not isinstance(value, str):
            raise SinkConfigError(f"sink {name}: headers.{key} must be a string")
        if "\r" in value or "\n" in value:
            raise SinkConfigError(f"sink {name}: headers.{key} contains a line break")  # the value is not shown
        if key.lower() in _RESERVED:
            raise SinkConfigError(f"sink {name}: headers.{key} is set by the sink itself")
        headers[key] = value
    return HttpSink(name, fmt, settings, method=method, headers=headers, dead_letter=dead_letter, retry=retry)
