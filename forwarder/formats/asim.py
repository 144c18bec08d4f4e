"""ASIM Network Session rows (schema 0.2.7) for Microsoft Sentinel's ``ASimNetworkSessionLogs`` table,
one JSON object per flow tuple, with only the table's own columns (schemas/asim.schema.json).

Mapping decisions; where Microsoft's NSG / VNet parsers (reference/sentinel/parsers) and the ASIM
definitions disagree, which one wins and why:

- ``EventType`` is ``NetworkSession`` for a tuple, ``Flow`` for an aggregate (``EventCount`` > 1).
  The parsers say ``Flow`` because they read Traffic Analytics, which is aggregated already.
- ``EventProduct`` is ``Azure NSG flows`` and ``EventVendor`` ``Microsoft`` for NSG and VNet flow logs
  alike, as the newest parser (NTANetAnalytics, 2026) and the ASIM list of allowed products say; the
  older NSG and VNet parsers say ``NSGFlow``, which is not on that list.
- ``EventResult`` / ``DvcAction`` / ``EventSeverity``: Success / Allow / Informational for allowed
  flows, Failure / Deny / Low for denied ones, as the ASIM guidelines and the newest parser say (the
  older parsers set Informational for everything, with a "??" comment).
- ``EventSubType`` Start for flow state B, End for E (the two values ASIM lists); the state itself,
  spelled out, is ``EventOriginalSubType``.
- ``Dvc`` and ``DvcHostname`` are the NSG or flow log name (ASIM's stub parser over the native table
  rebuilds ``Dvc`` from ``DvcHostname`` first, so both say the same), ``DvcId`` its resource id
  (``DvcIdType`` AzureResourceId), ``DvcSubscriptionId`` its subscription, ``DvcMacAddr`` the NIC's MAC.
- Source is the flow's initiator: ``SrcBytes`` / ``SrcPackets`` are what it sent (s2d), ``Dst*`` the
  replies; ``NetworkBytes`` / ``NetworkPackets`` their sums. A tuple without counters has none of them.
- The NIC's MAC goes on its side, as the newest parser does: ``DstMacAddr`` for inbound flows,
  ``SrcMacAddr`` for outbound ones. For VNet flow logs the target resource goes on the same side as
  ``DstDvcId`` / ``SrcDvcId`` (AzureResourceId), as that parser maps ``TargetResourceId``.
- ``NetworkDirection`` is the NSG's Inbound / Outbound, as every parser maps it (ASIM would prefer the
  direction relative to the organisation's boundary, which a flow log does not know).
- ``NetworkProtocol`` is the IANA keyword (TCP, UDP, ICMP, IPv6-ICMP, ...); a protocol number without
  one leaves it out and goes to ``AdditionalFields.ProtocolNumber``. ``NetworkProtocolVersion`` IPv4 / IPv6.
- ICMP: the tuple's "ports" are the ICMP type and code. ``NetworkIcmpCode`` is the code and
  ``NetworkIcmpType`` the type's IANA name, both as the table's column types say (int, string); a type
  without a name is written as its number. No port numbers for ICMP.
- ``EventOriginalUid`` is the deterministic event id (``EventUid`` is Sentinel's own ``_ItemId``).
- Azure context without a column goes to ``AdditionalFields``: resource group, flow log kind and
  version, flow state, VNet encryption, ACL id, flow log GUID, Community ID; nothing a column holds.
- Constants the stub parser adds at query time (``EventSchema``) and aliases (``Src``, ``IpAddr``,
  ``Rule``...) are not columns and are not sent.

Per-tuple work is a few dict lookups and one f-string: the text that depends only on the FlowContext
is rendered once per distinct context, the addresses, ports, protocol and Community ID once per
5-tuple, the classification once per decision and flow state. Strings from the record are escaped
once, when their context is first seen, with ASCII output so that a row's length in characters is
its length in bytes (the sink's request sizes rely on it). ``row_document`` builds the same row as a
dict in the same key order: it serves rare shapes, aggregates (issue 11), and the tests hold the two
to the same bytes. With the compiled core, batches are rendered by csrc/render.c (render_asim) from the
same pieces: the context's columns and its NIC side per rule group, the classification and the
FlowState / Encryption tail per (flow state, encryption), the network, ICMP type and ProtocolNumber
members per protocol (``core_globals``); C splices the times, id, addresses, ports, counters and
Community ID between them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.core import CoreEvents, core
from forwarder.flowlog.model import FlowContext, FlowEvent
from forwarder.formats.common import (
    CACHE_MAX,
    FLOW_STATES,
    IANA_KEYWORDS,
    VENDOR,
    FiveTuple,
    TupleCachingFormatter,
    bounded_put,
    colon_mac,
)
from forwarder.formats.ecs import iso_timestamp

SCHEMA_VERSION = "0.2.7"
PRODUCT = "Azure NSG flows"
SESSION, FLOW = "NetworkSession", "Flow"
SUBTYPES = {"B": "Start", "E": "End"}
# (EventResult, EventSeverity, DvcAction) by allowed
DECISIONS = {True: ("Success", "Informational", "Allow"), False: ("Failure", "Low", "Deny")}
DIRECTIONS = {True: "Inbound", False: "Outbound"}
_ICMP = frozenset({1, 58})
# IANA ICMP type names (icmp-parameters, icmpv6-parameters) for the types a flow log is likely to see.
ICMP4_TYPES = {0: "Echo Reply", 3: "Destination Unreachable", 4: "Source Quench", 5: "Redirect", 8: "Echo",
               9: "Router Advertisement", 10: "Router Solicitation", 11: "Time Exceeded", 12: "Parameter Problem",
               13: "Timestamp", 14: "Timestamp Reply"}  # fmt: skip
ICMP6_TYPES = {1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded", 4: "Parameter Problem",
               128: "Echo Request", 129: "Echo Reply", 130: "Multicast Listener Query",
               131: "Multicast Listener Report", 132: "Multicast Listener Done", 133: "Router Solicitation",
               134: "Router Advertisement", 135: "Neighbor Solicitation", 136: "Neighbor Advertisement",
               137: "Redirect Message", 143: "Version 2 Multicast Listener Report"}  # fmt: skip

_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def icmp_type_name(protocol: int, icmp_type: int) -> str:
    return (ICMP4_TYPES if protocol == 1 else ICMP6_TYPES).get(icmp_type, str(icmp_type))


def _ip_version(addr: str) -> str:
    return "IPv6" if ":" in addr else "IPv4"


def _side(inbound: bool) -> tuple[str, str]:
    """The NIC's side of a flow and the other one: the destination of inbound flows, the source of outbound."""
    return ("Dst", "Src") if inbound else ("Src", "Dst")


