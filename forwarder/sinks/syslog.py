"""Syslog sink: RFC 5424 (default) or RFC 3164 messages over UDP, TCP or TLS (RFC 5425).

Delivery over TCP and TLS is at-least-once, as far as plain syslog allows (it has no
application-level acknowledgement; RELP has, and is not spoken here):

- A batch is framed (RFC 6587 octet counting by default, or LF), joined into one byte string and
  written with as few system calls as possible on one persistent connection.
- ``send`` returns only when the receiver's TCP stack has acknowledged every byte (Linux: the
  socket's send queue is empty, SIOCOUTQ) and the connection is still established. A receiver
  that stops reading, vanishes, or closes the connection makes the batch fail; it is then sent
  again in full on a new connection, with the retry policy's backoff in between.
- Acknowledged is not yet read: a receiver that is stopped with acknowledged but unread bytes in
  its socket buffer resets the connection. So when a connection ends other than by our own close
  or a plain-TCP FIN (which proves the receiver read everything: with bytes left unread, the
  kernel sends a reset instead), the next connection first sends again the most recent batches
  (``reconnect_resend_bytes``, default 8 MiB, more than a Linux receive buffer holds), then the
  new batch. A TLS close_notify proves nothing (it precedes that reset), so with TLS every end the
  receiver initiates triggers the resend. Those events arrive twice; their ids are deterministic,
  so the duplicates are removable downstream. What remains: a receiver that loses data it had
  already read (its own queue), more than ``reconnect_resend_bytes`` acknowledged but unread, or a
  receiver failure right after our last batch before we stop (logged at ``close``).
- A TLS connection is only trusted after a short probation: a receiver that requires a client
  certificate (rsyslog ``x509/certvalid``) completes the handshake and then drops the connection,
  which would otherwise look like delivered events.

Over UDP every message is one datagram, sent and forgotten (RFC 5426). The only failure UDP can
report is an ICMP "port unreachable" from a receiver that is down; the batch is then retried (as
backpressure) and sent again in full. Messages larger than ``max_datagram`` are not truncated
(a cut CEF or JSON event is useless) and not silently dropped: they are dead-lettered with the
reason. TLS verification failures (untrusted CA, name mismatch) are SinkFatal: no retry fixes them.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forwarder.flowlog.model import Event
from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetriesExhausted, RetryPolicy, TransientError
from forwarder.sinks.syslog_format import FACILITIES, SEVERITIES, Framer, printable_ascii

log = logging.getLogger("forwarder.sinks.syslog")

FORMATS = ("ecs", "cef", "ocsf")
PROTOCOLS = ("udp", "tcp", "tls")
FRAMINGS = ("octet-counting", "lf")
RFCS = ("5424", "3164")
KEYS = frozenset(
    {
        "type", "name", "format", "host", "port", "protocol", "framing", "rfc", "facility", "severity_allowed",
        "severity_denied", "app_name", "hostname", "msgid", "sd_id", "tls_ca_file", "tls_cert_file", "tls_key_file",
        "tls_verify", "tls_server_name", "max_datagram", "timeout", "reconnect_resend_bytes",
    }
)  # fmt: skip
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
DEFAULT_FACILITY = "local0"
DEFAULT_SEVERITY_ALLOWED = "informational"
DEFAULT_SEVERITY_DENIED = "notice"
DEFAULT_APP_NAME = "nsg-forwarder"
# rsyslog's and syslog-ng's default maximum message size; datagrams above the path MTU are
# fragmented by IP, which LANs carry and some firewalls drop.
DEFAULT_MAX_DATAGRAM = 8192
MAX_UDP_PAYLOAD = 65507  # IPv4: 65535 - 20 (IP header) - 8 (UDP header)
DEFAULT_TIMEOUT = 30.0
DEFAULT_RESEND_BYTES = 8 << 20
_WRITE_CHUNK = 1 << 20  # the socket timeout applies per chunk, so a large batch on a slow link does not time out
_TLS_PROBATION_MIN = 0.2  # seconds a fresh TLS connection must survive before it carries events
_TLS_PROBATION_MAX = 2.0

# Linux: bytes in the send queue not yet acknowledged by the peer (SIOCOUTQ == TIOCOUTQ).
_OUTQ: int | None = getattr(__import__("termios"), "TIOCOUTQ", None) if sys.platform.startswith("linux") else None
_TCP_ESTABLISHED = 1

# TLS failures no retry can fix: the receiver's certificate (or ours) is not acceptable.
_TLS_FATAL_MARKERS = (
    "certificate verify failed",
    "bad certificate",
    "unknown ca",
    "certificate required",
    "certificate unknown",
    "certificate expired",
    "unsupported certificate",
    "access denied",
    "wrong version number",
    "unsupported protocol",
    "no protocols available",
    "protocol version",
)


class SyslogConfigError(ValueError):
    """A bad ``[[sink]]`` table of type syslog; the message names the sink and the key."""


@dataclass(frozen=True)
class SyslogConfig:
    host: str
    port: int
    protocol: str
    framing: str
    rfc: str
    facility: int
    severity_allowed: int
    severity_denied: int
    app_name: str
    hostname: str
    msgid: str | None
    sd_id: str | None
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_verify: bool
    tls_server_name: str | None
    max_datagram: int
    timeout: float
    reconnect_resend_bytes: int


def _level(value: Any, names: Mapping[str, int], top: int, key: str, where: str) -> int:
    if isinstance(value, bool):
        raise SyslogConfigError(f"{where}: {key}: expected a name or a number, got {value!r}")
    if isinstance(value, int):
        if 0 <= value <= top:
            return value
        raise SyslogConfigError(f"{where}: {key}: must be between 0 and {top}, got {value}")
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    raise SyslogConfigError(f"{where}: {key}: unknown value {value!r} (expected 0-{top} or one of {', '.join(names)})")


def default_hostname(rfc: str) -> str:
    """The machine's FQDN for RFC 5424; RFC 3164 wants the name without the domain."""
    host = socket.gethostname()
    fqdn = socket.getfqdn(host)
    # Many containers and VMs resolve their own name to "localhost": useless to a SIEM, keep the host name.
    if not fqdn or fqdn.split(".", 1)[0] in ("localhost", "ip6-localhost") or "." not in fqdn:
        fqdn = host or "-"
    name = fqdn if rfc == "5424" else fqdn.split(".", 1)[0]
    return name if printable_ascii(name) else "-"


