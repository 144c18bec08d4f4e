"""Filters and aggregation in the running service, per sink: what each sink receives, every aggregate's
counts against the tuples it sums, every line against its format's schema, and SIGKILLs in the middle of
windows that replay them into the same aggregates with the same ids."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.stream import FileConverter
from forwarder.reduce.aggregate import record_time_ms
from forwarder.samples.generator import BlobSpec
from tests.support.events import parse_line, validate_lines
from tests.support.http_receivers import ElasticsearchReceiver, HecReceiver
from tests.support.local_writer import LocalWriter
from tests.support.process import kill9, start_forwarder

# A future hour: no window of it is past its end, so windows close only when the next window's records
# arrive or when run --once drains them, as they do for a live hour.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
WINDOW_MS = 600_000


def nics(root: Path, count: int = 4, tuples: int = 12) -> list[LocalWriter]:
    return [
        LocalWriter(
            root,
            BlobSpec(
                kind="vnet" if i == 3 else "nsg",
                version=4 if i == 3 else (1 if i == 2 else 2),
                name=f"NSG-{i // 2}",
                mac=f"000D3A{i:06X}",
                hour=HOUR,
                tuples_per_minute=tuples,
                seed=i,
            ),
        )
        for i in range(count)
    ]


def config(tmp: Path, root: Path) -> Path:
    out = tmp / "out"
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "forwarder.toml"
    path.write_text(f"""
[source]
type = "directory"
path = "{root}"
poll_interval = 0.1

[checkpoint]
path = "{tmp / "state" / "checkpoints.json"}"

[[sink]]
type = "file"
format = "ecs"
path = "{out / "all.ndjson"}"

[[sink]]
type = "file"
format = "cef"
path = "{out / "denied.cef"}"
[[sink.filter.include]]
decision = "denied"

[[sink]]
type = "file"
format = "ocsf"
path = "{out / "summary-ocsf.ndjson"}"
aggregate = {{ window = "10m" }}

