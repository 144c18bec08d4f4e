"""Aggregates (one event per key and window, see forwarder/reduce/aggregate.py) in every output format.

Aggregates are a tenth of the tuples or fewer, so they are built as documents, not from cached pieces.
Fields outside the aggregation key are left out (an aggregate over several rules has no rule). Times:
the event's time is the window's first flow; start and end are the first and last flow; the window
itself is in the Azure context. Counters are sums of the C and E tuples' deltas.

- ECS: ``event.kind: event``, ``event.type: [connection, allowed|denied]`` (no decision when the key
  leaves it out), ``event.action: flow_summary``, ``event.dataset: azure.nsg_flow_summary`` (or
  ``azure.vnet_flow_summary``), ``event.start`` / ``event.end`` / ``event.duration``;
  ``source/destination.bytes|packets``; counts under ``azure.flowlog.summary``.
- CEF: signature ``flow-summary``, ``cnt`` (flows), ``start`` / ``end``; flows started in
  ``flexNumber1``, ended in ``flexNumber2``, denied in ``cn3``.
- OCSF: Network Activity, Traffic (6) or Refuse (5) for denied flows, ``count``, ``start_time`` /
  ``end_time``; the counts in ``unmapped``.
- ASIM: ``EventType: Flow``, ``EventCount``, ``EventStartTime`` / ``EventEndTime``; the window and the counts
  under ``AdditionalFields.Summary``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace
from typing import Any

import orjson

from forwarder.flowlog.community_id import community_id
from forwarder.formats import asim, cef, ecs, ocsf
from forwarder.formats.common import PRODUCTS, VENDOR, colon_mac
from forwarder.reduce.aggregate import Aggregate

_ICMP = frozenset({1, 58})
# Every format types counters as 64-bit integers: sums of damaged or hostile input could pass that, and a
# document orjson cannot write would stop the blob. Each counter is capped so that two still add up within it.
_LONG_MAX = 2**63 - 1
_COUNTER_MAX = _LONG_MAX // 2
_INT_MAX = 2**31 - 1  # ASIM's EventCount is an int


def _capped(a: Aggregate) -> Aggregate:
    """The aggregate with every counter within what the formats can carry (the same object when they are)."""
    values = (a.flows, a.started, a.continuing, a.ended, a.denied, a.packets_s2d, a.bytes_s2d, a.packets_d2s,
              a.bytes_d2s)  # fmt: skip
    if all(v is None or v <= _COUNTER_MAX for v in values):
        return a

    def cap(v: int | None) -> int | None:
        return None if v is None else min(v, _COUNTER_MAX)

    return replace(
        a,
        flows=min(a.flows, _COUNTER_MAX), started=min(a.started, _COUNTER_MAX),
        continuing=min(a.continuing, _COUNTER_MAX), ended=min(a.ended, _COUNTER_MAX),
        denied=min(a.denied, _COUNTER_MAX), packets_s2d=cap(a.packets_s2d), bytes_s2d=cap(a.bytes_s2d),
        packets_d2s=cap(a.packets_d2s), bytes_d2s=cap(a.bytes_d2s),
    )  # fmt: skip


def _icmp(a: Aggregate) -> bool:
    return a.protocol in _ICMP


def _five_tuple(a: Aggregate) -> tuple[str, str, int, int, int] | None:
    if a.src_ip is None or a.dst_ip is None or a.src_port is None or a.dst_port is None or a.protocol is None:
        return None
    return a.src_ip, a.dst_ip, a.src_port, a.dst_port, a.protocol


def _summary(a: Aggregate) -> dict[str, Any]:
    return {
        "window_start": ecs.iso_timestamp(a.window_start_ms),
        "window_end": ecs.iso_timestamp(a.window_end_ms),
        "flows": a.flows,
        "started": a.started,
        "continuing": a.continuing,
        "ended": a.ended,
        "denied": a.denied,
    }


# -- ECS --------------------------------------------------------------------------------------------

_ECS_DATASETS = {"nsg": "azure.nsg_flow_summary", "vnet": "azure.vnet_flow_summary"}


def ecs_document(a: Aggregate) -> dict[str, Any]:
    a = _capped(a)
    ctx = a.ctx
    types = ["connection"]
    if a.decision is not None:
        types.append("allowed" if a.decision else "denied")
    event: dict[str, Any] = {"kind": "event", "category": ["network"], "type": types, "action": "flow_summary"}
    event["outcome"] = "unknown" if a.decision is None else ("success" if a.decision else "failure")
    event.update(
        {
            "module": "azure",
            "dataset": _ECS_DATASETS[ctx.kind],
            "id": a.event_id,
            "start": ecs.iso_timestamp(a.first_ms),
            "end": ecs.iso_timestamp(a.last_ms),
            "duration": min((a.last_ms - a.first_ms) * 1_000_000, _LONG_MAX),
        }
    )
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    if a.src_ip is not None:
        source["ip"] = a.src_ip
    if a.dst_ip is not None:
        destination["ip"] = a.dst_ip
    if not _icmp(a):
        if a.src_port is not None:
            source["port"] = a.src_port
        if a.dst_port is not None:
            destination["port"] = a.dst_port
    for side, b, p in ((source, a.bytes_s2d, a.packets_s2d), (destination, a.bytes_d2s, a.packets_d2s)):
        if b is not None:
            side["bytes"] = b
        if p is not None:
            side["packets"] = p
    if ctx.mac and a.inbound is not None:
        (destination if a.inbound else source)["mac"] = ctx.mac
    network: dict[str, Any] = {}
    if a.inbound is not None:
        network["direction"] = "inbound" if a.inbound else "outbound"
    if a.protocol is not None:
        network["transport"] = ecs._transport(a.protocol)
        network["iana_number"] = str(a.protocol)
    some_ip = a.src_ip or a.dst_ip
    if some_ip:
        network["type"] = "ipv6" if ":" in some_ip else "ipv4"
    five = _five_tuple(a)
    if five is not None:
        with suppress(OSError, ValueError):
            network["community_id"] = community_id(*five)
    counts = [v for v in (a.bytes_s2d, a.bytes_d2s) if v is not None]
    if counts:
        network["bytes"] = sum(counts)
    packets = [v for v in (a.packets_s2d, a.packets_d2s) if v is not None]
    if packets:
        network["packets"] = sum(packets)
    doc: dict[str, Any] = {"@timestamp": ecs.iso_timestamp(a.first_ms), "event": event}
    if source:
        doc["source"] = source
    if destination:
        doc["destination"] = destination
    doc["network"] = network
    related = list(dict.fromkeys(ip for ip in (a.src_ip, a.dst_ip) if ip is not None))
    if related:
        doc["related"] = {"ip": related}
    doc.update(ecs._ctx_tail(ctx))
    flowlog = doc["azure"]["flowlog"]
    if _icmp(a):
        if a.src_port is not None:
            flowlog["icmp_type"] = a.src_port
        if a.dst_port is not None:
            flowlog["icmp_code"] = a.dst_port
    flowlog["summary"] = _summary(a)
    return doc


def _ecs_lines(aggs: Sequence[Aggregate]) -> list[str]:
    return [orjson.dumps(ecs_document(a)).decode() for a in aggs]


# -- CEF --------------------------------------------------------------------------------------------


def cef_line(a: Aggregate) -> str:
    a = _capped(a)
    ctx = a.ctx
    product = cef.escape_header(PRODUCTS.get(ctx.kind, f"Azure {ctx.kind} Flow Logs"))
    allowed = a.decision is not False
    severity = cef.SIGNATURES[allowed][2]
    ext = []
    if a.decision is not None:
        ext.append(f"act={cef.ACTIONS[a.decision]}")
    ext += [f"rt={a.first_ms}", f"start={a.first_ms}", f"end={a.last_ms}", f"cnt={a.flows}", f"externalId={a.event_id}"]
    v6 = ":" in (a.src_ip or a.dst_ip or "")
    if a.src_ip is not None:
        ext.append(f"c6a2={a.src_ip} c6a2Label=Source IPv6 Address" if v6 else f"src={a.src_ip}")
    if a.dst_ip is not None:
        ext.append(f"c6a3={a.dst_ip} c6a3Label=Destination IPv6 Address" if v6 else f"dst={a.dst_ip}")
    if a.src_port is not None:
        ext.append(f"spt={a.src_port}")
    if a.dst_port is not None:
        ext.append(f"dpt={a.dst_port}")
    if a.protocol is not None:
        ext.append(f"proto={cef._PROTO[a.protocol]}")
    five = _five_tuple(a)
    if five is not None:
        with suppress(OSError, ValueError):
            ext.append(f"cs6={community_id(*five).replace('=', chr(92) + '=')} cs6Label=CommunityId")
    for key, value in (("in", a.bytes_s2d), ("out", a.bytes_d2s)):
        if value is not None:
            ext.append(f"{key}={value}")
    if a.packets_s2d is not None:
        ext.append(f"cn1={a.packets_s2d} cn1Label=PacketsSourceToDestination")
    if a.packets_d2s is not None:
        ext.append(f"cn2={a.packets_d2s} cn2Label=PacketsDestinationToSource")
    ext.append(f"cn3={a.denied} cn3Label=FlowsDenied")
    ext.append(f"flexNumber1={a.started} flexNumber1Label=FlowsStarted")
    ext.append(f"flexNumber2={a.ended} flexNumber2Label=FlowsEnded")
    if a.inbound is not None:
        ext.append(f"deviceDirection={0 if a.inbound else 1}")
        mac = colon_mac(ctx.mac)
        if mac:
            ext.append(f"{'dmac' if a.inbound else 'smac'}={mac}")
    for key, label, text in (
        ("cs1", "Rule", ctx.rule),
        ("cs2", cef.NAME_LABELS.get(ctx.kind, "FlowLog"), ctx.name),
        ("cs3", "SubscriptionId", ctx.subscription_id),
        ("cs4", "ResourceGroup", ctx.resource_group),
    ):
        if text:
            ext.append(f"{key}={cef.escape_value(text[: cef.STRING_MAX])} {key}Label={label}")
    if ctx.resource_id:
        ext.append("deviceExternalId=" + cef.escape_value(ctx.resource_id))
    return f"CEF:0|{VENDOR}|{product}|{ctx.version}|flow-summary|Flow summary|{severity}|" + " ".join(ext)


# -- OCSF -------------------------------------------------------------------------------------------


def ocsf_document(a: Aggregate) -> dict[str, Any]:
    a = _capped(a)
    ctx = a.ctx
    allowed = a.decision is not False
    activity = ocsf.activity_id(allowed, "")
    sev_id, sev, action_id, action, disp_id, disp, status_id, status = ocsf.DECISIONS[allowed]
    if a.decision is None:  # the key leaves the decision out: the flows were allowed and denied
        action_id, action, disp_id, disp, status_id, status = 0, "Unknown", 0, "Unknown", 0, "Unknown"
    doc: dict[str, Any] = {
        "activity_id": activity,
        "activity_name": ocsf.ACTIVITIES[activity],
        "category_uid": ocsf.CATEGORY_UID,
        "category_name": ocsf.CATEGORY_NAME,
        "class_uid": ocsf.CLASS_UID,
        "class_name": ocsf.CLASS_NAME,
        "type_uid": ocsf.CLASS_UID * 100 + activity,
        "type_name": f"{ocsf.CLASS_NAME}: {ocsf.ACTIVITIES[activity]}",
        "severity_id": sev_id,
        "severity": sev,
        "action_id": action_id,
        "action": action,
        "disposition_id": disp_id,
        "disposition": disp,
        "status_id": status_id,
        "status": status,
        "is_src_dst_assignment_known": True,
        "timezone_offset": 0,
        "time": a.first_ms,
        "start_time": a.first_ms,
        "end_time": a.last_ms,
        "count": a.flows,
    }
    metadata: dict[str, Any] = {
        "uid": a.event_id,
        "version": ocsf.OCSF_VERSION,
        "product": {"name": PRODUCTS.get(ctx.kind, f"Azure {ctx.kind} Flow Logs"), "vendor_name": VENDOR},
        "profiles": list(ocsf.PROFILES),
    }
    if ctx.category:
        metadata["log_name"] = ctx.category
    metadata.update(log_provider=ocsf.LOG_PROVIDER, log_version=str(ctx.version))
    doc["metadata"] = metadata
    if ctx.rule:
        doc["firewall_rule"] = {"name": ctx.rule}
    cloud: dict[str, Any] = {"provider": "Azure"}
    if ctx.subscription_id:
        type_id, type_name = ocsf.AZURE_SUBSCRIPTION
        cloud["account"] = {"uid": ctx.subscription_id, "type_id": type_id, "type": type_name}
    region = ocsf.region_of(ctx)
    if region:
        cloud["region"] = region
    doc["cloud"] = cloud
    connection: dict[str, Any] = {}
    if a.inbound is not None:
        obs_id, obs = ocsf.OBSERVATION_POINTS[a.inbound]
        doc["observation_point_id"], doc["observation_point"] = obs_id, obs
        connection["direction_id"], connection["direction"] = ocsf.DIRECTIONS[a.inbound]
    else:  # the key leaves the direction out: OCSF requires one, and Unknown is what there is
        doc["observation_point_id"], doc["observation_point"] = 0, "Unknown"
        connection["direction_id"], connection["direction"] = 0, "Unknown"
    if a.protocol is not None:
        connection["protocol_num"] = a.protocol
        name = ocsf.PROTOCOL_NAMES.get(a.protocol)
        if name:
            connection["protocol_name"] = name
    some_ip = a.src_ip or a.dst_ip
    if some_ip:
        version = 6 if ":" in some_ip else 4
        connection["protocol_ver_id"], connection["protocol_ver"] = version, ocsf.IP_VERSIONS[version]
    five = _five_tuple(a)
    if five is not None:
        with suppress(OSError, ValueError):
            connection["community_uid"] = community_id(*five)
    doc["connection_info"] = connection
    src: dict[str, Any] = {}
    dst: dict[str, Any] = {}
    for side, ip, port in ((src, a.src_ip, a.src_port), (dst, a.dst_ip, a.dst_port)):
        if ip is not None:
            side["ip"] = ip
        if port is not None:
            side["port"] = port
    if ctx.mac and a.inbound is not None:
        (dst if a.inbound else src)["mac"] = colon_mac(ctx.mac)
    doc["src_endpoint"] = src
    doc["dst_endpoint"] = dst
    traffic: dict[str, Any] = {}
    for key, value in (("bytes_out", a.bytes_s2d), ("packets_out", a.packets_s2d), ("bytes_in", a.bytes_d2s),
                       ("packets_in", a.packets_d2s)):  # fmt: skip
        if value is not None:
            traffic[key] = value
    if a.bytes_s2d is not None and a.bytes_d2s is not None:
        traffic["bytes"] = a.bytes_s2d + a.bytes_d2s
    if a.packets_s2d is not None and a.packets_d2s is not None:
        traffic["packets"] = a.packets_s2d + a.packets_d2s
    if traffic:
        doc["traffic"] = traffic
    unmapped: dict[str, Any] = {"resource_id": ctx.resource_id}
    for key, text in (
        ("resource_group", ctx.resource_group),
        ("network_security_group" if ctx.kind == "nsg" else "flow_log", ctx.name),
        ("acl_id", ctx.acl_id),
        ("target_resource_id", ctx.target_resource_id),
    ):
        if text:
            unmapped[key] = text
    unmapped["summary"] = _summary(a)
    doc["unmapped"] = unmapped
    return doc


def _ocsf_lines(aggs: Sequence[Aggregate]) -> list[str]:
    return [json.dumps(ocsf_document(a), ensure_ascii=True, separators=(",", ":")) for a in aggs]


# -- ASIM -------------------------------------------------------------------------------------------


def asim_document(a: Aggregate) -> dict[str, Any]:
    a = _capped(a)
    if a.src_ip is None or a.dst_ip is None or a.dst_port is None or a.protocol is None or a.inbound is None:
        raise ValueError("ASIM rows need the source and destination address, destination port, protocol and direction")
    doc = asim.row_document(
        a.ctx,
        uid=a.event_id,
        start_ms=a.first_ms,
        end_ms=a.last_ms,
        src_ip=a.src_ip,
        dst_ip=a.dst_ip,
        src_port=a.src_port,
        dst_port=a.dst_port,
        protocol=a.protocol,
        inbound=a.inbound,
        allowed=a.decision is not False,
        packets_s2d=a.packets_s2d,
        bytes_s2d=a.bytes_s2d,
        packets_d2s=a.packets_d2s,
        bytes_d2s=a.bytes_d2s,
        count=min(a.flows, _INT_MAX),
    )
    doc["AdditionalFields"]["Summary"] = _summary(a)
    return doc


def _asim_lines(aggs: Sequence[Aggregate]) -> list[str]:
    return [orjson.dumps(asim_document(a)).decode() for a in aggs]


_FORMATS: dict[str, Callable[[Sequence[Aggregate]], list[str]]] = {
    "ecs": _ecs_lines,
    "cef": lambda aggs: [cef_line(a) for a in aggs],
    "ocsf": _ocsf_lines,
    "asim": _asim_lines,
}


def format_aggregates(fmt: str, aggs: Sequence[Aggregate]) -> list[str]:
    return _FORMATS[fmt](aggs)
