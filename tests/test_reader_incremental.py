"""The checkpointed reader over a local folder: growth, rewrites, deletion, egress, start positions."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from forwarder.checkpoints.store import CheckpointError, CheckpointStore
from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter
from forwarder.pipeline.acks import Ticket
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.service import Service
from forwarder.samples.generator import BlobSpec, write_blob
from forwarder.sources.directory import DirectorySource
from tests.support.collect import CollectingSink
from tests.support.local_writer import LocalWriter


def expected_ids(path: Path, key: str) -> list[str]:
    conv = FileConverter(io.BytesIO(path.read_bytes()), key, IssueLog())
    return [e.event_id for batch in conv.events() for e in batch]


def make_service(
    root: Path, tmp: Path, chunk_bytes: int = 4 << 20, start: str = "earliest"
) -> tuple[Service, CollectingSink]:
    sink = CollectingSink()
    store = CheckpointStore.load(tmp / "state" / "checkpoints.json")
    svc = Service(DirectorySource(root), store, Delivery([sink]), start=start, chunk_bytes=chunk_bytes)  # type: ignore[list-item]
    return svc, sink


def test_growing_blob_is_delivered_exactly_once_with_little_egress(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    writers = [
        LocalWriter(root, BlobSpec(name="NSG-A", mac="000D3A000001", tuples_per_minute=30)),
        LocalWriter(root, BlobSpec(kind="vnet", version=4, name="FL-1", mac="000D3A000002", tuples_per_minute=30)),
    ]
    svc, sink = make_service(root, tmp_path, chunk_bytes=1 << 16)
    for _ in range(60):
        for w in writers:
            w.append_minute()
        svc.poll()
    svc.poll()
    want = []
    for w in writers:
        key = f"local/{w.spec.container}/{w.spec.blob_name}"
        want += expected_ids(w.path, key)
    assert len(want) == 2 * 60 * 30
    assert sorted(sink.event_ids) == sorted(want)  # every tuple, once
    data = sum(w.data_bytes for w in writers)
    egress = svc.reader.bytes_read / data
    print(f"egress ratio over 60 commits: {egress:.4f}")
    assert egress <= 1.05


def test_restart_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    w = LocalWriter(root, BlobSpec(tuples_per_minute=10))
    for _ in range(5):
        w.append_minute()
    svc, sink = make_service(root, tmp_path)
    svc.run(once=True)
    assert len(sink.event_ids) == 50
    for _ in range(3):
        w.append_minute()
    svc2, sink2 = make_service(root, tmp_path)
    svc2.run(once=True)
    assert len(sink2.event_ids) == 30
    assert not set(sink.event_ids) & set(sink2.event_ids)


def test_unconfirmed_chunk_is_not_checkpointed(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    w = LocalWriter(root, BlobSpec(tuples_per_minute=10))
    for _ in range(4):
        w.append_minute()
    svc, sink = make_service(root, tmp_path)
    sink.fail_next = 1
    svc.poll()  # the sink failed: reported, nothing checkpointed
    assert sink.event_ids == []
    svc.poll()
    assert len(sink.event_ids) == 40


def test_a_rewritten_shorter_blob_is_read_again_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "flowlogs"
    spec = BlobSpec(tuples_per_minute=10, minutes=6)
    path = write_blob(root, spec)
    svc, sink = make_service(root, tmp_path)
    svc.poll()
    assert len(sink.event_ids) == 60
    write_blob(root, BlobSpec(tuples_per_minute=10, minutes=2, seed=7))
    with caplog.at_level(logging.WARNING):
        svc.poll()
    assert "rewritten" in caplog.text and "blob=local/" in caplog.text
    assert len(sink.event_ids) == 80
    assert path.stat().st_size < 60 * 10 * 80


def test_a_rewrite_that_keeps_the_size_is_detected_by_the_fingerprint(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    w = LocalWriter(root, BlobSpec(tuples_per_minute=5))
    for _ in range(3):
        w.append_minute()
    svc, sink = make_service(root, tmp_path)
    svc.poll()
    data = bytearray(w.path.read_bytes())
    assert data[21:25] == b"2026"
    data[21:25] = b"2025"  # same size, but the first record is another one: a rewrite
    w.path.write_bytes(bytes(data))
    w.append_minute()
    svc.poll()
    assert len(sink.event_ids) == 15 + 20


def test_a_rewrite_with_records_of_the_same_lengths_is_caught_between_first_record_checks(tmp_path: Path) -> None:
    """On Azure the first record is checked once in ten minutes (a request), so the bytes before the checkpoint
    must tell a rewrite by themselves, even one whose records end where the old ones did and whose last tuple
    differs only in its time (every record ends in the same brackets, and VNet tuples often in the same flags)."""
    root = tmp_path / "flowlogs"
    w = LocalWriter(root, BlobSpec(tuples_per_minute=5))
    for _ in range(3):
        w.append_minute()
    svc, sink = make_service(root, tmp_path)
    svc.reader.verify_start_every = 600.0  # as for Azure, where a first-record check costs a request
    svc.poll()
    assert len(sink.event_ids) == 15
    old = w.path.read_bytes()
    # The same records an hour earlier: every time one hour less, every length the same.
    new = re.sub(rb"T1(\d):", lambda m: b"T0" + m.group(1) + b":", old)
    new = re.sub(rb'"(\d{10}),', lambda m: b'"' + str(int(m.group(1)) - 3600).encode() + b",", new)
    assert len(new) == len(old) and new[:-2][-40:] == old[:-2][-40:] and new[:-2][-80:] != old[:-2][-80:]
    w.path.write_bytes(new)
    svc.poll()
    assert len(sink.event_ids) == 30, "the rewritten blob is read again from its start"
    assert len(set(sink.event_ids)) == 30


def test_a_deleted_blob_is_reported_and_forgotten(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "flowlogs"
    path = write_blob(root, BlobSpec(tuples_per_minute=3, minutes=2))
    other = write_blob(root, BlobSpec(tuples_per_minute=3, minutes=2, mac="000D3A999999"))
    svc, sink = make_service(root, tmp_path)

    real_read = svc.source.read

    def read_after_deletion(name: str, start: int, end: int) -> bytes:
        if name.endswith(path.relative_to(root).as_posix()) and path.exists():
            path.unlink()
        return real_read(name, start, end)

    svc.source.read = read_after_deletion  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        svc.poll()
    assert "deleted" in caplog.text
    assert len(sink.event_ids) == 6  # the other blob is still read
    assert other.exists()


def test_a_file_that_is_not_a_flow_log_is_reported_once_and_does_not_stop_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    good = write_blob(root, BlobSpec(tuples_per_minute=3, minutes=2))
    bad = good.parent.parent / "macAddress=000D3AFFFFFF" / "PT1H.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("<html>not json</html>")
    svc, sink = make_service(root, tmp_path)
    svc.poll()
    svc.poll()
    assert len(sink.event_ids) == 6
    assert svc.issues.counts == {"not a flow log blob": 1}


def test_start_latest_skips_existing_data_and_reads_what_comes_after(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    w = LocalWriter(root, BlobSpec(tuples_per_minute=4))
    for _ in range(5):
        w.append_minute()
    svc, sink = make_service(root, tmp_path, start="latest")
    svc.poll()
    assert sink.event_ids == []
    w.append_minute()
    svc.poll()
    assert len(sink.event_ids) == 4


def test_a_corrupt_checkpoint_file_stops_with_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_text('{"version": 1, "blobs": {"x": {"offset": ')
    with pytest.raises(CheckpointError) as err:
        CheckpointStore.load(path)
    assert str(path) in str(err.value) and "checkpoints reset" in str(err.value)


def test_checkpoint_file_is_replaced_atomically(tmp_path: Path) -> None:
    from forwarder.checkpoints.store import BlobCheckpoint

    store = CheckpointStore(tmp_path / "cp.json")
    store.put("a/b", BlobCheckpoint(offset=120, head=12))
    assert store.save()
    assert not store.save()  # nothing changed: no write
    again = CheckpointStore.load(tmp_path / "cp.json")
    cp = again.get("a/b")
    assert cp is not None and cp.offset == 120
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]  # no temp file left behind


def test_a_blob_first_seen_with_only_head_and_tail_is_not_taken_for_a_rewrite(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    w = LocalWriter(root, BlobSpec(tuples_per_minute=6))
    svc, sink = make_service(root, tmp_path)
    svc.poll()  # '{"records":[]}' only
    for _ in range(4):
        w.append_minute()
        svc.poll()
    assert len(sink.event_ids) == 24
    assert len(set(sink.event_ids)) == 24


def test_a_record_bigger_than_a_batch_is_delivered_in_parts_and_checkpointed_at_its_end(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    path = write_blob(root, BlobSpec(tuples_per_minute=50, minutes=2))
    svc, sink = make_service(root, tmp_path, chunk_bytes=1 << 16)
    svc.reader.max_events = 16
    saved: list[int | None] = []
    sizes: list[int] = []

    def on_chunk(chunk: Ticket) -> None:
        saved.append(chunk.checkpoint.offset if chunk.checkpoint else None)
        sizes.append(chunk.events)

    svc.on_chunk = on_chunk
    svc.poll()
    assert len(sink.event_ids) == 100 and len(set(sink.event_ids)) == 100
    # Chunks are bounded by max_events; the sink's batches join chunks up to its own batch limits.
    assert max(sizes) <= 16
    assert None in saved  # parts of a record do not move the checkpoint
    assert saved[-1] == path.stat().st_size - 2
    key = f"local/{BlobSpec().container}/{BlobSpec().blob_name}"
    assert sorted(sink.event_ids) == sorted(expected_ids(path, key))


def test_old_hours_are_forgotten_from_the_checkpoint_file_but_not_read_again(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    write_blob(root, BlobSpec(tuples_per_minute=3, minutes=2))  # an hour long past
    svc, sink = make_service(root, tmp_path)
    svc.retain_seconds = 3600.0
    svc.poll()
    assert len(sink.event_ids) == 6
    saved = CheckpointStore.load(tmp_path / "state" / "checkpoints.json")  # the file and its journal
    assert len(saved) == 0 and saved.horizon > 0  # the file stays small
    svc.poll()
    again, sink2 = make_service(root, tmp_path)  # a restart reads the horizon back
    again.poll()
    assert len(sink.event_ids) == 6 and sink2.event_ids == []
    again.backfill(list(again.source.discover()), lambda blob, size: None)
    assert len(sink2.event_ids) == 6  # an explicit backfill reads the forgotten hour again


def test_a_gzip_compressed_blob_is_reported_as_such_once_and_the_rest_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import gzip

    root = tmp_path / "flowlogs"
    good = write_blob(root, BlobSpec(tuples_per_minute=3, minutes=2))
    packed = good.parent.parent / "macAddress=000D3AEEEEEE" / "PT1H.json"
    packed.parent.mkdir(parents=True)
    packed.write_bytes(gzip.compress(good.read_bytes()))
    svc, sink = make_service(root, tmp_path)
    with caplog.at_level(logging.WARNING):
        svc.poll()
        svc.poll()
    assert len(sink.event_ids) == 6
    assert svc.issues.counts == {"not a flow log blob": 1}
    assert "gzip-compressed" in caplog.text and "macAddress=000D3AEEEEEE" in caplog.text
