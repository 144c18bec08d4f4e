"""Local HTTP receivers that behave as Splunk HEC, Elasticsearch ``_bulk`` and a plain NDJSON
collector do, as far as a sender can tell: status codes, HEC codes and ``invalid-event-number``,
indexer acknowledgement, per-item bulk results, 409 for an ``_id`` that exists, 413 for an
oversized body, ``Retry-After`` on 429/503, gzip request bodies, HTTP/1.1 keep-alive.

Each runs a ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread, optionally over TLS. Tests
script failures with ``Receiver.script(Action(...), ...)``: each request to the main endpoint
takes the next action before anything else happens (answer with a status, answer slowly, or drop
the connection halfway through reading the body). With the script empty the receiver does what
the real server would.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

JSON = "application/json"


@dataclass(frozen=True)
class Action:
    """What to do with one request instead of (or before) the normal handling."""

    status: int = 503
    body: Any = None  # dict/list -> JSON, bytes/str -> as is, None -> a default per receiver
    retry_after: str | None = None
    delay: float = 0.0  # sleep before answering (a slow server)
    drop: bool = False  # read half the body, then close the connection without answering
    passthrough: bool = False  # after ``delay``, handle the request normally


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # decoded (gunzipped) body
    wire_bytes: int
    at: float
    peer: tuple[str, int]  # client address: one per connection, so keep-alive shows as a single peer


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def reply(status: int, doc: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps(doc, separators=(",", ":")).encode(), JSON, tuple(headers))


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # when set, clients must present a certificate signed by it


def make_self_signed(directory: Path, name: str = "localhost") -> TlsFiles:
    """A self-signed certificate for ``name`` and 127.0.0.1 (tests of certificate checking)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / f"{name}.crt", directory / f"{name}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                # Close gracefully, as nginx's lingering close does: the client then reads the alert
                # (e.g. "certificate required") instead of a reset that would hide it.
                with contextlib.suppress(OSError):
                    self.request.shutdown(socket.SHUT_WR)
                    self.request.settimeout(1.0)
                    while self.request.recv(65536):
                        pass
                raise
        super().setup()
        # Headers and body go out in two writes; without this, Nagle holds the body back for the
        # client's delayed ACK (40 ms per keep-alive request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        headers = {k.lower(): v for k, v in self.headers.items()}
        action = receiver.next_action(self.command, self.path)
        if action is not None and action.drop:
            self.rfile.read(length // 2)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        raw = self.rfile.read(length) if length else b""
        body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" and raw else raw
        receiver.record(
            Seen(self.command, self.path, headers, body, len(raw), time.monotonic(), self.client_address[:2])
        )
        if action is not None and action.delay:
            time.sleep(action.delay)
        if action is not None and not action.passthrough:
            out = receiver.scripted_reply(action)
        else:
            if receiver.latency:
                time.sleep(receiver.latency)
            out = receiver.handle(self.command, self.path, headers, body)
        try:
            self.send_response(out.status)
            self.send_header("Content-Type", out.content_type)
            self.send_header("Content-Length", str(len(out.body)))
            for name, value in out.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out.body)
        except OSError:
            self.close_connection = True  # the client gave up (timeout): nothing to answer to


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, receiver: Receiver, tls: TlsFiles | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
            if tls.client_ca is not None:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(str(tls.client_ca))
            # The handshake runs in the handler thread (see _Handler.setup), not in accept().
            self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and dropped clients are what some tests are about


