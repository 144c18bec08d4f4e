"""Shared helpers for the ECS, CEF and OCSF format tests: real flow-log input turned into FlowEvents,
golden files, hand-made contexts and events, and the checks every formatter must pass.

Golden inputs are hand-written PT1H.json blobs for NSG v1, NSG v2 and VNet v4. CEF, OCSF and ASIM share
theirs, in tests/golden/cef/input/; ECS has its own copies, in tests/golden/ecs/. The expected
outputs are tests/golden/ecs/<case>.ecs.ndjson, tests/golden/cef/<case>.cef,
tests/golden/ocsf/<case>.ndjson and tests/golden/asim/<case>.ndjson. Set UPDATE_GOLDEN=1 to rewrite the
expected files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowContext, FlowEvent, LogKind
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder
from forwarder.formats import formatter
from forwarder.samples.generator import BlobSpec, blob_bytes
from tests.support.events import validate_lines

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_CASES = ("nsg_v1", "nsg_v2", "vnet_v4")
# Per format: the golden inputs' folder, the container in their source identity (the deterministic
# event ids in the expected files were made from it), and the expected files, all under GOLDEN.
_GOLDEN = {
    "ecs": ("ecs", "insights-logs", "ecs/{case}.ecs.ndjson"),
    "cef": ("cef/input", "golden", "cef/{case}.cef"),
    "ocsf": ("cef/input", "golden", "ocsf/{case}.ndjson"),
    "asim": ("cef/input", "golden", "asim/{case}.ndjson"),
}


def events_from_blob(source: str, data: bytes) -> list[FlowEvent]:
    """Every FlowEvent of a whole PT1H.json, through the real decoder and normaliser; fails on any parse issue."""
    head = HEAD_RE.match(data)
    tail = TAIL_RE.search(data)
    assert head and tail, "not a PT1H.json blob"
    issues = IssueLog()
    decoder = RecordDecoder(source, head.end(), issues)
    normaliser = Normaliser(source, issues)
    events: list[FlowEvent] = []
    for record in decoder.feed(data[head.end() : tail.start()], final=True):
        events.extend(normaliser.events(record))
    assert issues.total == 0, f"parse issues in {source}: {[i.describe() for i in issues.first]}"
    return events


def golden_events(fmt: str, case: str) -> list[FlowEvent]:
    """The events of one golden input, as ``fmt``'s golden test reads them."""
    inputs, container, _ = _GOLDEN[fmt]
    # A fixed source identity keeps the deterministic event ids stable in the expected files.
    data = (GOLDEN / inputs / f"{case}.PT1H.json").read_bytes()
    return events_from_blob(f"goldenaccount/{container}/{case}/PT1H.json", data)


def golden_lines(fmt: str, case: str) -> list[str]:
    """One golden input formatted by a fresh formatter."""
    return formatter(fmt).format_many(golden_events(fmt, case))


def check_golden_output(fmt: str, case: str) -> None:
    """The golden test of one format and case: lines valid for the schema and identical to the expected file."""
    lines = golden_lines(fmt, case)
    validate_lines(fmt, lines)
    check_golden(GOLDEN / _GOLDEN[fmt][2].format(case=case), lines)


def check_golden(expected_path: Path, lines: list[str]) -> None:
    """Compare with the expected file line by line (or rewrite it when UPDATE_GOLDEN=1)."""
    text = "".join(line + "\n" for line in lines)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_path.write_text(text, encoding="utf-8")
    expected = expected_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(expected), f"{expected_path.name}: {len(lines)} lines, expected {len(expected)}"
    for n, (got, want) in enumerate(zip(lines, expected, strict=True), 1):
        assert got == want, f"{expected_path.name} line {n} differs:\n got: {got}\nwant: {want}"


def sample_events(minutes: int = 5, tuples_per_minute: int = 40) -> list[FlowEvent]:
    """A mixed batch from the sample generator: NSG v1 and v2 and VNet v4, IPv4 and IPv6, all states."""
    out: list[FlowEvent] = []
    logs: tuple[tuple[LogKind, int, str], ...] = (
        ("nsg", 1, "LEGACY-NSG"),
        ("nsg", 2, "WEB-NSG"),
        ("vnet", 4, "VNET1-FLOWLOG"),
    )
    for kind, version, name in logs:
        spec = BlobSpec(kind=kind, version=version, name=name, minutes=minutes, tuples_per_minute=tuples_per_minute,
                        ipv6_share=0.25)  # fmt: skip
        out.extend(events_from_blob(f"sampleaccount/{spec.container}/{spec.blob_name}", blob_bytes(spec)))
    return out


