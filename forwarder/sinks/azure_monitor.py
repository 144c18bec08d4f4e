"""Azure Monitor Logs Ingestion API: ASIM Network Session rows into a data collection rule's stream, for
Microsoft Sentinel (``ASimNetworkSessionLogs``, or a custom table with the same columns).

``POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`` with a
JSON array of rows (the formatter's lines joined with commas: no parse, no re-serialisation), gzipped,
an Entra ID bearer token (monitor_auth) and ``x-ms-client-request-id``. Every body is measured before it
goes: over the API's 1 MB per call (compressed or not), it is halved first.

====  =====================================================================================
HTTP  action
====  =====================================================================================
204   delivered (any 2xx)
400   halved until the row the service refuses is alone, which is dead-lettered with its message
401   SinkFatal: the token was refused (audience, tenant)
403   SinkFatal: the identity lacks Monitoring Metrics Publisher on the DCR (new grants take up to 30 min)
404   SinkFatal: no such DCR or stream at this endpoint
413   halved (one row alone: dead-lettered)
429   retried after Retry-After (the DCR's 2 GB/min or 12,000 requests/min); 408, 5xx the same way
====  =====================================================================================
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_batching import PART, Framing, HttpBatchSink, Work
from forwarder.sinks.http_common import (
    COMMON_KEYS,
    HttpSettings,
    Response,
    SinkConfigError,
    check_keys,
    fatal_for_status,
    get_format,
    get_str,
    secret,
    settings_from,
)
from forwarder.sinks.monitor_auth import DEFAULT_AUDIENCE, TokenRedactor, Tokens, credential_from, scope_for
from forwarder.sinks.retry import RetryPolicy, TransientError

log = logging.getLogger("forwarder.sinks.azure_monitor")

API_VERSION = "2023-01-01"
MAX_BODY = 1_048_576  # "Maximum size of API call: 1 MB. Both compressed and uncompressed data."
DEFAULT_STREAM = "Custom-NsgFlowAsim"  # the stream deploy/sentinel's DCRs declare
DEFAULT_BATCH_MAX_EVENTS = 5000  # rows are ~1 KB: the 1 MB limit decides first
DEFAULT_BATCH_MAX_BYTES = 1_000_000
ROLE = "Monitoring Metrics Publisher"

KEYS = (COMMON_KEYS - {"url"}) | {
    "endpoint",
    "dcr_immutable_id",
    "stream",
    "audience",
    "authority_host",
    "tenant_id",
    "client_id",
    "client_secret",
    "client_secret_file",
    "managed_identity_client_id",
}


class JsonArray:
    """A batch's rows as the body of one request: ``[row,row,...]``, joined straight from the lines."""

    __slots__ = ("lines",)

    def __init__(self, lines: Sequence[str]):
        self.lines = lines

    def sizes(self) -> list[int]:
        return [n + 1 for n in map(len, self.lines)]  # each row and the comma or bracket after it

    def parts(self, work: Work) -> Iterator[str]:
        lines = self.lines
        yield "["
        if isinstance(work, range) and work.step == 1:
            for i in range(work.start, work.stop, PART):
                if i > work.start:
                    yield ","
                yield ",".join(lines[i : min(i + PART, work.stop)])
        else:
            for i in range(0, len(work), PART):
                if i:
                    yield ","
                yield ",".join([lines[k] for k in work[i : i + PART]])
        yield "]"


class TooLarge(Exception):
    """A request body over the API's limit, found before sending it."""

    def __init__(self, raw: int, sent: int):
        super().__init__(f"{raw} bytes ({sent} as sent)")
        self.raw = raw
        self.sent = sent


