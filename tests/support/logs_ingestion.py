"""A local receiver that behaves as the Azure Monitor Logs Ingestion API does, as far as a sender can
tell (reference/monitor: logs-ingestion-api-overview.md, the limits table, the troubleshooting table):

- ``POST /dataCollectionRules/{immutable id}/streams/{stream}?api-version=2023-01-01``, 204 on success;
- ``Authorization: Bearer <token>``: 401 without one, with a token for another audience or an expired
  one; 403 (OperationFailed) when the token's identity has no Monitoring Metrics Publisher grant on
  the DCR; 404 for another DCR or stream;
- a JSON array of objects, gzip or plain; 413 (ContentLengthLimitExceeded) over 1 MB compressed or
  uncompressed; 400 for a body that is not a JSON array of objects, or a row that does not fit the
  table (every row is checked against schemas/asim.schema.json, the table's columns and types);
- 429 with ``Retry-After`` once ``requests_per_window`` requests came within ``window`` seconds (the
  DCR's requests-per-minute limit, scaled down); scripted 500/503 answers through ``script``.

Tokens come from tests/support/identity.IdentityEndpoint and are checked for audience, lifetime and
object id (the signature is not: nothing here could verify Entra ID's).
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.events import validator
from tests.support.http_receivers import Receiver, Reply, TlsFiles, reply
from tests.support.identity import OBJECT_ID, jwt_claims

MAX_BODY = 1_048_576
API_VERSION = "2023-01-01"
DCR = "dcr-00112233445566778899aabbccddeeff"
STREAM = "Custom-NsgFlowAsim"
AUDIENCE = "https://monitor.azure.com"


def error(status: int, code: str, message: str, *headers: tuple[str, str]) -> Reply:
    return reply(status, {"error": {"code": code, "message": message}}, *headers)


class LogsIngestionReceiver(Receiver):
    """One DCR with one stream; ``rows`` holds every row ingested, in order."""

    main_paths = ("/dataCollectionRules/",)

    def __init__(
        self,
        *,
        dcr: str = DCR,
        stream: str = STREAM,
        audience: str = AUDIENCE,
        granted: frozenset[str] = frozenset({OBJECT_ID}),
        tls: TlsFiles | None = None,
        latency: float = 0.0,
        requests_per_window: int | None = None,
        window: float = 1.0,
        retry_after: int = 1,
        max_body: int = MAX_BODY,
    ):
        super().__init__(tls, latency)
        self.max_body = max_body  # lower than the API's own to stand for a proxy with a smaller limit
        self.dcr = dcr
        self.stream = stream
        self.audience = audience
        self.granted = set(granted)
        self.requests_per_window = requests_per_window
        self.window = window
        self.retry_after = retry_after
        self.rows: list[dict[str, Any]] = []
        self.poison: set[str] = set()  # EventOriginalUid values answered 400, as a row the table cannot take
        self.tokens_seen: set[str] = set()
        self.throttled = 0
        self._recent: deque[float] = deque()

    def default_error(self, status: int) -> Any:
        codes = {500: "InternalServerError", 503: "ServiceUnavailable", 429: "TooManyRequests"}
        return {"error": {"code": codes.get(status, "Error"), "message": f"scripted {status}"}}

    def uids(self) -> list[str]:
        with self.lock:
            return [row["EventOriginalUid"] for row in self.rows]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(path)
        parts = url.path.split("/")
        if len(parts) != 5 or parts[1] != "dataCollectionRules" or parts[3] != "streams":
            return error(404, "NotFound", f"No route for {url.path}")
        if method != "POST":
            return error(405, "MethodNotAllowed", f"{method} is not allowed")
        denied = self._auth(headers)
        if denied is not None:
            return denied
        if parts[2] != self.dcr:
            return error(404, "NotFound", f"Data collection rule with immutable Id '{parts[2]}' not found.")
        if parts[4] != self.stream:
            return error(404, "InvalidStream", f"Stream '{parts[4]}' is not declared in the data collection rule.")
        if parse_qs(url.query).get("api-version") != [API_VERSION]:
            return error(400, "InvalidApiVersion", "The api-version query parameter is missing or not supported.")
        if not headers.get("content-type", "").startswith("application/json"):
            return error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        sent = int(headers.get("content-length") or 0)
        if sent > self.max_body or len(body) > self.max_body:
            size = sent if sent > self.max_body else len(body)
            return error(
                413,
                "ContentLengthLimitExceeded",
                f"Maximum allowed content length: {self.max_body} bytes (1 MB). Provided content length: {size} bytes.",
            )
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        if self.count_only:
            with self.lock:
                self.counted += body.count(b'"EventOriginalUid"')
            return Reply(204, b"")
        try:
            rows = json.loads(body)
        except ValueError as exc:
            return error(400, "InvalidPayload", f"The request body is not valid JSON: {exc}")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return error(400, "InvalidPayload", "The request body must be a JSON array of objects.")
        check = validator("asim")
        for n, row in enumerate(rows):
            problems = sorted(check.iter_errors(row), key=lambda e: list(e.path))
            if problems:
                where = ".".join(map(str, problems[0].path)) or "(row)"
                return error(400, "InvalidPayload", f"Record {n}: {where}: {problems[0].message}")
            if row.get("EventOriginalUid") in self.poison:
                return error(400, "InvalidPayload", f"Record {n}: column 'SrcIpAddr' could not be converted.")
        with self.lock:
            self.rows.extend(rows)
        return Reply(204, b"")

    def _auth(self, headers: dict[str, str]) -> Reply | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return error(401, "InvalidToken", "An authentication token is required.")
        try:
            claims = jwt_claims(token)
        except (ValueError, IndexError):
            return error(401, "InvalidToken", "The authentication token is malformed.")
        with self.lock:
            self.tokens_seen.add(token)
        now = time.time()
        if claims.get("aud") not in (self.audience, self.audience + "/"):
            return error(401, "InvalidToken", f"Invalid audience '{claims.get('aud')}'.")
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now or claims.get("nbf", 0) > now:
            return error(401, "InvalidToken", "The authentication token has expired or is not yet valid.")
        if claims.get("oid") not in self.granted:
            return error(
                403,
                "OperationFailed",
                "The authentication token provided does not have access to ingest data for the data collection "
                f"rule with immutable Id '{self.dcr}'.",
            )
        return None

    def _throttle(self) -> Reply | None:
        if self.requests_per_window is None:
            return None
        now = time.monotonic()
        with self.lock:
            while self._recent and now - self._recent[0] > self.window:
                self._recent.popleft()
            if len(self._recent) >= self.requests_per_window:
                self.throttled += 1
                return error(
                    429,
                    "TooManyRequests",
                    "Request rate limit of the data collection rule exceeded.",
                    ("Retry-After", str(self.retry_after)),
                )
            self._recent.append(now)
        return None
