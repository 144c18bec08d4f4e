"""The streaming parser: records with exact offsets, every supported version, bad input skipped and located."""

from __future__ import annotations

import json

import pytest

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder
from forwarder.samples.generator import BlobSpec, blob_bytes, data_blocks
from tests.support.reference import reference


def parse(blob: bytes, chunk: int = 1 << 20, source: str = "acct/c/blob") -> tuple[list[FlowEvent], IssueLog, int]:
    issues = IssueLog()
    head = HEAD_RE.match(blob)
    assert head is not None
    tail = TAIL_RE.search(blob)
    assert tail is not None
    data = blob[head.end() : tail.start()]
    decoder = RecordDecoder(source, head.end(), issues)
    normaliser = Normaliser(source, issues)
    events: list[FlowEvent] = []
    for i in range(0, max(len(data), 1), chunk):
        part = data[i : i + chunk]
        for record in decoder.feed(part, final=i + chunk >= len(data)):
            events.extend(normaliser.events(record))
    return events, issues, decoder.consumed


def nsg_record(tuples: list[str], version: int = 2, rule: str = "DefaultRule_DenyAllInBound") -> dict:
    return {
        "time": "2018-11-13T12:00:35.3899262Z",
        "systemId": "a0fca5ce-022c-47b1-9735-89943b42f2fa",
        "macAddress": "000D3AF87856",
        "category": "NetworkSecurityGroupFlowEvent",
        "resourceId": "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/"
        "MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG",
        "operationName": "NetworkSecurityGroupFlowEvents",
        "properties": {
            "Version": version,
            "flows": [{"rule": rule, "flows": [{"mac": "000D3AF87856", "flowTuples": tuples}]}],
        },
    }


def wrap(*records: dict | str) -> bytes:
    parts = [r if isinstance(r, str) else json.dumps(r, separators=(",", ":")) for r in records]
    return ('{"records":[' + ",".join(parts) + "]}").encode()


@pytest.mark.parametrize("kind,version", [("nsg", 1), ("nsg", 2), ("vnet", 4)])
@pytest.mark.parametrize("chunk", [97, 4096, 1 << 20])
def test_every_tuple_becomes_one_event_whatever_the_chunk_size(kind: str, version: int, chunk: int) -> None:
    spec = BlobSpec(kind=kind, version=version, minutes=7, tuples_per_minute=13)  # type: ignore[arg-type]
    blob = blob_bytes(spec)
    events, issues, consumed = parse(blob, chunk)
    assert issues.total == 0
    assert len(events) == 7 * 13
    assert consumed == len(blob) - 2  # everything but the tail
    assert len({e.event_id for e in events}) == len(events)
    assert {e.ctx.kind for e in events} == {kind}
    assert {e.ctx.version for e in events} == {version}


def test_record_offsets_are_byte_positions_in_the_blob() -> None:
    spec = BlobSpec(minutes=4, tuples_per_minute=3)
    blob = blob_bytes(spec)
    events, _, _ = parse(blob, 50)
    offsets = sorted({e.ctx.record_offset for e in events})
    assert len(offsets) == 4
    for off in offsets:
        assert blob[off : off + 9] == b'{"time":"'
        # A record is exactly one data block (minus its leading comma).
    blocks = list(data_blocks(spec))
    expected, pos = [], 12
    for b in blocks:
        expected.append(pos + (1 if b.startswith(b",") else 0))
        pos += len(b)
    assert offsets == expected


def test_event_ids_do_not_depend_on_where_reading_started() -> None:
    blob = blob_bytes(BlobSpec(minutes=5, tuples_per_minute=4))
    whole, _, _ = parse(blob, 1 << 20)
    small, _, _ = parse(blob, 61)
    assert [e.event_id for e in whole] == [e.event_id for e in small]
    other_source, _, _ = parse(blob, 1 << 20, source="acct/c/other")
    assert not {e.event_id for e in whole} & {e.event_id for e in other_source}


def test_nsg_v2_fields_states_and_empty_counters() -> None:
    tuples = [
        "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,B,,,,",
        "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008",
        "1542110437,10.0.0.4,13.67.143.118,44931,443,T,O,A,E,1,66,1,66",
        "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
        "1542110402,2001:db8::1,fd00::4,28746,53,U,I,A,C,2,120,2,300",
    ]
    events, issues, _ = parse(wrap(nsg_record(tuples)))
    assert issues.total == 0
    b, c, e, denied, v6 = events
    assert (b.state, b.packets_s2d, b.bytes_s2d, b.packets_d2s, b.bytes_d2s) == ("B", None, None, None, None)
    assert (c.state, c.packets_s2d, c.bytes_s2d, c.packets_d2s, c.bytes_d2s) == ("C", 30, 16978, 24, 14008)
    assert c.timestamp_ms == 1542110377000 and c.protocol == 6 and not c.inbound and c.allowed
    assert e.state == "E"
    assert denied.protocol == 17 and denied.inbound and not denied.allowed
    assert v6.src_ip == "2001:db8::1" and v6.dst_ip == "fd00::4"
    ctx = c.ctx
    assert ctx.name == "FABRIAKMVM1-NSG" and ctx.resource_group == "FABRIKAMRG"
    assert ctx.subscription_id == "00000000-0000-0000-0000-000000000000"
    assert ctx.mac == "00-0D-3A-F8-78-56" and ctx.rule == "DefaultRule_DenyAllInBound"


