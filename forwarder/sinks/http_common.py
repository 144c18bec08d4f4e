"""What the HTTP sinks (Splunk HEC, Elasticsearch, generic NDJSON) share on the wire: settings, one
keep-alive connection pool, gzip request bodies and the mapping of transport failures and status
codes onto the retry contract (how a batch becomes requests is in http_batching).

Secrets (tokens, API keys, passwords, header values) go into request headers only. Messages built
here never carry a header, and every response excerpt is scrubbed of the sink's secrets before it
reaches a log line, an exception or the dead-letter file.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import orjson
import urllib3
import urllib3.exceptions

from forwarder.formats import FORMATS
from forwarder.sinks.base import SinkFatal
from forwarder.sinks.retry import TransientError

log = logging.getLogger("forwarder.sinks.http")

# What the generic sinks take: every format but the table rows only Azure Monitor takes (asim).
EVENT_FORMATS = tuple(f for f in FORMATS if f != "asim")

USER_AGENT = "nsg-forwarder"
_EXCERPT = 300

# Status codes worth sending again: the peer is overloaded, restarting or timed out.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# TLS failures no retry can fix: the peer's certificate (or ours) is not acceptable.
_TLS_FATAL_MARKERS = (
    "certificate verify failed",
    "certificate_verify_failed",
    "hostname mismatch",
    "doesn't match",
    "does not match",
    "bad certificate",
    "unknown ca",
    "certificate required",
    "certificate unknown",
    "wrong version number",
    "pem lib",
    "key values mismatch",
)

COMMON_KEYS = frozenset(
    {
        "type",
        "name",
        "format",
        "url",
        "timeout",
        "tls_verify",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "gzip",
        "gzip_level",
        "batch_max_events",
        "batch_max_bytes",
        "max_in_flight",
        "proxy",
    }
)


class SinkConfigError(ValueError):
    """A sink table that cannot work as written (caught by ``validate``; the message names the key)."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    url: str  # scheme://host[:port][/base path], no trailing slash, no credentials
    timeout: float
    tls_verify: bool
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    gzip: bool
    gzip_level: int
    batch_max_events: int
    batch_max_bytes: int
    max_in_flight: int = 4
    query: str = ""  # generic HTTP only: kept out of every message, it may hold a credential
    proxy: str = ""  # http(s)://[user:password@]host:port of a CONNECT proxy; "" for a direct connection

    @property
    def base_path(self) -> str:
        return urlsplit(self.url).path.rstrip("/")


def _get(cfg: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, name: str) -> Any:
    value = cfg.get(key, default)
    if value is None:
        return None
    # bool is an int in Python; a `timeout = true` must not pass as 1 second.
    if isinstance(value, bool) and kind is not bool:
        raise SinkConfigError(f"sink {name}: {key} must be {_kind_name(kind)}, not a boolean")
    if not isinstance(value, kind):
        raise SinkConfigError(f"sink {name}: {key} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}.get(
            k.__name__, k.__name__
        )
        for k in kinds
    )


def get_str(cfg: Mapping[str, Any], key: str, name: str, default: str | None = None) -> str | None:
    value: str | None = _get(cfg, key, str, default, name)
    return value


