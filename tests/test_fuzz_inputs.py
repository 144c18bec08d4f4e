"""Damaged and unusual PT1H.json blobs, as real storage can hand them over, through convert and run.

Every case starts from a generated blob whose records are known byte for byte, damages it in one
seeded way, and checks the promise: no crash or stall, every tuple of every undamaged record comes
out (by its deterministic event id), every event is valid, and every bad stretch is reported with
its source and byte offset.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.measure import run_measured
from forwarder.checkpoints.store import CheckpointStore
from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.records import RecordDecoder
from forwarder.flowlog.stream import FileConverter, NotAFlowLog
from forwarder.formats import formatter
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.service import Service
from forwarder.samples.generator import TAIL, BlobSpec, data_blocks
from forwarder.sources.directory import DirectorySource
from tests.support.collect import CollectingSink
from tests.support.events import validate_lines
from tests.support.fuzz import (
    GARBAGE,
    Blob,
    clean_blob,
    expected_ids,
    flip_bytes,
    insert_between,
    insert_inside,
    intact_spans,
    iter_cases,
    reshape,
    small_spec,
    truncate,
    truncation_points,
    with_bom,
    write_case,
)
from tests.support.process import directory_config

SEED = 20261125
CASES = list(iter_cases(SEED))
FORMATS = ("ecs", "cef", "ocsf")


def _convert(blob: Blob, source: str, chunk: int) -> tuple[list[str] | None, list[object], IssueLog, int]:
    """(event ids or None when refused as not a flow log, events, issues, bytes)."""
    data = blob.bytes()
    issues = IssueLog(log_first=1 << 30)  # keep every issue: each is checked for its place
    conv = FileConverter(io.BytesIO(data), source, issues, chunk)
    try:
        events = [e for batch in conv.events() for e in batch]
    except NotAFlowLog:
        return None, [], issues, len(data)
    return [e.event_id for e in events], list(events), issues, len(data)


def _check_issues(blob: Blob, issues: IssueLog, size: int, must_report: bool) -> None:
    spans = intact_spans(blob)
    for issue in issues.first:
        assert issue.source and 0 <= issue.offset <= size, issue.describe()
        assert f"offset={issue.offset}" in issue.describe()
        inside = [s for s in spans if s[0] <= issue.offset < s[1]]
        assert not inside, f"an intact record is blamed: {issue.describe()}"
    if must_report:
        for lo, hi in blob.damage:
            assert any(lo - 1 <= i.offset <= hi for i in issues.first), f"damage at {lo}-{hi} not reported"


@pytest.mark.parametrize("n", range(len(CASES)), ids=[name for name, _ in CASES])
def test_convert_keeps_every_undamaged_record_and_reports_the_damage(n: int) -> None:
    name, blob = CASES[n]
    source = f"fuzz/{n}"
    chunk = random.Random(n).choice([97, 4096, 1 << 20])
    began = time.monotonic()
    ids, events, issues, size = _convert(blob, source, chunk)
    assert time.monotonic() - began < 10
    want = expected_ids(blob, source)
    if ids is None:
        assert not want, "a blob with undamaged records was refused as not a flow log"
        return
    assert len(ids) == len(set(ids)), "an event id came out twice"
    missing = want - set(ids)
    assert not missing, f"{len(missing)} events of undamaged records lost"
    if len(ids) < blob.total_tuples:
        assert issues.total > 0, "tuples went missing without a word"
    # Garbage inside a record may land in a string and leave valid JSON: only a loss must be reported there.
    _check_issues(blob, issues, size, must_report=name.startswith(("garbage between", "truncated")))
    fmt = FORMATS[n % 3]
    validate_lines(fmt, formatter(fmt).format_many(events))  # type: ignore[arg-type]


def _service(root: Path, state: Path) -> tuple[Service, CollectingSink]:
    sink = CollectingSink()
    store = CheckpointStore.load(state / "checkpoints.json")
    svc = Service(DirectorySource(root), store, Delivery([sink]), chunk_bytes=4096)  # type: ignore[list-item]
    return svc, sink


@pytest.mark.parametrize("n", range(len(CASES)), ids=[name for name, _ in CASES])
def test_reader_keeps_every_undamaged_record_and_never_stalls_on_the_blob(n: int, tmp_path: Path) -> None:
    _, blob = CASES[n]
    root = tmp_path / "logs"
    _, key = write_case(root, blob, f"000D3A{n:06X}")
    svc, sink = _service(root, tmp_path)
    began = time.monotonic()
    svc.run(once=True)
    assert time.monotonic() - began < 10
    assert svc.stats.blob_errors == 0, "reading the blob failed (it would be retried, and fail, forever)"
    got = sink.event_ids
    assert len(got) == len(set(got))
    tail_ok = blob.cut is None and blob.tail == TAIL and not blob.tail_damaged
    want = set() if blob.head_damaged else expected_ids(blob, key, whole=tail_ok)
    missing = want - set(got)
    assert not missing, f"{len(missing)} events of undamaged records lost"
    if len(got) < blob.total_tuples and (tail_ok or blob.head_damaged):
        assert svc.issues.total > 0, "tuples went missing without a word"
    svc.run(once=True)  # a second pass over the unchanged blob sends nothing again
    assert len(sink.event_ids) == len(got)


def _truncations() -> list[tuple[str, Blob]]:
    rng = random.Random(SEED + 1)
    out = []
    for i in range(3):
        base = clean_blob(small_spec(rng, minutes=5, tuples=4))
        for where, cut in truncation_points(base, rng).items():
            out.append((f"{i}: {where}", truncate(base, cut)))
    return out


TRUNCATIONS = _truncations()


@pytest.mark.parametrize("n", range(len(TRUNCATIONS)), ids=[name for name, _ in TRUNCATIONS])
def test_a_file_seen_half_written_is_delivered_whole_once_it_is_complete(n: int, tmp_path: Path) -> None:
    """A sync tool writing the file while a poll reads it: the poll sees it cut anywhere."""
    _, blob = TRUNCATIONS[n]
    root = tmp_path / "logs"
    path, key = write_case(root, blob, "000D3A0000AA")
    svc, sink = _service(root, tmp_path)
    svc.run(once=True)
    whole = Blob(blob.head, blob.items, blob.tail)
    path.write_bytes(whole.bytes())
    svc.run(once=True)
    got = sink.event_ids
    assert len(got) == len(set(got)), "events delivered twice"
    assert set(got) == expected_ids(whole, key)


def _mixed_blob(rng: random.Random, spec: BlobSpec) -> Blob:
    """Many kinds of damage in one blob, far enough apart that each hits its own record."""
    b = clean_blob(spec)
    b = insert_between(b, rng, GARBAGE["invalid utf-8"](rng))
    b = insert_between(b, rng, GARBAGE["deep arrays"](rng))
    b = insert_between(b, rng, GARBAGE["nul bytes"](rng))
    b = insert_inside(b, rng, GARBAGE["huge number"](rng))
    b = reshape(b, rng, "flowTuples a number")
    b = reshape(b, rng, "tuples of other types")
    return flip_bytes(b, rng, 2)


def _convert_cli(path: Path, fmt: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "forwarder", "convert", str(path), "--format", fmt],
        capture_output=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _id_of(fmt: str, doc: dict[str, object]) -> str:
    if fmt == "ecs":
        return str(doc["event"]["id"])  # type: ignore[index]
    if fmt == "ocsf":
        return str(doc["metadata"]["uid"])  # type: ignore[index]
    return str(doc["extension"]["externalId"])  # type: ignore[index]


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_cli_on_a_damaged_blob_exits_0_with_counts_and_every_good_event(fmt: str, tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    blob = _mixed_blob(rng, BlobSpec(minutes=30, tuples_per_minute=6, seed=7))
    path = tmp_path / "PT1H.json"
    path.write_bytes(blob.bytes())
    code, out, err = _convert_cli(path, fmt)
    assert "Traceback" not in err, err
    assert code == 0, err
    docs = validate_lines(fmt, out.splitlines())
    assert expected_ids(blob, str(path)) <= {_id_of(fmt, d) for d in docs}
    assert "Skipped bad input: malformed record" in err and f"source={path} offset=" in err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith(f"Converted {path}:") and "skipped=" in summary and "skipped=0" not in summary


@pytest.mark.parametrize(
    "content,why",
    [
        (b"", "the input is empty"),
        (b"<html><body>403 Forbidden</body></html>", 'not {"records":['),
        (b"\x00" * 5000, 'not {"records":['),
        (b'{"hello":"world"}', "no flow-log record could be parsed"),
    ],
    ids=["empty", "html", "nul bytes", "foreign json"],
)
def test_convert_cli_refuses_what_is_not_a_flow_log_with_exit_1(content: bytes, why: str, tmp_path: Path) -> None:
    path = tmp_path / "PT1H.json"
    path.write_bytes(content)
    code, out, err = _convert_cli(path, "ecs")
    assert code == 1 and out == "" and "Traceback" not in err
    assert f"nsg-forwarder convert: {path} is not a flow log:" in err and why in err


def test_convert_cli_on_10_mb_of_damage_stays_small_and_quick(tmp_path: Path) -> None:
    """A 10 MB blob whose big records are cut, nested and stuffed: bounded time and memory."""
    rng = random.Random(SEED + 3)
    blob = clean_blob(BlobSpec(minutes=4, tuples_per_minute=26_000, seed=3))
    blob = insert_between(blob, rng, b'"' + b"z" * (3 << 20))  # an unterminated 3 MB string
    blob = insert_inside(blob, rng, b"[" * 200_000)
    blob.tail = b"]"  # the tail cut short: the last big record has no marker after it
    path = tmp_path / "PT1H.json"
    path.write_bytes(blob.bytes())
    assert path.stat().st_size > 10e6
    cmd = [sys.executable, "-m", "forwarder", "convert", str(path), "--format", "ecs", "--output", str(tmp_path / "o")]
    _, peak_mb, err, code = run_measured(cmd, timeout=25)
    assert code == 0 and "Traceback" not in err, err
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"
    got = {json.loads(line)["event"]["id"] for line in (tmp_path / "o").read_text().splitlines()}
    assert expected_ids(blob, str(path)) <= got


def test_run_once_over_a_folder_of_damaged_blobs_delivers_every_good_event(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    want: set[str] = set()
    for n, (_, blob) in enumerate(CASES):
        _, key = write_case(root, blob, f"000D3A{n:06X}")
        tail_ok = blob.cut is None and blob.tail == TAIL and not blob.tail_damaged
        if not blob.head_damaged:
            want |= expected_ids(blob, key, whole=tail_ok)
    config = directory_config(tmp_path, logs=root)
    proc = subprocess.run(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config), "--once"],
        capture_output=True,
        timeout=30,
    )
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    assert "Could not read blob" not in err
    assert "Skipped bad input" in err and "source=local/insights-logs-" in err
    lines = [line for f in sorted((tmp_path / "out").glob("flows*")) for line in f.read_text().splitlines()]
    docs = validate_lines("ecs", lines)
    ids = [d["event"]["id"] for d in docs]
    assert len(ids) == len(set(ids))
    assert want <= set(ids), f"{len(want - set(ids))} events of undamaged records lost"


def test_convert_cli_reads_a_blob_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    blob = clean_blob(BlobSpec(minutes=3, tuples_per_minute=3))
    path = tmp_path / "PT1H.json"
    path.write_bytes(b"\xef\xbb\xbf" + blob.bytes())
    code, out, err = _convert_cli(path, "ecs")
    assert code == 0 and "skipped=0" in err, err
    docs = validate_lines("ecs", out.splitlines())
    assert {d["event"]["id"] for d in docs} == expected_ids(with_bom(blob), str(path))


def test_a_big_last_record_without_a_marker_after_it_is_not_parsed_over_and_over() -> None:
    """The last record before the tail has no ',{"time":' after it: waiting for it must cost a few parses of
    it, not one per read (that made a 40 MB last record take 10 s, and grow with the square of its size)."""
    data = b"".join(data_blocks(BlobSpec(minutes=2, tuples_per_minute=40_000, seed=5)))
    issues = IssueLog()
    decoder = RecordDecoder("s", 12, issues, blind_parse_bytes=64 << 10)
    step = 8 << 10
    began = time.monotonic()
    records = [r for i in range(0, len(data), step) for r in decoder.feed(data[i : i + step])]
    records += list(decoder.feed(b"", final=True))
    assert time.monotonic() - began < 2
    assert len(records) == 2 and issues.total == 0
