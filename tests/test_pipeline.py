"""The concurrent pipeline's promises, one by one: batches that carry many blobs, acknowledgements that
advance each blob in order, a byte cap that pauses reading behind a blocked sink, one storage request
per changed blob, and the warning when polls fall behind."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forwarder.checkpoints.store import BlobCheckpoint, CheckpointStore
from forwarder.ops.metrics import HealthServer
from forwarder.pipeline.acks import AckTracker, Ticket
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.service import Service
from forwarder.samples.generator import BlobSpec
from forwarder.sinks import splunk_hec
from forwarder.sinks.base import Batch
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sources.azure_blob import from_config as azure_source
from forwarder.sources.directory import DirectorySource
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import Azurite, azurite  # noqa: F401  (a fixture)
from tests.support.collect import CollectingSink
from tests.support.events import validate_lines
from tests.support.http_receivers import HecReceiver, iter_json_objects
from tests.support.http_sinks import fast_retry
from tests.support.local_writer import LocalWriter
from tests.support.net import free_port

TOKEN = "00000000-1111-2222-3333-444444444444"


def nics(root: Path, count: int, minutes: int, tuples: int) -> list[LocalWriter]:
    writers = [
        LocalWriter(root, BlobSpec(name=f"NSG-{i // 4}", mac=f"000D3A{i:06X}", tuples_per_minute=tuples, seed=i))
        for i in range(count)
    ]
    for w in writers:
        for _ in range(minutes):
            w.append_minute()
    return writers


def test_one_request_carries_the_events_of_many_blobs(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    writers = nics(root, 12, minutes=1, tuples=5)
    store = CheckpointStore.load(tmp_path / "cp.json")
    with HecReceiver(TOKEN) as hec:
        sink = splunk_hec.from_config(
            {"type": "splunk_hec", "url": hec.url, "token": TOKEN}, "hec", DeadLetter(None), fast_retry()
        )
        sink.open()
        svc = Service(DirectorySource(root), store, Delivery([sink]), concurrency=4)
        svc.poll()
        posts = hec.requests_to("/services/collector/event")
        envelopes = [doc for p in posts for doc, _ in iter_json_objects(p.body.decode())]
        sink.close()
    sources_per_request = [{doc["source"] for doc, _ in iter_json_objects(p.body.decode())} for p in posts]
    assert len(envelopes) == 12 * 5 and len({e["event"]["event"]["id"] for e in envelopes}) == 60
    assert len(posts) < len(writers), "events of several NICs share a request"
    assert max(map(len, sources_per_request)) > 1
    for w in writers:  # every blob checkpointed at the end of its data
        cp = store.get(f"local/{w.spec.container}/{w.spec.blob_name}")
        assert cp is not None and cp.offset == w.path.stat().st_size - 2 and cp.etag
    validate_lines("ecs", [json.dumps(e["event"]) for e in envelopes])


def test_a_blob_checkpoint_advances_only_in_order_once_every_sink_confirmed(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp.json")
    done: list[int] = []
    tracker = AckTracker(store, lambda t: done.append(t.checkpoint.offset if t.checkpoint else -1))

    def ticket(offset: int) -> Ticket:
        return tracker.add("blob-a", BlobCheckpoint(offset=offset, head=12), 10, 0, 2)

    first, second, third = ticket(100), ticket(200), ticket(300)
    tracker.ack(second)
    tracker.ack(second)  # both sinks confirmed the second chunk, but not the first
    assert store.get("blob-a") is None and done == []
    tracker.ack(first)
    assert store.get("blob-a") is None  # one sink of two
    tracker.ack(first)
    cp = store.get("blob-a")
    assert cp is not None and cp.offset == 200 and done == [100, 200]
    tracker.fail(third, "sink x: connection reset")
    assert tracker.pending == 0 and tracker.blob_failed("blob-a")
    late = tracker.add("blob-a", BlobCheckpoint(offset=400, head=12), 10, 0, 1)
    assert late.failed, "a blob that failed stays failed for the rest of the poll"
    tracker.ack(late)
    cp = store.get("blob-a")
    assert cp is not None and cp.offset == 200
    tracker.new_poll()
    assert not tracker.blob_failed("blob-a")


class GateSink:
    """A sink that takes its first batch, then holds every send until the gate opens."""

    name = "gate"
    format = "ecs"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.events = 0

    def open(self) -> None: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...

    def send(self, batch: Batch) -> None:
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        self.events += len(batch.lines)


def test_a_blocked_sink_pauses_reading_within_the_byte_cap(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    writers = nics(root, 24, minutes=5, tuples=40)
    total = sum(w.path.stat().st_size for w in writers)
    sink = GateSink()
    cap = 2 << 20
    store = CheckpointStore.load(tmp_path / "cp.json")
    svc = Service(DirectorySource(root), store, Delivery([sink]), concurrency=4, max_bytes_in_flight=cap)  # type: ignore[list-item]
    poller = threading.Thread(target=svc.poll, daemon=True)
    poller.start()
    assert sink.entered.wait(30)
    deadline = threading.Event()
    while svc.budget.waiting == 0 and poller.is_alive():
        deadline.wait(0.02)  # until a reader is paused by the cap
    assert svc.budget.waiting > 0, "readers went on although nothing was confirmed"
    assert svc.reader.bytes_read < total / 2
    assert svc.budget.peak <= 2 * cap
    sink.gate.set()
    poller.join(60)
    assert not poller.is_alive()
    assert sink.events == 24 * 5 * 40
    assert svc.budget.used == 0
    assert len(store.items()) == 24


@pytest.mark.azurite
def test_a_changed_blob_costs_one_storage_request_per_poll(azurite: Azurite) -> None:  # noqa: F811
    hour = datetime(2026, 11, 25, 10, tzinfo=UTC)
    cc = azurite.new_container()
    writer = AzureWriter(cc)
    specs = [BlobSpec(name="WEB-NSG", mac=f"000D3A00000{i}", hour=hour, minutes=6, tuples_per_minute=5, seed=i)
             for i in range(4)]  # fmt: skip
    for spec in specs:
        writer.append_minute(spec)
    source = azure_source(
        {"type": "azure_blob", "connection_string": azurite.connection_string, "container": cc.container_name},
        now=lambda: hour + timedelta(minutes=40),
    )
    delivered: list[int] = []

    class Counter:
        name = "count"
        format = "cef"

        def open(self) -> None: ...
        def reopen(self) -> None: ...
        def close(self) -> None: ...

        def send(self, batch: Batch) -> None:
            delivered.append(len(batch.lines))

    svc = Service(source, CheckpointStore(Path("/nonexistent/cp.json")), Delivery([Counter()]))  # type: ignore[list-item]
    svc._save = lambda: None  # type: ignore[method-assign]  # nothing to persist here
    try:
        svc.poll()  # first sight: the head comes with the first data, one request per blob
        svc.poll()  # steady state, nothing changed: the hour's listing only
        before = source.requests
        svc.poll()
        assert source.requests - before == 1
        for minute in range(1, 5):
            changed = specs[: 1 + minute % 4]
            for spec in changed:
                writer.append_minute(spec)
            before = source.requests
            svc.poll()
            assert source.requests - before == 1 + len(changed), "one listing, one ranged GET per changed blob"
        assert sum(delivered) == sum(5 * writer.blocks_committed[s.blob_name] for s in specs)
    finally:
        source.close()


def test_readyz_says_when_polls_fall_behind_and_what_to_do(tmp_path: Path) -> None:
    svc = Service(DirectorySource(tmp_path), CheckpointStore(tmp_path / "cp.json"), Delivery([]))
    health = HealthServer(svc, f"127.0.0.1:{free_port()}", stale_after=60)
    health.start()
    try:
        svc.stats.polls = 3
        svc.stats.last_poll_seconds = 20
        assert health.ready() == (True, "ok")
        svc.stats.last_poll_seconds = 95
        ok, why = health.ready()
        assert not ok and "falling behind" in why and "concurrency" in why and "shards" in why
    finally:
        health.stop()


def test_a_full_byte_cap_makes_the_sinks_send_at_once_instead_of_lingering(tmp_path: Path) -> None:
    """Readers waiting for the sinks to confirm: nothing more can come, so a lane waiting for a fuller batch
    (linger) would only stall the pipeline for its linger on every chunk."""
    root = tmp_path / "flowlogs"
    nics(root, 1, minutes=30, tuples=200)
    sink = CollectingSink()
    svc = Service(
        DirectorySource(root), CheckpointStore(tmp_path / "cp.json"), Delivery([sink], linger=30.0),  # type: ignore[list-item]
        chunk_bytes=65536, max_bytes_in_flight=1 << 20,
    )  # fmt: skip
    done = threading.Event()
    threading.Thread(target=lambda: (svc.poll(), done.set()), daemon=True).start()
    assert done.wait(25), "the pipeline waited for the linger with the byte cap full"
    assert len(sink.event_ids) == 30 * 200