def parse_config(cfg: Mapping[str, Any], name: str) -> SyslogConfig:
    where = f"sink {name}"
    unknown = sorted(set(cfg) - KEYS)
    if unknown:
        raise SyslogConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")

    def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = cfg.get(key, default)
        if value is None:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise SyslogConfigError(f"{where}: {key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    host = get("host", str, None)
    if not host:
        raise SyslogConfigError(f"{where}: host is required")
    protocol = get("protocol", str, "tcp")
    if protocol not in PROTOCOLS:
        raise SyslogConfigError(f"{where}: protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    port = get("port", int, DEFAULT_PORTS[protocol])
    if not 1 <= port <= 65535:
        raise SyslogConfigError(f"{where}: port: must be between 1 and 65535, got {port}")
    framing = get("framing", str, "octet-counting")
    if framing not in FRAMINGS:
        raise SyslogConfigError(f"{where}: framing: expected one of {', '.join(FRAMINGS)}, got {framing!r}")
    rfc = str(get("rfc", (str, int), "5424"))
    if rfc not in RFCS:
        raise SyslogConfigError(f'{where}: rfc: expected "5424" or "3164", got {cfg.get("rfc")!r}')
    facility = _level(cfg.get("facility", DEFAULT_FACILITY), FACILITIES, 23, "facility", where)
    sev_allowed = _level(
        cfg.get("severity_allowed", DEFAULT_SEVERITY_ALLOWED), SEVERITIES, 7, "severity_allowed", where
    )
    sev_denied = _level(cfg.get("severity_denied", DEFAULT_SEVERITY_DENIED), SEVERITIES, 7, "severity_denied", where)
    app_name = get("app_name", str, DEFAULT_APP_NAME)
    limit = 48 if rfc == "5424" else 32
    if not printable_ascii(app_name) or len(app_name) > limit or (rfc == "3164" and any(c in app_name for c in ":[]")):
        raise SyslogConfigError(
            f"{where}: app_name: 1 to {limit} printable ASCII characters without spaces"
            + (" or ':[]'" if rfc == "3164" else "")
            + f", got {app_name!r}"
        )
    hostname = get("hostname", str, None) or default_hostname(rfc)
    if not printable_ascii(hostname) or len(hostname) > 255:
        raise SyslogConfigError(
            f"{where}: hostname: 1 to 255 printable ASCII characters without spaces, got {hostname!r}"
        )
    msgid = get("msgid", str, None)
    if msgid is not None and (not printable_ascii(msgid) or len(msgid) > 32):
        raise SyslogConfigError(f"{where}: msgid: 1 to 32 printable ASCII characters without spaces, got {msgid!r}")
    sd_id = get("sd_id", str, None)
    if sd_id is not None and not _valid_sd_id(sd_id):
        raise SyslogConfigError(
            f"{where}: sd_id: expected name@<private enterprise number> (RFC 5424 section 7.2.2), e.g. "
            f'"nsgflow@32473", got {sd_id!r}'
        )
    tls_ca = get("tls_ca_file", str, None)
    tls_cert = get("tls_cert_file", str, None)
    tls_key = get("tls_key_file", str, None)
    tls_verify = get("tls_verify", bool, True)
    tls_server_name = get("tls_server_name", str, None)
    if protocol != "tls":
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify", "tls_server_name"):
            if key in cfg:
                raise SyslogConfigError(f'{where}: {key}: only applies with protocol = "tls"')
    if tls_key and not tls_cert:
        raise SyslogConfigError(f"{where}: tls_key_file: needs tls_cert_file (the client certificate)")
    max_datagram = get("max_datagram", int, DEFAULT_MAX_DATAGRAM)
    if not 480 <= max_datagram <= MAX_UDP_PAYLOAD:
        raise SyslogConfigError(f"{where}: max_datagram: must be between 480 and {MAX_UDP_PAYLOAD}, got {max_datagram}")
    timeout = get("timeout", (int, float), DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise SyslogConfigError(f"{where}: timeout: must be more than 0 seconds, got {timeout}")
    resend = get("reconnect_resend_bytes", int, DEFAULT_RESEND_BYTES)
    if resend < 0:
        raise SyslogConfigError(f"{where}: reconnect_resend_bytes: must not be negative, got {resend}")
    return SyslogConfig(
        host=host,
        port=port,
        protocol=protocol,
        framing=framing,
        rfc=rfc,
        facility=facility,
        severity_allowed=sev_allowed,
        severity_denied=sev_denied,
        app_name=app_name,
        hostname=hostname,
        msgid=msgid,
        sd_id=sd_id,
        tls_ca_file=tls_ca,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        tls_verify=tls_verify,
        tls_server_name=tls_server_name,
        max_datagram=max_datagram,
        timeout=float(timeout),
        reconnect_resend_bytes=resend,
    )


def _valid_sd_id(sd_id: str) -> bool:
    name, at, pen = sd_id.partition("@")
    return (
        bool(at)
        and 0 < len(sd_id) <= 32
        and printable_ascii(name)
        and not any(c in name for c in '=]"')
        and all(part.isdigit() for part in pen.split("."))
    )


def from_config(cfg: Mapping[str, Any], name: str, dead_letter: DeadLetter, retry: RetryPolicy) -> Sink:
    fmt = cfg.get("format", "ecs")
    if fmt not in FORMATS:
        raise SyslogConfigError(f"sink {name}: format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return SyslogSink(name, str(fmt), parse_config(cfg, name), dead_letter, retry)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "the receiver closed the connection"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, OSError) and exc.errno and exc.strerror and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)})"
    return str(exc) or type(exc).__name__


def _tls_fatal(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    text = str(exc).lower().replace("_", " ")
    return isinstance(exc, ssl.SSLError) and any(marker in text for marker in _TLS_FATAL_MARKERS)


class _Stream:
    """One TCP or TLS connection to the receiver."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.delivered = False  # a batch was acknowledged on this connection

    def peer_state(self) -> str:
        """Whether the receiver is still there: open, closed (it ended its side) or reset."""
        try:
            readable = select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return "reset"
        if not readable:
            return "open"
        # Receivers send nothing; a readable socket means end of stream, a reset, or TLS housekeeping
        # such as session tickets (which the TLS layer consumes).
        self.sock.settimeout(0)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return "closed"
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return "open"
        except ssl.SSLZeroReturnError:
            return "closed"
        except OSError:
            return "reset"
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self.timeout)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), _WRITE_CHUNK):
            self.sock.sendall(view[start : start + _WRITE_CHUNK])

    def wait_acked(self) -> None:
        """Block until the receiver's TCP stack acknowledged every byte written, or raise OSError."""
        if _OUTQ is None:
            return
        fd = self.sock.fileno()
        buf = bytearray(4)
        delay = 0.0001
        last = -1
        deadline = time.monotonic() + self.timeout
        while True:
            fcntl.ioctl(fd, _OUTQ, buf)
            left = int.from_bytes(buf, sys.byteorder, signed=True)
            if left <= 0:
                break
            now = time.monotonic()
            if left != last:  # progress: the timeout counts from the last acknowledgement
                last, deadline = left, now + self.timeout
            elif now > deadline:
                raise TimeoutError(
                    f"the receiver acknowledged nothing for {self.timeout:g}s ({left} bytes outstanding)"
                )
            if select.select([fd], [], [], delay)[0] and self.peer_state() != "open":
                raise ConnectionResetError(f"the receiver closed the connection with {left} bytes unacknowledged")
            delay = min(delay * 2, 0.01)
        # An empty queue can also mean a reset purged it: make sure the connection is still up.
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        if hasattr(socket, "TCP_INFO"):
            state = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
            if state != _TCP_ESTABLISHED:
                raise ConnectionResetError(f"the connection ended while sending (TCP state {state})")

    def rtt(self) -> float:
        """Smoothed round-trip time in seconds (Linux), or 0 if unknown."""
        if not hasattr(socket, "TCP_INFO"):
            return 0.0
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        except OSError:
            return 0.0
        # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_rtt (microseconds) is the 16th u32.
        return int.from_bytes(info[68:72], sys.byteorder) / 1e6 if len(info) >= 72 else 0.0

    def close(self, polite: bool) -> None:
        if polite and self.tls:
            # close_notify, so the receiver logs a clean end instead of "non-properly terminated".
            with contextlib.suppress(OSError, ValueError):
                self.sock.settimeout(min(self.timeout, 2.0))
                assert isinstance(self.sock, ssl.SSLSocket)
                self.sock.unwrap()
        with contextlib.suppress(OSError):
            self.sock.close()


class SyslogSink:
    """One ``[[sink]]`` of type syslog. ``send`` is called by one thread at a time; ``reopen`` may come
    from a signal handler thread, so it only flags the connection for renewal."""

    def __init__(self, name: str, fmt: str, config: SyslogConfig, dead_letter: DeadLetter, retry: RetryPolicy):
        self.name = name
        self.format = fmt
        self.config = config
        self._dead_letter = dead_letter
        self._retry = retry
        self._framer = Framer(
            rfc=config.rfc,
            facility=config.facility,
            severity_allowed=config.severity_allowed,
            severity_denied=config.severity_denied,
            hostname=config.hostname,
            app_name=config.app_name,
            procid=str(os.getpid()),
            msgid=config.msgid,
            sd_id=config.sd_id,
            octet_counting=config.framing == "octet-counting",
        )
        self.peer = f"{config.host}:{config.port}"
        self._lock = threading.Lock()
        self._conn: _Stream | None = None
        self._udp: socket.socket | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._renew = False
        # Batches recently acknowledged on a stream, sent again if the connection breaks (see module doc).
        self._recent: collections.deque[bytes] = collections.deque()
        self._recent_bytes = 0
        self._resend_pending = False
        self.resent_batches = 0  # for tests and metrics: batches sent again after a broken connection

    # --- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Load the TLS material (errors are fatal) and connect once; an unreachable receiver is only a
        warning here, since every send retries."""
        if self.config.protocol == "tls":
            self._tls_context = self._build_tls_context()
        with self._lock:
            try:
                if self.config.protocol == "udp":
                    self._udp_socket()
                else:
                    self._connect()
            except TransientError as exc:
                log.warning(
                    "Cannot reach the syslog receiver yet, sends will retry: sink=%s address=%s protocol=%s error=%s",
                    self.name, self.peer, self.config.protocol, exc,
                )  # fmt: skip

    def reopen(self) -> None:
        """SIGHUP: re-read TLS files (renewed certificates) and reconnect before the next batch."""
        if self.config.protocol == "tls":
            try:
                self._tls_context = self._build_tls_context()
            except SinkFatal as exc:
                log.error(
                    "Keeping the previous TLS settings, the new ones do not load: sink=%s error=%s", self.name, exc
                )
        self._renew = True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                state = self._conn.peer_state()
                if state == "reset":
                    log.error(
                        "The syslog receiver reset the connection after the last batch; events it had acknowledged "
                        "but not yet read may be lost: sink=%s address=%s recent_bytes=%d",
                        self.name, self.peer, self._recent_bytes,
                    )  # fmt: skip
                self._conn.close(polite=state == "open")
                self._conn = None
            if self._udp is not None:
                self._udp.close()
                self._udp = None

    def probe(self) -> str:
        """validate --connect: connect (and for TLS, complete the handshake with verification), send nothing."""
        c = self.config
        if c.protocol == "udp":
            try:
                socket.getaddrinfo(c.host, c.port, 0, socket.SOCK_DGRAM)
            except socket.gaierror as exc:
                raise Unreachable(f"cannot resolve {c.host}: {exc.strerror}") from None
            return f"{self.peer} resolves; UDP has no connection to test (a receiver that is down loses events unseen)"
        try:
            if c.protocol == "tls":
                self._tls_context = self._build_tls_context()
            with self._lock:
                conn = self._connect()
                version = conn.sock.version() if isinstance(conn.sock, ssl.SSLSocket) else None
                conn.close(polite=True)
                self._conn = None
        except (TransientError, SinkFatal) as exc:
            raise Unreachable(str(exc).removeprefix(f"sink {self.name}: ")) from None
        if version and not c.tls_verify:
            return (
                f"connected to {self.peer} over TLS ({version}) without checking its certificate (tls_verify = false)"
            )
        if version:
            return f"connected to {self.peer} over TLS ({version}, certificate verified)"
        return f"connected to {self.peer} over TCP"

    # --- sending ---------------------------------------------------------------------------------

    def send(self, batch: Batch) -> None:
        if not batch.lines:
            return
        events, lines = batch.events, batch.lines
        if self.config.protocol == "udp":
            self._send_udp(events, lines)
            return
        payload = self._framer.stream_payload(events, lines)
        what = f"send {len(lines)} events to {self.peer}"
        with self._lock:
            try:
                self._retry.call(lambda: self._attempt(payload), what, sink=self.name)
            except RetriesExhausted as exc:
                self._dead_letter.write(
                    self.name, f"syslog receiver {self.peer} unreachable: {exc}", _items(events, lines)
                )
                return
            self._remember(payload)

    def _attempt(self, payload: bytes) -> None:
        conn = self._conn
        if conn is not None and self._renew:
            self._drop(lost=False, polite=True)
            conn = None
        elif conn is not None:
            state = conn.peer_state()
            if state != "open":
                log.info(
                    "The syslog receiver ended the connection, reconnecting: sink=%s address=%s how=%s",
                    self.name, self.peer, state,
                )  # fmt: skip
                # Only a plain TCP FIN proves the receiver read everything: it would have sent a reset
                # instead had acknowledged bytes been left unread. A TLS close_notify comes before that reset.
                self._drop(lost=state == "reset" or conn.tls)
                conn = None
        if conn is None:
            conn = self._connect()
        data = payload
        resend = self._resend_pending and bool(self._recent)
        if resend:
            data = b"".join([*self._recent, payload])
        try:
            conn.write(data)
            conn.wait_acked()
        except OSError as exc:
            self._drop(lost=True)
            if _tls_fatal(exc):
                raise SinkFatal(f"sink {self.name}: TLS with {self.peer} failed: {_describe(exc)}") from exc
            # A TLS connection that never carried a batch was most likely refused after the handshake.
            hint = self._fresh_tls_hint() if conn.tls and not conn.delivered else ""
            raise TransientError(f"sending to {self.peer} failed: {_describe(exc)}{hint}") from exc
        conn.delivered = True
        if resend:
            self.resent_batches += len(self._recent)
            log.warning(
                "Sent the most recent batches again after a broken connection (at-least-once; duplicates carry the "
                "same event ids): sink=%s address=%s batches=%d bytes=%d",
                self.name, self.peer, len(self._recent), self._recent_bytes,
            )  # fmt: skip
        self._resend_pending = False

    def _remember(self, payload: bytes) -> None:
        window = self.config.reconnect_resend_bytes
        if window <= 0:
            return
        self._recent.append(payload)
        self._recent_bytes += len(payload)
        while len(self._recent) > 1 and self._recent_bytes - len(self._recent[0]) >= window:
            self._recent_bytes -= len(self._recent.popleft())

    def _drop(self, lost: bool, polite: bool = False) -> None:
        """Forget the connection. ``lost``: it may have taken acknowledged bytes with it, so resend."""
        if self._conn is not None:
            self._conn.close(polite=polite)
            self._conn = None
        if lost:
            self._resend_pending = True
        elif not self._resend_pending:
            # Our own close, or a plain-TCP FIN: the receiver read everything, nothing to send again.
            self._recent.clear()
            self._recent_bytes = 0

    # --- connecting ------------------------------------------------------------------------------

    def _build_tls_context(self) -> ssl.SSLContext:
        c = self.config
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=c.tls_ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if not c.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                log.warning(
                    "TLS certificate verification is off: anyone on the path can read and alter events: sink=%s "
                    "address=%s",
                    self.name, self.peer,
                )  # fmt: skip
            if c.tls_cert_file:
                ctx.load_cert_chain(c.tls_cert_file, c.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f for f in (c.tls_ca_file, c.tls_cert_file, c.tls_key_file) if f) or "system CAs"
            raise SinkFatal(f"sink {self.name}: cannot load the TLS files ({files}): {_describe(exc)}") from exc
        return ctx

    def _connect(self) -> _Stream:
        """Connect to the receiver (tcp/tls); TransientError if it is not there, SinkFatal if TLS cannot work."""
        self._renew = False
        c = self.config
        try:
            raw = socket.create_connection((c.host, c.port), timeout=c.timeout)
        except socket.gaierror as exc:
            raise TransientError(f"cannot resolve {c.host}: {exc.strerror}") from exc
        except OSError as exc:
            raise TransientError(f"cannot connect to {self.peer}: {_describe(exc)}") from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock: socket.socket = raw
        if c.protocol == "tls":
            if self._tls_context is None:
                self._tls_context = self._build_tls_context()
            try:
                sock = self._tls_context.wrap_socket(raw, server_hostname=c.tls_server_name or c.host)
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                if _tls_fatal(exc):
                    raise SinkFatal(self._tls_failure(exc)) from exc
                raise TransientError(f"TLS handshake with {self.peer} failed: {_describe(exc)}") from exc
        conn = _Stream(sock, c.timeout)
        if conn.tls:
            self._probation(conn)
        self._conn = conn
        log.info(
            "Connected to the syslog receiver: sink=%s address=%s protocol=%s rfc=%s framing=%s",
            self.name, self.peer, c.protocol, c.rfc, c.framing,
        )  # fmt: skip
        return conn

    def _probation(self, conn: _Stream) -> None:
        """Give the receiver a few round trips to reject our certificate (or its absence) after the
        handshake: TLS 1.3 finishes the client's side before the server has checked the client."""
        wait = min(_TLS_PROBATION_MAX, max(_TLS_PROBATION_MIN, 4 * conn.rtt()))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([conn.sock], [], [], left)[0]:
                return
            state = conn.peer_state()
            if state != "open":
                conn.close(polite=False)
                raise TransientError(
                    f"{self.peer} closed the TLS connection right after the handshake{self._fresh_tls_hint()}"
                )
            time.sleep(0.005)  # readable but only TLS housekeeping; do not spin

    def _fresh_tls_hint(self) -> str:
        if self.config.tls_cert_file:
            return " (the receiver may have rejected our client certificate: see its log)"
        return " (if the receiver requires a client certificate, set tls_cert_file and tls_key_file)"

    def _tls_failure(self, exc: BaseException) -> str:
        c = self.config
        name = c.tls_server_name or c.host
        if isinstance(exc, ssl.SSLCertVerificationError):
            if "mismatch" in (exc.verify_message or "") or "match" in str(exc):
                advice = f"the certificate is not valid for {name!r}; set tls_server_name to a name it carries"
            else:
                advice = "the certificate is not signed by a trusted CA; set tls_ca_file to the CA that signed it"
            return (
                f"sink {self.name}: TLS certificate of {self.peer} failed verification: {exc.verify_message}; {advice}"
            )
        return f"sink {self.name}: TLS handshake with {self.peer} failed: {_describe(exc)}"

    # --- UDP -------------------------------------------------------------------------------------

    def _udp_socket(self) -> socket.socket:
        if self._udp is not None and not self._renew:
            return self._udp
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        self._renew = False
        c = self.config
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(c.host, c.port, 0, socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise TransientError(f"cannot resolve {c.host}: {exc.strerror}") from exc
        sock = socket.socket(family, kind, proto)
        try:
            # Connected, so an ICMP "port unreachable" surfaces as ECONNREFUSED on a later send.
            sock.connect(addr)
            sock.settimeout(c.timeout)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        except OSError as exc:
            sock.close()
            raise TransientError(f"cannot set up UDP to {self.peer}: {_describe(exc)}") from exc
        self._udp = sock
        return sock

    def _send_udp(self, events: Sequence[Event], lines: Sequence[str]) -> None:
        grams = self._framer.datagrams(events, lines)
        limit = self.config.max_datagram
        if max(map(len, grams)) > limit:
            keep = [i for i, g in enumerate(grams) if len(g) <= limit]
            big = [i for i, g in enumerate(grams) if len(g) > limit]
            self._dead_letter.write(
                self.name,
                f"syslog message larger than max_datagram={limit} bytes (largest {max(len(grams[i]) for i in big)}); "
                "UDP messages are not truncated: use protocol tcp or tls, or raise max_datagram",
                [(events[i], lines[i]) for i in big],
            )
            grams = [grams[i] for i in keep]
            events = [events[i] for i in keep]
            lines = [lines[i] for i in keep]
            if not grams:
                return

        def attempt() -> None:
            sock = self._udp_socket()
            send = sock.send
            try:
                for gram in grams:
                    send(gram)
            except OSError as exc:
                self._udp = None
                sock.close()
                raise TransientError(f"sending UDP datagrams to {self.peer} failed: {_describe(exc)}") from exc

        with self._lock:
            try:
                self._retry.call(attempt, f"send {len(grams)} datagrams to {self.peer}", sink=self.name)
            except RetriesExhausted as exc:
                self._dead_letter.write(
                    self.name, f"syslog receiver {self.peer} unreachable: {exc}", _items(events, lines)
                )


def _items(events: Sequence[Event], lines: Sequence[str]) -> list[tuple[Event, str]]:
    return list(zip(events, lines, strict=True))
