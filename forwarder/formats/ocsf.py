"""OCSF 1.8.0 Network Activity events (class_uid 4001), one JSON object per line.

Mapping decisions (schemas/ocsf.schema.json holds the exact shape):

- ``activity_id`` from the flow state: B Open (1), C Traffic (6), E Close (2); every denied flow
  Refuse (5). NSG version 1 tuples have no state: an allowed one is a Traffic (6) report.
- ``action_id`` Allowed (1) / Denied (2), ``disposition_id`` Allowed (1) / Blocked (2),
  ``status_id`` Success (1) / Failure (2), ``severity_id`` Informational (1) / Low (2).
- ``src_endpoint`` is the flow's initiator; ``traffic.bytes_out`` / ``packets_out`` are what it
  sent, ``bytes_in`` / ``packets_in`` the replies, ``bytes`` / ``packets`` the sums. ``traffic`` is
  absent when the tuple has no counters (state B of NSG v2, NSG v1).
- Endpoint ports are written as Azure logs them (for ICMP: type and code).
- The NIC the flow log belongs to is the observation point: the source of an outbound flow, the
  destination of an inbound one; its MAC goes on that endpoint.
- ``metadata.profiles`` lists the profiles applied (cloud, security_control), so that validators
  do not assume every profile of the base event (osint, host, ...) and demand their attributes.
- Azure context without an OCSF attribute (resource id and group, NSG or flow log name, flow
  state, VNet encryption, ACL id, target resource) goes to ``unmapped``.

Per-event work is three dict lookups and one f-string: the JSON that depends only on the
FlowContext is rendered once per distinct context, the endpoints and connection info once per
5-tuple (with its Community ID), the classification once per decision and flow state. Addresses
come validated from the normaliser and event ids are hex and digits, so neither needs escaping;
every string from the record is escaped once, when its context is first seen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.core import CoreEvents, core
from forwarder.flowlog.model import FlowContext, FlowEvent
from forwarder.formats.common import (
    CACHE_MAX,
    FLOW_STATES,
    IANA_KEYWORDS,
    PRODUCTS,
    VENDOR,
    FiveTuple,
    TupleCachingFormatter,
    bounded_put,
    colon_mac,
)

OCSF_VERSION = "1.8.0"
CATEGORY_UID, CATEGORY_NAME = 4, "Network Activity"
CLASS_UID, CLASS_NAME = 4001, "Network Activity"
PROFILES = ("cloud", "security_control")
LOG_PROVIDER = "Azure Network Watcher"

ACTIVITIES = {1: "Open", 2: "Close", 5: "Refuse", 6: "Traffic"}
STATE_ACTIVITY = {"B": 1, "C": 6, "E": 2, "": 6}
# (severity_id, severity, action_id, action, disposition_id, disposition, status_id, status) by allowed
DECISIONS = {
    True: (1, "Informational", 1, "Allowed", 1, "Allowed", 1, "Success"),
    False: (2, "Low", 2, "Denied", 2, "Blocked", 2, "Failure"),
}
DIRECTIONS = {True: (1, "Inbound"), False: (2, "Outbound")}
# The NIC is the source of an outbound flow and the destination of an inbound one.
OBSERVATION_POINTS = {True: (2, "Destination"), False: (1, "Source")}
IP_VERSIONS = {4: "Internet Protocol version 4 (IPv4)", 6: "Internet Protocol version 6 (IPv6)"}
# IANA keywords in lower case, as OCSF asks; other protocol numbers get no name.
PROTOCOL_NAMES = {number: keyword.lower() for number, keyword in IANA_KEYWORDS.items()}
AZURE_SUBSCRIPTION = (13, "Azure Subscription")  # account.type_id for a subscription

_dumps = json.JSONEncoder(ensure_ascii=True).encode  # ASCII output: lone surrogates from bad UTF-8 stay valid JSON


def activity_id(allowed: bool, state: str) -> int:
    if not allowed or state == "D":
        return 5
    return STATE_ACTIVITY.get(state, 6)


def region_of(ctx: FlowContext) -> str:
    """The region of a VNet flow log, from its default Network Watcher name (NetworkWatcher_<region>)."""
    parts = ctx.resource_id.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "networkwatchers":
            watcher = parts[i + 1]
            if watcher.lower().startswith("networkwatcher_") and len(watcher) > 15:
                return watcher[15:].lower()
    return ""


def classification(allowed: bool, state: str) -> str:
    """The opening of an event up to ``"time":``: everything that follows from the decision and flow state."""
    act = activity_id(allowed, state)
    sev_id, sev, action_id, action, disp_id, disp, status_id, status = DECISIONS[allowed]
    return (
        f'{{"activity_id":{act},"activity_name":"{ACTIVITIES[act]}",'
        f'"category_uid":{CATEGORY_UID},"category_name":"{CATEGORY_NAME}",'
        f'"class_uid":{CLASS_UID},"class_name":"{CLASS_NAME}",'
        f'"type_uid":{CLASS_UID * 100 + act},"type_name":"{CLASS_NAME}: {ACTIVITIES[act]}",'
        f'"severity_id":{sev_id},"severity":"{sev}",'
        f'"action_id":{action_id},"action":"{action}","disposition_id":{disp_id},"disposition":"{disp}",'
        f'"status_id":{status_id},"status":"{status}",'
        f'"is_src_dst_assignment_known":true,"timezone_offset":0,"time":'
    )


_HEADS = {state: (classification(False, state), classification(True, state)) for state in ("", "B", "C", "E", "D")}


class _Pieces:
    """What one context contributes to its lines, rendered once."""

    __slots__ = ("mac", "middles", "tails", "unmapped")

    def __init__(self, ctx: FlowContext) -> None:
        product = PRODUCTS.get(ctx.kind, f"Azure {ctx.kind} Flow Logs")
        meta = f'","version":"{OCSF_VERSION}","product":{{"name":{_dumps(product)},"vendor_name":"{VENDOR}"}}'
        meta += ',"profiles":[' + ",".join(f'"{p}"' for p in PROFILES) + "]"
        if ctx.category:
            meta += f',"log_name":{_dumps(ctx.category)}'
        meta += f',"log_provider":"{LOG_PROVIDER}","log_version":"{ctx.version}"}}'
        if ctx.rule:
            meta += f',"firewall_rule":{{"name":{_dumps(ctx.rule)}}}'
        cloud = '"provider":"Azure"'
        if ctx.subscription_id:
            type_id, type_name = AZURE_SUBSCRIPTION
            cloud += f',"account":{{"uid":{_dumps(ctx.subscription_id)},"type_id":{type_id},"type":"{type_name}"}}'
        region = region_of(ctx)
        if region:
            cloud += f',"region":{_dumps(region)}'
        meta += f',"cloud":{{{cloud}}}'
        middles = []
        for inbound in (False, True):
            obs_id, obs = OBSERVATION_POINTS[inbound]
            dir_id, direction = DIRECTIONS[inbound]
            middles.append(
                f'{meta},"observation_point_id":{obs_id},"observation_point":"{obs}",'
                f'"connection_info":{{"direction_id":{dir_id},"direction":"{direction}",'
            )
        self.middles = (middles[0], middles[1])  # by inbound: the end of metadata up to connection_info
        # The NIC is the source of an outbound flow and the destination of an inbound one.
        self.mac = f',"mac":"{colon_mac(ctx.mac)}"' if ctx.mac else ""
        unmapped = [f'"resource_id":{_dumps(ctx.resource_id)}']
        for key, value in (
            ("resource_group", ctx.resource_group),
            ("network_security_group" if ctx.kind == "nsg" else "flow_log", ctx.name),
            ("acl_id", ctx.acl_id),
            ("target_resource_id", ctx.target_resource_id),
        ):
            if value:
                unmapped.append(f'"{key}":{_dumps(value)}')
        self.unmapped = ',"unmapped":{' + ",".join(unmapped)
        self.tails: dict[str, str] = {}  # flow state + encryption -> end of line

    def tail(self, state: str, enc: str) -> str:
        piece = self.unmapped
        if state:
            piece += f',"flow_state":{_dumps(FLOW_STATES.get(state, state))}'
        if enc:
            piece += f',"encryption":{_dumps(enc)}'
        return bounded_put(self.tails, state + enc, piece + "}}", CACHE_MAX)


class OcsfFormatter(TupleCachingFormatter[_Pieces, tuple[str, str]]):
    name = "ocsf"
    content_type = "application/json"
    core_format = core.OCSF if core is not None else -1

    def _core_group(self, pieces: _Pieces) -> tuple[str, ...]:
        return (pieces.middles[0], pieces.middles[1], pieces.mac)

    def _core_variant(self, pieces: _Pieces, state: str, enc: str) -> tuple[str, ...]:
        head = _HEADS.get(state) or (classification(False, state), classification(True, state))
        return (pieces.tails.get(state + enc) or pieces.tail(state, enc), head[0], head[1])

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
        middles: tuple[str, str] = pieces.middles if pieces else ("", "")
        mac = pieces.mac if pieces else ""
        tails: dict[str, str] = pieces.tails if pieces else {}
        for e in events:
            ctx, eid, ts, src, dst, sp, dp, pr, inbound, allowed, state, enc, p1, b1, p2, b2 = e
            if ctx is not last_ctx:
                pieces = self._pieces(ctx)
                middles, mac, tails = pieces.middles, pieces.mac, pieces.tails
                last_ctx = ctx
            key = (src, dst, sp, dp, pr)
            addr = addr_cache.get(key)
            if addr is None:
                addr = addr_cache[key] = new_addr(key)
            head = heads.get(state)
            if head is None:
                head = (classification(False, state), classification(True, state))
            tail = tails.get(state + enc)
            if tail is None:
                assert pieces is not None
                tail = pieces.tail(state, enc)
            a0, a1 = addr
            # One f-string per line, with as few parts as possible: the cheapest way CPython has to build it.
            # The MAC goes on the NIC's side: the destination of an inbound flow, the source of an outbound one.
            if b1 is not None and b2 is not None and p1 is not None and p2 is not None:
                if inbound:
                    append(
                        f'{head[allowed]}{ts},"metadata":{{"uid":"{eid}{middles[1]}{a0}{a1}{mac}}},"traffic":'
                        f'{{"bytes_out":{b1},"packets_out":{p1},"bytes_in":{b2},"packets_in":{p2},'
                        f'"bytes":{b1 + b2},"packets":{p1 + p2}}}{tail}'
                    )
                else:
                    append(
                        f'{head[allowed]}{ts},"metadata":{{"uid":"{eid}{middles[0]}{a0}{mac}{a1}}},"traffic":'
                        f'{{"bytes_out":{b1},"packets_out":{p1},"bytes_in":{b2},"packets_in":{p2},'
                        f'"bytes":{b1 + b2},"packets":{p1 + p2}}}{tail}'
                    )
            elif b1 is None and b2 is None and p1 is None and p2 is None:
                if inbound:
                    append(f'{head[allowed]}{ts},"metadata":{{"uid":"{eid}{middles[1]}{a0}{a1}{mac}}}{tail}')
                else:
                    append(f'{head[allowed]}{ts},"metadata":{{"uid":"{eid}{middles[0]}{a0}{mac}{a1}}}{tail}')
            else:
                src_mac, dst_mac = ("", mac) if inbound else (mac, "")
                traffic = _partial_traffic(p1, b1, p2, b2)
                append(
                    f'{head[allowed]}{ts},"metadata":{{"uid":"{eid}{middles[inbound]}{a0}{src_mac}{a1}{dst_mac}}}'
                    f"{traffic}{tail}"
                )
        self._last_ctx = last_ctx
        self._last_pieces = pieces
        return out

    def _new_pieces(self, ctx: FlowContext) -> _Pieces:
        return _Pieces(ctx)

    def _new_addr(self, key: FiveTuple) -> tuple[str, str]:
        src, dst, sp, dp, pr = key
        proto = (_PROTO6 if ":" in src else _PROTO4)[pr]
        cid = community_id(src, dst, sp, dp, pr)
        return (
            f'{proto}"community_uid":"{cid}"}},"src_endpoint":{{"ip":"{src}","port":{sp}',
            f'}},"dst_endpoint":{{"ip":"{dst}","port":{dp}',
        )


def _protocol(number: int, ip_version: int) -> str:
    """The connection_info attributes that follow from the protocol number and IP version."""
    name = PROTOCOL_NAMES.get(number)
    return (
        f'"protocol_num":{number},'
        + (f'"protocol_name":"{name}",' if name else "")
        + f'"protocol_ver_id":{ip_version},"protocol_ver":"{IP_VERSIONS[ip_version]}",'
    )


_PROTO4 = [_protocol(n, 4) for n in range(256)]
_PROTO6 = [_protocol(n, 6) for n in range(256)]
OcsfFormatter.core_globals = tuple(_PROTO4 + _PROTO6)


def _partial_traffic(p1: int | None, b1: int | None, p2: int | None, b2: int | None) -> str:
    """Rare: a tuple with some counters empty. Only the present ones, and sums of complete pairs."""
    fields = []
    for key, value in (("bytes_out", b1), ("packets_out", p1), ("bytes_in", b2), ("packets_in", p2)):
        if value is not None:
            fields.append(f'"{key}":{value}')
    if b1 is not None and b2 is not None:
        fields.append(f'"bytes":{b1 + b2}')
    if p1 is not None and p2 is not None:
        fields.append(f'"packets":{p1 + p2}')
    return ',"traffic":{' + ",".join(fields) + "}"


def make_formatter() -> OcsfFormatter:
    return OcsfFormatter()
