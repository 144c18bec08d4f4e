"""Splunk HTTP Event Collector: batches of concatenated JSON envelopes to ``/services/collector/event``.

JSON events (ECS, OCSF) go into the envelope as the formatter wrote them, by string
concatenation: no parse, no re-serialisation. CEF lines travel as JSON strings.

How HEC answers (Splunk's documented status codes) and what the sink does:

====  ===========================  =====================================================
HTTP  HEC code                     action
====  ===========================  =====================================================
200   0 Success                    delivered (with ``ack``: once the ackId reads true)
400   6/12/13/15 + invalid-event-  events before it were taken, that one is dead-lettered,
      number                       the rest are sent again
400   7 Incorrect index            SinkFatal: the token may not write to ``index``
400   10/11 channel, 14 ack off    SinkFatal: the channel / ack settings do not fit the token
401   2/3 token required/invalid   SinkFatal (the message never quotes the token)
403   1/4 token disabled/invalid   SinkFatal
404   (HEC off / wrong url)        SinkFatal
413   content too large            split the request in halves (one event alone: dead-letter)
429,  9 Server busy, 8 internal,   retried with backoff, honouring Retry-After
5xx   18-20 unhealthy
====  ===========================  =====================================================
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_batching import Aborted, Framed, Framing, HttpBatchSink, Work
from forwarder.sinks.http_common import (
    COMMON_KEYS,
    HttpSettings,
    Response,
    SinkConfigError,
    check_keys,
    fatal_for_status,
    get_bool,
    get_format,
    get_number,
    get_str,
    secret,
    settings_from,
)
from forwarder.sinks.retry import Interrupted, RetriesExhausted, RetryPolicy

log = logging.getLogger("forwarder.sinks.splunk_hec")

EVENT_PATH = "/services/collector/event"
HEALTH_PATH = "/services/collector/health"
ACK_PATH = "/services/collector/ack"

DEFAULT_BATCH_MAX_EVENTS = 2000
# Splunk Cloud and many load balancers in front of HEC refuse requests over about 1 MB.
DEFAULT_BATCH_MAX_BYTES = 1_000_000


def default_sourcetype(fmt: str, aggregated: bool) -> str:
    """azure:nsg:flow[:summary][:ocsf|:cef]: aggregates apart, so that a search counting flows does not count each
    aggregate as one flow."""
    return "azure:nsg:flow" + (":summary" if aggregated else "") + ("" if fmt == "ecs" else f":{fmt}")


# HEC codes that point at one bad event (``invalid-event-number``).
_EVENT_CODES = frozenset({5, 6, 12, 13, 15})

KEYS = COMMON_KEYS | {
    "token",
    "token_file",
    "sourcetype",
    "index",
    "source",
    "host",
    "ack",
    "channel",
    "ack_timeout",
    "ack_poll_interval",
}


class SplunkHecSink(HttpBatchSink):
    peer = "Splunk HEC"
    undelivered = "not delivered to Splunk HEC"

    def __init__(
        self,
        name: str,
        fmt: str,
        settings: HttpSettings,
        token: str,
        *,
        sourcetype: str,
        index: str | None,
        source: str | None,
        host: str | None,
        ack: bool,
        channel: str | None,
        ack_timeout: float,
        ack_poll_interval: float,
        dead_letter: DeadLetter,
        retry: RetryPolicy,
    ):
        headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        if channel:
            headers["X-Splunk-Request-Channel"] = channel
        super().__init__(
            name,
            fmt,
            settings,
            path=EVENT_PATH,
            headers=headers,
            secrets=[token],
            dead_letter=dead_letter,
            retry=retry,
        )
        self.ack = ack
        self.channel = channel
        self.ack_timeout = ack_timeout
        self.ack_poll_interval = ack_poll_interval
        self.index = index
        self._json_event = fmt != "cef"
        # The envelope's constant tail, after "event"; "source" defaults to the blob, so it may vary.
        meta = ""
        if host is not None:
            meta += ',"host":' + orjson.dumps(host).decode()
        meta += ',"sourcetype":' + orjson.dumps(sourcetype).decode()
        if index is not None:
            meta += ',"index":' + orjson.dumps(index).decode()
        self._fixed_source = None if source is None else ',"source":' + orjson.dumps(source).decode()
        self._meta = meta + "}"

    def _deliver(self, batch: Batch, framed: Framing, work: Work, abort: threading.Event) -> None:
        """One request's worth of events, through splits, dead letters and acknowledgement."""
        if not self.ack:
            super()._deliver(batch, framed, work, abort)
            return
        todo: deque[Work] = deque([work])
        awaiting: dict[int, Work] = {}
        while todo:
            while todo:
                self._post(batch, framed, todo.popleft(), todo, abort, awaiting)
            if awaiting:
                self._await_acks(awaiting, todo, abort)

    # -- building ------------------------------------------------------------------------------

    def _frame(self, batch: Batch) -> Framing:
        """Envelope heads ('{"time":...,"event":') and tails (source, sourcetype, ... '}') around each line."""
        events = batch.events
        heads = [f'{{"time":{event.timestamp_ms / 1000},"event":' for event in events]
        bodies: Sequence[str] = batch.lines
        if not self._json_event:
            dumps = orjson.dumps
            bodies = [dumps(line).decode() for line in bodies]
        if self._fixed_source is not None:
            return Framed(heads, bodies, [self._fixed_source + self._meta] * len(events))
        # "source" is the blob: one tail per FlowContext, shared by its events.
        tails: list[str] = []
        append = tails.append
        meta = self._meta
        last_ctx = None
        tail = meta
        for event in events:
            if event.ctx is not last_ctx:
                last_ctx = event.ctx
                tail = ',"source":' + orjson.dumps(last_ctx.source).decode() + meta
            append(tail)
        return Framed(heads, bodies, tails)

    # -- posting -------------------------------------------------------------------------------

    def _post(
        self,
        batch: Batch,
        framed: Framing,
        work: Work,
        todo: deque[Work],
        abort: threading.Event,
        awaiting: dict[int, Work] | None = None,
    ) -> None:
        """Send the events ``work`` in one request; what HEC hands back (halves, the rest after a bad
        event) goes back on ``todo``, what it accepted is counted or, with ack (``awaiting`` given),
        awaits its ackId there."""
        got = self._exchange(batch, framed, work, f"HEC request of {len(work)} events from {batch.source}", abort)
        if got is None:
            return
        resp, _ = got
        doc = resp.json()
        hec = doc if isinstance(doc, dict) else {}
        code = hec.get("code")
        if 200 <= resp.status < 300:
            if awaiting is not None:
                ack_id = hec.get("ackId")
                if not isinstance(ack_id, int):
                    raise SinkFatal(
                        f"sink {self.name}: ack = true but HEC at {self._where} returned no ackId: turn on "
                        "indexer acknowledgement for the token, or set ack = false"
                    )
                awaiting[ack_id] = work
            else:
                self._count(len(work))
            return
        if resp.status == 413:
            self._split(batch, work, todo, "HTTP 413: the event alone is larger than HEC accepts")
            return
        fatal = self._fatal(resp, code)
        if fatal is not None:
            raise fatal
        if resp.status == 400 and code in _EVENT_CODES:
            bad = hec.get("invalid-event-number")
            reason = f"Splunk HEC rejected the event: HTTP 400 code {code} {hec.get('text', '')}".rstrip()
            if isinstance(bad, int) and 0 <= bad < len(work):
                # HEC reads a request in order and stops at the bad event: those before it are taken
                # (with ack they carry no ackId, so they go again rather than go unconfirmed).
                self._reject(batch, work[bad : bad + 1], reason)
                if awaiting is not None and bad > 0:
                    todo.appendleft(work[:bad])
                    if bad + 1 < len(work):
                        todo.insert(1, work[bad + 1 :])
                else:
                    self._count(bad)
                    if bad + 1 < len(work):
                        todo.appendleft(work[bad + 1 :])
                return
            self._split(batch, work, todo, reason)
            return
        self._reject(batch, work, self._refused(resp))

    def _fatal(self, resp: Response, code: Any) -> SinkFatal | None:
        where = f"Splunk HEC at {self._where}"
        if resp.status == 400 and code == 7:
            return SinkFatal(
                f"sink {self.name}: {where}: the token may not write to index {self.index!r} "
                "(HEC code 7, Incorrect index): add it to the token's allowed indexes or change index"
            )
        if resp.status == 400 and code in (10, 11):
            return SinkFatal(
                f"sink {self.name}: {where}: the token needs a valid channel (HEC code {code}): "
                "set channel to a GUID, or ack = true"
            )
        if resp.status == 400 and code == 14:
            return SinkFatal(
                f"sink {self.name}: {where}: ack = true but indexer acknowledgement is off for the "
                "token (HEC code 14): turn it on, or set ack = false"
            )
        hint = ""
        if resp.status in (401, 403):
            hint = f" (check token: HEC code {code})" if code is not None else " (check token)"
        elif resp.status == 404:
            hint = "; is HEC enabled and url the HEC port (usually 8088), without a path?"
        return fatal_for_status(resp, self.name, where, self._redact, hint)

    # -- validate --connect --------------------------------------------------------------------

    def probe(self) -> str:
        """HEC's health endpoint, then an empty event request, which HEC answers with code 5 (No data) when
        it accepts the token and with 401/403 when not: the token is checked without sending an event."""
        health = self._ask("GET", HEALTH_PATH, {}, "HEC health check")
        if health.status == 404:
            raise Unreachable(
                f"{self._where} has no HEC health endpoint (HTTP 404): is url the HEC address, usually port 8088?"
            )
        if health.status != 200:
            why = f"HTTP {health.status} {health.excerpt(self._redact)}".rstrip()
            raise Unreachable(f"HEC at {self._where} is not healthy: {why}")
        answer = self._ask("POST", EVENT_PATH, self._headers, "HEC token check")
        doc = answer.json()
        code = doc.get("code") if isinstance(doc, dict) else None
        if (answer.status == 400 and code == 5) or 200 <= answer.status < 300:
            return f"HEC at {self._where} is healthy and accepts the token"
        fatal = self._fatal(answer, code)
        if fatal is not None:
            raise Unreachable(str(fatal).removeprefix(f"sink {self.name}: "))
        raise Unreachable(
            f"HEC at {self._where} answered an empty request with HTTP {answer.status} {answer.excerpt(self._redact)}"
        )

    # -- indexer acknowledgement ---------------------------------------------------------------

    def _await_acks(self, awaiting: dict[int, Work], todo: deque[Work], abort: threading.Event) -> None:
        """Poll until every ackId reads true; after ``ack_timeout`` send the unconfirmed ones again."""
        deadline = time.monotonic() + self.ack_timeout
        wait = min(0.05, self.ack_poll_interval)
        path = f"{ACK_PATH}?channel={self.channel}"
        headers = dict(self._headers)
        while awaiting:
            if self._retry.stop.wait(wait):
                raise Interrupted("shutdown requested while waiting for HEC acknowledgements")
            wait = min(wait * 2, self.ack_poll_interval)
            body = orjson.dumps({"acks": sorted(awaiting)})
            what = f"HEC ack poll for {len(awaiting)} requests"

            def poll(body: bytes = body, what: str = what) -> Response:
                if abort.is_set():
                    raise Aborted
                return self._client.post_json_ok(path, body, headers, what)

            try:
                resp = self._retry.call(poll, what, sink=self.name)
            except RetriesExhausted as exc:
                log.warning(
                    "Could not poll HEC acknowledgements, polling on until ack_timeout: sink=%s error=%s",
                    self.name,
                    exc,
                )
                resp = None
            if resp is not None:
                doc = resp.json()
                if resp.status == 200 and isinstance(doc, dict) and isinstance(doc.get("acks"), dict):
                    for key, done in doc["acks"].items():
                        if done is True:
                            work = awaiting.pop(int(key), None)
                            if work is not None:
                                self._count(len(work))
                else:
                    fatal = self._fatal(resp, doc.get("code") if isinstance(doc, dict) else None)
                    if fatal is not None:
                        raise fatal
                    log.warning(
                        "Unexpected answer to an HEC ack poll: sink=%s status=%d body=%s",
                        self.name,
                        resp.status,
                        resp.excerpt(self._redact),
                    )
            if awaiting and time.monotonic() >= deadline:
                log.warning(
                    "HEC did not confirm indexing in time, sending those events again: sink=%s requests=%d "
                    "events=%d ack_timeout_s=%g",
                    self.name,
                    len(awaiting),
                    sum(map(len, awaiting.values())),
                    self.ack_timeout,
                )
                todo.extend(sorted(awaiting.values(), key=lambda work: work[0]))
                awaiting.clear()