def row_document(
    ctx: FlowContext,
    *,
    uid: str,
    start_ms: int,
    end_ms: int,
    src_ip: str,
    dst_ip: str,
    src_port: int | None,
    dst_port: int,
    protocol: int,
    inbound: bool,
    allowed: bool,
    state: str = "",
    encryption: str = "",
    packets_s2d: int | None = None,
    bytes_s2d: int | None = None,
    packets_d2s: int | None = None,
    bytes_d2s: int | None = None,
    count: int = 1,
) -> dict[str, Any]:
    """One ASIM row as a dict, in output key order: a flow tuple (``count`` 1, one time) or an aggregate
    of ``count`` flows between ``start_ms`` and ``end_ms`` (``EventType`` Flow; ``src_port`` None when
    the aggregation key leaves it out, ``state`` "" as the flows of an aggregate have several)."""
    result, severity, action = DECISIONS[allowed]
    icmp = protocol in _ICMP
    nic, _ = _side(inbound)
    doc: dict[str, Any] = {
        "TimeGenerated": iso_timestamp(end_ms),
        "EventStartTime": iso_timestamp(start_ms),
        "EventEndTime": iso_timestamp(end_ms),
        "EventCount": count,
        "EventType": SESSION if count == 1 else FLOW,
    }
    if count == 1 and state in SUBTYPES:
        doc["EventSubType"] = SUBTYPES[state]
    if state:
        doc["EventOriginalSubType"] = FLOW_STATES.get(state, state)
    doc.update({"EventResult": result, "EventSeverity": severity, "DvcAction": action})
    doc.update(_context_columns(ctx))
    doc["EventOriginalUid"] = uid
    doc["SrcIpAddr"] = src_ip
    if src_port is not None and not icmp:
        doc["SrcPortNumber"] = src_port
    doc["DstIpAddr"] = dst_ip
    if not icmp:
        doc["DstPortNumber"] = dst_port
    keyword = IANA_KEYWORDS.get(protocol)
    if keyword:
        doc["NetworkProtocol"] = keyword
    doc["NetworkProtocolVersion"] = _ip_version(src_ip)
    if icmp and src_port is not None:
        doc["NetworkIcmpType"] = icmp_type_name(protocol, src_port)
        doc["NetworkIcmpCode"] = dst_port
    doc["NetworkDirection"] = DIRECTIONS[inbound]
    if ctx.mac:
        doc[f"{nic}MacAddr"] = colon_mac(ctx.mac)
    if ctx.target_resource_id:
        doc[f"{nic}DvcId"] = ctx.target_resource_id
        doc[f"{nic}DvcIdType"] = "AzureResourceId"
    for key, value in (
        ("SrcBytes", bytes_s2d),
        ("SrcPackets", packets_s2d),
        ("DstBytes", bytes_d2s),
        ("DstPackets", packets_d2s),
    ):
        if value is not None:
            doc[key] = value
    if bytes_s2d is not None and bytes_d2s is not None:
        doc["NetworkBytes"] = bytes_s2d + bytes_d2s
    if packets_s2d is not None and packets_d2s is not None:
        doc["NetworkPackets"] = packets_s2d + packets_d2s
    extra = _context_extra(ctx)
    if keyword is None:
        extra["ProtocolNumber"] = protocol
    if src_port is not None:
        # An address inet_pton refuses gets no hash rather than no row.
        with suppress(OSError, ValueError):
            extra["CommunityId"] = community_id(src_ip, dst_ip, src_port, dst_port, protocol)
    if state:
        extra["FlowState"] = FLOW_STATES.get(state, state)
    if encryption:
        extra["Encryption"] = encryption
    doc["AdditionalFields"] = extra
    return doc


