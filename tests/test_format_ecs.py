"""ECS output: golden files, agreement with the reference builder, schema, ECS field existence, determinism."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import yaml  # type: ignore[import-untyped]

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.model import FlowEvent
from forwarder.formats.ecs import iso_timestamp, make_formatter, reference_document
from forwarder.samples.generator import blob_bytes, sample_specs
from tests.support.events import SCHEMAS, validate_lines
from tests.support.formats import (
    GOLDEN,
    GOLDEN_CASES,
    check_formatter_contract,
    check_golden_output,
    events_from_blob,
    format_every_way,
    format_one,
    golden_lines,
    make_context,
    make_event,
)
from tests.support.reference import reference

ECS_FLAT = reference("ecs/ecs_flat-9.4.0.yml")


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_output(case: str) -> None:
    check_golden_output("ecs", case)


def by_tuple(case: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Golden events keyed by (source ip, destination ip, @timestamp, flow state) for targeted checks."""
    docs = validate_lines("ecs", golden_lines("ecs", case))
    return {
        (d["source"]["ip"], d["destination"]["ip"], d["@timestamp"], d["azure"]["flowlog"].get("state", "")): d
        for d in docs
    }


def test_golden_nsg_v1_meaning() -> None:
    docs = by_tuple("nsg_v1")
    assert len(docs) == 5
    denied = docs[("185.220.101.4", "10.0.0.4", "2026-11-25T10:00:00.000Z", "")]
    assert denied["event"]["type"] == ["connection", "denied"]
    assert (denied["event"]["action"], denied["event"]["outcome"]) == ("flow_denied", "failure")
    assert denied["network"]["direction"] == "inbound"
    # Inbound: the NIC is the destination. No counters in version 1.
    assert denied["destination"]["mac"] == "00-0D-3A-1B-2C-3D" and "mac" not in denied["source"]
    assert "bytes" not in denied["source"] and "bytes" not in denied["network"]
    assert denied["rule"]["name"] == "DefaultRule_DenyAllInBound"
    assert denied["observer"] == {
        "vendor": "Microsoft",
        "type": "firewall",
        "product": "NSG flow logs",
        "name": "LEGACY-NSG",
    }
    assert denied["cloud"] == {"provider": "azure", "account": {"id": "11111111-2222-3333-4444-555555555555"}}
    assert denied["azure"]["resource_group"] == "LEGACYRG"
    assert denied["azure"]["flowlog"]["version"] == 1 and "state" not in denied["azure"]["flowlog"]
    v6 = docs[("2001:db8:85a3::8a2e:370:7334", "fd00::4", "2026-11-25T10:00:01.000Z", "")]
    assert v6["network"]["type"] == "ipv6"
    udp = docs[("10.0.0.4", "168.63.129.16", "2026-11-25T10:00:02.000Z", "")]
    assert (udp["network"]["transport"], udp["network"]["iana_number"]) == ("udp", "17")
    assert udp["event"]["type"] == ["connection", "allowed"] and udp["event"]["outcome"] == "success"
    # Outbound: the NIC is the source.
    assert udp["source"]["mac"] == "00-0D-3A-1B-2C-3D" and "mac" not in udp["destination"]
    assert udp["network"]["community_id"] == community_id("10.0.0.4", "168.63.129.16", 51000, 53, 17)
    assert udp["related"]["ip"] == ["10.0.0.4", "168.63.129.16"]


def test_golden_nsg_v2_meaning() -> None:
    docs = by_tuple("nsg_v2")
    begin = docs[("10.0.0.4", "13.67.143.118", "2026-11-25T10:00:00.000Z", "B")]
    assert begin["event"]["type"] == ["connection", "allowed", "start"]
    assert "bytes" not in begin["source"] and "packets" not in begin["network"]  # Azure leaves B counters empty
    cont = docs[("10.0.0.4", "13.67.143.118", "2026-11-25T10:00:30.000Z", "C")]
    assert cont["event"]["type"] == ["connection", "allowed"]
    # source = initiator: s2d counters are what the source sent, d2s what the destination sent.
    assert (cont["source"]["packets"], cont["source"]["bytes"]) == (30, 16978)
    assert (cont["destination"]["packets"], cont["destination"]["bytes"]) == (24, 14008)
    assert (cont["network"]["packets"], cont["network"]["bytes"]) == (54, 30986)
    end = docs[("10.0.0.4", "13.67.143.118", "2026-11-25T10:00:59.000Z", "E")]
    assert end["event"]["type"] == ["connection", "allowed", "end"]
    # All three states of one flow share its Community ID.
    assert begin["network"]["community_id"] == cont["network"]["community_id"] == end["network"]["community_id"]
    denied = docs[("94.102.49.190", "10.0.0.4", "2026-11-25T10:00:12.000Z", "B")]
    assert denied["event"]["type"] == ["connection", "denied", "start"]
    assert denied["event"]["outcome"] == "failure"
    # Two NICs in one rule group: each event carries its own NIC's MAC.
    nic2 = docs[("52.239.140.10", "10.0.0.5", "2026-11-25T10:01:21.000Z", "B")]
    assert nic2["destination"]["mac"] == "00-0D-3A-F8-78-57" == nic2["azure"]["flowlog"]["mac"]
    nic1 = docs[("52.239.140.10", "10.0.0.4", "2026-11-25T10:01:20.000Z", "C")]
    assert nic1["destination"]["mac"] == "00-0D-3A-F8-78-56"
    assert nic1["destination"]["bytes"] == 120000