class AzureMonitorSink(HttpBatchSink):
    peer = "Azure Monitor"
    undelivered = "not delivered to Azure Monitor"

    def __init__(
        self,
        name: str,
        settings: HttpSettings,
        tokens: Tokens,
        *,
        dcr_immutable_id: str,
        stream: str,
        secrets: Sequence[str | None],
        dead_letter: DeadLetter,
        retry: RetryPolicy,
    ):
        path = (
            f"/dataCollectionRules/{quote(dcr_immutable_id, safe='')}/streams/{quote(stream, safe='')}"
            f"?api-version={API_VERSION}"
        )
        super().__init__(
            name,
            "asim",
            settings,
            path=path,
            headers={"Content-Type": "application/json"},
            secrets=secrets,
            dead_letter=dead_letter,
            retry=retry,
        )
        self._redact = TokenRedactor(secrets)
        self._client.redact = self._redact
        self.tokens = tokens
        self.dcr_immutable_id = dcr_immutable_id
        self.stream = stream
        self.raw_bytes = 0  # uncompressed JSON sent, for the benchmark and the bytes-per-row figure

    def open(self) -> None:
        self.tokens.first()
        super().open()

    def close(self) -> None:
        super().close()
        self.tokens.close()

    # -- building ------------------------------------------------------------------------------

    def _frame(self, batch: Batch) -> Framing:
        return JsonArray(batch.lines)

    def _body(self, framed: Framing, work: Work, headers: dict[str, str]) -> bytes:
        """The JSON array for ``work``, measured as it will travel: over MAX_BODY (raw or compressed) is TooLarge."""
        raw = [part.encode() for part in framed.parts(work)]
        size = sum(map(len, raw))
        if size > MAX_BODY:
            raise TooLarge(size, size)
        if self.settings.gzip:
            headers["Content-Encoding"] = "gzip"
            packer = zlib.compressobj(self.settings.gzip_level, zlib.DEFLATED, 31)
            out = [packer.compress(part) for part in raw]
            out.append(packer.flush())
            body = b"".join(out)
        else:
            body = b"".join(raw)
        if len(body) > MAX_BODY:
            raise TooLarge(size, len(body))
        with self._lock:
            self.raw_bytes += size
        return body

    def _attempt_headers(self, headers: dict[str, str]) -> Mapping[str, str]:
        # A token renewed while an outage repeats the same body goes with the next attempt.
        return {
            **headers,
            "Authorization": "Bearer " + self.tokens.token(),
            "x-ms-client-request-id": str(uuid.uuid4()),
        }

    # -- posting -------------------------------------------------------------------------------

    def _post(self, batch: Batch, framed: Framing, work: Work, todo: deque[Work], abort: threading.Event) -> None:
        what = f"Logs Ingestion request of {len(work)} rows from {batch.source}"
        try:
            got = self._exchange(batch, framed, work, what, abort)
        except TooLarge as exc:
            self._split(batch, work, todo, f"the row alone is {exc}, over the Logs Ingestion API's 1 MB per call")
            return
        if got is None:
            return
        resp, _ = got
        if 200 <= resp.status < 300:
            self._count(len(work))
            return
        if resp.status == 413:
            self._split(batch, work, todo, f"HTTP 413: the row alone is over Azure Monitor's limit: {self._said(resp)}")
            return
        if resp.status == 400:
            # The service refuses the whole call for one bad row: halve until that row is alone.
            self._split(batch, work, todo, f"Azure Monitor rejected the row: HTTP 400 {self._said(resp)}")
            return
        raise self._fatal(resp) or SinkFatal(f"sink {self.name}: {self._refused(resp)}")

    # -- validate --connect --------------------------------------------------------------------

    def probe(self) -> str:
        """A token from the credential, then a request without rows to the DCR's stream: the service checks the
        token and the DCR's role assignment before the body, so 401/403/404 say what is wrong, and the 400 an
        empty body earns says the rest is in place. No row is sent."""
        try:
            self.tokens.first()
            token = self.tokens.token()
        except (SinkFatal, TransientError) as exc:
            raise Unreachable(str(exc).removeprefix(f"sink {self.name}: ")) from None
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        resp = self._ask("POST", self._path, headers, "Logs Ingestion check")
        if 200 <= resp.status < 300 or resp.status == 400:
            return (
                f"Azure Monitor at {self._where} accepts the token ({self.tokens.how}) for data collection rule "
                f"{self.dcr_immutable_id}, stream {self.stream}"
            )
        fatal = self._fatal(resp)
        if fatal is not None:
            raise Unreachable(str(fatal).removeprefix(f"sink {self.name}: "))
        raise Unreachable(f"Azure Monitor at {self._where} answered with HTTP {resp.status} {self._said(resp)}")

    def _said(self, resp: Response) -> str:
        """The service's own error code and message ({"error": {"code", "message"}}), or an excerpt."""
        doc = resp.json()
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict) and (error.get("code") or error.get("message")):
            text = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            return self._redact(" ".join(text.split()))[:600]
        return resp.excerpt(self._redact)

    def _fatal(self, resp: Response) -> SinkFatal | None:
        where = f"Azure Monitor at {self._where}"
        dcr = f"data collection rule {self.dcr_immutable_id}"
        grant = (
            f"grant the identity ({self.tokens.how}) the {ROLE} role on the {dcr}; a new role assignment "
            "can take up to 30 minutes to take effect"
        )
        if resp.status == 401:
            return SinkFatal(
                f"sink {self.name}: {where} refused the token (HTTP 401): check that audience "
                f"({self.tokens.scope}) is the cloud of the endpoint and that the identity is in the DCR's tenant; "
                f"then {grant}; response: {self._said(resp)}"
            )
        if resp.status == 403:
            return SinkFatal(
                f"sink {self.name}: {where}: the identity may not send to the {dcr} (HTTP 403): {grant}; "
                f"response: {self._said(resp)}"
            )
        if resp.status == 404:
            return SinkFatal(
                f"sink {self.name}: {where}: no {dcr} with stream {self.stream} (HTTP 404): check endpoint "
                f"(the DCR's logs ingestion endpoint), dcr_immutable_id and stream; response: {self._said(resp)}"
            )
        return fatal_for_status(resp, self.name, where, self._redact)