class Receiver:
    """Base: the server thread, the script, and what was received."""

    main_paths: tuple[str, ...] = ()  # requests whose path starts with one of these take script actions

    def __init__(self, tls: TlsFiles | None = None, latency: float = 0.0):
        self.tls = tls
        self.latency = latency
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self._script: deque[Action] = deque()
        self.count_only = False  # benchmarks: count events, keep nothing
        self.counted = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def start(self) -> Self:
        self._server = _Server(self, self.tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *actions: Action, times: int = 1) -> None:
        with self.lock:
            for _ in range(times):
                self._script.extend(actions)

    def next_action(self, method: str, path: str) -> Action | None:
        if not any(path.startswith(p) for p in self.main_paths):
            return None
        with self.lock:
            return self._script.popleft() if self._script else None

    def record(self, seen: Seen) -> None:
        if self.count_only:
            return  # benchmarks: hundreds of MB of bodies otherwise
        with self.lock:
            self.seen.append(seen)

    def requests_to(self, prefix: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.startswith(prefix)]

    def scripted_reply(self, action: Action) -> Reply:
        headers: tuple[tuple[str, str], ...] = (("Retry-After", action.retry_after),) if action.retry_after else ()
        body = action.body if action.body is not None else self.default_error(action.status)
        if isinstance(body, (dict, list)):
            return Reply(action.status, json.dumps(body).encode(), JSON, headers)
        data = body.encode() if isinstance(body, str) else body
        return Reply(action.status, data, "text/plain", headers)

    def default_error(self, status: int) -> Any:
        return {"status": status}

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError


# -- Splunk HEC ----------------------------------------------------------------------------------

_HEC_TEXT = {
    0: "Success",
    1: "Token disabled",
    2: "Token is required",
    3: "Invalid authorization",
    4: "Invalid token",
    5: "No data",
    6: "Invalid data format",
    7: "Incorrect index",
    8: "Internal server error",
    9: "Server is busy",
    10: "Data channel is missing",
    11: "Invalid data channel",
    12: "Event field is required",
    13: "Event field cannot be blank",
    14: "ACK is disabled",
    17: "HEC is healthy",
    18: "HEC is unhealthy, queues are full",
}


def hec(status: int, code: int, **extra: Any) -> Reply:
    return reply(status, {"text": _HEC_TEXT[code], "code": code, **extra})


def iter_json_objects(text: str) -> Iterator[tuple[Any, str | None]]:
    """Concatenated JSON values as HEC reads them: (value, None), or (None, error) where one is bad."""
    decoder = json.JSONDecoder()
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield None, str(exc)
            return
        yield value, None