def test_golden_vnet_v4_meaning() -> None:
    docs = by_tuple("vnet_v4")
    assert len(docs) == 14
    begin = docs[("10.0.0.4", "13.67.143.118", "2026-11-25T10:00:00.123Z", "B")]
    assert begin["event"]["type"] == ["connection", "allowed", "start"]
    assert begin["event"]["dataset"] == "azure.vnet_flow"
    assert begin["observer"]["product"] == "VNet flow logs" and begin["observer"]["name"] == "VNET1-FLOWLOG"
    assert begin["source"]["bytes"] == 0  # VNet writes zeros on B; they are values, not absences
    flowlog = begin["azure"]["flowlog"]
    assert flowlog["encryption"] == "NX" and flowlog["acl_id"] == "00000000-1234-abcd-ef00-c1c2c3c4c5c6"
    assert flowlog["target_resource_id"].endswith("/virtualNetworks/vnet1")
    assert flowlog["mac"] == "00-22-48-7B-C2-05" == begin["source"]["mac"]
    assert begin["azure"]["resource_group"] == "FabrikamRG"
    icmp = docs[("10.0.0.4", "52.239.140.10", "2026-11-25T10:00:01.001Z", "C")]
    assert icmp["network"]["transport"] == "icmp" and icmp["network"]["iana_number"] == "1"
    assert "port" not in icmp["source"] and "port" not in icmp["destination"]
    assert (icmp["azure"]["flowlog"]["icmp_type"], icmp["azure"]["flowlog"]["icmp_code"]) == (8, 0)
    assert icmp["network"]["community_id"] == community_id("10.0.0.4", "52.239.140.10", 8, 0, 1)
    icmp6 = docs[("fd00::4", "2603:1030:800:5::bfee:a418", "2026-11-25T10:00:03.003Z", "E")]
    assert (icmp6["network"]["transport"], icmp6["network"]["type"]) == ("ipv6-icmp", "ipv6")
    assert icmp6["event"]["type"] == ["connection", "allowed", "end"]
    gre = docs[("10.0.0.4", "10.1.0.5", "2026-11-25T10:00:04.004Z", "C")]
    assert (gre["network"]["transport"], gre["network"]["iana_number"]) == ("gre", "47")
    ipip = docs[("10.0.0.4", "10.3.0.9", "2026-11-25T10:00:10.010Z", "C")]
    assert (ipip["network"]["transport"], ipip["network"]["iana_number"]) == ("4", "4")
    empty = docs[("2001:db8:85a3::8a2e:370:7334", "fd00::4", "2026-11-25T10:00:06.006Z", "B")]
    assert "bytes" not in empty["source"] and "bytes" not in empty["network"]
    assert empty["destination"]["mac"] == "00-22-48-7B-C2-05"
    for key, transport in (
        (("185.220.101.4", "10.0.0.4", "2026-11-25T10:00:07.007Z", "D"), "tcp"),
        (("94.102.49.190", "10.0.0.4", "2026-11-25T10:00:08.008Z", "D"), "icmp"),
        (("185.220.101.4", "10.0.0.4", "2026-11-25T10:00:09.009Z", "D"), "udp"),
    ):
        denied = docs[key]
        assert denied["event"]["type"] == ["connection", "denied"]
        assert (denied["event"]["action"], denied["event"]["outcome"]) == ("flow_denied", "failure")
        assert denied["network"]["transport"] == transport
        assert denied["rule"]["name"] == "DefaultRule_DenyAllInBound"
    second_acl = docs[("10.2.0.8", "10.0.0.4", "2026-11-25T10:01:02.500Z", "B")]
    assert second_acl["azure"]["flowlog"]["acl_id"] == "11111111-1234-abcd-ef00-c1c2c3c4c5c6"


def sample_events() -> list[FlowEvent]:
    """A few hundred generated events of every kind: both NICs of an NSG, IPv6, ICMP, all states."""
    events: list[FlowEvent] = []
    for full_hour in sample_specs(hours=1, tuples_per_minute=15):
        spec = replace(full_hour, minutes=8)
        events.extend(events_from_blob(f"sampleacct/{spec.container}/{spec.blob_name}", blob_bytes(spec)))
    return events