def from_config(cfg: Mapping[str, Any], name: str, dead_letter: DeadLetter, retry: RetryPolicy) -> Sink:
    check_keys(cfg, KEYS, name)
    get_format(cfg, name, allowed=("asim",), default="asim")
    endpoint = get_str(cfg, "endpoint", name)
    if not endpoint:
        raise SinkConfigError(f"sink {name}: endpoint is required (the DCR's logs ingestion endpoint, or a DCE's)")
    parts = urlsplit(endpoint)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        # A bearer token over plain http is a credential anyone on the path can reuse for an hour.
        raise SinkConfigError(f"sink {name}: endpoint must be https://..., got {endpoint!r}")
    if parts.path.rstrip("/") or parts.query or parts.fragment:
        raise SinkConfigError(
            f"sink {name}: endpoint is the ingestion host alone (https://<name>.<region>-1.ingest.monitor.azure.com); "
            "the DCR and stream have their own keys"
        )
    dcr = get_str(cfg, "dcr_immutable_id", name)
    if not dcr or not dcr.startswith("dcr-") or not dcr[4:].isalnum():
        raise SinkConfigError(
            f"sink {name}: dcr_immutable_id must be the DCR's immutable id (dcr-<32 hex>), got {dcr!r}"
        )
    stream = get_str(cfg, "stream", name, DEFAULT_STREAM) or DEFAULT_STREAM
    if not stream.startswith(("Custom-", "Microsoft-")):
        raise SinkConfigError(f"sink {name}: stream must be a stream of the DCR (Custom-...), got {stream!r}")
    settings = settings_from(
        {**{k: v for k, v in cfg.items() if k != "endpoint"}, "url": endpoint},
        name,
        batch_max_events=DEFAULT_BATCH_MAX_EVENTS,
        batch_max_bytes=DEFAULT_BATCH_MAX_BYTES,
        timeout=30.0,
    )
    if settings.batch_max_bytes >= MAX_BODY:
        raise SinkConfigError(f"sink {name}: batch_max_bytes must be below the API's limit of {MAX_BODY} bytes")
    audience = get_str(cfg, "audience", name, DEFAULT_AUDIENCE) or DEFAULT_AUDIENCE
    if not audience.startswith("https://"):
        raise SinkConfigError(
            f"sink {name}: audience must be an https URL such as {DEFAULT_AUDIENCE}, got {audience!r}"
        )
    client_secret = secret(cfg, "client_secret", name)
    redact = TokenRedactor([client_secret])
    credential, how = credential_from(cfg, name, client_secret)
    tokens = Tokens(credential, scope_for(audience), name, how, redact)
    return AzureMonitorSink(
        name,
        settings,
        tokens,
        dcr_immutable_id=dcr,
        stream=stream,
        secrets=[client_secret],
        dead_letter=dead_letter,
        retry=retry,
    )
