"""Tuple filters: every condition on generated flows, include / exclude semantics, named address lists,
and configuration errors that name the key."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.stream import FileConverter
from forwarder.reduce.addresses import AddressSet
from forwarder.reduce.config import ReductionConfigError, reductions
from forwarder.reduce.filters import NOT_INCLUDED, FilterConfigError, compile_filter
from forwarder.samples.generator import BlobSpec, blob_bytes

PUBLIC = ("13.", "52.", "94.", "185.", "20.", "2603:")


def events_of(spec: BlobSpec) -> list[FlowEvent]:
    conv = FileConverter(io.BytesIO(blob_bytes(spec)), "acct/c/" + spec.blob_name, IssueLog())
    return [e for batch in conv.events() for e in batch]


@pytest.fixture(scope="module")
def flows() -> list[FlowEvent]:
    out: list[FlowEvent] = []
    for spec in (
        BlobSpec(kind="nsg", version=2, name="WEB-NSG", mac="000D3AF87856", minutes=6, tuples_per_minute=40),
        BlobSpec(kind="nsg", version=1, name="LEGACY-NSG", mac="000D3A1B2C3D", minutes=3, tuples_per_minute=20),
        BlobSpec(
            kind="vnet",
            version=4,
            name="VNET1-FLOWLOG",
            mac="0022487BC205",
            minutes=6,
            tuples_per_minute=40,
            ipv6_share=0.3,
        ),
    ):
        out += events_of(spec)
    return out


def kept(spec: dict[str, Any], events: list[FlowEvent]) -> tuple[list[FlowEvent], dict[str, int]]:
    got, dropped = compile_filter(spec, "filter").apply(events)
    return list(got), dict(dropped)


def test_denied_only_keeps_every_denied_flow_and_nothing_else(flows: list[FlowEvent]) -> None:
    got, dropped = kept({"include": [{"decision": "denied"}]}, flows)
    denied = [e for e in flows if not e.allowed]
    assert got == denied and 0 < len(denied) < len(flows)
    assert dropped == {NOT_INCLUDED: len(flows) - len(denied)}


def test_exclude_allowed_traffic_between_private_ranges(flows: list[FlowEvent]) -> None:
    spec = {"exclude": [{"name": "allowed east-west", "decision": "allowed", "src": "private", "dst": ["private"]}]}
    private = AddressSet(["private"])
    got, dropped = kept(spec, flows)
    east_west = [e for e in flows if e.allowed and e.src_ip in private and e.dst_ip in private]
    assert got == [e for e in flows if e not in east_west]
    assert dropped == ({"allowed east-west": len(east_west)} if east_west else {})
    assert all(not (e.allowed and e.src_ip in private and e.dst_ip in private) for e in got)


def test_only_these_subnets_either_end_ipv4_and_ipv6(flows: list[FlowEvent]) -> None:
    spec = {"include": [{"address": ["10.0.0.0/24", "fd00::/8"]}]}
    got, _ = kept(spec, flows)
    assert got and all(e.src_ip.startswith(("10.0.0.", "fd")) or e.dst_ip.startswith(("10.0.0.", "fd")) for e in got)
    assert any(":" in e.src_ip for e in got), "IPv6 flows of the subnet are kept"


def test_every_condition_selects_what_it_names(flows: list[FlowEvent]) -> None:
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"direction": "inbound"}, lambda e: e.inbound),
        ({"state": ["begin", "E"]}, lambda e: e.state in ("B", "E")),
        ({"protocol": ["udp", 1]}, lambda e: e.protocol in (17, 1)),
        ({"dst_port": [443, "20-25"]}, lambda e: e.dst_port == 443 or 20 <= e.dst_port <= 25),
        ({"src_port": "1024-65535"}, lambda e: e.src_port >= 1024),
        ({"port": 53}, lambda e: 53 in (e.src_port, e.dst_port)),
        ({"rule": "userrule_*"}, lambda e: e.ctx.rule.startswith("UserRule_")),
        ({"resource": ["*-NSG"]}, lambda e: e.ctx.kind == "nsg"),
        ({"mac": "00:0d:3a:f8:78:56"}, lambda e: e.ctx.mac == "00-0D-3A-F8-78-56"),
        # The sample's remote ends: public IPv4 addresses, one public IPv6 and one from the documentation block.
        ({"src": "public", "direction": "inbound"}, lambda e: e.inbound and e.src_ip.startswith(PUBLIC)),
    ]
    for rule, want in cases:
        got, _ = kept({"include": [rule]}, flows)
        expected = [e for e in flows if want(e)]
        assert got == expected, rule
        assert 0 < len(expected) < len(flows), f"{rule} does not split the sample: the case proves nothing"


def test_include_rules_are_alternatives_and_exclude_wins(flows: list[FlowEvent]) -> None:
    spec = {"include": [{"decision": "denied"}, {"dst_port": 22}], "exclude": [{"direction": "outbound"}]}
    got, dropped = kept(spec, flows)
    assert got == [e for e in flows if (not e.allowed or e.dst_port == 22) and e.inbound]
    assert set(dropped) <= {NOT_INCLUDED, "exclude[0]"} and sum(dropped.values()) == len(flows) - len(got)


def test_named_address_lists() -> None:
    public = AddressSet(["public"])
    assert "13.67.143.118" in public and "2603:1030:800:5::bfee:a418" in public
    for special in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1",
                    "fd00::4", "fe80::1", "::1", "ff02::1", "2001:db8::1", "224.0.0.1", "not an address"):  # fmt: skip
        assert special not in public, special
    azure = AddressSet(["azure_platform"])
    assert "168.63.129.16" in azure and "168.63.129.17" not in azure
    mine = AddressSet(["corp"], {"corp": ["10.1.0.0/16", "partners"], "partners": ["203.0.113.7"]})
    assert "10.1.200.3" in mine and "203.0.113.7" in mine and "10.2.0.1" not in mine


def invalid(spec: dict[str, Any]) -> Iterator[str]:
    with pytest.raises(FilterConfigError) as err:
        compile_filter(spec, "sink[1].filter")
    yield str(err.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"exclude": [{"src": ["10.0.0.0/8", "10.0.0.0/33"]}]}, "sink[1].filter.exclude[0].src: '10.0.0.0/33' is not"),
        ({"include": [{"dst_port": "80-70"}]}, "sink[1].filter.include[0].dst_port: '80-70' is not a port"),
        ({"include": [{"decision": "allow"}]}, "sink[1].filter.include[0].decision: 'allow' is not one of"),
        ({"include": [{"protocol": "tcpp"}]}, "sink[1].filter.include[0].protocol: 'tcpp' is not a protocol"),
        ({"include": [{"dport": 443}]}, "sink[1].filter.include[0]: unknown condition 'dport'"),
        ({"include": [{"mac": "00-0D-3A"}]}, "sink[1].filter.include[0].mac: '00-0D-3A' is not a MAC"),
        ({"include": [{"src": []}]}, "sink[1].filter.include[0].src: an empty list matches nothing"),
        ({"includes": []}, "sink[1].filter: unknown key 'includes'"),
    ],
)
def test_a_bad_rule_is_an_error_naming_its_key(spec: dict[str, Any], message: str) -> None:
    assert message in next(invalid(spec))


def config(**sink: Any) -> dict[str, Any]:
    return {"sink": [{"type": "file", "path": "-", "format": "ecs", **sink}]}


def test_the_default_filter_applies_to_sinks_without_their_own() -> None:
    cfg = {
        "filter": {"include": [{"decision": "denied"}]},
        "sink": [
            {"type": "file", "path": "a", "format": "ecs"},
            {"type": "file", "path": "b", "format": "ecs", "filter": {}},
            {"type": "file", "path": "c", "format": "cef", "aggregate": {"window": "10m"}},
        ],
    }
    a, b, c = reductions(cfg)
    assert a.filter is not None and b.filter is None and c.filter is not None
    assert c.aggregate is not None and c.aggregate.window_ms == 600_000
    assert a.filter_key == c.filter_key


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ({"aggregate": {"window": "7m"}}, "sink[0].aggregate.window: '7m' must be whole minutes that divide an hour"),
        ({"aggregate": {}}, "sink[0].aggregate.window: required"),
        ({"aggregate": {"window": "10m", "key": ["src_ip", "dst"]}}, "sink[0].aggregate.key: 'dst' is not one of"),
        (
            {"format": "asim", "aggregate": {"window": "5m", "key": ["dst_ip", "dst_port"]}},
            "sink[0].aggregate.key: format asim needs src_ip, protocol, direction in the key",
        ),
        ({"filter": {"exclude": [{"address": "corp"}]}}, "sink[0].filter.exclude[0].address: 'corp' is not"),
    ],
)
def test_bad_reduction_settings_are_config_errors_naming_the_key(sink: dict[str, Any], message: str) -> None:
    with pytest.raises(ReductionConfigError) as err:
        reductions(config(**sink))
    assert message in str(err.value)
