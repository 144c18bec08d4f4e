"""Elastic Common Schema 9.4.0 events, one JSON object per flow tuple.

Per-tuple budget is about a microsecond, so nothing here builds a dict per event on the common
path: everything constant for a FlowContext is rendered to JSON text once (and cached by content,
because consecutive records repeat the same rule groups), and each tuple is one f-string over a
handful of variable pieces. ``reference_document`` builds the same event as a dict; it serves the
rare shapes the fast path does not cover (mixed counters, ICMP-less oddities, addresses that need
escaping) and the tests prove the two agree byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import orjson

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.model import FlowContext, FlowEvent

ECS_VERSION = "9.4.0"

# IANA keywords for network.transport; any other protocol is its number, as a string.
_TRANSPORTS = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 132: "sctp"}
# For ICMP the tuple's "ports" are the ICMP type and code (as in Community ID), not ports.
_ICMP = frozenset({1, 58})

_PRODUCTS = {"nsg": "NSG flow logs", "vnet": "VNet flow logs"}
_DATASETS = {"nsg": "azure.nsg_flow", "vnet": "azure.vnet_flow"}
_PROVIDERS = {"nsg": "NetworkSecurityGroupFlowEvent", "vnet": "FlowLogFlowEvent"}

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


def _iso_second(sec: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS.' for epoch seconds, for any integer (proleptic Gregorian, no OverflowError).

    Howard Hinnant's days-to-civil algorithm: unlike datetime it cannot raise on a corrupt
    timestamp, and the formatter must never stop the pipeline over one bad tuple.
    """
    days, rem = divmod(sec, 86400)
    hour, rem = divmod(rem, 3600)
    minute, second = divmod(rem, 60)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}."


_MILLIS = [f"{n:03d}Z" for n in range(1000)]
_seconds: dict[int, str] = {}
_CACHE_MAX = 100_000


def _second_head(sec: int) -> str:
    if len(_seconds) >= _CACHE_MAX:
        _seconds.clear()
    head = _seconds[sec] = _iso_second(sec)
    return head


def iso_timestamp(ms: int) -> str:
    """ISO 8601 UTC with milliseconds: 2026-11-25T10:00:35.123Z."""
    sec, milli = divmod(ms, 1000)
    head = _seconds.get(sec)
    if head is None:
        if len(_seconds) >= _CACHE_MAX:
            _seconds.clear()
        head = _seconds[sec] = _iso_second(sec)
    return head + _MILLIS[milli]


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
_port_parts: list[str] = []


def _ports() -> list[str]:
    """',"port":N' for every port: two list lookups per tuple instead of formatting two ints."""
    if not _port_parts:
        _port_parts.extend([f',"port":{n}' for n in range(65536)])
    return _port_parts


class _Prepared:
    """JSON text of everything constant for one context's content, cut where per-tuple values go."""

    __slots__ = ("allowed", "denied", "dst_in", "dst_out", "src_in", "src_out", "tail")

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


def _content_key(ctx: FlowContext) -> tuple[object, ...]:
    return (
        ctx.kind,
        ctx.version,
        ctx.resource_id,
        ctx.subscription_id,
        ctx.resource_group,
        ctx.name,
        ctx.mac,
        ctx.rule,
        ctx.category,
        ctx.operation_name,
        ctx.system_id,
        ctx.acl_id,
        ctx.target_resource_id,
        ctx.flow_log_guid,
    )