def reference_row(event: FlowEvent) -> dict[str, Any]:
    """The row of one flow tuple as a dict: the specification the fast path must match."""
    e = event
    return row_document(
        e.ctx,
        uid=e.event_id,
        start_ms=e.timestamp_ms,
        end_ms=e.timestamp_ms,
        src_ip=e.src_ip,
        dst_ip=e.dst_ip,
        src_port=e.src_port,
        dst_port=e.dst_port,
        protocol=e.protocol,
        inbound=e.inbound,
        allowed=e.allowed,
        state=e.state,
        encryption=e.encryption,
        packets_s2d=e.packets_s2d,
        bytes_s2d=e.bytes_s2d,
        packets_d2s=e.packets_d2s,
        bytes_d2s=e.bytes_d2s,
    )


def _context_columns(ctx: FlowContext) -> dict[str, Any]:
    """The columns that follow from the context alone, between the classification and the event id."""
    doc: dict[str, Any] = {
        "EventProduct": PRODUCT,
        "EventProductVersion": str(ctx.version),
        "EventVendor": VENDOR,
        "EventSchemaVersion": SCHEMA_VERSION,
    }
    # Dvc is mandatory: a record without a resource name still names the product, as ASIM asks of
    # cloud sources without an apparent device.
    doc["Dvc"] = ctx.name or PRODUCT
    if ctx.name:
        doc["DvcHostname"] = ctx.name
    if ctx.resource_id:
        doc["DvcId"] = ctx.resource_id
        doc["DvcIdType"] = "AzureResourceId"
    if ctx.subscription_id:
        doc["DvcSubscriptionId"] = ctx.subscription_id
    if ctx.mac:
        doc["DvcMacAddr"] = colon_mac(ctx.mac)
    if ctx.rule:
        doc["NetworkRuleName"] = ctx.rule
    return doc


