"""CEF output: golden files, the mapping of every field, the spec's escaping, and the strict parser."""

from __future__ import annotations

import pytest

from forwarder.flowlog.community_id import community_id
from forwarder.formats import formatter
from forwarder.formats.cef import escape_header, escape_value
from tests.support.cef_parser import CefError, parse_cef
from tests.support.events import validate_lines
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

NASTY = [
    "pipe|in|name",
    "equals=sign=",
    "back\\slash\\",
    "new\nline",
    "carriage\rreturn\r\n",
    "\\|\\=\\n mixed = | \\ \n\r end ",
    " leading and trailing spaces ",
    "key=value other=thing",
    "ünïcödé ✓",
]


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_output(case: str) -> None:
    check_golden_output("cef", case)


def test_every_field_maps_from_its_flow_tuple() -> None:
    events = sample_events()
    lines = formatter("cef").format_many(events)
    docs = validate_lines("cef", lines)
    seen_states = set()
    for event, doc in zip(events, docs, strict=True):
        ctx = event.ctx
        ext = doc["extension"]
        assert doc["device_product"] == ("Azure NSG Flow Logs" if ctx.kind == "nsg" else "Azure VNet Flow Logs")
        assert doc["device_version"] == str(ctx.version)
        assert doc["signature_id"] == ("flow-allowed" if event.allowed else "flow-denied")
        assert doc["name"] == ("Flow allowed" if event.allowed else "Flow denied")
        assert int(doc["severity"]) == (1 if event.allowed else 3)
        assert int(ext["rt"]) == event.timestamp_ms
        assert ext["externalId"] == event.event_id
        if ":" in event.src_ip:
            assert (ext["c6a2"], ext["c6a3"]) == (event.src_ip, event.dst_ip)
            assert "src" not in ext and "dst" not in ext
        else:
            assert (ext["src"], ext["dst"]) == (event.src_ip, event.dst_ip)
            assert "c6a2" not in ext
        assert (int(ext["spt"]), int(ext["dpt"])) == (event.src_port, event.dst_port)
        assert ext["proto"] == {6: "TCP", 17: "UDP", 1: "ICMP"}[event.protocol]
        assert ext["act"] == ("Allow" if event.allowed else "Deny")
        assert ext["deviceDirection"] == ("0" if event.inbound else "1")
        # CEF's in/out are relative to source -> destination, whatever the NSG direction.
        if event.bytes_s2d is None:
            assert not {"in", "out", "cn1", "cn2"} & ext.keys()
        else:
            assert (int(ext["in"]), int(ext["out"])) == (event.bytes_s2d, event.bytes_d2s)
            assert (int(ext["cn1"]), int(ext["cn2"])) == (event.packets_s2d, event.packets_d2s)
        nic_mac = ctx.mac.replace("-", ":")
        assert ext.get("dmac" if event.inbound else "smac") == nic_mac
        assert "smac" not in ext if event.inbound else "dmac" not in ext
        expected_state = {"B": "Begin", "C": "Continuing", "E": "End", "D": "Denied"}.get(event.state)
        assert ext.get("cs5") == expected_state
        seen_states.add(event.state)
        assert ext["cs6"] == community_id(event.src_ip, event.dst_ip, event.src_port, event.dst_port, event.protocol)
        assert (ext["cs1"], ext["cs1Label"]) == (ctx.rule, "Rule")
        assert ext["cs2"] == ctx.name
        assert (ext["cs3"], ext["cs4"]) == (ctx.subscription_id, ctx.resource_group)
        assert ext["deviceExternalId"] == ctx.resource_id
        assert ext.get("flexString1") == (event.encryption or None)
    assert seen_states == {"", "B", "C", "E", "D"}


@pytest.mark.parametrize("nasty", NASTY)
def test_context_strings_survive_escaping_exactly(nasty: str) -> None:
    ctx = make_context(kind="vnet", version=4, rule=nasty, name=nasty, subscription_id=nasty, resource_group=nasty,
                       resource_id=nasty)  # fmt: skip
    _, doc = format_one("cef", ctx, encryption=nasty)
    ext = doc["extension"]
    assert ext["cs1"] == ext["cs2"] == ext["cs3"] == ext["cs4"] == nasty
    assert ext["deviceExternalId"] == ext["flexString1"] == nasty
    # Nothing from the flow log reaches the header: its fields stay what the schema allows.
    assert (doc["device_product"], doc["name"], doc["signature_id"]) == (
        "Azure VNet Flow Logs",
        "Flow allowed",
        "flow-allowed",
    )


@pytest.mark.parametrize("nasty", NASTY)
def test_header_escaping_round_trips(nasty: str) -> None:
    """Header fields escape \\ and | exactly; CR/LF, which the spec does not allow there, become spaces."""
    field = escape_header(nasty)
    doc = parse_cef(f"CEF:0|{field}|{field}|{field}|{field}|{field}|{field}|rt=1")
    expected = nasty.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    assert [doc[k] for k in ("device_vendor", "device_product", "device_version", "signature_id", "name")] == [
        expected
    ] * 5
    assert doc["severity"] == expected and doc["extension"] == {"rt": "1"}


@pytest.mark.parametrize("nasty", NASTY)
def test_extension_escaping_round_trips_next_to_other_keys(nasty: str) -> None:
    doc = parse_cef(f"CEF:0|V|P|1|s|n|1|a={escape_value(nasty)} b={escape_value(nasty)}c d=")
    assert doc["extension"] == {"a": nasty, "b": nasty + "c", "d": ""}