class EcsFormatter:
    """Formats FlowEvents as single-line ECS JSON; keeps per-context and per-value caches."""

    name = "ecs"
    content_type = "application/json"

    def __init__(self) -> None:
        self._last_ctx: FlowContext | None = None
        self._last: _Prepared | None = None
        self._prepared: dict[tuple[object, ...], _Prepared] = {}
        self._encryptions: dict[str, str] = {"": ""}
        self._timestamps: dict[int, str] = {}
        self._ports = _ports()

    def _prepare(self, ctx: FlowContext) -> _Prepared:
        key = _content_key(ctx)
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) >= 10_000:
                self._prepared.clear()
            prepared = self._prepared[key] = _Prepared(ctx)
        self._last_ctx = ctx
        self._last = prepared
        return prepared

    def _timestamp(self, ms: int) -> str:
        if len(self._timestamps) >= _CACHE_MAX:
            self._timestamps.clear()
        text = self._timestamps[ms] = iso_timestamp(ms)
        return text

    def _encryption(self, value: str) -> str:
        if len(self._encryptions) >= 1000:
            self._encryptions.clear()
            self._encryptions[""] = ""
        text = self._encryptions[value] = ',"encryption":' + _json(value)
        return text

    def format(self, event: FlowEvent) -> str:
        return self.format_many((event,))[0]

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]:
        out: list[str] = []
        append = out.append
        last_ctx = self._last_ctx
        prep = self._last
        seconds = _seconds
        millis = _MILLIS
        encryptions = self._encryptions
        ports = self._ports
        net4, net6 = _NETWORK
        states = _STATES
        cid = community_id
        for e in events:
            ctx, eid, ms, src, dst, sp, dp, proto, inbound, allowed, state, enc, p1, b1, p2, b2 = e
            if ctx is not last_ctx or prep is None:
                prep = self._prepare(ctx)
                last_ctx = ctx
            head = (prep.allowed if allowed else prep.denied).get(state)
            if head is None or src == dst or "%" in src or "%" in dst:
                # Rare shapes: a state the tables do not know, one address for both ends (related.ip
                # holds it once), or a scoped IPv6 address whose zone may need JSON escaping.
                append(_json(reference_document(e)))
                continue
            if proto == 1 or proto == 58:
                s_port = d_port = ""
                icmp = f',"icmp_type":{sp},"icmp_code":{dp}'
            else:
                s_port = ports[sp]
                d_port = ports[dp]
                icmp = ""
            sec = ms // 1000
            ts = seconds.get(sec) or _second_head(sec)
            enc_part = encryptions.get(enc)
            if enc_part is None:
                enc_part = self._encryption(enc)
            if inbound:
                src_end = prep.src_in
                dst_end = prep.dst_in
            else:
                src_end = prep.src_out
                dst_end = prep.dst_out
            if p1 is not None and b1 is not None and p2 is not None and b2 is not None:
                append(
                    f'{{"@timestamp":"{ts}{millis[ms - sec * 1000]}","event":{{{head}{eid}"}},'
                    f'"source":{{"ip":"{src}"{s_port},"bytes":{b1},"packets":{p1}{src_end}'
                    f'{dst}"{d_port},"bytes":{b2},"packets":{p2}{dst_end}'
                    f'{(net6 if ":" in src else net4)[proto]},"community_id":"{cid(src, dst, sp, dp, proto)}",'
                    f'"bytes":{b1 + b2},"packets":{p1 + p2}}},"related":{{"ip":["{src}","{dst}"]}}'
                    f"{prep.tail}{states[state]}{enc_part}{icmp}}}}}}}"
                )
            elif p1 is None and b1 is None and p2 is None and b2 is None:
                append(
                    f'{{"@timestamp":"{ts}{millis[ms - sec * 1000]}","event":{{{head}{eid}"}},'
                    f'"source":{{"ip":"{src}"{s_port}{src_end}{dst}"{d_port}{dst_end}'
                    f'{(net6 if ":" in src else net4)[proto]},"community_id":"{cid(src, dst, sp, dp, proto)}"}},'
                    f'"related":{{"ip":["{src}","{dst}"]}}{prep.tail}{states[state]}{enc_part}{icmp}}}}}}}'
                )
            else:
                # Some counters present and some not: Azure does not write that, so no fast path.
                append(_json(reference_document(e)))
        self._last_ctx = last_ctx
        self._last = prep
        return out


def make_formatter() -> EcsFormatter:
    return EcsFormatter()