def _context_extra(ctx: FlowContext) -> dict[str, Any]:
    """AdditionalFields members that follow from the context alone."""
    # Nothing a column already holds (the name is Dvc, the target resource Src/DstDvcId): every byte
    # of a row is billed, and stored once per flow tuple.
    extra: dict[str, Any] = {"FlowLogKind": ctx.kind, "FlowLogVersion": ctx.version}
    for key, value in (
        ("ResourceGroup", ctx.resource_group),
        ("FlowLogGuid", ctx.flow_log_guid),
        ("AclId", ctx.acl_id),
    ):
        if value:
            extra[key] = value
    return extra


def _members(doc: dict[str, Any]) -> str:
    """An object's members without the braces, so that fragments can be spliced together."""
    return _dumps(doc)[1:-1]


def classification(allowed: bool, state: str) -> str:
    """The columns that follow from the decision and flow state, between EventType and EventProduct."""
    doc: dict[str, Any] = {}
    if state in SUBTYPES:
        doc["EventSubType"] = SUBTYPES[state]
    if state:
        doc["EventOriginalSubType"] = FLOW_STATES.get(state, state)
    result, severity, action = DECISIONS[allowed]
    doc.update({"EventResult": result, "EventSeverity": severity, "DvcAction": action})
    return "," + _members(doc) + ","


_HEADS = {state: (classification(False, state), classification(True, state)) for state in ("", "B", "C", "E", "D")}


class _Pieces:
    """What one context contributes to its rows, rendered once."""

    __slots__ = ("columns", "extra", "nic", "tails")

    def __init__(self, ctx: FlowContext) -> None:
        self.columns = _members(_context_columns(ctx)) + ',"EventOriginalUid":"'
        self.nic: tuple[str, str] = ("", "")  # by inbound: the NIC's MAC and target resource on its side
        nic = []
        for inbound in (False, True):
            side, _ = _side(inbound)
            piece = f',"NetworkDirection":"{DIRECTIONS[inbound]}"'
            if ctx.mac:
                piece += f',"{side}MacAddr":"{colon_mac(ctx.mac)}"'
            if ctx.target_resource_id:
                piece += f',"{side}DvcId":{_dumps(ctx.target_resource_id)},"{side}DvcIdType":"AzureResourceId"'
            nic.append(piece)
        self.nic = (nic[0], nic[1])
        self.extra = ',"AdditionalFields":{' + _members(_context_extra(ctx))
        self.tails: dict[str, str] = {}  # flow state + encryption -> end of row

    def tail(self, state: str, enc: str) -> str:
        piece = ""
        if state:
            piece += f',"FlowState":{_dumps(FLOW_STATES.get(state, state))}'
        if enc:
            piece += f',"Encryption":{_dumps(enc)}'
        return bounded_put(self.tails, state + enc, piece + "}}", CACHE_MAX)


