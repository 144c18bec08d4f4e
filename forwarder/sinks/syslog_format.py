"""Syslog headers (RFC 5424 or RFC 3164) and stream framing (RFC 6587) for formatted flow events.

The hot path: a header is two cached strings around a cached timestamp, so one event costs a few
concatenations. Everything constant per sink (PRI per decision, hostname, app-name, procid,
msgid per log kind) is rendered once in ``Framer.__init__``.

Rules (README material):

- TIMESTAMP is the flow time (``FlowEvent.timestamp_ms``), not the send time: a SIEM that takes
  event time from the syslog header files the flow when it happened, also during a backfill.
  RFC 5424: ``2026-11-25T10:00:35.123Z`` (UTC, milliseconds). RFC 3164: ``Nov 25 10:00:35``, UTC
  (the format has no zone and no year; a receiver assumes its own).
- PRI = facility * 8 + severity; severity from the decision (allowed / denied).
- MSGID (RFC 5424 only) says what kind of event follows: ``NSGFLOW`` or ``VNETFLOW`` by default.
- STRUCTURED-DATA is ``-`` unless ``sd_id`` is set; then ``[<sd_id> id="<event id>"]``.
- No BOM before MSG: CEF parsers and JSON parsers downstream would see it as part of the event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from forwarder.flowlog.model import Event

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "audit": 13, "console": 14, "alert": 14,
    "clock": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22,
    "local7": 23,
}  # fmt: skip
SEVERITIES = {
    "emergency": 0, "emerg": 0, "alert": 1, "critical": 2, "crit": 2, "error": 3, "err": 3, "warning": 4,
    "warn": 4, "notice": 5, "informational": 6, "info": 6, "debug": 7,
}  # fmt: skip
DEFAULT_MSGIDS = {"nsg": "NSGFLOW", "vnet": "VNETFLOW"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
_TS_CACHE_MAX = 100_000  # seconds; events of one chunk span about a minute


def printable_ascii(value: str) -> bool:
    """RFC 5424 PRINTUSASCII: %d33-126, no spaces."""
    return value.isascii() and value.isprintable() and " " not in value and value != ""


class Framer:
    """Renders batches of (event, formatted line) into syslog messages for one sink's settings."""

    def __init__(
        self,
        *,
        rfc: str,
        facility: int,
        severity_allowed: int,
        severity_denied: int,
        hostname: str,
        app_name: str,
        procid: str,
        msgid: str | None,
        sd_id: str | None,
        octet_counting: bool,
    ):
        self.rfc = rfc
        self.octet_counting = octet_counting
        # Indexed by FlowEvent.allowed (False, True).
        pri = (facility * 8 + severity_denied, facility * 8 + severity_allowed)
        # Timestamp text by epoch milliseconds; the events of a chunk share a few thousand values at most.
        self._ts_cache: dict[int, str] = {}
        if rfc == "5424":
            self._pre = (f"<{pri[0]}>1 ", f"<{pri[1]}>1 ")
            sd = f' [{sd_id} id="' if sd_id else " - "
            self._mid = {
                kind: f" {hostname} {app_name} {procid} {msgid or default}{sd}"
                for kind, default in DEFAULT_MSGIDS.items()
            }
        else:
            self._pre = (f"<{pri[0]}>", f"<{pri[1]}>")
            self._mid = {kind: f" {hostname} {app_name}[{procid}]: " for kind in DEFAULT_MSGIDS}
        self._sd = bool(sd_id) and rfc == "5424"

    def _stamp(self, ms: int) -> str:
        """Cache miss: render the timestamp of ``ms`` and remember it."""
        if len(self._ts_cache) >= _TS_CACHE_MAX:
            self._ts_cache.clear()
        sec, milli = divmod(ms, 1000)
        t = time.gmtime(sec)
        if self.rfc == "5424":
            text = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            text += _MILLIS[milli]
        else:
            # Month names are fixed English (not the locale's); the day is space-padded ("Nov  5").
            text = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        self._ts_cache[ms] = text
        return text

    def _header(self, event: Event) -> str:
        ms = event.timestamp_ms
        h = self._pre[event.allowed] + (self._ts_cache.get(ms) or self._stamp(ms)) + self._mid[event.ctx.kind]
        return h + event.event_id + '"] ' if self._sd else h

    def messages(self, events: Sequence[Event], lines: Sequence[str]) -> list[str]:
        """One syslog message (header + line) per event, unframed."""
        header = self._header
        return [header(e) + line for e, line in zip(events, lines, strict=True)]

    def stream_payload(self, events: Sequence[Event], lines: Sequence[str]) -> bytes:
        """The whole batch as one byte string, framed for a TCP/TLS stream.

        The loops are spelled out (no per-event method call unless structured data is on) because
        this is where a TCP sink spends its time: each event costs a dict lookup, two
        concatenations of short strings, and its share of one join and one encode.
        """
        if len(events) != len(lines):
            raise ValueError(f"batch has {len(events)} events but {len(lines)} lines")
        out: list[str] = []
        add = out.append
        pre = self._pre
        mid = self._mid
        cache = self._ts_cache
        stamp = self._stamp
        if self._sd:
            if self.octet_counting:
                for e, line in zip(events, lines, strict=True):
                    ms = e.timestamp_ms
                    h = pre[e.allowed] + (cache.get(ms) or stamp(ms)) + mid[e.ctx.kind] + e.event_id + '"] '
                    add(f"{len(h) + (len(line) if line.isascii() else _utf8_len(line))} {h}")
                    add(line)
            else:
                for e, line in zip(events, lines, strict=True):
                    ms = e.timestamp_ms
                    add(pre[e.allowed] + (cache.get(ms) or stamp(ms)) + mid[e.ctx.kind] + e.event_id + '"] ')
                    add(line)
                    add("\n")
        elif self.octet_counting:
            # RFC 6587 octet counting: "<byte length> <message>", no trailer. The length is of the
            # UTF-8 bytes; for ASCII text (the norm) that is len() of the str, free to check.
            for e, line in zip(events, lines, strict=True):
                ms = e.timestamp_ms
                h = pre[e.allowed] + (cache.get(ms) or stamp(ms)) + mid[e.ctx.kind]
                add(f"{len(h) + (len(line) if line.isascii() else _utf8_len(line))} {h}")
                add(line)
        else:
            for e, line in zip(events, lines, strict=True):
                ms = e.timestamp_ms
                add(pre[e.allowed] + (cache.get(ms) or stamp(ms)) + mid[e.ctx.kind])
                add(line)
                add("\n")
        return "".join(out).encode("utf-8", "replace")

    def datagrams(self, events: Sequence[Event], lines: Sequence[str]) -> list[bytes]:
        """One UDP payload per event (RFC 5426: one message per datagram, no framing)."""
        return [m.encode("utf-8", "replace") for m in self.messages(events, lines)]


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "replace"))