class HecReceiver(Receiver):
    """Splunk HEC: ``/services/collector/event`` (+ ``/services/collector``), ``/services/collector/ack``.

    Like Splunk, it reads a request's events in order and stops at the first bad one: the events
    before it are indexed, the answer is 400 with ``invalid-event-number`` = its zero-based position.
    """

    main_paths = ("/services/collector/event",)

    def __init__(
        self,
        token: str = "00000000-1111-2222-3333-444444444444",
        *,
        tls: TlsFiles | None = None,
        latency: float = 0.0,
        ack: bool = False,
        ack_after_polls: int = 1,
        allowed_indexes: frozenset[str] | None = None,
        max_content_length: int | None = None,
    ):
        super().__init__(tls, latency)
        self.token = token
        self.disabled = False
        self.unhealthy = False
        self.ack = ack
        self.ack_after_polls = ack_after_polls
        self.lose_acks = 0  # the next n ackIds never turn true (an indexer restarted)
        self.allowed_indexes = allowed_indexes
        self.max_content_length = max_content_length
        self.poison: set[str] = set()  # event ids answered with code 6 (as for an unparseable event)
        self.events: list[dict[str, Any]] = []  # every indexed envelope, in order
        self._channels: dict[str, int] = {}
        self._acks: dict[tuple[str, int], list[Any]] = {}  # (channel, ackId) -> [polls left, envelopes]
        self.ack_polls = 0

    def default_error(self, status: int) -> Any:
        code = {503: 9, 500: 8}.get(status)
        return {"text": _HEC_TEXT[code], "code": code} if code is not None else {"text": "Error", "code": 8}

    def _auth(self, headers: dict[str, str]) -> Reply | None:
        auth = headers.get("authorization")
        if auth is None:
            return hec(401, 2)
        scheme, _, token = auth.partition(" ")
        if scheme != "Splunk" or not token:
            return hec(401, 3)
        if token != self.token:
            return hec(403, 4)
        if self.disabled:
            return hec(403, 1)
        return None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(path)
        if method == "GET" and url.path == "/services/collector/health":
            # No token needed; 503 code 18 while HEC's queues are full.
            return hec(503, 18) if self.unhealthy else hec(200, 17)
        if method != "POST":
            return reply(405, {"text": "Method not allowed"})
        if url.path not in ("/services/collector/event", "/services/collector", "/services/collector/ack"):
            return reply(404, {"text": "The requested URL was not found on this server.", "code": 404})
        denied = self._auth(headers)
        if denied is not None:
            return denied
        channel = headers.get("x-splunk-request-channel") or parse_qs(url.query).get("channel", [None])[0]
        if url.path == "/services/collector/ack":
            return self._ack_poll(channel, body)
        if self.ack:
            if not channel:
                return hec(400, 10)
            try:
                uuid.UUID(channel)
            except ValueError:
                return hec(400, 11)
        if self.max_content_length is not None and len(body) > self.max_content_length:
            return reply(413, {"text": "Content too large", "code": 413})
        if self.count_only:
            with self.lock:
                self.counted += body.count(b'{"time":')
            return hec(200, 0)
        text = body.decode("utf-8")
        if not text.strip():
            return hec(400, 5)
        accepted: list[dict[str, Any]] = []
        failure: Reply | None = None
        for n, (envelope, error) in enumerate(iter_json_objects(text)):
            if error is not None or not isinstance(envelope, dict):
                failure = hec(400, 6, **{"invalid-event-number": n})
                break
            if "event" not in envelope:
                failure = hec(400, 12, **{"invalid-event-number": n})
                break
            if envelope["event"] in ("", None, {}):
                failure = hec(400, 13, **{"invalid-event-number": n})
                break
            if self.allowed_indexes is not None and envelope.get("index") not in self.allowed_indexes:
                failure = hec(400, 7, **{"invalid-event-number": n})
                break
            if self.poison and event_id_of(envelope["event"]) in self.poison:
                failure = hec(400, 6, **{"invalid-event-number": n})
                break
            accepted.append(envelope)
        with self.lock:
            if failure is not None or not self.ack:
                self.events.extend(accepted)  # HEC indexes what it read before the bad event
            if failure is not None:
                return failure
            if not self.ack:
                return hec(200, 0)
            assert channel is not None
            ack_id = self._channels.get(channel, 0)
            self._channels[channel] = ack_id + 1
            if self.lose_acks:
                self.lose_acks -= 1
                self._acks[(channel, ack_id)] = [None, accepted]
            else:
                self._acks[(channel, ack_id)] = [self.ack_after_polls, accepted]
        return hec(200, 0, ackId=ack_id)

    def _ack_poll(self, channel: str | None, body: bytes) -> Reply:
        if not self.ack:
            return hec(400, 14)
        if not channel:
            return hec(400, 10)
        try:
            ids = json.loads(body)["acks"]
        except (ValueError, KeyError, TypeError):
            return hec(400, 6)
        out: dict[str, bool] = {}
        with self.lock:
            self.ack_polls += 1
            for ack_id in ids:
                state = self._acks.get((channel, ack_id))
                if state is None:
                    out[str(ack_id)] = False
                    continue
                if state[0] is None:  # lost: never indexed
                    out[str(ack_id)] = False
                    continue
                state[0] -= 1
                if state[0] <= 0:
                    if state[1] is not None:
                        self.events.extend(state[1])  # indexed now
                        state[1] = None
                    out[str(ack_id)] = True
                else:
                    out[str(ack_id)] = False
        return reply(200, {"acks": out})


def event_id_of(event: Any) -> str | None:
    """The event id inside an ECS/OCSF object or a CEF line."""
    if isinstance(event, dict):
        inner = event.get("event")
        if isinstance(inner, dict) and "id" in inner:
            return str(inner["id"])
        meta = event.get("metadata")
        if isinstance(meta, dict) and "uid" in meta:
            return str(meta["uid"])
        return None
    if isinstance(event, str):
        at = event.find("externalId=")
        if at >= 0:
            return event[at + 11 :].split(" ", 1)[0]
    return None


# -- Elasticsearch -------------------------------------------------------------------------------