def test_fast_path_matches_reference_builder_byte_for_byte() -> None:
    events = sample_events()
    kinds = {(e.ctx.kind, e.ctx.version) for e in events}
    assert kinds == {("nsg", 1), ("nsg", 2), ("vnet", 4)}
    lines = make_formatter().format_many(events)
    assert len(lines) == len(events)
    for event, line in zip(events, lines, strict=True):
        assert line == orjson.dumps(reference_document(event)).decode()
        assert "\n" not in line
    docs = validate_lines("ecs", lines)
    assert len({d["event"]["id"] for d in docs}) == len(docs)


def test_format_one_at_a_time_equals_format_many() -> None:
    format_every_way("ecs", sample_events()[:300])


def test_same_input_twice_gives_same_ids_and_bytes() -> None:
    data = (GOLDEN / "ecs" / "vnet_v4.PT1H.json").read_bytes()
    first = events_from_blob("acct/c/blob", data)
    second = events_from_blob("acct/c/blob", data)
    assert first is not second and first[0].ctx is not second[0].ctx
    fmt = make_formatter()
    once = fmt.format_many(first)
    assert fmt.format_many(second) == once  # warm caches
    assert make_formatter().format_many(second) == once  # fresh formatter
    ids = [json.loads(line)["event"]["id"] for line in once]
    assert len(set(ids)) == len(ids)
    other = events_from_blob("acct/c/another-blob", data)
    assert not set(ids) & {json.loads(line)["event"]["id"] for line in fmt.format_many(other)}


def test_interleaved_contexts_keep_their_own_constants() -> None:
    events = sample_events()
    by_ctx: dict[int, list[FlowEvent]] = {}
    for e in events:
        by_ctx.setdefault(id(e.ctx), []).append(e)
    groups = [g for g in by_ctx.values() if len(g) >= 2][:6]
    mixed = [g[i] for i in range(2) for g in groups]  # A B C ... A B C: the context changes every event
    assert make_formatter().format_many(mixed) == [orjson.dumps(reference_document(e)).decode() for e in mixed]


def test_unusual_shapes_take_the_reference_path_and_stay_valid() -> None:
    ctx = make_context()
    events = [
        make_event(ctx, src_ip="10.0.0.4", dst_ip="10.0.0.4"),  # one address at both ends: related.ip holds it once
        make_event(ctx, bytes_d2s=None, packets_d2s=None),  # counters for one direction only
        make_event(ctx, packets_s2d=None),
        make_event(ctx, bytes_s2d=None),
    ]
    docs = validate_lines("ecs", make_formatter().format_many(events))
    assert docs[0]["related"]["ip"] == ["10.0.0.4"]
    s2d = events[1]
    assert docs[1]["source"]["bytes"] == s2d.bytes_s2d and "bytes" not in docs[1]["destination"]
    assert (docs[1]["network"]["bytes"], docs[1]["network"]["packets"]) == (s2d.bytes_s2d, s2d.packets_s2d)
    assert "packets" not in docs[2]["source"] and docs[2]["network"]["packets"] == events[2].packets_d2s
    assert "bytes" not in docs[3]["source"] and docs[3]["network"]["bytes"] == events[3].bytes_d2s


def test_text_from_the_input_is_escaped() -> None:
    ctx = make_context(rule='Rule "quoted" \\ back\nslash', name="NSG-\u00e9\u4e2d", resource_group="rg\ttab")
    events = [make_event(ctx, encryption='N"X'), make_event(ctx, inbound=True, state="B")]
    docs = validate_lines("ecs", make_formatter().format_many(events))
    assert docs[0]["rule"]["name"] == 'Rule "quoted" \\ back\nslash'
    assert docs[0]["observer"]["name"] == "NSG-\u00e9\u4e2d"
    assert docs[0]["azure"]["resource_group"] == "rg\ttab"
    assert docs[0]["azure"]["flowlog"]["encryption"] == 'N"X'


def test_scoped_ipv6_address_stays_valid_json_but_is_not_valid_ecs() -> None:
    # ipaddress accepts zone ids (and anything after the %), Elasticsearch's ip type does not: the
    # formatter must still emit parseable JSON, and the schema flags the event as undeliverable.
    ctx = make_context()
    odd = 'fe80::1%eth"0'
    line = make_formatter().format(make_event(ctx, src_ip=odd, dst_ip="fe80::2"))
    assert json.loads(line)["source"]["ip"] == odd
    with pytest.raises(AssertionError, match="fails its schema"):
        validate_lines("ecs", [line])


