"""Elastic Common Schema 9.4.0 events, one JSON object per flow tuple.

The per-tuple budget is about a microsecond, so the common path builds no dict per event:
everything constant for a FlowContext is rendered to JSON text once (and cached by content, because
consecutive records repeat the same rule groups), and each tuple is one f-string over its variable
pieces. ``reference_document`` builds the same event as a dict, in the same key order; it serves
the rare shapes the fast path leaves out (counters for one direction only, one address at both
ends, addresses that need escaping) and the tests hold the two to the same bytes.

Field choices: source is the flow's initiator (the tuple's source), so source.bytes/packets are
the s2d counters and destination.* the d2s ones; the NIC's MAC goes on the side that is the NIC
(destination for inbound flows, source for outbound); for ICMP the tuple's "ports" are the ICMP
type and code, so they go to azure.flowlog.icmp_type/icmp_code rather than to source/destination.port.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any, cast

import orjson

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.core import CoreEvents, core
from forwarder.flowlog.model import FlowContext, FlowEvent
from forwarder.formats.common import CachingFormatter, bounded_put

ECS_VERSION = "9.4.0"

# IANA keywords for network.transport; any other protocol is its number, as a string.
_TRANSPORTS = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 132: "sctp"}
# For ICMP the tuple's "ports" are the ICMP type and code (as in Community ID), not ports.
_ICMP = frozenset({1, 58})

_PRODUCTS = {"nsg": "NSG flow logs", "vnet": "VNet flow logs"}
_DATASETS = {"nsg": "azure.nsg_flow", "vnet": "azure.vnet_flow"}

_STATE_TYPES = {"B": "start", "E": "end"}


def _event_head(allowed: bool, state: str) -> dict[str, Any]:
    kind = "allowed" if allowed else "denied"
    types = ["connection", kind]
    if state in _STATE_TYPES:
        types.append(_STATE_TYPES[state])
    return {
        "kind": "event",
        "category": ["network"],
        "type": types,
        "action": "flow_" + kind,
        "outcome": "success" if allowed else "failure",
    }


def _transport(proto: int) -> str:
    return _TRANSPORTS.get(proto, str(proto))


def _ctx_event(ctx: FlowContext) -> dict[str, Any]:
    return {"module": "azure", "dataset": _DATASETS[ctx.kind]}


def _ctx_tail(ctx: FlowContext) -> dict[str, Any]:
    """rule, observer, cloud, ecs and the constant part of azure, in output order; empty values left out."""
    doc: dict[str, Any] = {}
    if ctx.rule:
        doc["rule"] = {"name": ctx.rule}
    observer = {"vendor": "Microsoft", "type": "firewall", "product": _PRODUCTS[ctx.kind]}
    if ctx.name:
        observer["name"] = ctx.name
    doc["observer"] = observer
    cloud: dict[str, Any] = {"provider": "azure"}
    if ctx.subscription_id:
        cloud["account"] = {"id": ctx.subscription_id}
    doc["cloud"] = cloud
    doc["ecs"] = {"version": ECS_VERSION}
    azure: dict[str, Any] = {}
    if ctx.resource_group:
        azure["resource_group"] = ctx.resource_group
    flowlog: dict[str, Any] = {"kind": ctx.kind, "version": ctx.version}
    for key, value in (
        ("name", ctx.name),
        ("resource_id", ctx.resource_id),
        ("category", ctx.category),
        ("flow_log_guid", ctx.flow_log_guid),
        ("acl_id", ctx.acl_id),
        ("target_resource_id", ctx.target_resource_id),
        ("mac", ctx.mac),
    ):
        if value:
            flowlog[key] = value
    azure["flowlog"] = flowlog
    doc["azure"] = azure
    return doc


def reference_document(event: FlowEvent) -> dict[str, Any]:
    """The ECS event as a dict, in output key order: the specification the fast path must match."""
    ctx = event.ctx
    e = event
    icmp = e.protocol in _ICMP
    ev = _event_head(e.allowed, e.state)
    ev.update(_ctx_event(ctx))
    ev["id"] = e.event_id
    source: dict[str, Any] = {"ip": e.src_ip}
    destination: dict[str, Any] = {"ip": e.dst_ip}
    if not icmp:
        source["port"] = e.src_port
        destination["port"] = e.dst_port
    for side, b, p in ((source, e.bytes_s2d, e.packets_s2d), (destination, e.bytes_d2s, e.packets_d2s)):
        if b is not None:
            side["bytes"] = b
        if p is not None:
            side["packets"] = p
    if ctx.mac:
        # The NIC is the destination of inbound flows and the source of outbound ones.
        (destination if e.inbound else source)["mac"] = ctx.mac
    network: dict[str, Any] = {
        "direction": "inbound" if e.inbound else "outbound",
        "transport": _transport(e.protocol),
        "iana_number": str(e.protocol),
        "type": "ipv6" if ":" in e.src_ip else "ipv4",
    }
    # An address inet_pton refuses (an IPv6 zone id) gets no hash rather than no event.
    with suppress(OSError, ValueError):
        network["community_id"] = community_id(e.src_ip, e.dst_ip, e.src_port, e.dst_port, e.protocol)
    byte_counts = [b for b in (e.bytes_s2d, e.bytes_d2s) if b is not None]
    packet_counts = [p for p in (e.packets_s2d, e.packets_d2s) if p is not None]
    if byte_counts:
        network["bytes"] = sum(byte_counts)
    if packet_counts:
        network["packets"] = sum(packet_counts)
    doc: dict[str, Any] = {
        "@timestamp": iso_timestamp(e.timestamp_ms),
        "event": ev,
        "source": source,
        "destination": destination,
        "network": network,
        "related": {"ip": [e.src_ip] if e.src_ip == e.dst_ip else [e.src_ip, e.dst_ip]},
    }
    doc.update(_ctx_tail(ctx))
    flowlog = doc["azure"]["flowlog"]
    if e.state:
        flowlog["state"] = e.state
    if e.encryption:
        flowlog["encryption"] = e.encryption
    if icmp:
        flowlog["icmp_type"] = e.src_port
        flowlog["icmp_code"] = e.dst_port
    return doc


def _iso_minute(minute: int) -> str:
    """'YYYY-MM-DDTHH:MM:' for a minute since the epoch, for any integer (proleptic Gregorian).

    Howard Hinnant's days-to-civil algorithm: unlike datetime it cannot raise on a corrupt
    timestamp, and the formatter must never stop the pipeline over one bad tuple.
    """
    days, rem = divmod(minute, 1440)
    hour, minute_of_hour = divmod(rem, 60)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute_of_hour:02d}:"


_MILLIS = [f"{n:03d}Z" for n in range(1000)]
_SECONDS = [f"{n:02d}." for n in range(60)]
_CACHE_MAX = 100_000
# Timestamps repeat (every tuple of a busy minute shares its minute and often its second), so
# seconds are cached, and a missed second costs a lookup of its minute, not a calendar computation.
_seconds: dict[int, str] = {}
_minutes: dict[int, str] = {}
# The same heads keyed by the millisecond timestamp of the whole second: NSG tuples have whole
# seconds, so one lookup without arithmetic finds them.
_whole_seconds: dict[int, str] = {}


def _second_head(sec: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS.' for epoch seconds, cached."""
    minute = sec // 60
    head = _minutes.get(minute)
    if head is None:
        if len(_minutes) >= _CACHE_MAX:
            _minutes.clear()
        head = _minutes[minute] = _iso_minute(minute)
    if len(_seconds) >= _CACHE_MAX:
        _seconds.clear()
        _whole_seconds.clear()
    text = _seconds[sec] = _whole_seconds[sec * 1000] = head + _SECONDS[sec - minute * 60]
    return text


