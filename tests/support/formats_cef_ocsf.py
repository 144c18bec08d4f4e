"""Shared helpers for the CEF and OCSF format tests: real flow-log input turned into FlowEvents.

Golden inputs live once, in tests/golden/cef/input/ (hand-written PT1H.json blobs for NSG v1, NSG v2
and VNet v4); the expected outputs are tests/golden/cef/<case>.cef and tests/golden/ocsf/<case>.ndjson.
Set UPDATE_GOLDEN=1 to rewrite the expected files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowContext, FlowEvent, LogKind
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder
from forwarder.samples.generator import BlobSpec, blob_bytes

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_INPUTS = GOLDEN / "cef" / "input"
GOLDEN_CASES = ("nsg_v1", "nsg_v2", "vnet_v4")


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


def golden_events(case: str) -> list[FlowEvent]:
    path = GOLDEN_INPUTS / f"{case}.PT1H.json"
    # A fixed source identity keeps the deterministic event ids stable in the expected files.
    return events_from_blob(f"goldenaccount/golden/{case}/PT1H.json", path.read_bytes())


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