def test_strings_longer_than_the_spec_allows_are_cut_to_1023_characters() -> None:
    long = "r" * 1500
    ctx = make_context(kind="vnet", version=4, rule=long, name=long, subscription_id=long, resource_group=long)
    _, doc = format_one("cef", ctx, encryption=long)
    ext = doc["extension"]
    assert ext["cs1"] == ext["cs2"] == ext["cs3"] == ext["cs4"] == ext["flexString1"] == "r" * 1023


def test_undecodable_bytes_in_context_do_not_break_the_line() -> None:
    # Non-UTF-8 input reaches the model as lone surrogates (surrogateescape).
    _, doc = format_one("cef", make_context(rule="bad\udcffbyte"))
    assert doc["extension"]["cs1"] == "bad\ufffdbyte"


def test_partial_and_missing_counters() -> None:
    docs = validate_lines("cef", formatter("cef").format_many(partial_counter_events()))
    assert not {"in", "out", "cn1", "cn2"} & docs[0]["extension"].keys()
    assert {k: docs[1]["extension"].get(k) for k in ("in", "out", "cn1", "cn2")} == {
        "in": None,
        "out": "99",
        "cn1": "7",
        "cn2": None,
    }
    assert [docs[2]["extension"][k] for k in ("in", "out", "cn1", "cn2")] == ["0", "0", "0", "0"]


def test_contexts_interleaved_or_rebuilt_give_the_same_lines() -> None:
    """The per-context cache is keyed by identity and content: neither may leak values between contexts."""
    events = interleaved_context_events()
    docs = validate_lines("cef", format_every_way("cef", events))
    for event, doc in zip(events, docs, strict=True):
        assert doc["extension"]["cs1"] == event.ctx.rule
        assert doc["extension"]["cs2"] == event.ctx.name
        assert doc["device_product"] == ("Azure NSG Flow Logs" if event.ctx.kind == "nsg" else "Azure VNet Flow Logs")
        assert ("smac" in doc["extension"] or "dmac" in doc["extension"]) == bool(event.ctx.mac)


def test_other_protocols_and_empty_context_fields() -> None:
    ctx = make_context(rule="", resource_group="", mac="")
    events = [make_event(ctx, 0, protocol=47, src_port=0, dst_port=0), make_event(ctx, 1, protocol=200)]
    docs = validate_lines("cef", formatter("cef").format_many(events))
    assert [d["extension"]["proto"] for d in docs] == ["GRE", "200"]
    assert docs[0]["name"] == "Flow allowed"
    assert not {"cs1", "cs4", "smac", "dmac"} & docs[0]["extension"].keys()


def test_formatter_contract() -> None:
    check_formatter_contract("cef", "text/plain")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "LEEF:1.0|a|b|c|d|",
        "CEF:0|Microsoft|p|1|s|n|1",  # six fields only
        "CEF:x|Microsoft|p|1|s|n|1|rt=1",  # version not a number
        "CEF:0||p|1|s|n|1|rt=1",  # empty vendor
        "CEF:0|Micro\\soft|p|1|s|n|1|rt=1",  # unknown header escape
        "CEF:0|Microsoft|p|1|s|n|1|rt=1 msg=a=b",  # unescaped '=' in a value
        "CEF:0|Microsoft|p|1|s|n|1|rt=1 msg=a\\|b",  # '|' needs no escape in the extension
        "CEF:0|Microsoft|p|1|s|n|1|rt=1 msg=a\\tb",  # unknown extension escape
        "CEF:0|Microsoft|p|1|s|n|1|rt=1 msg=trailing\\",  # dangling backslash
        "CEF:0|Microsoft|p|1|s|n|1|rt=1 msg=two\nlines",  # raw newline
        "CEF:0|Microsoft|p|1|s|n|1|rt=1 rt=2",  # duplicate key
        "CEF:0|Microsoft|p|1|s|n|1| rt=1",  # key with a leading space
        "CEF:0|Microsoft|p|1|s|n|1|no pairs here",
        "CEF:0|Microsoft|p|1|s|n|1|bad-key=1",
    ],
)
def test_strict_parser_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(CefError):
        parse_cef(line)


def test_strict_parser_reads_values_with_spaces_and_escapes() -> None:
    doc = parse_cef("CEF:0|V\\|v|P\\\\p|1|sig|a=b|5|k1= spaced  value  k2=x\\=y\\\\z\\n\\r k3=")
    assert doc == {
        "version": 0,
        "device_vendor": "V|v",
        "device_product": "P\\p",
        "device_version": "1",
        "signature_id": "sig",
        "name": "a=b",
        "severity": "5",
        "extension": {"k1": " spaced  value ", "k2": "x=y\\z\n\r", "k3": ""},
    }


def test_schema_rejects_inconsistent_events() -> None:
    """The schema is not vacuous: a line that breaks the mapping fails validation."""
    line, _ = format_one("cef", make_context())
    broken = [
        line.replace("act=Allow", "act=Deny"),  # allowed signature with a deny action
        line.replace("deviceDirection=1", "deviceDirection=0"),  # inbound but the MAC on the source side
        line.replace("src=10.1.0.5", "src=fd00::5"),  # IPv6 in an IPv4-only key
        line.replace(" cn1Label=PacketsSourceToDestination", ""),  # custom number without its label
        line.replace("|1|act=", "|7|act="),  # severity that does not follow the decision
    ]
    for bad in broken:
        assert bad != line
        with pytest.raises(AssertionError):
            validate_lines("cef", [bad])