def test_events_without_optional_context_leave_fields_out() -> None:
    ctx = make_context(mac="", rule="", name="", subscription_id="", resource_group="", category="")
    docs = validate_lines("ecs", make_formatter().format_many([make_event(ctx), make_event(ctx, inbound=True)]))
    for doc in docs:
        assert "mac" not in doc["source"] and "mac" not in doc["destination"]
        assert "rule" not in doc and "name" not in doc["observer"] and doc["cloud"] == {"provider": "azure"}
        assert "resource_group" not in doc["azure"] and "mac" not in doc["azure"]["flowlog"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(2024, 12, 31, 12, 0, 0, 1000, tzinfo=UTC),
        datetime(2026, 11, 25, 10, 0, 35, 123000, tzinfo=UTC),
        datetime(2100, 3, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ],
)
def test_timestamps_are_utc_iso8601_with_milliseconds(when: datetime) -> None:
    ms = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert iso_timestamp(ms) == when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def test_every_day_of_four_centuries_formats_like_datetime() -> None:
    day = datetime(1970, 1, 1, tzinfo=UTC)
    for n in range(0, 146097, 7):  # one 400-year Gregorian cycle, every seventh day
        when = day + timedelta(days=n, seconds=n % 86400)
        ms = int(when.timestamp()) * 1000
        assert iso_timestamp(ms) == when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_absurd_timestamp_does_not_stop_the_formatter() -> None:
    line = make_formatter().format(make_event(make_context(), timestamp_ms=10**17))
    assert json.loads(line)["@timestamp"].endswith("Z")


def test_formatter_contract() -> None:
    check_formatter_contract("ecs", "application/json")


# --- the schema against ECS 9.4.0 -------------------------------------------------------------

_JSON_TYPES = {
    "keyword": "string",
    "constant_keyword": "string",
    "wildcard": "string",
    "ip": "string",
    "date": "string",
    "long": "integer",
    "integer": "integer",
    "short": "integer",
    "byte": "integer",
    "unsigned_long": "integer",
}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/"), ref
        node = schema["$defs"][ref.removeprefix("#/$defs/")]
    return node


def schema_leaves(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Dotted field name -> schema of every leaf (non-object) field the schema allows."""
    node = _resolve(schema, node)
    if node.get("type") != "object":
        return {prefix: node}
    assert node.get("additionalProperties") is False, f"{prefix or 'the event'} allows unknown fields"
    out: dict[str, dict[str, Any]] = {}
    for name, child in node["properties"].items():
        out.update(schema_leaves(schema, child, f"{prefix}.{name}" if prefix else name))
    return out


def test_every_non_azure_field_exists_in_ecs_with_a_compatible_type() -> None:
    ecs = yaml.load(ECS_FLAT.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = json.loads((SCHEMAS / "ecs.schema.json").read_text())
    leaves = schema_leaves(schema, schema)
    checked = 0
    for name, node in leaves.items():
        if name.startswith("azure."):
            continue
        if name not in ecs:
            pytest.fail(f"{name} is not an ECS 9.4.0 field")
        field = ecs[name]
        json_type = _JSON_TYPES.get(field["type"])
        assert json_type is not None, f"{name}: no JSON mapping for ECS type {field['type']}"
        if node.get("type") == "array":
            assert "array" in field.get("normalize", []), f"{name} is an array but ECS does not normalise it to one"
            node = _resolve(schema, node["items"])
        assert node.get("type") == json_type, f"{name}: schema type {node.get('type')}, ECS type {field['type']}"
        allowed = {v["name"] for v in field.get("allowed_values") or []} | set(field.get("expected_values") or [])
        if allowed and "enum" in node:
            assert set(node["enum"]) <= allowed, f"{name}: {set(node['enum']) - allowed} not allowed by ECS"
        if field["type"] == "ip":
            assert node.get("$ref") == "#/$defs/ip" or node.get("anyOf"), f"{name} must be checked as an address"
        checked += 1
    for name in ("event.kind", "event.category", "event.type", "event.outcome"):
        node = _resolve(schema, leaves[name])
        node = _resolve(schema, node["items"]) if node.get("type") == "array" else node
        assert "enum" in node, f"{name} must be limited to ECS allowed values"
    assert checked >= 30


def test_schema_rejects_what_ecs_would_not_accept() -> None:
    _, doc = format_one("ecs", make_context())
    bad_docs = [
        {**doc, "unknown": 1},
        {**doc, "event": {**doc["event"], "kind": "flow"}},
        {**doc, "event": {**doc["event"], "outcome": "failure"}},  # contradicts type allowed
        {**doc, "network": {**doc["network"], "iana_number": 6}},
        {**doc, "source": {**doc["source"], "ip": "10.0.0.300"}},
        {**doc, "@timestamp": "2026-11-25 10:00:00"},
        {**doc, "source": {k: v for k, v in doc["source"].items() if k != "port"}},
    ]
    for bad in bad_docs:
        with pytest.raises(AssertionError, match="fails its schema"):
            validate_lines("ecs", [json.dumps(bad)])