def iso_timestamp(ms: int) -> str:
    """ISO 8601 UTC with milliseconds: 2026-11-25T10:00:35.123Z."""
    sec, milli = divmod(ms, 1000)
    return (_seconds.get(sec) or _second_head(sec)) + _MILLIS[milli]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _members(obj: dict[str, Any]) -> str:
    """An object's members without the braces, so that fragments can be spliced together."""
    return _json(obj)[1:-1]


_STATE_KEYS = ("", "B", "C", "E", "D")
# network.transport, iana_number and type, by IPv4/IPv6 then protocol number.
_NETWORK = [
    [_members({"transport": _transport(p), "iana_number": str(p), "type": ip_type}) for p in range(256)]
    for ip_type in ("ipv4", "ipv6")
]
_STATES = {"": "", **{s: f',"state":"{s}"' for s in "BCED"}}


class _Prepared:
    """JSON text of everything constant for one context's content, cut where per-tuple values go."""

    __slots__ = ("allowed", "core", "denied", "dst_in", "dst_out", "src_in", "src_out", "tail")

    def __init__(self, ctx: FlowContext):
        ev = _members(_ctx_event(ctx))
        # event.* up to the opening quote of event.id, by flow state, for allowed and denied flows.
        self.allowed = {s: f'{_members(_event_head(True, s))},{ev},"id":"' for s in _STATE_KEYS if s != "D"}
        self.denied = {s: f'{_members(_event_head(False, s))},{ev},"id":"' for s in _STATE_KEYS}
        mac = ',"mac":' + _json(ctx.mac) if ctx.mac else ""
        # From the end of source's counters to destination.ip, and from the end of destination's
        # counters into network: the NIC is the destination of inbound flows, the source of outbound.
        self.src_in = '},"destination":{"ip":"'
        self.dst_in = mac + '},"network":{"direction":"inbound",'
        self.src_out = mac + '},"destination":{"ip":"'
        self.dst_out = '},"network":{"direction":"outbound",'
        tail = _json(_ctx_tail(ctx))
        if not tail.endswith("}}}"):
            raise AssertionError(f"the context tail must end inside azure.flowlog: {tail[-40:]}")
        self.tail = "," + tail[1:-3]  # left open inside azure.flowlog for the per-tuple members
        self.core = (self.src_in, self.dst_in, self.src_out, self.dst_out, self.tail)  # csrc/render.c's order