def default_channel(name: str, url: str) -> str:
    """Stable per host, sink and endpoint, so a restart keeps using the same HEC channel."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nsg-forwarder:{socket.gethostname()}:{name}:{url}"))


def from_config(
    cfg: Mapping[str, Any], name: str, dead_letter: DeadLetter, retry: RetryPolicy, *, aggregated: bool = False
) -> Sink:
    """``aggregated``: the sink is sent aggregates (its table has ``aggregate``), whose default sourcetype differs."""
    check_keys(cfg, KEYS, name)
    fmt = get_format(cfg, name)
    settings = settings_from(
        cfg, name, batch_max_events=DEFAULT_BATCH_MAX_EVENTS, batch_max_bytes=DEFAULT_BATCH_MAX_BYTES, timeout=30.0
    )
    token = secret(cfg, "token", name)
    if token is None:
        raise SinkConfigError(f"sink {name}: token (or token_file) is required")
    if any(c in token for c in "\r\n"):
        raise SinkConfigError(f"sink {name}: token contains a line break")
    if settings.base_path.endswith("/services/collector") or "/services/collector/" in settings.base_path + "/":
        raise SinkConfigError(f"sink {name}: url is the HEC base address (https://host:8088), without /services/...")
    ack = get_bool(cfg, "ack", name, False)
    channel = get_str(cfg, "channel", name)
    if channel is not None:
        try:
            channel = str(uuid.UUID(channel))
        except ValueError:
            raise SinkConfigError(f"sink {name}: channel must be a GUID, got {channel!r}") from None
    elif ack:
        channel = default_channel(name, settings.url)
    sink = SplunkHecSink(
        name,
        fmt,
        settings,
        token,
        sourcetype=get_str(cfg, "sourcetype", name) or default_sourcetype(fmt, aggregated),
        index=get_str(cfg, "index", name),
        source=get_str(cfg, "source", name),
        host=get_str(cfg, "host", name),
        ack=ack,
        channel=channel,
        ack_timeout=get_number(cfg, "ack_timeout", name, 300.0),
        ack_poll_interval=get_number(cfg, "ack_poll_interval", name, 1.0),
        dead_letter=dead_letter,
        retry=retry,
    )
    return sink