def test_nsg_v1_has_no_state_or_counters() -> None:
    events, issues, _ = parse(wrap(nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"], version=1)))
    assert issues.total == 0
    (ev,) = events
    assert ev.state == "" and ev.bytes_s2d is None and ev.ctx.version == 1


def test_vnet_v4_milliseconds_protocol_numbers_and_denied_state() -> None:
    record = json.loads(reference("elastic/vnet-flowlog-record.json").read_text())
    group = record["flowRecords"]["flows"][0]["flowGroups"][0]
    group["flowTuples"] = [*group["flowTuples"], "1663146003999,10.1.0.4,10.2.0.5,0,0,1,I,D,NX,0,0,0,0"]
    events, issues, _ = parse(wrap(record))
    assert issues.total == 0
    first, second, icmp = events
    assert (
        first.timestamp_ms == 1663146003599 and first.protocol == 6 and first.state == "B" and first.encryption == "NX"
    )
    assert (second.packets_s2d, second.bytes_s2d, second.packets_d2s, second.bytes_d2s) == (22, 2217, 33, 0)
    assert icmp.protocol == 1 and icmp.state == "D" and not icmp.allowed and icmp.inbound
    assert first.ctx.kind == "vnet" and first.ctx.name == "VNETFLOWLOG" and first.ctx.acl_id.startswith("00000000-1234")
    assert first.ctx.resource_group == "myResourceGroup"


BAD_TUPLES = [
    ("1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24", "expected 13 fields"),
    ("1542110377,10.0.0.999,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008", "bad src address"),
    ("1542110377,10.0.0.4,13.67.143.118,70000,443,T,O,A,C,30,16978,24,14008", "bad sport"),
    ("1542110377,10.0.0.4,13.67.143.118,44931,443,X,O,A,C,30,16978,24,14008", "bad protocol"),
    ("1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,Z,30,16978,24,14008", "bad flow state"),
    ("1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,-5,24,14008", "bad counter"),
    ("nonsense", "expected 13 fields"),
    ("1542110377,fe80::1%eth0,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008", "bad src address"),
    ("154211037700000,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008", "bad timestamp"),
    ("1542110377,10.0.0.4,2001:db8::8,44931,443,T,O,A,C,30,16978,24,14008", "is IPv4 and dst '2001:db8::8' IPv6"),
]


@pytest.mark.parametrize("bad,why", BAD_TUPLES)
def test_a_bad_tuple_is_reported_with_its_place_and_the_rest_converted(bad: str, why: str) -> None:
    good = "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008"
    blob = wrap(nsg_record([good, bad, good]))
    events, issues, _ = parse(blob, source="acct/c/b")
    assert len(events) == 2
    assert issues.counts == {"bad flow tuple": 1}
    (issue,) = issues.first
    assert issue.offset == 12 and issue.record_index == 0
    assert why in issue.detail and "tuple 1" in issue.detail
    assert bad[:40] in issue.text
    assert "source=acct/c/b offset=12 record=0" in issue.describe()


def test_a_malformed_record_is_skipped_and_the_next_one_still_read() -> None:
    good = nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008"])
    good_text = json.dumps(good, separators=(",", ":"))
    broken = good_text[:80] + "}}garbage"
    blob = wrap(good, broken, good)
    events, issues, consumed = parse(blob, chunk=64)
    assert len(events) == 2
    assert issues.counts == {"malformed record": 1}
    assert issues.first[0].offset == 12 + len(good_text) + 1
    assert consumed == len(blob) - 2


def test_a_truncated_last_record_is_reported_when_no_more_data_can_come() -> None:
    good = json.dumps(
        nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"], version=1), separators=(",", ":")
    )
    blob = ('{"records":[' + good + "," + good[:50] + "]}").encode()
    events, issues, _ = parse(blob)
    assert len(events) == 1
    assert issues.counts == {"truncated or malformed record": 1}


def test_unknown_versions_and_foreign_records_are_reported() -> None:
    v9 = nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"], version=9)
    other = {"time": "2020-01-01T00:00:00Z", "hello": "world"}
    events, issues, _ = parse(wrap(v9, other, nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"], 1)))
    assert len(events) == 1
    assert issues.counts == {"unsupported record": 2}
    assert "unknown NSG flow log version 9" in issues.first[0].detail
    # The excerpt is the record as written (its key order, JSON spelling), not a Python dict.
    assert issues.first[1].text == '{"time":"2020-01-01T00:00:00Z","hello":"world"}'


def test_a_tuple_that_is_not_a_string_is_shown_as_json() -> None:
    record = nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"], version=1)
    record["properties"]["flows"][0]["flows"][0]["flowTuples"].append({"z": 1, "a": [True, None]})
    _, issues, _ = parse(wrap(record))
    assert issues.counts == {"bad flow tuple": 1}
    assert issues.first[0].text == '{"z":1,"a":[true,null]}'


def test_head_and_tail_only_is_empty_not_an_error() -> None:
    events, issues, consumed = parse(b'{"records":[]}')
    assert events == [] and issues.total == 0 and consumed == 12


def test_other_head_and_tail_sizes_are_learned() -> None:
    record = json.dumps(nsg_record(["1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"], 1))
    blob = ('{ "records": [\r\n' + record + "\r\n,\r\n" + record + "\r\n]\r\n}\r\n").encode()
    events, issues, _ = parse(blob, chunk=33)
    assert len(events) == 2 and issues.total == 0


def test_a_record_cut_by_a_chunk_is_carried_not_reported() -> None:
    blob = blob_bytes(BlobSpec(minutes=3, tuples_per_minute=50))
    issues = IssueLog()
    decoder = RecordDecoder("s", 12, issues)
    data = blob[12:-2]
    got = list(decoder.feed(data[:1000], final=False))
    assert got == [] and issues.total == 0 and decoder.consumed == 12 and decoder.pending == 1000
    got = list(decoder.feed(data[1000:], final=True))
    assert len(got) == 3 and issues.total == 0


def _event_fields(events: list[FlowEvent]) -> list[tuple[object, ...]]:
    return [(*e[1:], e.ctx.rule, e.ctx.mac, e.ctx.record_offset) for e in events]


@pytest.mark.parametrize("kind,version", [("nsg", 1), ("nsg", 2), ("vnet", 4)])
def test_big_records_take_the_tuple_span_path_and_give_the_same_events(
    kind: str, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import forwarder.flowlog.records as records

    blob = blob_bytes(BlobSpec(kind=kind, version=version, minutes=3, tuples_per_minute=400))  # type: ignore[arg-type]
    plain, plain_issues, _ = parse(blob, chunk=5000)
    monkeypatch.setattr(records, "BIG", 1000)  # every record here is "big"
    spans, span_issues, consumed = parse(blob, chunk=5000)
    assert plain_issues.total == span_issues.total == 0
    assert _event_fields(spans) == _event_fields(plain)
    assert consumed == len(blob) - 2


def test_a_big_record_in_an_unusual_form_falls_back_to_plain_json(monkeypatch: pytest.MonkeyPatch) -> None:
    import forwarder.flowlog.records as records

    monkeypatch.setattr(records, "BIG", 10)
    good = "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008"
    spaced = json.dumps(nsg_record([good, good]))  # blanks between tuples
    compact = json.dumps(nsg_record([good, good]), separators=(",", ":"))
    escaped = compact.replace("443,T,O", "443,T\\u002cO", 1)  # a JSON escape inside a tuple
    assert "\\u002c" in escaped
    events, issues, _ = parse(wrap(spaced, escaped))
    assert len(events) == 4 and issues.total == 0


def test_non_ascii_names_split_across_reads_keep_exact_offsets() -> None:
    good = "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,30,16978,24,14008"
    records = [nsg_record([good], rule=f"Règle-ü-{i}-✓") for i in range(4)]
    blob = (
        "{" + '"records":[' + ",".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records) + "]}"
    ).encode()
    whole, _, _ = parse(blob, chunk=1 << 20)
    for chunk in (1, 3, 7, 64):
        events, issues, consumed = parse(blob, chunk=chunk)
        assert issues.total == 0 and consumed == len(blob) - 2
        assert _event_fields(events) == _event_fields(whole)
        assert [e.ctx.rule for e in events] == [f"Règle-ü-{i}-✓" for i in range(4)]
        for e in events:
            assert blob[e.ctx.record_offset : e.ctx.record_offset + 9] == b'{"time":"'


def test_tuple_span_slices_in_order_match_the_plain_list() -> None:
    import random

    from forwarder.flowlog.bigrecord import TupleSpan

    rng = random.Random(5)
    tuples = [
        f"{1542110377 + i},10.0.0.{i % 250},2001:db8::{i:x},{i},443,T,O,A,{'B,,,,' if i % 3 else 'C,1,2,3,4'}"
        for i in range(997)
    ]
    text = 'xx"flowTuples":["' + '","'.join(tuples) + '"]yy'
    start = text.index('["') + 2
    span = TupleSpan(text, start, text.index('"]yy'))
    assert len(span) == len(tuples)
    pos, got = 0, []
    while pos < len(tuples):
        step = rng.choice([1, 2, 7, 64, 300])
        got += span[pos : pos + step]
        pos += step
    assert got == tuples
    assert span[0:5] == tuples[0:5] and list(span) == tuples  # going back starts over