class EcsFormatter(CachingFormatter[_Prepared]):
    """Formats FlowEvents as single-line ECS JSON; keeps per-context and per-value caches."""

    name = "ecs"
    content_type = "application/json"
    ctx_cache_max = 10_000
    core_format = core.ECS if core is not None else -1
    core_globals = tuple(_NETWORK[0] + _NETWORK[1])

    def __init__(self) -> None:
        super().__init__()
        self._flowlog_ends: dict[str, dict[str, str]] = {}

    def _new_pieces(self, ctx: FlowContext) -> _Prepared:
        return _Prepared(ctx)

    def _flowlog_end(self, encryption: str) -> dict[str, str]:
        """azure.flowlog.state and .encryption, by state, for one encryption value."""
        enc = ',"encryption":' + _json(encryption) if encryption else ""
        return bounded_put(self._flowlog_ends, encryption, {state: text + enc for state, text in _STATES.items()}, 1000)

    def _core_group(self, pieces: _Prepared) -> tuple[str, ...]:
        return pieces.core

    def _core_variant(self, pieces: _Prepared, state: str, enc: str) -> tuple[str, ...]:
        ends = self._flowlog_ends.get(enc) or self._flowlog_end(enc)
        return (pieces.allowed.get(state, ""), pieces.denied[state], ends[state])

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]:
        if type(events) is CoreEvents:
            return self._render_lines(events)
        out: list[str] = []
        append = out.append
        last_ctx = self._last_ctx
        prep = cast(_Prepared, self._last_pieces)  # None only while last_ctx is None, which no event matches
        seconds = _seconds
        millis = _MILLIS
        flowlog_ends = self._flowlog_ends
        whole_seconds = _whole_seconds
        net4, net6 = _NETWORK
        cid = community_id
        # Counters are int | None; the fast path lets a None fail a sum with TypeError instead of testing all four.
        p1: Any
        b1: Any
        p2: Any
        b2: Any
        for e in events:
            ctx, eid, ms, src, dst, sp, dp, proto, inbound, allowed, state, enc, p1, b1, p2, b2 = e
            if ctx is not last_ctx:
                prep = self._pieces(ctx)
                last_ctx = ctx
            head = (prep.allowed if allowed else prep.denied).get(state)
            if head is None or src == dst or "%" in src or "%" in dst:
                # Rare shapes: a state the tables do not know, one address for both ends (related.ip
                # holds it once), or a scoped IPv6 address whose zone may need JSON escaping.
                append(_json(reference_document(e)))
                continue
            ts = whole_seconds.get(ms)
            if ts is None:
                sec = ms // 1000
                ts = seconds.get(sec) or _second_head(sec)
                ms_part = millis[ms - sec * 1000]
            else:
                ms_part = "000Z"
            ends = flowlog_ends.get(enc) or self._flowlog_end(enc)
            if inbound:
                src_end = prep.src_in
                dst_end = prep.dst_in
            else:
                src_end = prep.src_out
                dst_end = prep.dst_out
            # Four spellings of one document (ports or ICMP type/code, counters or none), checked
            # byte for byte against reference_document by the tests.
            try:
                if b1 is not None:
                    # A None among the other counters makes one of the sums fail with TypeError.
                    if proto != 1 and proto != 58:
                        line = (
                            f'{{"@timestamp":"{ts}{ms_part}","event":{{{head}{eid}"}},'
                            f'"source":{{"ip":"{src}","port":{sp},'
                            f'"bytes":{b1},"packets":{p1}{src_end}'
                            f'{dst}","port":{dp},'
                            f'"bytes":{b2},"packets":{p2}{dst_end}'
                            f'{(net6 if ":" in src else net4)[proto]},"community_id":"{cid(src, dst, sp, dp, proto)}",'
                            f'"bytes":{b1 + b2},"packets":{p1 + p2}}},"related":{{"ip":["{src}","{dst}"]}}'
                            f"{prep.tail}{ends[state]}}}}}}}"
                        )
                    else:
                        line = (
                            f'{{"@timestamp":"{ts}{ms_part}","event":{{{head}{eid}"}},'
                            f'"source":{{"ip":"{src}","bytes":{b1},'
                            f'"packets":{p1}{src_end}{dst}",'
                            f'"bytes":{b2},"packets":{p2}{dst_end}'
                            f'{(net6 if ":" in src else net4)[proto]},"community_id":"{cid(src, dst, sp, dp, proto)}",'
                            f'"bytes":{b1 + b2},"packets":{p1 + p2}}},"related":{{"ip":["{src}","{dst}"]}}'
                            f'{prep.tail}{ends[state]},"icmp_type":{sp},"icmp_code":{dp}}}}}}}'
                        )
                elif p1 is not None or p2 is not None or b2 is not None:
                    raise TypeError("counters for one direction only")
                elif proto != 1 and proto != 58:
                    line = (
                        f'{{"@timestamp":"{ts}{ms_part}","event":{{{head}{eid}"}},'
                        f'"source":{{"ip":"{src}","port":{sp}{src_end}{dst}","port":{dp}{dst_end}'
                        f'{(net6 if ":" in src else net4)[proto]},"community_id":"{cid(src, dst, sp, dp, proto)}"}},'
                        f'"related":{{"ip":["{src}","{dst}"]}}{prep.tail}{ends[state]}}}}}}}'
                    )
                else:
                    line = (
                        f'{{"@timestamp":"{ts}{ms_part}","event":{{{head}{eid}"}},'
                        f'"source":{{"ip":"{src}"{src_end}{dst}"{dst_end}'
                        f'{(net6 if ":" in src else net4)[proto]},"community_id":"{cid(src, dst, sp, dp, proto)}"}},'
                        f'"related":{{"ip":["{src}","{dst}"]}}{prep.tail}{ends[state]}'
                        f',"icmp_type":{sp},"icmp_code":{dp}}}}}}}'
                    )
            except TypeError:
                # Some counters present and some not: Azure does not write that, so no fast path.
                line = _json(reference_document(e))
            append(line)
        self._last_ctx = last_ctx
        self._last_pieces = prep
        return out


def make_formatter() -> EcsFormatter:
    return EcsFormatter()
