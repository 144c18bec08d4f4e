"""ASIM Network Session rows: golden files, the mapping of every column from its flow tuple, the fast
path held to the reference row byte for byte, aggregates, JSON escaping, and the project's schema
checked against Microsoft's ASimNetworkSessionLogs table reference in tests/reference/sentinel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from forwarder.flowlog.community_id import community_id
from forwarder.formats import formatter
from forwarder.formats.asim import reference_row, row_document
from tests.support.events import SCHEMAS, validate_lines
from tests.support.formats import (
    GOLDEN_CASES,
    check_formatter_contract,
    check_golden_output,
    format_every_way,
    format_one,
    interleaved_context_events,
    make_context,
    make_event,
    partial_counter_events,
    sample_events,
)
from tests.support.reference import reference
from tools import build_asim_schema


def reference_lines(events: list[Any]) -> list[str]:
    return [json.dumps(reference_row(e), ensure_ascii=True, separators=(",", ":")) for e in events]


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_output(case: str) -> None:
    check_golden_output("asim", case)


def test_every_column_maps_from_its_flow_tuple() -> None:
    events = sample_events()
    docs = validate_lines("asim", formatter("asim").format_many(events))
    seen_states = set()
    for event, row in zip(events, docs, strict=True):
        ctx = event.ctx
        seen_states.add(event.state)
        assert row["TimeGenerated"] == row["EventStartTime"] == row["EventEndTime"]
        assert row["TimeGenerated"].startswith("20") and row["TimeGenerated"].endswith("Z")
        assert (row["EventCount"], row["EventType"], row["EventSchemaVersion"]) == (1, "NetworkSession", "0.2.7")
        assert (row["EventVendor"], row["EventProduct"]) == ("Microsoft", "Azure NSG flows")
        assert row["EventProductVersion"] == str(ctx.version)
        expected = ("Success", "Allow", "Informational") if event.allowed else ("Failure", "Deny", "Low")
        assert (row["EventResult"], row["DvcAction"], row["EventSeverity"]) == expected
        assert row.get("EventSubType") == {"B": "Start", "E": "End"}.get(event.state)
        assert row["EventOriginalUid"] == event.event_id
        assert (row["Dvc"], row["DvcHostname"], row["DvcId"]) == (ctx.name, ctx.name, ctx.resource_id)
        assert (row["DvcIdType"], row["DvcSubscriptionId"]) == ("AzureResourceId", ctx.subscription_id)
        assert row["NetworkRuleName"] == ctx.rule
        assert (row["SrcIpAddr"], row["DstIpAddr"]) == (event.src_ip, event.dst_ip)
        if event.protocol in (1, 58):
            assert row["NetworkIcmpCode"] == event.dst_port and "SrcPortNumber" not in row
        else:
            assert (row["SrcPortNumber"], row["DstPortNumber"]) == (event.src_port, event.dst_port)
        assert row["NetworkProtocol"] == {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP"}[event.protocol]
        assert row["NetworkProtocolVersion"] == ("IPv6" if ":" in event.src_ip else "IPv4")
        assert row["NetworkDirection"] == ("Inbound" if event.inbound else "Outbound")
        # The NIC's MAC on its side: the destination of inbound flows, the source of outbound ones.
        nic, other = ("Dst", "Src") if event.inbound else ("Src", "Dst")
        mac = ctx.mac.replace("-", ":")
        assert row[f"{nic}MacAddr"] == row["DvcMacAddr"] == mac and f"{other}MacAddr" not in row
        if ctx.target_resource_id:
            assert row[f"{nic}DvcId"] == ctx.target_resource_id and f"{other}DvcId" not in row
        if event.bytes_s2d is None:
            assert not {"SrcBytes", "DstBytes", "NetworkBytes", "SrcPackets", "DstPackets"} & set(row)
        else:
            # Src is the flow's initiator: what it sent is s2d.
            assert (row["SrcBytes"], row["SrcPackets"]) == (event.bytes_s2d, event.packets_s2d)
            assert (row["DstBytes"], row["DstPackets"]) == (event.bytes_d2s, event.packets_d2s)
            assert row["NetworkBytes"] == row["SrcBytes"] + row["DstBytes"]
            assert row["NetworkPackets"] == row["SrcPackets"] + row["DstPackets"]
        extra = row["AdditionalFields"]
        assert (extra["FlowLogKind"], extra["FlowLogVersion"]) == (ctx.kind, ctx.version)
        assert extra["ResourceGroup"] == ctx.resource_group
        assert extra["CommunityId"] == community_id(
            event.src_ip, event.dst_ip, event.src_port, event.dst_port, event.protocol
        )
        assert extra.get("Encryption") == (event.encryption or None)
        assert extra.get("FlowState") == {"B": "Begin", "C": "Continuing", "E": "End", "D": "Denied"}.get(event.state)
    assert {"", "B", "C", "E"} <= seen_states


def test_the_fast_path_writes_the_reference_row_byte_for_byte() -> None:
    events = [*sample_events(), *partial_counter_events(), *interleaved_context_events()]
    assert format_every_way("asim", events) == reference_lines(events)


def test_icmp_types_and_codes_replace_ports() -> None:
    ctx = make_context()
    events = [
        make_event(ctx, 0, protocol=1, src_port=8, dst_port=0),
        make_event(ctx, 1, protocol=1, src_port=3, dst_port=13, inbound=True),
        make_event(ctx, 2, protocol=58, src_ip="2001:db8::1", dst_ip="2001:db8::2", src_port=135, dst_port=0),
        make_event(ctx, 3, protocol=1, src_port=99, dst_port=7),
    ]
    docs = validate_lines("asim", formatter("asim").format_many(events))
    assert [(d["NetworkProtocol"], d["NetworkIcmpType"], d["NetworkIcmpCode"]) for d in docs] == [
        ("ICMP", "Echo", 0),
        ("ICMP", "Destination Unreachable", 13),
        ("IPv6-ICMP", "Neighbor Solicitation", 0),
        ("ICMP", "99", 7),  # a type without an IANA name keeps its number
    ]
    assert not any("SrcPortNumber" in d or "DstPortNumber" in d for d in docs)
    assert docs[2]["NetworkProtocolVersion"] == "IPv6"
    assert format_every_way("asim", events) == reference_lines(events)


def test_a_protocol_without_a_keyword_keeps_its_number() -> None:
    ctx = make_context(rule="", subscription_id="", mac="", resource_group="")
    events = [make_event(ctx, 0, protocol=47, src_port=0, dst_port=0), make_event(ctx, 1, protocol=200)]
    docs = validate_lines("asim", formatter("asim").format_many(events))
    assert docs[0]["NetworkProtocol"] == "GRE"
    assert "NetworkProtocol" not in docs[1] and docs[1]["AdditionalFields"]["ProtocolNumber"] == 200
    assert not {"NetworkRuleName", "DvcSubscriptionId", "DvcMacAddr", "SrcMacAddr"} & set(docs[0])
    assert "ResourceGroup" not in docs[0]["AdditionalFields"]


def test_nsg_v1_without_state_and_denied_flows() -> None:
    ctx = make_context(version=1)
    no_counters: dict[str, object] = dict.fromkeys(("packets_s2d", "bytes_s2d", "packets_d2s", "bytes_d2s"))
    events = [
        make_event(ctx, 0, state="", **no_counters),
        make_event(ctx, 1, state="", allowed=False, inbound=True, **no_counters),
    ]
    docs = validate_lines("asim", formatter("asim").format_many(events))
    assert [(d["EventResult"], d["DvcAction"], d["EventSeverity"]) for d in docs] == [
        ("Success", "Allow", "Informational"),
        ("Failure", "Deny", "Low"),
    ]
    assert not {"EventSubType", "EventOriginalSubType"} & set(docs[0])
    assert "FlowState" not in docs[0]["AdditionalFields"]


def test_an_aggregate_renders_as_a_flow_row() -> None:
    """What aggregation (issue 11) will send: one row for many flows, with their first and last time."""
    ctx = make_context(kind="vnet", version=4, target_resource_id="/subscriptions/s/resourceGroups/rg/x/vm1")
    row = row_document(
        ctx,
        uid="agg-1",
        start_ms=1795600800000,
        end_ms=1795600859999,
        src_ip="10.1.0.5",
        dst_ip="198.51.100.53",
        src_port=None,
        dst_port=443,
        protocol=6,
        inbound=False,
        allowed=True,
        packets_s2d=30,
        bytes_s2d=4000,
        packets_d2s=20,
        bytes_d2s=90000,
        count=12,
    )
    (doc,) = validate_lines("asim", [json.dumps(row)])
    assert (doc["EventType"], doc["EventCount"]) == ("Flow", 12)
    assert (doc["EventStartTime"], doc["EventEndTime"]) == ("2026-11-25T10:00:00.000Z", "2026-11-25T10:00:59.999Z")
    assert doc["TimeGenerated"] == doc["EventEndTime"]
    assert "SrcPortNumber" not in doc and "EventSubType" not in doc and "CommunityId" not in doc["AdditionalFields"]
    assert (doc["NetworkBytes"], doc["NetworkPackets"]) == (94000, 50)
    assert doc["SrcDvcId"] == ctx.target_resource_id


@pytest.mark.parametrize(
    "nasty", ['quote " and \\ backslash', "new\nline\r\ttab", "control \x00\x1f\x7f", "ünïcödé ✓ \u2028", '{"}]']
)
def test_context_strings_survive_json_escaping(nasty: str) -> None:
    ctx = make_context(kind="vnet", version=4, rule=nasty, name=nasty, resource_group=nasty, resource_id=nasty,
                       subscription_id=nasty, acl_id=nasty, target_resource_id=nasty, flow_log_guid=nasty)  # fmt: skip
    line, doc = format_one("asim", ctx, encryption=nasty)
    assert line.isascii(), "ASCII rows: a row's length in characters is its size in bytes"
    assert doc["NetworkRuleName"] == doc["Dvc"] == doc["DvcId"] == doc["DvcSubscriptionId"] == doc["SrcDvcId"] == nasty
    extra = doc["AdditionalFields"]
    assert {extra[k] for k in ("ResourceGroup", "AclId", "FlowLogGuid", "Encryption")} == {nasty}


def test_undecodable_bytes_in_context_stay_valid_json() -> None:
    line, doc = format_one("asim", make_context(rule="bad\udcffbyte"))
    assert doc["NetworkRuleName"] == "bad\udcffbyte" and line.isascii()


def test_formatter_contract() -> None:
    check_formatter_contract("asim", "application/json")


def test_schema_holds_rows_to_the_table() -> None:
    line, good = format_one("asim", make_context())
    mutations: list[tuple[str, Any]] = [
        ("EventSchema", "NetworkSession"),  # added by the stub parser at query time, not a column
        ("TenantId", "x"),  # filled by the service
        ("EventType", "Connection"),
        ("EventResult", "Allowed"),
        ("DvcAction", "allow"),
        ("EventSeverity", "Info"),
        ("EventSchemaVersion", "0.2.6"),
        ("SrcPortNumber", 70000),
        ("SrcBytes", -1),
        ("SrcIpAddr", "10.0.0.300"),
        ("DstMacAddr", "00-0D-3A-F8-78-56"),  # ASIM's MAC form has colons
        ("TimeGenerated", "2026-11-25 10:01:01"),
        ("NetworkDirection", "inbound"),
        ("EventCount", 0),
    ]
    for key, value in mutations:
        with pytest.raises(AssertionError):
            validate_lines("asim", [json.dumps(dict(good, **{key: value}))])
    for key in ("TimeGenerated", "EventStartTime", "EventType", "EventProduct", "Dvc", "EventSchemaVersion"):
        bad = json.loads(line)
        del bad[key]
        with pytest.raises(AssertionError):
            validate_lines("asim", [json.dumps(bad)])
    bad = json.loads(line)
    del bad["DvcIdType"]  # required with DvcId
    with pytest.raises(AssertionError):
        validate_lines("asim", [json.dumps(bad)])


def test_schema_is_built_from_the_table_reference() -> None:
    page = reference("sentinel/asimnetworksessionlogs.md")
    assert (SCHEMAS / "asim.schema.json").read_text() == build_asim_schema.render(page), "run `make schemas`"
    columns = {name: kind for name, kind, _ in build_asim_schema.table_columns(page)}
    schema = json.loads((SCHEMAS / "asim.schema.json").read_text())
    for name, prop in schema["properties"].items():
        assert prop["x-column-type"] == columns[name]
    # Every column the formatter writes is a column of the table with the type it has there.
    kinds = {"string": str, "int": int, "long": int, "datetime": str, "dynamic": dict}
    for row in validate_lines("asim", formatter("asim").format_many(sample_events())):
        for name, value in row.items():
            assert isinstance(value, kinds[columns[name]]), (name, value)