def get_bool(cfg: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
    return bool(_get(cfg, key, bool, default, name))


def get_number(cfg: Mapping[str, Any], key: str, name: str, default: float, minimum: float = 0.0) -> float:
    value = float(_get(cfg, key, (int, float), default, name))
    if value <= minimum:
        raise SinkConfigError(f"sink {name}: {key} must be greater than {minimum:g}, got {value:g}")
    return value


def get_int(
    cfg: Mapping[str, Any], key: str, name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    value = int(_get(cfg, key, int, default, name))
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise SinkConfigError(f"sink {name}: {key} must be {bounds}, got {value}")
    return value


def get_format(cfg: Mapping[str, Any], name: str, allowed: Sequence[str] = EVENT_FORMATS, default: str = "ecs") -> str:
    """``format``: one of ``allowed``, ``default`` unless set."""
    fmt = get_str(cfg, "format", name, default) or default
    if fmt not in allowed:
        raise SinkConfigError(f"sink {name}: format must be one of {', '.join(allowed)}, got {fmt!r}")
    return fmt


def secret(cfg: Mapping[str, Any], key: str, name: str) -> str | None:
    """``key`` or the contents of the file named by ``<key>_file`` (trailing newline stripped).

    The config loader normally resolves ``<key>_file`` already; reading it here as well keeps a sink
    built straight from a table (tests, tools) working the same way.
    """
    value = get_str(cfg, key, name)
    path = get_str(cfg, f"{key}_file", name)
    if value is not None and path is not None:
        raise SinkConfigError(f"sink {name}: set {key} or {key}_file, not both")
    if path is not None:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SinkConfigError(f"sink {name}: cannot read {key}_file {path}: {exc.strerror}") from None
    if value is not None and not value:
        raise SinkConfigError(f"sink {name}: {key} is empty")
    return value


def check_keys(cfg: Mapping[str, Any], allowed: Iterable[str], name: str) -> None:
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise SinkConfigError(f"sink {name}: unknown key(s) {', '.join(unknown)}")


def settings_from(
    cfg: Mapping[str, Any],
    name: str,
    *,
    batch_max_events: int,
    batch_max_bytes: int,
    timeout: float = 30.0,
    allow_query: bool = False,
) -> HttpSettings:
    """The keys every HTTP sink has, with the sink's own batch defaults."""
    url = get_str(cfg, "url", name)
    if not url:
        raise SinkConfigError(f"sink {name}: url is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SinkConfigError(f"sink {name}: url must be http(s)://host[:port][/path], got {safe_url(url)!r}")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and process listings; they have their own keys.
        raise SinkConfigError(f"sink {name}: url must not contain credentials; use the sink's secret keys instead")
    if parts.fragment or (parts.query and not allow_query):
        raise SinkConfigError(f"sink {name}: url must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise SinkConfigError(f"sink {name}: url has a bad port: {exc}") from None
    ca = get_str(cfg, "tls_ca_file", name)
    cert = get_str(cfg, "tls_cert_file", name)
    key = get_str(cfg, "tls_key_file", name)
    if key and not cert:
        raise SinkConfigError(f"sink {name}: tls_key_file needs tls_cert_file")
    if (ca or cert) and parts.scheme != "https":
        raise SinkConfigError(f"sink {name}: tls_* files are set but url is not https")
    return HttpSettings(
        proxy=_proxy(cfg, name, parts),
        url=urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")),
        timeout=get_number(cfg, "timeout", name, timeout),
        tls_verify=get_bool(cfg, "tls_verify", name, True),
        tls_ca_file=ca,
        tls_cert_file=cert,
        tls_key_file=key,
        gzip=get_bool(cfg, "gzip", name, True),
        gzip_level=get_int(cfg, "gzip_level", name, 1, minimum=1, maximum=9),
        batch_max_events=get_int(cfg, "batch_max_events", name, batch_max_events),
        batch_max_bytes=get_int(cfg, "batch_max_bytes", name, batch_max_bytes, minimum=1024),
        max_in_flight=get_int(cfg, "max_in_flight", name, 4, minimum=1, maximum=64),
        query=parts.query,
    )


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _proxy(cfg: Mapping[str, Any], name: str, target: SplitResult) -> str:
    """The proxy for an https endpoint: the ``proxy`` key, else HTTPS_PROXY unless NO_PROXY lists the host
    (loopback is always direct). Plain-http endpoints are always reached directly."""
    proxy = get_str(cfg, "proxy", name)
    if proxy is None:
        host = target.hostname or ""
        if target.scheme != "https" or host in _LOOPBACK or urllib.request.proxy_bypass(host):
            return ""
        proxy = urllib.request.getproxies().get("https", "")
        where = "HTTPS_PROXY"
    else:
        where = "proxy"
    if not proxy:
        return ""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise SinkConfigError(f"sink {name}: {where} must be http://[user:password@]host:port, got {safe_url(proxy)!r}")
    if target.scheme != "https":
        raise SinkConfigError(f"sink {name}: proxy tunnels https only; url is {target.scheme}://")
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def safe_url(url: str) -> str:
    """The URL without userinfo, query or fragment: what may appear in a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unparseable url>"


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Redactor:
    """Removes the sink's secrets from any text shown to people (responses may echo a header)."""

    def __init__(self, secrets: Iterable[str | None]):
        # Longest first so a secret that contains another is removed whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def adding(self, *secrets: str | None) -> Redactor:
        return Redactor([*self._secrets, *secrets])

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "<redacted>")
        return text


@dataclass(slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    data: bytes

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (a proxy's HTML error page)."""
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return None

    def excerpt(self, redact: Redactor, limit: int = _EXCERPT) -> str:
        text = self.data[: limit * 4].decode("utf-8", "replace")
        text = " ".join(text.split())
        text = redact(text)
        return text if len(text) <= limit else text[:limit] + "..."


class HttpClient:
    """One keep-alive connection pool to one endpoint, shared by the sink's in-flight requests
    (one connection each, plus one so that HEC ack polling never waits for a slot)."""

    def __init__(self, settings: HttpSettings, sink: str, redact: Redactor):
        self.settings = settings
        self.sink = sink
        self.redact = redact
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._proxy_manager: urllib3.ProxyManager | None = None
        self._base = settings.base_path
        self._where = safe_url(settings.url)
        proxy = urlsplit(settings.proxy) if settings.proxy else None
        self._proxy_auth = (
            f"{unquote(proxy.username)}:{unquote(proxy.password or '')}" if proxy and proxy.username else None
        )
        if proxy and proxy.password:
            self.redact = redact.adding(unquote(proxy.password), proxy.password)
        self.requests = 0
        self.bytes_sent = 0
        self._stats = threading.Lock()

    def open(self) -> None:
        s = self.settings
        for key, path in (
            ("tls_ca_file", s.tls_ca_file),
            ("tls_cert_file", s.tls_cert_file),
            ("tls_key_file", s.tls_key_file),
        ):
            if path and not os.access(path, os.R_OK):
                raise SinkFatal(f"sink {self.sink}: {key} {path} does not exist or is not readable")
        kw: dict[str, Any] = {
            "maxsize": s.max_in_flight + 1,
            "block": False,
            # Retries are the sink's business (backoff, Retry-After, dead-lettering); a prebuilt Retry
            # saves urllib3 converting `False` on every request.
            "retries": urllib3.Retry(total=False, redirect=False),
            "timeout": urllib3.Timeout(connect=min(s.timeout, 10.0), read=s.timeout),
            "headers": {"User-Agent": USER_AGENT},
        }
        if urlsplit(s.url).scheme == "https":
            kw["cert_reqs"] = ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE
            if s.tls_verify:
                if s.tls_ca_file:
                    kw["ca_certs"] = s.tls_ca_file
            else:
                kw["assert_hostname"] = False
                log.warning(
                    "TLS certificate verification is off: the sink trusts any server. sink=%s url=%s",
                    self.sink,
                    self._where,
                )
            if s.tls_cert_file:
                kw["cert_file"] = s.tls_cert_file
                kw["key_file"] = s.tls_key_file
        if s.proxy:
            # The endpoint's TLS runs inside a CONNECT tunnel: certificates are checked end to end as without one.
            headers = urllib3.make_headers(proxy_basic_auth=self._proxy_auth) if self._proxy_auth else None
            kw.pop("headers")
            self._proxy_manager = urllib3.ProxyManager(safe_url(s.proxy), proxy_headers=headers, **kw)
            self._pool = self._proxy_manager.connection_from_url(s.url)
            log.info("Sending through a proxy: sink=%s url=%s proxy=%s", self.sink, self._where, safe_url(s.proxy))
        else:
            self._pool = urllib3.connection_from_url(s.url, **kw)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._proxy_manager is not None:
            self._proxy_manager.clear()
            self._proxy_manager = None

    def reopen(self) -> None:
        self.close()
        self.open()

    def body(self, parts: Iterable[str], headers: dict[str, str]) -> bytes:
        """The request body from text parts (each a few hundred events), gzipped if configured.

        Encoding and compressing part by part keeps every transient buffer small: one multi-MB
        string plus its multi-MB encoding costs more in page faults than the copying itself.
        """
        if self.settings.gzip:
            headers["Content-Encoding"] = "gzip"
            packer = zlib.compressobj(self.settings.gzip_level, zlib.DEFLATED, 31)
            out = [packer.compress(part.encode()) for part in parts]
            out.append(packer.flush())
            return b"".join(out)
        return b"".join([part.encode() for part in parts])

    def request(self, method: str, path: str, body: bytes, headers: Mapping[str, str], what: str) -> Response:
        """Send once. Returns any HTTP response; raises TransientError for transport failures worth
        retrying and SinkFatal for TLS setups that cannot work."""
        if self._pool is None:
            self.open()
        assert self._pool is not None
        url = (self._base + path) or "/"
        if self.settings.query:
            url += ("&" if "?" in url else "?") + self.settings.query
        try:
            try:
                raw = self._pool.urlopen(
                    method, url, body=body, headers=headers, redirect=False, preload_content=True, decode_content=True
                )
            except urllib3.exceptions.ProtocolError:
                # A pooled keep-alive connection the server has closed fails on first use; one fresh
                # connection tells that apart from a real outage without waiting a backoff step.
                raw = self._pool.urlopen(
                    method, url, body=body, headers=headers, redirect=False, preload_content=True, decode_content=True
                )
        except urllib3.exceptions.SSLError as exc:
            text = str(exc)
            lowered = text.lower()
            if any(marker in lowered for marker in _TLS_FATAL_MARKERS):
                hint = ""
                if "verify failed" in lowered and not self.settings.tls_ca_file:
                    hint = " (set tls_ca_file to the CA that signed the server's certificate)"
                raise SinkFatal(
                    f"sink {self.sink}: TLS handshake with {self._where} failed: {self.redact(_tls_reason(text))}{hint}"
                ) from None
            raise TransientError(f"{what}: TLS error talking to {self._where}: {self.redact(text)}") from None
        except urllib3.exceptions.HTTPError as exc:
            if isinstance(exc, urllib3.exceptions.ProxyError) and " 407 " in f" {exc} ":
                raise SinkFatal(
                    f"sink {self.sink}: the proxy {safe_url(self.settings.proxy)} refused the credentials (HTTP 407): "
                    "check the user and password in proxy"
                ) from None
            raise TransientError(f"{what}: {_transport_reason(exc)} ({self._where})") from None
        except OSError as exc:
            raise TransientError(f"{what}: {exc.__class__.__name__}: {exc.strerror or exc} ({self._where})") from None
        with self._stats:
            self.requests += 1
            self.bytes_sent += len(body)
        return Response(raw.status, raw.headers, raw.data)

    def post_json_ok(self, path: str, body: bytes, headers: Mapping[str, str], what: str) -> Response:
        """POST where only 2xx is useful: 408/429/5xx become TransientError, the rest is returned."""
        resp = self.request("POST", path, body, headers, what)
        raise_if_transient(resp, what, self.redact)
        return resp


def raise_if_transient(resp: Response, what: str, redact: Redactor) -> None:
    if resp.status in RETRY_STATUSES or resp.status >= 500:
        raise TransientError(f"{what}: HTTP {resp.status} {resp.excerpt(redact, 160)}".rstrip(), resp.retry_after)


def fatal_for_status(resp: Response, sink: str, where: str, redact: Redactor, hint: str = "") -> SinkFatal | None:
    """SinkFatal for statuses that say the sink is set up wrong (never quoting a credential)."""
    s = resp.status
    if s == 401:
        reason = "the server rejected the credentials (HTTP 401)"
    elif s == 403:
        reason = "the credentials are not allowed to do this (HTTP 403)"
    elif s == 404:
        reason = "the endpoint does not exist (HTTP 404): check url"
    elif s == 405:
        reason = "the endpoint does not accept this method (HTTP 405): check url and method"
    elif 300 <= s < 400:
        target = safe_url(resp.headers.get("Location", ""))
        reason = f"the server redirects (HTTP {s}) to {target}: set url to the final address"
    else:
        return None
    body = resp.excerpt(redact, 200)
    return SinkFatal(f"sink {sink}: {where}: {reason}{hint}" + (f"; response: {body}" if body else ""))


_SSL_NOISE = re.compile(r"\[SSL: [A-Z0-9_]+\] |\s*\(_ssl\.c:\d+\)")


def _tls_reason(text: str) -> str:
    """ssl's own words without urllib3's wrapping, plus what to do about the usual cases."""
    at = max(text.find("certificate verify failed"), text.find("alert "), text.find("hostname mismatch"))
    reason = _SSL_NOISE.sub("", text[at:] if at >= 0 else text).strip(" '\")")
    lowered = reason.lower()
    if "certificate verify failed" in lowered:
        return reason  # the caller adds the tls_ca_file hint
    if "certificate required" in lowered:
        return reason + " (the server wants a client certificate: set tls_cert_file and tls_key_file)"
    if "unknown ca" in lowered or "bad certificate" in lowered:
        return reason + " (the server does not accept the client certificate in tls_cert_file)"
    return reason


def _transport_reason(exc: urllib3.exceptions.HTTPError) -> str:
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "no response within the timeout"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        text = str(exc)
        at = text.find("new connection: ")
        return "cannot connect: " + (text[at + 16 :] if at >= 0 else exc.__class__.__name__)
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connect timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        inner = exc.args[1] if len(exc.args) > 1 else exc
        return f"connection dropped: {inner.__class__.__name__}"
    return f"{exc.__class__.__name__}"