class AsimFormatter(TupleCachingFormatter[_Pieces, tuple[str, str]]):
    """Rows of the ASimNetworkSessionLogs table, one per flow tuple."""

    name = "asim"
    content_type = "application/json"
    core_format = core.ASIM if core is not None else -1

    def __init__(self) -> None:
        super().__init__()
        self._times: dict[int, str] = {}

    def _core_group(self, pieces: _Pieces) -> tuple[str, ...]:
        return (pieces.columns, pieces.nic[0], pieces.nic[1], pieces.extra)

    def _core_variant(self, pieces: _Pieces, state: str, enc: str) -> tuple[str, ...]:
        head = _HEADS.get(state) or (classification(False, state), classification(True, state))
        return (head[0], head[1], pieces.tails.get(state + enc) or pieces.tail(state, enc))

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]:
        if type(events) is CoreEvents:
            return self._render_lines(events)
        out: list[str] = []
        append = out.append
        addr_cache = self._addr_cache(len(events))
        new_addr = self._new_addr
        heads = _HEADS
        last_ctx = self._last_ctx
        pieces = self._last_pieces
        columns = pieces.columns if pieces else ""
        nic: tuple[str, str] = pieces.nic if pieces else ("", "")
        extra = pieces.extra if pieces else ""
        tails: dict[str, str] = pieces.tails if pieces else {}
        times = self._times  # tuples of a record share their seconds (NSG) or milliseconds
        for e in events:
            ctx, eid, ms, src, dst, sp, dp, pr, inbound, allowed, state, enc, p1, b1, p2, b2 = e
            if ctx is not last_ctx:
                pieces = self._pieces(ctx)
                columns, nic, extra, tails = pieces.columns, pieces.nic, pieces.extra, pieces.tails
                last_ctx = ctx
            head = heads.get(state)
            if head is None:
                append(_dumps(reference_row(e)))
                continue
            key = (src, dst, sp, dp, pr)
            addr = addr_cache.get(key)
            if addr is None:
                addr = addr_cache[key] = new_addr(key)
            tail = tails.get(state + enc)
            if tail is None:
                assert pieces is not None
                tail = pieces.tail(state, enc)
            ts = times.get(ms)
            if ts is None:
                if len(times) >= CACHE_MAX:
                    times.clear()
                ts = times[ms] = iso_timestamp(ms)
            a0, a1 = addr
            if b1 is not None and b2 is not None and p1 is not None and p2 is not None:
                counters = (
                    f',"SrcBytes":{b1},"SrcPackets":{p1},"DstBytes":{b2},"DstPackets":{p2},'
                    f'"NetworkBytes":{b1 + b2},"NetworkPackets":{p1 + p2}'
                )
            elif b1 is None and b2 is None and p1 is None and p2 is None:
                counters = ""
            else:
                append(_dumps(reference_row(e)))  # counters for one direction only: Azure does not write that
                continue
            # One f-string per row, with as few parts as possible.
            append(
                f'{{"TimeGenerated":"{ts}","EventStartTime":"{ts}","EventEndTime":"{ts}","EventCount":1,'
                f'"EventType":"NetworkSession"{head[allowed]}{columns}{eid}",{a0}{nic[inbound]}{counters}'
                f"{extra}{a1}{tail}"
            )
        self._last_ctx = last_ctx
        self._last_pieces = pieces
        return out

    def _new_pieces(self, ctx: FlowContext) -> _Pieces:
        return _Pieces(ctx)

    def _new_addr(self, key: FiveTuple) -> tuple[str, str]:
        """The address columns (up to NetworkDirection) and the 5-tuple's AdditionalFields members.

        Plain f-strings: addresses come validated from the normaliser and the names are constants, so
        nothing needs escaping, and about every other tuple is a new 5-tuple."""
        src, dst, sp, dp, pr = key
        network = _NETWORK[":" in src][pr]
        if pr == 1 or pr == 58:
            a0 = (
                f'"SrcIpAddr":"{src}","DstIpAddr":"{dst}"{network},'
                f'"NetworkIcmpType":"{icmp_type_name(pr, sp)}","NetworkIcmpCode":{dp}'
            )
        else:
            a0 = f'"SrcIpAddr":"{src}","SrcPortNumber":{sp},"DstIpAddr":"{dst}","DstPortNumber":{dp}{network}'
        a1 = "" if pr in IANA_KEYWORDS else f',"ProtocolNumber":{pr}'
        with suppress(OSError, ValueError):
            a1 += f',"CommunityId":"{community_id(src, dst, sp, dp, pr)}"'
        return a0, a1


def _network(protocol: int, version: str) -> str:
    keyword = IANA_KEYWORDS.get(protocol)
    return (f',"NetworkProtocol":"{keyword}"' if keyword else "") + f',"NetworkProtocolVersion":"{version}"'


# NetworkProtocol and NetworkProtocolVersion by IPv6-ness, then protocol number.
_NETWORK = ([_network(p, "IPv4") for p in range(256)], [_network(p, "IPv6") for p in range(256)])
# What the compiled core splices per row (csrc/render.c): the network members above, the ICMP type columns up
# to NetworkIcmpCode's value by protocol (ICMP, IPv6-ICMP) and type, and AdditionalFields.ProtocolNumber.
AsimFormatter.core_globals = (
    *_NETWORK[0],
    *_NETWORK[1],
    *(f',"NetworkIcmpType":"{icmp_type_name(p, t)}","NetworkIcmpCode":' for p in (1, 58) for t in range(256)),
    *("" if p in IANA_KEYWORDS else f',"ProtocolNumber":{p}' for p in range(256)),
)


def make_formatter() -> AsimFormatter:
    return AsimFormatter()
