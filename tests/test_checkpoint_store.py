"""The checkpoint file and its journal: what a save writes, what a crash leaves, what a restart reads, and
how the file stays small over the history of thousands of NICs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forwarder.checkpoints.store import JOURNAL_MIN, SETTLE_AFTER, BlobCheckpoint, CheckpointCorrupt, CheckpointStore
from forwarder.sources import blobpath

HOUR = 3600.0


def key(nic: int, hour: float) -> str:
    from datetime import UTC, datetime

    h = datetime.fromtimestamp(hour, UTC)
    return (
        "acct/insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/"
        f"MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG/y={h.year}/m={h.month:02d}/d={h.day:02d}/h={h.hour:02d}/"
        f"m=00/macAddress=000D3A{nic:06X}/PT1H.json"
    )


def hour_of(k: str) -> float | None:
    hour = blobpath.hour_in_key(k)
    return hour.timestamp() if hour else None


def complete(offset: int) -> BlobCheckpoint:
    return BlobCheckpoint(offset=offset, etag=f"0x{offset:X}", size=offset + 2, head=12)


def test_saves_append_only_what_changed_and_a_restart_reads_the_file_and_its_journal(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path)
    hour = 1_796_000_000 // 3600 * 3600.0
    for nic in range(100):
        store.put(key(nic, hour), BlobCheckpoint(offset=12, head=12))
    assert store.save()
    file_size = path.stat().st_size
    store.put(key(7, hour), BlobCheckpoint(offset=500, head=12))
    store.remove(key(8, hour))
    assert store.save()
    assert path.stat().st_size == file_size, "one change does not rewrite the whole file"
    journal = store.journal_path.read_bytes().splitlines()
    assert len(journal) == 2 and sum(map(len, journal)) < file_size / 20
    assert not store.save(), "nothing changed: nothing written"
    again = CheckpointStore.load(path)
    cp = again.get(key(7, hour))
    assert cp is not None and cp.offset == 500
    assert again.get(key(8, hour)) is None and len(again) == 99


def test_a_journal_line_cut_by_a_crash_is_dropped_and_cut_off_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path)
    hour = 1_796_000_000 // 3600 * 3600.0
    store.put(key(1, hour), BlobCheckpoint(offset=100, head=12))
    store.save()
    store.put(key(1, hour), BlobCheckpoint(offset=200, head=12))
    store.save()
    with store.journal_path.open("ab") as f:
        f.write(b'{"g": 1, "k": "' + key(1, hour).encode() + b'", "cp": {"offset": 3')  # SIGKILL mid-append
    cp = CheckpointStore.load(path).get(key(1, hour))
    assert cp is not None and cp.offset == 200, "the last complete save holds"
    reopened = CheckpointStore.open_exclusive(path)
    assert reopened.journal_path.read_bytes().endswith(b"\n"), "the torn line is cut before the next append"
    reopened.put(key(2, hour), BlobCheckpoint(offset=50, head=12))
    reopened.save()
    assert {k for k, _ in CheckpointStore.load(path).items()} == {key(1, hour), key(2, hour)}


def test_a_journal_damaged_in_the_middle_stops_with_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path)
    store.put("a/b", BlobCheckpoint(offset=1))
    store.save()
    store.put("a/b", BlobCheckpoint(offset=2))
    store.save()
    store.journal_path.write_bytes(b"garbage\n" + store.journal_path.read_bytes())
    with pytest.raises(CheckpointCorrupt, match=r"journal .* is corrupt at line 1.*checkpoints reset"):
        CheckpointStore.load(path)


def test_the_journal_is_folded_into_the_file_once_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path)
    hour = 1_796_000_000 // 3600 * 3600.0
    store.put(key(0, hour), BlobCheckpoint(offset=12, head=12))
    store.save()
    generation = store.generation
    offset = 12
    while store.generation == generation:
        offset += 1
        store.put(key(0, hour), BlobCheckpoint(offset=offset, head=12))
        store.save()
        assert store.journal_path.stat().st_size <= JOURNAL_MIN + 4096
    assert store.journal_path.stat().st_size == 0
    doc = json.loads(path.read_text())
    assert doc["generation"] == store.generation and doc["blobs"][key(0, hour)]["offset"] == offset
    # Lines of an older generation left behind by a crash after the compaction are not replayed.
    with store.journal_path.open("ab") as f:
        f.write(json.dumps({"g": generation, "k": key(0, hour), "cp": {"offset": 13}}).encode() + b"\n")
    cp = CheckpointStore.load(path).get(key(0, hour))
    assert cp is not None and cp.offset == offset


def test_settled_hours_keep_one_record_each_and_count_their_unchanged_blobs_as_delivered(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    now = 1_796_000_000.0
    store = CheckpointStore(path)
    old, live = now // 3600 * 3600 - 5 * HOUR, now // 3600 * 3600
    for nic in range(1000):
        for hour in (old, old + HOUR, live):
            cp = complete(1000 + nic)
            store.put(key(nic, hour), cp)
            cp.updated = now - 3 * HOUR if hour != live else now  # the live hour's blobs just changed
    store.put(key(5000, old + HOUR), BlobCheckpoint(offset=40, head=12, updated=now - 3 * HOUR))  # not read to the end
    store.prune(before=now - 14 * 86400, hour_of=hour_of, now=now)
    assert len(store) == 1000 + 1001, "the old hour settled; the next one has an open blob; the live one is live"
    assert list(store.settled) == [old]
    assert store.settled_done(old, modified=now - 4 * HOUR)
    assert not store.settled_done(old, modified=now + 1), "changed after it settled: read again"
    assert not store.settled_done(old + HOUR, modified=now - 4 * HOUR)
    store.save()
    again = CheckpointStore.load(path)
    assert again.settled == store.settled and len(again) == 2001
    assert os.path.getsize(path) < 2001 * 700
    # Past the horizon, the settled hour is forgotten: the horizon itself says it is done.
    again.prune(before=old + 2 * HOUR, hour_of=hour_of, now=now)
    assert old not in again.settled and again.before_horizon(old)


def test_a_version_1_file_is_read_and_rewritten_as_version_2(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    path.write_text(json.dumps({"version": 1, "horizon": 5.0, "blobs": {"a/b": {"offset": 77, "head": 12}}}))
    store = CheckpointStore.load(path)
    cp = store.get("a/b")
    assert cp is not None and cp.offset == 77 and store.horizon == 5.0
    assert store.save()
    assert json.loads(path.read_text())["version"] == 2


def test_settling_waits_for_hours_older_than_the_margin(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp.json")
    now = 1_796_000_000.0
    hour = now // 3600 * 3600 - HOUR  # ended less than SETTLE_AFTER ago
    cp = complete(100)
    store.put(key(1, hour), cp)
    cp.updated = now - 10 * HOUR
    store.prune(before=0, hour_of=hour_of, now=now)
    assert len(store) == 1 and not store.settled
    store.prune(before=0, hour_of=hour_of, now=hour + HOUR + SETTLE_AFTER)
    assert len(store) == 0 and hour in store.settled
