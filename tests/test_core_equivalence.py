"""The compiled core against its reference: the same events, bytes and reported issues on every input.

Golden files, generated blobs of NSG v1, NSG v2 and VNet v4 (small records, which take the plain JSON
path, and big ones, whose tuples the core reads from the text in place), the damaged blobs of the fuzz
cases, and tens of thousands of tuples mutated field by field into every spelling the reference has an
opinion on. Every line produced is also checked against its format's schema.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from io import BytesIO

import pytest

from forwarder.flowlog.core import concat, core
from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import RecordDecoder
from forwarder.flowlog.stream import FileConverter
from forwarder.formats import FORMATS, formatter
from forwarder.samples.generator import HEAD, TAIL, BlobSpec, blob_bytes
from tests.support.core_paths import assert_same, both, needs_core
from tests.support.events import validate_lines
from tests.support.formats import GOLDEN, GOLDEN_CASES, check_golden
from tests.support.fuzz import iter_cases

pytestmark = needs_core


def _valid(outcome_lines: dict[str, list[str]]) -> None:
    for fmt, lines in outcome_lines.items():
        validate_lines(fmt, lines)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_files_come_out_of_the_compiled_core_byte_for_byte(case: str) -> None:
    for fmt, folder, container, expected in (
        ("ecs", "ecs", "insights-logs", f"ecs/{case}.ecs.ndjson"),
        ("cef", "cef/input", "golden", f"cef/{case}.cef"),
        ("ocsf", "cef/input", "golden", f"ocsf/{case}.ndjson"),
        ("asim", "cef/input", "golden", f"asim/{case}.ndjson"),
    ):
        data = (GOLDEN / folder / f"{case}.PT1H.json").read_bytes()
        compiled, reference = both(data, f"goldenaccount/{container}/{case}/PT1H.json", formats=(fmt,))
        assert compiled.issues == []
        assert_same(compiled, reference)
        validate_lines(fmt, compiled.lines[fmt])
        check_golden(GOLDEN / expected, compiled.lines[fmt])


@pytest.mark.parametrize(("kind", "version"), [("nsg", 1), ("nsg", 2), ("vnet", 4)])
@pytest.mark.parametrize("tuples_per_minute", [7, 1100])  # small records (plain JSON) and big ones (in place)
def test_generated_blobs_give_the_same_bytes_both_ways(kind: str, version: int, tuples_per_minute: int) -> None:
    minutes = 6 if tuples_per_minute < 1000 else 1
    spec = BlobSpec(kind=kind, version=version, minutes=minutes, tuples_per_minute=tuples_per_minute, ipv6_share=0.3)  # type: ignore[arg-type]
    compiled, reference = both(blob_bytes(spec), chunk=64 << 10)
    assert compiled.issues == [] and len(compiled.events) == minutes * tuples_per_minute
    assert_same(compiled, reference)
    _valid(compiled.lines)


@pytest.mark.parametrize(("name", "blob"), list(iter_cases(20261125)), ids=lambda v: v if isinstance(v, str) else "")
def test_damaged_blobs_give_the_same_events_and_the_same_reports(name: str, blob: object) -> None:
    compiled, reference = both(blob.bytes(), chunk=4096)  # type: ignore[attr-defined]
    assert_same(compiled, reference)
    _valid(compiled.lines)


# Spellings of each field the reference accepts, rejects, or reads in its own way (Unicode digits, signs,
# blanks, leading zeros, IPv6 forms, zone ids, counters for one direction only).
TS = ["1542110377", "0", "00000000001", "99999999999", "999999999999", "1", "+1542110377", " 154211037", "15_42",
      "١٥٤٢١١٠٣٧٧", "²", "", "1542110377000", "99999999999999", "999999999999999"]  # fmt: skip
IPS = ["10.0.0.4", "13.67.143.118", "0.0.0.0", "255.255.255.255", "010.0.0.1", "256.1.1.1", "1.2.3", "1.2.3.4.5",
       "1..2.3", " 10.0.0.4", "١.٢.٣.٤", "::", "::1", "1::", "fd00::4", "2001:DB8::8a2e:370:7334",
       "2001:db8:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4::5:6:7:8",
       "1:2:3:4:5:6:7:8:9", "12345::1", ":1::2", "1:::2", "1::2::3", "::ffff:1.2.3.4", "fe80::1%eth0", "FE80::1",
       "0:0:0:0:0:0:0:0", "fffff::", "1:2:3:4:5:6:7:", "g::1", ""]  # fmt: skip
PORTS = [
    "443",
    "0",
    "65535",
    "65536",
    "080",
    "0000000000080",
    "+80",
    " 80",
    "8_0",
    "٨٠",
    "",
    "-1",
    "99999999999999999999",
]
NSG_PROTOS = ["T", "U", "X", "t", "", "6"]
VNET_PROTOS = ["6", "17", "1", "58", "132", "47", "0", "255", "256", "06", "+6", "T", "", "٦"]
DIRS = ["I", "O", "X", "", "i"]
DECISIONS = ["A", "D", "X", ""]
STATES = ["B", "C", "E", "D", "X", "", "BC"]
ENCS = ["X", "NX", "NX_HW_NOT_SUPPORTED", "", "é", 'a"b', "NX\x00", "a\\b"]
COUNTERS = ["", "0", "12", "1234", "999999999999999999", "1000000000000000000", "+1", "١", " 1", "1_0"]


def _mutated_tuples(kind: str, version: int, rng: random.Random, n: int) -> list[object]:
    """Valid tuples with 0 to 3 fields swapped for a spelling from the pools above."""
    vnet = kind == "vnet"
    out: list[object] = []
    for _ in range(n):
        src, dst = rng.choice([("10.0.0.4", "13.67.143.118"), ("fd00::4", "2001:db8:85a3::8a2e:370:7334")])
        sport, dport = (str(rng.choice([8, 0, 128, 129, 135, 3])), "0") if rng.random() < 0.2 else ("44931", "443")
        counters = [str(rng.randint(0, 10 ** rng.randint(1, 18) - 1)) for _ in range(4)]
        if vnet:
            ts = str(rng.randint(10**12, 2 * 10**12))
            fields = [ts, src, dst, sport, dport, rng.choice(["6", "17", "1", "58"]), rng.choice("IO"),
                      rng.choice("BCED"), rng.choice(["X", "NX"]), *counters]  # fmt: skip
            pools = [TS, IPS, IPS, PORTS, PORTS, VNET_PROTOS, DIRS, STATES, ENCS, *[COUNTERS] * 4]
        else:
            fields = [str(rng.randint(10**9, 2 * 10**9)), src, dst, sport, dport, rng.choice("TU"), rng.choice("IO"),
                      rng.choice("AD")]  # fmt: skip
            pools = [TS, IPS, IPS, PORTS, PORTS, NSG_PROTOS, DIRS, DECISIONS]
            if version == 2:
                fields += [rng.choice("BCE"), *counters]
                pools += [STATES, *[COUNTERS] * 4]
        if rng.random() < 0.1:
            fields[9:13] = [""] * 4 if len(fields) == 13 else []
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            k = rng.randrange(len(fields))
            fields[k] = rng.choice(pools[k])
        if rng.random() < 0.03:
            fields = fields[:-1] if rng.random() < 0.5 else [*fields, "1"]
        out.append(",".join(fields))
        if rng.random() < 0.01:
            out.append(rng.choice([12, None, ["a"], {"t": 1}, 1.5, True]))
    return out


def _record(kind: str, version: int, tuples: list[object], minute: int) -> dict[str, object]:
    when = f"2026-11-25T10:{minute:02d}:00.0000000Z"
    if kind == "vnet":
        return {
            "time": when, "flowLogVersion": 4, "flowLogGUID": "66aa66aa-0000-0000-0000-000000000000",
            "macAddress": "000D3AF87856", "category": "FlowLogFlowEvent",
            "flowLogResourceID": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/"
                                 "NETWORKWATCHERS/NETWORKWATCHER_EASTUS/FLOWLOGS/FL",
            "targetResourceID": "/subscriptions/0/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/v",
            "operationName": "FlowLogFlowEvent",
            "flowRecords": {"flows": [{"aclID": "acl-1", "flowGroups": [
                {"rule": "DefaultRule_AllowInternetOutBound", "flowTuples": tuples}]}]},
        }  # fmt: skip
    return {
        "time": when, "systemId": "s", "macAddress": "000D3AF87856", "category": "NetworkSecurityGroupFlowEvent",
        "resourceId": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG",
        "operationName": "NetworkSecurityGroupFlowEvents",
        "properties": {"Version": version, "flows": [{"rule": "UserRule_Allow-HTTPS", "flows": [
            {"mac": "000D3AF87856", "flowTuples": tuples}]}]},
    }  # fmt: skip


@pytest.mark.parametrize(("kind", "version"), [("nsg", 1), ("nsg", 2), ("vnet", 4)])
@pytest.mark.parametrize("per_record", [40, 3000])  # plain JSON records, and big records read in place
def test_every_spelling_of_every_field_is_judged_and_read_alike(kind: str, version: int, per_record: int) -> None:
    rng = random.Random(f"{kind}{version}{per_record}")
    records = []
    for minute in range(max(2, 12000 // per_record)):
        tuples = _mutated_tuples(kind, version, rng, per_record)
        if per_record > 1000:
            tuples = [t for t in tuples if isinstance(t, str)]  # arrays of strings only: the in-place form
        records.append(json.dumps(_record(kind, version, tuples, minute % 60), separators=(",", ":")).encode())
    data = HEAD + b",".join(records) + TAIL
    compiled, reference = both(data, chunk=256 << 10)
    assert compiled.issues, "the mutations must include tuples the reference rejects"
    assert len(compiled.events) > len(records) * per_record // 50, "and tuples it accepts"
    assert_same(compiled, reference)
    _valid(compiled.lines)  # what either accepts is a valid event in every format


def test_tuples_with_non_ascii_text_in_a_big_record_take_the_list_path() -> None:
    spec = BlobSpec(kind="vnet", version=4, minutes=1, tuples_per_minute=1100)
    data = blob_bytes(spec).replace(b'"rule":"DefaultRule_AllowInternetOutBound"', '"rule":"Règle"'.encode())
    compiled, reference = both(data)
    assert compiled.issues == []
    assert_same(compiled, reference)
    assert any("Règle" in line for line in compiled.lines["ecs"])
    _valid(compiled.lines)


def test_a_batch_reads_like_a_list_of_flow_events() -> None:
    assert core is not None
    spec = BlobSpec(kind="nsg", version=2, minutes=1, tuples_per_minute=50, ipv6_share=0.5)
    data = blob_bytes(spec)
    issues = IssueLog()
    records = list(RecordDecoder("acct/c/b", len(HEAD), issues).feed(data[len(HEAD) : -len(TAIL)], final=True))
    (batch,) = list(Normaliser("acct/insights-logs/blob/PT1H.json", issues).records_batches(records, 1000))
    assert type(batch) is core.Events and len(batch) == 50
    events = list(batch)
    assert all(type(e) is FlowEvent for e in events)
    assert batch[-1] == events[-1] and batch[-50] == events[0]
    assert batch[-1].timestamp_ms == events[-1].timestamp_ms and batch[0].ctx is events[0].ctx
    assert list(batch[10:20]) == events[10:20] and list(batch[::7]) == events[::7]
    assert list(batch[10:20][2:4]) == events[12:14]
    assert len(batch[45:1000]) == 5 and len(batch[30:10]) == 0
    with pytest.raises(IndexError):
        batch[50]
    with pytest.raises(IndexError):
        batch[-51]
    with pytest.raises(TypeError):
        batch["x"]  # type: ignore[call-overload]
    assert [event_id for _, event_id, *_ in events] == [e.event_id for e in batch]
    with pytest.raises(RuntimeError):  # read once, never changed again
        batch.add_list(events[0].ctx, "p", core.NSG2, [], 0)
    assert replace(events[0].ctx) is not events[0].ctx  # contexts are shared, never copied per event


def _schema_safe(tuples: list[object]) -> list[object]:
    """Without two shapes both cores accept whose events fail a schema, known gaps of the reference left to its
    owner: ICMP with a type or code over 255 (ECS icmp_type/icmp_code are bytes), and an IPv4 address at one end
    with an IPv6 one at the other (CEF types src/dst by the source's family)."""
    out = []
    for t in tuples:
        f = t.split(",") if isinstance(t, str) else []
        if len(f) > 5 and f[5] in ("1", "58") and not all(p.isdigit() and int(p) < 256 for p in f[3:5]):
            continue
        if len(f) > 2 and (":" in f[1]) != (":" in f[2]):
            continue
        out.append(t)
    return out


def test_batches_joined_into_one_stay_compiled_and_give_the_same_lines() -> None:
    spec = BlobSpec(kind="vnet", version=4, minutes=3, tuples_per_minute=300, ipv6_share=0.3)
    mutated = _schema_safe(_mutated_tuples("vnet", 4, random.Random(5), 200))
    data = (
        HEAD
        + blob_bytes(spec)[len(HEAD) : -len(TAIL)]
        + b","
        + json.dumps(_record("vnet", 4, mutated, 7)).encode()
        + TAIL
    )
    batches = list(FileConverter(BytesIO(data), "acct/c/b", IssueLog(), 1 << 14).events())
    assert len(batches) > 2 and any(b.python_rows() for b in batches)  # type: ignore[attr-defined]
    views = [b[1:] if i % 2 else b for i, b in enumerate(batches)]
    joined = concat(views)
    assert core is not None and type(joined) is core.Events
    flat = [e for v in views for e in v]
    assert list(joined) == flat
    for fmt in FORMATS:
        lines = formatter(fmt).format_many(joined)
        assert lines == formatter(fmt).format_many(flat)
        validate_lines(fmt, lines)
    assert concat([]) == [] and concat([flat[:2]]) == flat[:2]


def test_a_record_whose_first_rule_group_has_tuples_for_the_reference_and_whose_next_groups_are_big() -> None:
    first = [
        "1542110377,10.0.0.4,13.67.143.118,+80,443,T,O,A,C,1,2,3,4",
        "x",
        "1542110377,10.0.0.4,13.67.143.118,٨٠,443,T,O,A,C,1,,3,4",
    ]
    big = [f"1542110{i:03d},10.0.0.{i % 250},13.67.143.118,{1024 + i},443,T,I,D,E,1,{i},2,{i}" for i in range(900)]
    record = _record("nsg", 2, first, 0)
    flows = record["properties"]["flows"]  # type: ignore[index]
    flows += [{"rule": f"UserRule_{n}", "flows": [{"mac": "000D3AF87856", "flowTuples": big}]} for n in range(3)]
    data = HEAD + json.dumps(record, separators=(",", ":")).encode() + TAIL
    compiled, reference = both(data)
    assert [i.reason for i in compiled.issues] == ["bad flow tuple"] and len(compiled.events) == 2 + 3 * 900
    assert_same(compiled, reference)
    _valid(compiled.lines)


def test_every_icmp_type_and_protocol_number_gives_the_same_asim_rows_both_ways() -> None:
    """ASIM rows spell what the protocol number implies: the IANA name of every ICMP / ICMPv6 type (or its number)
    and the code instead of ports, NetworkProtocol or AdditionalFields.ProtocolNumber; the NIC's MAC and target
    resource on its side, or neither when the record has none. Every type and number, both directions, both IP
    versions, with and without counters, through the compiled core and the reference."""
    tuples: list[object] = []
    ends = [("10.0.0.4", "13.67.143.118"), ("fd00::4", "2001:db8::7334")]
    for n in range(256):
        for proto in ("1", "58"):
            src, dst = ends[n % 2]
            counters = ",,," if n % 3 == 0 else f"{n},{n * 60},{n // 2},{n * 7}"
            tuples.append(f"{1764064800000 + n},{src},{dst},{n},{255 - n},{proto},{'IO'[n % 2]},C,NX,{counters}")
        src, dst = ends[n // 2 % 2]
        ports = f"{n},0" if n in (1, 58) else f"{1024 + n},443"  # an ICMP type is at most 255
        tuples.append(f"{1764064800000 + n},{src},{dst},{ports},{n},{'OI'[n % 2]},{'BCED'[n % 4]},X,1,2,3,4")
    records = []
    for minute, drop in enumerate(((), ("macAddress",), ("targetResourceID", "macAddress"))):
        record = _record("vnet", 4, tuples, minute)
        for key in drop:
            del record[key]
        records.append(json.dumps(record, separators=(",", ":")).encode())
    compiled, reference = both(HEAD + b",".join(records) + TAIL)
    assert compiled.issues == [] and len(compiled.lines["asim"]) == 3 * len(tuples)
    assert_same(compiled, reference)
    _valid(compiled.lines)
    rows = [json.loads(line) for line in compiled.lines["asim"]]
    assert {r["NetworkIcmpType"] for r in rows if r.get("NetworkProtocol") == "IPv6-ICMP"} >= {"Echo Request", "200"}
    assert sum("ProtocolNumber" in r["AdditionalFields"] for r in rows) == 3 * (256 - 11)
    assert sum("DstMacAddr" in r for r in rows) == sum("SrcMacAddr" in r for r in rows) == len(tuples) // 2
