"""Elasticsearch ``_bulk`` into a data stream: one ``create`` with ``_id`` = event id per event.

``create`` with the deterministic event id is what makes replays harmless: a document that is
already there comes back 409 (version_conflict_engine_exception) and counts as delivered, so a
chunk sent twice after a crash is stored once.

Per item: 200/201 delivered, 409 already there (delivered), 429 and 5xx sent again (only those
items, with backoff), other 4xx dead-lettered with Elasticsearch's error type and reason; 403
(not allowed to write) and 404 (the data stream cannot be created) stop the sink. Whole request:
429/5xx retried, 401/403/404 stop the sink, 413 halves the request, 400 halves it until the
document at fault is alone and dead-lettered.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_batching import Framed, Framing, HttpBatchSink, Resend, Work
from forwarder.sinks.http_common import (
    COMMON_KEYS,
    HttpSettings,
    Response,
    SinkConfigError,
    check_keys,
    fatal_for_status,
    get_str,
    secret,
    settings_from,
)
from forwarder.sinks.retry import RetryPolicy, TransientError

log = logging.getLogger("forwarder.sinks.elasticsearch")

DEFAULT_BATCH_MAX_EVENTS = 5000
DEFAULT_BATCH_MAX_BYTES = 10_000_000  # Elastic suggests bulk requests of a few MB to a few tens of MB
FORMATS = ("ecs", "ocsf")


def default_data_stream(fmt: str, kind: str, aggregated: bool) -> str:
    """The stream named after the events' dataset (event.dataset azure.nsg_flow, azure.vnet_flow_summary, ...):
    NSG and VNet flows apart, and aggregates apart from single flows, whose counts they would inflate in Kibana."""
    return f"logs-azure.{kind}_flow{'_summary' if aggregated else ''}{'_ocsf' if fmt == 'ocsf' else ''}-default"


# Only what the sink reads: a 5000-item response shrinks from ~1 MB to ~100 kB.
_FILTER = "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"
_INVALID_NAME = ("invalid_index_name_exception", "illegal_argument_exception")

KEYS = COMMON_KEYS | {
    "api_key",
    "api_key_file",
    "username",
    "password",
    "password_file",
    "data_stream",
    "pipeline",
}


class ElasticsearchSink(HttpBatchSink):
    peer = "Elasticsearch"
    undelivered = "not delivered to Elasticsearch"

    def __init__(
        self,
        name: str,
        fmt: str,
        settings: HttpSettings,
        *,
        data_stream: str,
        vnet_data_stream: str | None = None,
        pipeline: str | None,
        authorization: str | None,
        secrets: Sequence[str | None],
        dead_letter: DeadLetter,
        retry: RetryPolicy,
    ):
        path = f"/{quote(data_stream, safe='')}/_bulk?{_FILTER}"
        if pipeline:
            path += f"&pipeline={quote(pipeline, safe='')}"
        headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        super().__init__(
            name,
            fmt,
            settings,
            path=path,
            headers=headers,
            secrets=secrets,
            dead_letter=dead_letter,
            retry=retry,
        )
        self.data_stream = data_stream
        self._vnet_index = f'"_index":"{vnet_data_stream}",' if vnet_data_stream else ""
        self._targets = repr(data_stream) + (f" and {vnet_data_stream!r}" if vnet_data_stream else "")
        # Data streams require @timestamp; ECS has it, OCSF has `time` only.
        self._add_timestamp = fmt != "ecs"
        self.duplicates = 0  # documents that were already there (409): replays

    # -- building ------------------------------------------------------------------------------

    def _frame(self, batch: Batch) -> Framing:
        lines = batch.lines
        events = batch.events
        # Event ids are hex digests and decimal indexes, index names are checked at start-up:
        # nothing in them needs JSON escaping.
        vnet = self._vnet_index
        if vnet:
            heads = [
                f'{{"create":{{{vnet if ev.ctx.kind == "vnet" else ""}"_id":"{ev.event_id}"}}}}\n' for ev in events
            ]
        else:
            heads = [f'{{"create":{{"_id":"{ev.event_id}"}}}}\n' for ev in events]
        if self._add_timestamp and not lines[0].startswith('{"@timestamp"'):
            heads = [f'{head}{{"@timestamp":{ev.timestamp_ms},' for head, ev in zip(heads, events, strict=True)]
            return Framed(heads, [line[1:] for line in lines], ["\n"] * len(lines))
        return Framed(heads, lines, ["\n"] * len(lines))

    # -- posting -------------------------------------------------------------------------------

    def _post(self, batch: Batch, framed: Framing, work: Work, todo: deque[Work], abort: threading.Event) -> None:
        what = f"bulk request of {len(work)} events from {batch.source}"
        got = self._exchange(batch, framed, work, what, abort, lambda sent, resp: self._items(batch, sent, resp, what))
        if got is None:
            return
        resp, pending = got
        if 200 <= resp.status < 300:
            return
        where = f"Elasticsearch at {self._where}"
        if resp.status == 413:
            self._split(batch, pending, todo, "HTTP 413: the document alone is larger than Elasticsearch accepts")
            return
        fatal = fatal_for_status(resp, self.name, where, self._redact, self._hint(resp.status))
        if fatal is not None:
            raise fatal
        doc = resp.json()
        error = doc.get("error") if isinstance(doc, dict) else None
        etype = error.get("type") if isinstance(error, dict) else None
        if etype in _INVALID_NAME and isinstance(error, dict) and "index" in str(error.get("reason", "")).lower():
            raise SinkFatal(
                f"sink {self.name}: {where}: data_stream {self.data_stream!r} is not a valid name: "
                f"{resp.excerpt(self._redact, 200)}"
            )
        if resp.status == 400:
            self._split(
                batch, pending, todo, f"Elasticsearch rejected the request: HTTP 400 {resp.excerpt(self._redact)}"
            )
            return
        self._reject(batch, pending, self._refused(resp))

    def _items(self, batch: Batch, sent: Work, resp: Response, what: str) -> None:
        """Account for every item of a 2xx answer; raise Resend with the ones to send again."""
        # Elasticsearch writes "errors" before "items": the common all-created answer needs no parse.
        if b'"errors":false' in resp.data[:64]:
            self._count(len(sent))
            return
        doc = resp.json()
        if not isinstance(doc, dict):
            raise TransientError(
                f"{what}: HTTP {resp.status} but the body is not a bulk response: {resp.excerpt(self._redact, 160)}"
            )
        if doc.get("errors") is False:
            self._count(len(sent))
            return
        items = doc.get("items")
        if not isinstance(items, list) or len(items) != len(sent):
            # Sending all again is safe: what was stored comes back 409.
            raise TransientError(
                f"{what}: bulk response has {len(items) if isinstance(items, list) else 'no'} "
                f"items for {len(sent)} documents"
            )
        again: list[int] = []
        rejected: dict[str, list[int]] = {}
        stored = duplicates = 0
        for index, item in zip(sent, items, strict=True):
            result: Any = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            status = result.get("status", 0) if isinstance(result, dict) else 0
            if status in (200, 201):
                stored += 1
            elif status == 409:
                duplicates += 1
            elif status == 429 or status >= 500:
                again.append(index)
            else:
                error = result.get("error") or {}
                etype = error.get("type", "") if isinstance(error, dict) else str(error)
                reason = error.get("reason", "") if isinstance(error, dict) else ""
                if status in (401, 403) or etype == "index_not_found_exception":
                    raise SinkFatal(
                        f"sink {self.name}: Elasticsearch at {self._where} refuses to write to "
                        f"{self.data_stream!r}: HTTP {status} {etype}: {self._redact(str(reason))[:200]}"
                        f"{self._hint(status if status in (401, 403) else 404)}"
                    )
                text = f"Elasticsearch rejected the document: HTTP {status} {etype}: {self._redact(str(reason))}"
                rejected.setdefault(text[:500], []).append(index)
        self._count(stored + duplicates, duplicates)
        for text, indexes in rejected.items():
            self._reject(batch, indexes, text)
        if again:
            raise Resend(
                f"{what}: Elasticsearch asked to send {len(again)} documents again (HTTP 429 or 5xx per item)", again
            )

    def _count(self, n: int, duplicates: int = 0) -> None:
        with self._lock:
            self.delivered += n
            self.duplicates += duplicates

    def probe(self) -> str:
        """``GET /`` with the sink's credentials: the cluster's name and version, or why not."""
        headers = {k: v for k, v in self._headers.items() if k in ("Authorization", "Accept")}
        resp = self._ask("GET", "/", headers, "GET /")
        if resp.status == 200:
            doc = resp.json()
            info = doc if isinstance(doc, dict) else {}
            version = info.get("version", {}).get("number", "?") if isinstance(info.get("version"), dict) else "?"
            return f"Elasticsearch {version} at {self._where} (cluster {info.get('cluster_name', '?')!r}) answered"
        if resp.status == 403:
            # An API key limited to create_doc on the data streams may not read cluster info; writing works.
            return (
                f"Elasticsearch at {self._where} accepted the credentials (GET / is not allowed to them, "
                "which writing does not need)"
            )
        where = f"Elasticsearch at {self._where}"
        fatal = fatal_for_status(resp, self.name, where, self._redact, self._hint(resp.status))
        if fatal is not None and resp.status != 404:
            raise Unreachable(str(fatal).removeprefix(f"sink {self.name}: "))
        raise Unreachable(
            f"{self._where} answered GET / with HTTP {resp.status} {resp.excerpt(self._redact, 160)}: "
            "is url the Elasticsearch address?"
        )

    def _hint(self, status: int) -> str:
        if status == 401:
            return " (check api_key, or username and password)"
        if status == 403:
            return f" (the user or API key needs the create_doc and auto_configure privileges on {self._targets})"
        if status == 404:
            return (
                f"; does an index template match {self._targets} (Elastic's logs-*-* does), "
                "and is url the Elasticsearch address without a path?"
            )
        return ""


def _authorization(cfg: Mapping[str, Any], name: str) -> tuple[str | None, list[str | None]]:
    api_key = secret(cfg, "api_key", name)
    username = get_str(cfg, "username", name)
    password = secret(cfg, "password", name)
    if api_key is not None and (username is not None or password is not None):
        raise SinkConfigError(f"sink {name}: set api_key, or username and password, not both")
    if (username is None) != (password is None):
        raise SinkConfigError(f"sink {name}: username and password go together")
    if api_key is not None:
        # Elastic shows both the base64 "encoded" key and its "id:api_key" parts; accept either.
        encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
        return f"ApiKey {encoded}", [api_key, encoded]
    if username is not None and password is not None:
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        return f"Basic {basic}", [password, basic]
    return None, []


def from_config(
    cfg: Mapping[str, Any], name: str, dead_letter: DeadLetter, retry: RetryPolicy, *, aggregated: bool = False
) -> Sink:
    """``aggregated``: the sink is sent aggregates (its table has ``aggregate``), whose default streams differ."""
    check_keys(cfg, KEYS, name)
    fmt = get_str(cfg, "format", name, "ecs") or "ecs"
    if fmt == "cef":
        raise SinkConfigError(f"sink {name}: Elasticsearch stores JSON documents: format must be ecs or ocsf, not cef")
    if fmt not in FORMATS:
        raise SinkConfigError(f"sink {name}: format must be ecs or ocsf, got {fmt!r}")
    settings = settings_from(
        cfg, name, batch_max_events=DEFAULT_BATCH_MAX_EVENTS, batch_max_bytes=DEFAULT_BATCH_MAX_BYTES, timeout=60.0
    )
    if settings.base_path.endswith("/_bulk"):
        raise SinkConfigError(f"sink {name}: url is the Elasticsearch address, without /_bulk")
    configured = get_str(cfg, "data_stream", name)
    data_stream = configured or default_data_stream(fmt, "nsg", aggregated)
    if data_stream != data_stream.lower() or any(c in data_stream for c in ' "*\\<|,>/?#:') or data_stream[0] in "-_+.":
        raise SinkConfigError(
            f"sink {name}: data_stream {data_stream!r} is not a valid Elasticsearch index name "
            '(lower case, no spaces or any of "*\\<|,>/?#:, not starting with -_+.)'
        )
    authorization, secrets = _authorization(cfg, name)
    return ElasticsearchSink(
        name,
        fmt,
        settings,
        data_stream=data_stream,
        vnet_data_stream=None if configured else default_data_stream(fmt, "vnet", aggregated),
        pipeline=get_str(cfg, "pipeline", name),
        authorization=authorization,
        secrets=secrets,
        dead_letter=dead_letter,
        retry=retry,
    )
