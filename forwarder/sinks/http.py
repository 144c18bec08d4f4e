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
from typing import Any

from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, Sink
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_batching import PART, Framing, HttpBatchSink, Work
from forwarder.sinks.http_common import (
    COMMON_KEYS,
    HttpSettings,
    SinkConfigError,
    check_keys,
    fatal_for_status,
    get_format,
    get_str,
    settings_from,
)
from forwarder.sinks.retry import RetryPolicy

log = logging.getLogger("forwarder.sinks.http")

DEFAULT_BATCH_MAX_EVENTS = 1000
DEFAULT_BATCH_MAX_BYTES = 1_000_000
CONTENT_TYPES = {"ecs": "application/x-ndjson", "ocsf": "application/x-ndjson", "cef": "text/plain; charset=utf-8"}
# Set by the sink itself; a `headers` entry must not fight it.
_RESERVED = frozenset({"content-length", "content-encoding", "transfer-encoding", "host", "connection"})

KEYS = COMMON_KEYS | {"headers", "method"}


class NdjsonLines:
    """A batch's formatted lines as request text: each line and a newline, no framing."""

    __slots__ = ("lines",)

    def __init__(self, lines: Sequence[str]):
        self.lines = lines

    def sizes(self) -> list[int]:
        return [n + 1 for n in map(len, self.lines)]

    def parts(self, work: Work) -> Iterator[str]:
        lines = self.lines
        if isinstance(work, range) and work.step == 1:
            for i in range(work.start, work.stop, PART):
                yield "\n".join(lines[i : min(i + PART, work.stop)])
                yield "\n"
            return
        for i in range(0, len(work), PART):
            yield "\n".join([lines[k] for k in work[i : i + PART]])
            yield "\n"


class HttpSink(HttpBatchSink):
    peer = "the receiver"
    undelivered = "not delivered"

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
        sent = {"Content-Type": CONTENT_TYPES[fmt]}
        if any(key.lower() == "content-type" for key in headers):
            del sent["Content-Type"]
        sent.update(headers)
        super().__init__(
            name,
            fmt,
            settings,
            method=method,
            headers=sent,
            secrets=headers.values(),
            dead_letter=dead_letter,
            retry=retry,
        )

    def _frame(self, batch: Batch) -> Framing:
        return NdjsonLines(batch.lines)

    def _post(self, batch: Batch, framed: Framing, work: Work, todo: deque[Work], abort: threading.Event) -> None:
        got = self._exchange(batch, framed, work, f"{self.method} of {len(work)} events from {batch.source}", abort)
        if got is None:
            return
        resp, _ = got
        if 200 <= resp.status < 300:
            self._count(len(work))
            return
        if resp.status == 413:
            self._split(batch, work, todo, "HTTP 413: the event alone is larger than the receiver accepts")
            return
        hint = " (check the credentials in headers)" if resp.status in (401, 403) else ""
        fatal = fatal_for_status(resp, self.name, self._where, self._redact, hint)
        if fatal is not None:
            raise fatal
        self._reject(batch, work, self._refused(resp))

    def probe(self) -> str:
        """The configured method with an empty body (no events) and the configured headers."""
        resp = self._ask(self.method, "", self._headers, f"empty {self.method}")
        if 200 <= resp.status < 300:
            return f"{self._where} accepted an empty {self.method} (HTTP {resp.status})"
        hint = " (check the credentials in headers)" if resp.status in (401, 403) else ""
        fatal = fatal_for_status(resp, self.name, self._where, self._redact, hint)
        if fatal is not None:
            raise Unreachable(str(fatal).removeprefix(f"sink {self.name}: "))
        if resp.status >= 500 or resp.status in (408, 429):
            raise Unreachable(f"{self._where} answered HTTP {resp.status} {resp.excerpt(self._redact, 160)}".rstrip())
        # Collectors often refuse an empty body (400, 411, 422): the endpoint is there and answered.
        return f"{self._where} answered an empty {self.method} with HTTP {resp.status} (reachable; no events sent)"


def from_config(cfg: Mapping[str, Any], name: str, dead_letter: DeadLetter, retry: RetryPolicy) -> Sink:
    check_keys(cfg, KEYS, name)
    fmt = get_format(cfg, name)
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