def make_context(**changes: object) -> FlowContext:
    """A plausible NSG v2 context; keyword arguments override any field (nasty strings welcome)."""
    ctx = FlowContext(
        kind="nsg",
        version=2,
        source="acct/insights-logs-networksecuritygroupflowevent/x/PT1H.json",
        record_offset=12,
        record_time="2026-11-25T10:01:35.1234560Z",
        resource_id="/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG",
        subscription_id="11111111-2222-3333-4444-555555555555",
        resource_group="RG",
        name="NSG",
        mac="00-0D-3A-F8-78-56",
        rule="UserRule_Allow-HTTPS",
        category="NetworkSecurityGroupFlowEvent",
        operation_name="NetworkSecurityGroupFlowEvents",
        id_prefix="0123456789abcdef01234567",
    )
    return replace(ctx, **changes)  # type: ignore[arg-type]


def make_event(ctx: FlowContext, index: int = 0, **changes: object) -> FlowEvent:
    """An allowed outbound TCP tuple with counters in ``ctx``; keyword arguments override fields."""
    event = FlowEvent(
        ctx=ctx,
        event_id=f"{ctx.id_prefix}-{index}",
        timestamp_ms=1795600861000 + index,
        src_ip="10.1.0.5",
        dst_ip="198.51.100.53",
        src_port=40000 + index,
        dst_port=443,
        protocol=6,
        inbound=False,
        allowed=True,
        state="C",
        encryption="",
        packets_s2d=3,
        bytes_s2d=480,
        packets_d2s=2,
        bytes_d2s=120,
    )
    return event._replace(**changes)  # type: ignore[arg-type]


def partial_counter_events() -> list[FlowEvent]:
    """A tuple without counters (state B), one with packets one way and bytes the other, one with zeros."""
    ctx = make_context()
    return [
        make_event(ctx, 0, packets_s2d=None, bytes_s2d=None, packets_d2s=None, bytes_d2s=None, state="B"),
        make_event(ctx, 1, packets_s2d=7, bytes_s2d=None, packets_d2s=None, bytes_d2s=99),
        make_event(ctx, 2, packets_s2d=0, bytes_s2d=0, packets_d2s=0, bytes_d2s=0),
    ]


def interleaved_context_events() -> list[FlowEvent]:
    """Six events whose context changes every event: A, B, then a new object with A's content, twice.

    A per-context cache keyed by identity or content must not leak values between contexts.
    """
    a = make_context(rule="RuleA", name="NSG-A", mac="00-0D-3A-00-00-0A")
    b = make_context(rule="RuleB", name="FL-B", mac="", kind="vnet", version=4, subscription_id="other")
    a_again = make_context(rule="RuleA", name="NSG-A", mac="00-0D-3A-00-00-0A")  # equal content, new object
    return [make_event((a, b, a_again)[i % 3], i, inbound=i % 2 == 0, allowed=i % 4 != 0) for i in range(6)]


def format_every_way(fmt: str, events: list[FlowEvent]) -> list[str]:
    """The lines of one batch, after checking that caches change nothing: the same events one at a
    time through fresh formatters, and in reverse order through the batch's warm one, give the same lines."""
    warm = formatter(fmt)
    batch = warm.format_many(events)
    assert batch == [formatter(fmt).format(e) for e in events]
    assert [warm.format(e) for e in reversed(events)] == list(reversed(batch))
    return batch


def format_one(fmt: str, ctx: FlowContext, **changes: object) -> tuple[str, dict[str, Any]]:
    """One event in ``ctx`` (see make_event) through a fresh formatter: its line, which must be one
    line of valid UTF-8, and the line parsed and checked against the format's schema."""
    (line,) = formatter(fmt).format_many([make_event(ctx, 0, **changes)])
    line.encode("utf-8")  # fails on a lone surrogate left from bytes that were not UTF-8
    assert "\n" not in line and "\r" not in line
    (doc,) = validate_lines(fmt, [line])
    return line, doc


def check_formatter_contract(fmt: str, content_type: str) -> None:
    """The Formatter protocol's attributes, and an empty batch."""
    made = formatter(fmt)
    assert (made.name, made.content_type) == (fmt, content_type)
    assert made.format_many([]) == []