[[sink]]
type = "file"
format = "ecs"
path = "{out / "summary-ecs.ndjson"}"
aggregate = {{ window = "10m", key = ["dst_ip", "dst_port", "protocol", "direction", "decision"] }}
""")
    return path


@dataclass
class Truth:
    events: list[FlowEvent]
    window_of: dict[str, int]  # event id -> window start (by its record's time)


def truth(writers: list[LocalWriter]) -> Truth:
    events: list[FlowEvent] = []
    window_of: dict[str, int] = {}
    for w in writers:
        key = f"local/{w.spec.container}/{w.spec.blob_name}"
        for batch in FileConverter(io.BytesIO(w.path.read_bytes()), key, IssueLog()).events():
            for e in batch:
                events.append(e)
                t = record_time_ms(e.ctx.record_time)
                assert t is not None
                window_of[e.event_id] = t - t % WINDOW_MS
    return Truth(events, window_of)


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def check_sums(docs: list[dict[str, Any]], fmt: str, t: Truth, key: tuple[str, ...]) -> None:
    """Each aggregate (one copy per id) against the tuples it sums: flows, states, denials, bytes, times."""
    expected: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for e in t.events:
        k = (e.ctx.source, t.window_of[e.event_id], *_key(e, key))
        c = expected[k]
        c["flows"] += 1
        c["started"] += e.state == "B"
        c["ended"] += e.state == "E"
        c["denied"] += not e.allowed
        c["bytes_s2d"] += e.bytes_s2d or 0 if e.state != "B" else 0
    got: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for doc in docs:
        summary = doc["azure"]["flowlog"]["summary"] if fmt == "ecs" else doc["unmapped"]["summary"]
        window = int(datetime.fromisoformat(summary["window_start"].replace("Z", "+00:00")).timestamp() * 1000)
        k = (_source_of(doc, fmt, t), window, *_doc_key(doc, fmt, key))
        c = got[k]
        c["flows"] += summary["flows"]
        c["started"] += summary["started"]
        c["ended"] += summary["ended"]
        c["denied"] += summary["denied"]
        c["bytes_s2d"] += (doc.get("source", {}).get("bytes", 0) if fmt == "ecs" else
                           doc.get("traffic", {}).get("bytes_out", 0))  # fmt: skip
    assert dict(got) == dict(expected)


_SOURCES: dict[str, str] = {}


def _source_of(doc: dict[str, Any], fmt: str, t: Truth) -> str:
    mac = (doc["azure"]["flowlog"].get("mac") if fmt == "ecs" else None) or _mac_of(doc)
    for e in t.events:
        if e.ctx.mac == mac:
            return e.ctx.source
    raise AssertionError(f"no blob has MAC {mac}")


def _mac_of(doc: dict[str, Any]) -> str:
    for side in ("src_endpoint", "dst_endpoint", "source", "destination"):
        mac = doc.get(side, {}).get("mac")
        if mac:
            return str(mac).replace(":", "-")
    raise AssertionError("an aggregate without the NIC's MAC")


def _key(e: FlowEvent, key: tuple[str, ...]) -> tuple[Any, ...]:
    values = {"src_ip": e.src_ip, "dst_ip": e.dst_ip, "dst_port": e.dst_port, "protocol": e.protocol,
              "direction": e.inbound, "decision": e.allowed, "rule": e.ctx.rule, "resource": e.ctx.name}  # fmt: skip
    if e.protocol in (1, 58) and "dst_port" in key:
        values["dst_port"] = e.dst_port  # the ICMP code
    return tuple(values[k] for k in key)


def _doc_key(doc: dict[str, Any], fmt: str, key: tuple[str, ...]) -> tuple[Any, ...]:
    if fmt == "ecs":
        net = doc["network"]
        values = {
            "src_ip": doc.get("source", {}).get("ip"),
            "dst_ip": doc.get("destination", {}).get("ip"),
            "dst_port": doc.get("destination", {}).get("port", doc["azure"]["flowlog"].get("icmp_code")),
            "protocol": int(net["iana_number"]),
            "direction": net["direction"] == "inbound",
            "decision": {"success": True, "failure": False}.get(doc["event"]["outcome"]),
            "rule": doc.get("rule", {}).get("name"),
            "resource": doc["observer"].get("name"),
        }
    else:
        values = {
            "src_ip": doc["src_endpoint"].get("ip"),
            "dst_ip": doc["dst_endpoint"].get("ip"),
            "dst_port": doc["dst_endpoint"].get("port"),
            "protocol": doc["connection_info"]["protocol_num"],
            "direction": doc["connection_info"]["direction_id"] == 1,
            "decision": {1: True, 2: False}.get(doc["action_id"]),
            "rule": doc.get("firewall_rule", {}).get("name"),
            "resource": doc["unmapped"].get("network_security_group") or doc["unmapped"].get("flow_log"),
        }
    return tuple(values[k] for k in key)


TA_KEY = ("src_ip", "dst_ip", "dst_port", "protocol", "direction", "decision", "rule", "resource")
NARROW_KEY = ("dst_ip", "dst_port", "protocol", "direction", "decision")


def test_each_sink_gets_its_own_reduction_and_every_aggregate_sums_its_tuples(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    writers = nics(root)
    for _ in range(25):
        for w in writers:
            w.append_minute()
    proc = start_forwarder(config(tmp_path, root), "--once")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    t = truth(writers)
    out = tmp_path / "out"
    assert len(lines(out / "all.ndjson")) == len(t.events)
    denied = validate_lines("cef", lines(out / "denied.cef"))
    assert sorted(d["extension"]["externalId"] for d in denied) == sorted(e.event_id for e in t.events if not e.allowed)
    ocsf = validate_lines("ocsf", lines(out / "summary-ocsf.ndjson"))
    narrow = validate_lines("ecs", lines(out / "summary-ecs.ndjson"))
    assert len(narrow) < len(ocsf) < len(t.events)
    assert all(d["event"]["action"] == "flow_summary" for d in narrow)
    check_sums(ocsf, "ocsf", t, TA_KEY)
    check_sums(narrow, "ecs", t, NARROW_KEY)
    log = err.decode()
    assert "Traceback" not in log


def test_sigkill_in_the_middle_of_windows_replays_the_same_aggregates_with_the_same_ids(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    writers = nics(root)
    cfg = config(tmp_path / "run", root)
    rng = random.Random(5)
    kills = 0
    proc = start_forwarder(cfg)
    try:
        for minute in range(30):
            for w in writers:
                w.append_minute()
            time.sleep(rng.uniform(0.0, 0.2))
            if minute % 4 == 3:
                kill9(proc)
                kills += 1
                proc = start_forwarder(cfg)
                time.sleep(rng.uniform(0.2, 0.9))
    finally:
        kill9(proc)
    drain = start_forwarder(cfg, "--once")
    _, err = drain.communicate(timeout=120)
    assert drain.returncode == 0, err.decode()

    clean_cfg = config(tmp_path / "clean", root)  # the same blobs, read once, start to end
    clean = start_forwarder(clean_cfg, "--once")
    _, err = clean.communicate(timeout=120)
    assert clean.returncode == 0, err.decode()

    t = truth(writers)
    for name, fmt, key in (("summary-ocsf.ndjson", "ocsf", TA_KEY), ("summary-ecs.ndjson", "ecs", NARROW_KEY)):
        killed = lines(tmp_path / "run" / "out" / name)
        once = lines(tmp_path / "clean" / "out" / name)
        validate_lines(fmt, killed)
        copies: dict[str, set[str]] = defaultdict(set)
        for line in killed:
            doc = parse_line(fmt, line)
            copies[_id(doc, fmt)].add(line)
        assert all(len(v) == 1 for v in copies.values()), f"{name}: an aggregate id came with different counts"
        assert set(copies) == {_id(parse_line(fmt, line), fmt) for line in once}, f"{name}: other windows or keys"
        check_sums([parse_line(fmt, next(iter(v))) for v in copies.values()], fmt, t, key)
        print(f"{name}: kills={kills} aggregates={len(copies)} lines={len(killed)} tuples={len(t.events)}")


def _id(doc: dict[str, Any], fmt: str) -> str:
    return str(doc["event"]["id"] if fmt == "ecs" else doc["metadata"]["uid"])


def test_dropped_tuples_are_counted_per_sink_and_reason_in_the_metrics(tmp_path: Path) -> None:
    import threading

    from prometheus_client import CollectorRegistry, generate_latest

    from forwarder.checkpoints.store import CheckpointStore
    from forwarder.config.build import build_service
    from forwarder.config.loader import load_config
    from forwarder.ops.metrics import ServiceCollector

    root = tmp_path / "flowlogs"
    writers = nics(root, count=2)
    for _ in range(12):
        for w in writers:
            w.append_minute()
    cfg = load_config(config(tmp_path, root))
    svc = build_service(cfg, threading.Event(), CheckpointStore(tmp_path / "state" / "checkpoints.json"))
    svc.delivery.open()
    try:
        svc.run(once=True)
    finally:
        svc.close()
    registry = CollectorRegistry()
    registry.register(ServiceCollector(svc))
    text = generate_latest(registry).decode()
    t = truth(writers)
    allowed = sum(e.allowed for e in t.events)
    assert f'nsg_forwarder_filtered_total{{reason="not included",sink="file[1]"}} {float(allowed)}' in text
    aggregates = len(lines(tmp_path / "out" / "summary-ocsf.ndjson"))
    assert f'nsg_forwarder_aggregates_total{{sink="file[2]"}} {float(aggregates)}' in text
    assert "nsg_forwarder_open_windows 0.0" in text


def convert(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "forwarder", "convert", *args], capture_output=True, timeout=60)


def test_convert_filters_and_aggregates_as_a_sink_would(tmp_path: Path) -> None:
    rules = tmp_path / "denied.toml"
    rules.write_text('[[filter.include]]\ndecision = "denied"\n')
    root = tmp_path / "flowlogs"
    writers = nics(root, count=4)
    for _ in range(25):
        for w in writers:
            w.append_minute()
    t = truth(writers)
    for w in writers:
        key = f"local/{w.spec.container}/{w.spec.blob_name}"
        denied = convert(str(w.path), "--format", "cef", "--filter", str(rules), "--source-id", key)
        assert denied.returncode == 0, denied.stderr.decode()
        got = [d["extension"]["externalId"] for d in validate_lines("cef", denied.stdout.decode().splitlines())]
        assert got == [e.event_id for e in t.events if e.ctx.source == key and not e.allowed]
        assert f"filtered={sum(e.allowed for e in t.events if e.ctx.source == key)}" in denied.stderr.decode()
    # The same aggregates, with the same ids, as the service's aggregating sink gives for whole windows.
    proc = start_forwarder(config(tmp_path / "run", root), "--once")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    served = sorted(lines(tmp_path / "run" / "out" / "summary-ocsf.ndjson"))
    converted: list[str] = []
    for w in writers:
        key = f"local/{w.spec.container}/{w.spec.blob_name}"
        done = convert(str(w.path), "--format", "ocsf", "--aggregate", "10m", "--source-id", key)
        assert done.returncode == 0, done.stderr.decode()
        converted += done.stdout.decode().splitlines()
    validate_lines("ocsf", converted)
    assert sorted(converted) == served


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--aggregate", "7m"], "--aggregate: '7m' must be whole minutes that divide an hour"),
        (["--aggregate", "10m", "--key", "dst_ip,nope"], "--key: nope is not one of"),
        (["--key", "dst_ip"], "--key goes with --aggregate"),
        (["--format", "asim", "--aggregate", "10m", "--key", "dst_ip"], "format asim needs src_ip"),
        (["--filter", "/nonexistent.toml"], "cannot read the filter file /nonexistent.toml"),
    ],
)
def test_convert_refuses_a_bad_reduction_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (w,) = nics(tmp_path / "flowlogs", count=1)
    w.append_minute()
    done = convert(str(w.path), *args)
    err = done.stderr.decode()
    assert done.returncode == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_asim_rows_of_aggregates_are_flows_with_their_count(tmp_path: Path) -> None:
    (w,) = nics(tmp_path / "flowlogs", count=1)
    for _ in range(20):
        w.append_minute()
    done = convert(str(w.path), "--format", "asim", "--aggregate", "10m")
    assert done.returncode == 0, done.stderr.decode()
    rows = validate_lines("asim", done.stdout.decode().splitlines())
    t = truth([w])
    assert sum(r["EventCount"] for r in rows) == len(t.events)
    assert {r["EventType"] for r in rows if r["EventCount"] > 1} == {"Flow"}
    assert all(r["EventStartTime"] <= r["EventEndTime"] for r in rows)
    summaries = [r["AdditionalFields"]["Summary"] for r in rows]
    assert all(s["flows"] == r["EventCount"] for s, r in zip(summaries, rows, strict=True))
    assert all(
        s["window_start"] <= r["EventStartTime"] <= r["EventEndTime"] < s["window_end"]
        for s, r in zip(summaries, rows, strict=True)
    )
    states = Counter(e.state for e in t.events)
    assert sum(s["started"] for s in summaries) == states["B"]
    assert sum(s["ended"] for s in summaries) == states["E"]
    assert sum(s["denied"] for s in summaries) == sum(1 for e in t.events if not e.allowed)


def test_aggregates_of_extreme_counters_and_times_are_written_within_their_types(tmp_path: Path) -> None:
    """Counters near 10^18 summed over many tuples, and flow times decades apart, must not stop a blob: every
    format writes the aggregate, with sums capped where its 64-bit integers end."""
    big = "999999999999999999"
    tuples = [f"{ts},10.0.0.4,13.67.143.118,44931,443,T,O,A,C,{big},{big},{big},{big}" for ts in (1, 99999999999)] * 20
    group = {"rule": "R", "flows": [{"mac": "000D3AF87856", "flowTuples": tuples}]}
    record = {
        "time": "2026-11-25T10:00:35.0000000Z", "macAddress": "000D3AF87856",
        "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG",
        "properties": {"Version": 2, "flows": [group]},
    }  # fmt: skip
    path = tmp_path / "PT1H.json"
    path.write_text('{"records":[' + json.dumps(record) + "]}")
    for fmt in ("ecs", "cef", "ocsf", "asim"):
        done = convert(str(path), "--format", fmt, "--aggregate", "10m")
        assert done.returncode == 0, done.stderr.decode()
        (doc,) = validate_lines(fmt, done.stdout.decode().splitlines())
        assert doc  # one aggregate: one key, one window


def test_aggregates_go_to_their_own_elasticsearch_streams_and_splunk_sourcetype(tmp_path: Path) -> None:
    """Counted next to single flows an aggregate would pass for one flow: by default an aggregating Elasticsearch
    sink writes to the *_flow_summary streams (NSG and VNet apart) and an aggregating HEC sink uses the
    azure:nsg:flow:summary sourcetype, while the same sinks without aggregate keep the flows' names."""
    root = tmp_path / "flowlogs"
    writers = nics(root)
    for _ in range(12):
        for w in writers:
            w.append_minute()
    with ElasticsearchReceiver() as es, HecReceiver() as hec:
        path = tmp_path / "forwarder.toml"
        path.write_text(f"""
[source]
type = "directory"
path = "{root}"

[checkpoint]
path = "{tmp_path / "state" / "checkpoints.json"}"

[[sink]]
type = "elasticsearch"
url = "{es.url}"
aggregate = {{ window = "10m" }}

[[sink]]
type = "elasticsearch"
url = "{es.url}"

[[sink]]
type = "splunk_hec"
url = "{hec.url}"
token = "{hec.token}"
aggregate = {{ window = "10m" }}

[[sink]]
type = "splunk_hec"
url = "{hec.url}"
token = "{hec.token}"
format = "cef"
aggregate = {{ window = "5m" }}
""")
        proc = start_forwarder(path, "--once")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        t = truth(writers)
        nsg = list(es.docs("logs-azure.nsg_flow_summary-default").values())
        vnet = list(es.docs("logs-azure.vnet_flow_summary-default").values())
        assert {d["event"]["dataset"] for d in nsg} == {"azure.nsg_flow_summary"}
        assert {d["event"]["dataset"] for d in vnet} == {"azure.vnet_flow_summary"}
        validate_lines("ecs", [json.dumps(d) for d in nsg + vnet])
        check_sums(nsg + vnet, "ecs", t, TA_KEY)
        flows = len(es.docs("logs-azure.nsg_flow-default")) + len(es.docs("logs-azure.vnet_flow-default"))
        assert flows == len(t.events)
        assert set(es.streams) == {
            "logs-azure.nsg_flow_summary-default",
            "logs-azure.vnet_flow_summary-default",
            "logs-azure.nsg_flow-default",
            "logs-azure.vnet_flow-default",
        }
        by_type: dict[str, list[Any]] = defaultdict(list)
        for envelope in hec.events:
            by_type[envelope["sourcetype"]].append(envelope["event"])
        assert set(by_type) == {"azure:nsg:flow:summary", "azure:nsg:flow:summary:cef"}
        validate_lines("ecs", [json.dumps(e) for e in by_type["azure:nsg:flow:summary"]])
        assert len(by_type["azure:nsg:flow:summary"]) == len(nsg) + len(vnet)
        cef = validate_lines("cef", by_type["azure:nsg:flow:summary:cef"])
        assert sum(int(d["extension"]["cnt"]) for d in cef) == len(t.events)