class ElasticsearchReceiver(Receiver):
    """``POST /<target>/_bulk`` (and ``/_bulk`` with ``_index`` per action) into data streams.

    Stores documents by ``_id`` per target; ``create`` of an existing ``_id`` is 409; a target named
    like a data stream (``logs-*-*``) takes only ``create`` and needs ``@timestamp``.
    """

    main_paths = ("/",)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        latency: float = 0.0,
        max_content_length: int | None = None,
    ):
        super().__init__(tls, latency)
        self.api_key = api_key  # the "encoded" form, as sent after "ApiKey "
        self.basic = base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
        self.max_content_length = max_content_length
        self.streams: dict[str, dict[str, dict[str, Any]]] = {}
        self.poison: set[str] = set()  # ids answered 400 mapper_parsing_exception
        self.item_failures: dict[str, deque[int]] = {}  # id -> statuses to answer before accepting
        self.attempts: Counter[str] = Counter()  # id -> how many times it was sent
        self.forbidden_streams: set[str] = set()
        self.cluster_info_forbidden = False
        self.paths: list[str] = []

    def fail_item(self, doc_id: str, *statuses: int) -> None:
        with self.lock:
            self.item_failures.setdefault(doc_id, deque()).extend(statuses)

    def default_error(self, status: int) -> Any:
        kind = {429: "es_rejected_execution_exception", 503: "unavailable_shards_exception"}.get(status, "exception")
        return {"error": {"type": kind, "reason": f"scripted {status}"}, "status": status}

    def docs(self, target: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.streams.get(target, {}))

    def _auth(self, headers: dict[str, str]) -> Reply | None:
        if self.api_key is None and self.basic is None:
            return None
        auth = headers.get("authorization", "")
        if (self.api_key is not None and auth == f"ApiKey {self.api_key}") or (
            self.basic is not None and auth == f"Basic {self.basic}"
        ):
            return None
        reason = "missing authentication credentials for REST request" if not auth else "unable to authenticate"
        return reply(
            401,
            {"error": {"type": "security_exception", "reason": reason}, "status": 401},
            ("WWW-Authenticate", 'ApiKey, Basic realm="security" charset="UTF-8"'),
        )

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(path)
        denied = self._auth(headers)
        if denied is not None:
            return denied
        parts = [p for p in url.path.split("/") if p]
        if method == "GET" and not parts:
            if self.cluster_info_forbidden:  # an API key with only create_doc on the data streams
                return reply(
                    403,
                    {
                        "error": {
                            "type": "security_exception",
                            "reason": "action [cluster:monitor/main] is unauthorized",
                        }
                    },
                )
            return reply(
                200,
                {
                    "name": "node-1",
                    "cluster_name": "test-cluster",
                    "version": {"number": "8.15.0"},
                    "tagline": "You Know, for Search",
                },
            )
        if method != "POST" or not parts or parts[-1] != "_bulk" or len(parts) > 2:
            return reply(404, {"error": {"type": "no_handler", "reason": f"no handler for {method} {url.path}"}})
        target = parts[0] if len(parts) == 2 else None
        with self.lock:
            self.paths.append(path)
        if self.max_content_length is not None and len(body) > self.max_content_length:
            return Reply(413, b"", "text/plain")
        if target is not None and target in self.forbidden_streams:
            return reply(
                403,
                {
                    "error": {
                        "type": "security_exception",
                        "reason": f"action [indices:data/write/bulk] is unauthorized on [{target}]",
                    },
                    "status": 403,
                },
            )
        if self.count_only:
            n = body.count(b"\n") // 2
            with self.lock:
                self.counted += n
            item = b'{"create":{"status":201}}'
            return Reply(200, b'{"errors":false,"items":[' + b",".join([item] * n) + b"]}")
        lines = body.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        else:
            return reply(
                400,
                {
                    "error": {
                        "type": "illegal_argument_exception",
                        "reason": "The bulk request must be terminated by a newline [\\n]",
                    },
                    "status": 400,
                },
            )
        if len(lines) % 2:
            return reply(
                400,
                {
                    "error": {"type": "illegal_argument_exception", "reason": "Malformed action/metadata line"},
                    "status": 400,
                },
            )
        items: list[dict[str, Any]] = []
        errors = False
        started = time.monotonic()
        for i in range(0, len(lines), 2):
            action = json.loads(lines[i])
            op, meta = next(iter(action.items()))
            index = meta.get("_index", target)
            doc_id = meta.get("_id")
            result = self._item(op, index, doc_id, lines[i + 1])
            errors = errors or result["status"] >= 300
            items.append({op: result})
        return reply(200, {"took": int((time.monotonic() - started) * 1000), "errors": errors, "items": items})

    def _item(self, op: str, index: str | None, doc_id: str | None, source: str) -> dict[str, Any]:
        def error(status: int, kind: str, reason: str) -> dict[str, Any]:
            return {"_index": index, "_id": doc_id, "status": status, "error": {"type": kind, "reason": reason}}

        if index is None:
            return error(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        data_stream = index.startswith(("logs-", "metrics-", "traces-")) and index.count("-") >= 2
        if data_stream and op != "create":
            return error(
                400,
                "illegal_argument_exception",
                f"only write ops with an op_type of create are allowed in data streams [{index}]",
            )
        with self.lock:
            if doc_id is not None:
                self.attempts[doc_id] += 1
                queued = self.item_failures.get(doc_id)
                if queued:
                    status = queued.popleft()
                    kind = "es_rejected_execution_exception" if status == 429 else "unavailable_shards_exception"
                    return error(status, kind, f"scripted {status} for this item")
            if doc_id is not None and doc_id in self.poison:
                return error(
                    400,
                    "document_parsing_exception",
                    "[1:42] failed to parse field [source.port] of type [long] in document with id "
                    f"'{doc_id}'. Preview of field's value: 'not-a-port'",
                )
            try:
                doc = json.loads(source)
            except ValueError as exc:
                return error(400, "document_parsing_exception", f"failed to parse: {exc}")
            if data_stream and "@timestamp" not in doc:
                return error(400, "document_parsing_exception", "data stream timestamp field [@timestamp] is missing")
            store = self.streams.setdefault(index, {})
            if doc_id is None:
                doc_id = uuid.uuid4().hex
            if doc_id in store:
                if op == "create":
                    return error(
                        409,
                        "version_conflict_engine_exception",
                        f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    )
                store[doc_id] = doc
                return {"_index": index, "_id": doc_id, "status": 200, "result": "updated"}
            store[doc_id] = doc
        return {"_index": index, "_id": doc_id, "status": 201, "result": "created", "_version": 1}


# -- generic NDJSON -------------------------------------------------------------------------------


class NdjsonReceiver(Receiver):
    """Takes NDJSON on ``path`` (POST or PUT); answers 401 when ``required_headers`` are missing."""

    def __init__(
        self,
        path: str = "/ingest",
        *,
        required_headers: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        latency: float = 0.0,
        max_content_length: int | None = None,
        status: int = 200,
    ):
        super().__init__(tls, latency)
        self.path = path
        self.main_paths = (path,)
        self.required_headers = {k.lower(): v for k, v in (required_headers or {}).items()}
        self.max_content_length = max_content_length
        self.status = status
        self.lines: list[str] = []
        self.methods: Counter[str] = Counter()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if urlsplit(path).path != self.path:
            return Reply(404, b"not found", "text/plain")
        if method not in ("POST", "PUT"):
            return Reply(405, b"method not allowed", "text/plain")
        for key, value in self.required_headers.items():
            if headers.get(key) != value:
                return Reply(401, b'{"error":"unauthorized"}')
        if self.max_content_length is not None and len(body) > self.max_content_length:
            return Reply(413, b"payload too large", "text/plain")
        if self.count_only:
            with self.lock:
                self.counted += body.count(b"\n")
            return Reply(self.status, b'{"ok":true}')
        text = body.decode("utf-8")
        if not text.endswith("\n"):
            return Reply(400, b'{"error":"body must end with a newline"}')
        with self.lock:
            self.methods[method] += 1
            self.lines.extend(text[:-1].split("\n"))
        return Reply(self.status, b'{"ok":true}')
