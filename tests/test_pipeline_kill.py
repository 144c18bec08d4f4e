"""The concurrent pipeline, killed with SIGKILL while many blobs are in flight to several sinks, one of
them slow: nothing is lost in any sink, and what is sent again is only what had not been confirmed by
every sink when the process died (events before a blob's saved checkpoint never come twice)."""

from __future__ import annotations

import io
import random
import time
from collections import Counter
from pathlib import Path

from forwarder.checkpoints.store import CheckpointStore
from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter
from forwarder.samples.generator import BlobSpec
from tests.support.events import validate_lines
from tests.support.http_receivers import HecReceiver, event_id_of
from tests.support.local_writer import LocalWriter
from tests.support.process import kill9, read_ids, start_forwarder

TOKEN = "00000000-1111-2222-3333-444444444444"


def saved_offsets(checkpoints: Path) -> dict[str, int]:
    """blob key -> checkpoint offset, as the file and its journal on disk say (what a restart resumes from)."""
    return {key: cp.offset for key, cp in CheckpointStore.load(checkpoints).items()}


def test_sigkill_with_many_blobs_in_flight_and_a_slow_sink_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    out = tmp_path / "out" / "flows.ndjson"
    checkpoints = tmp_path / "state" / "checkpoints.json"
    tuples_per_minute = 12
    writers = [
        LocalWriter(
            root,
            BlobSpec(
                kind="vnet" if i % 4 == 3 else "nsg",
                version=4 if i % 4 == 3 else (1 if i % 4 == 2 else 2),
                name=f"NSG-{i // 5}",
                mac=f"000D3A{i:06X}",
                tuples_per_minute=tuples_per_minute,
                seed=i,
            ),
        )
        for i in range(24)
    ]
    with HecReceiver(TOKEN, latency=0.05) as hec:
        config = tmp_path / "forwarder.toml"
        config.write_text(f"""
[source]
type = "directory"
path = "{root}"
poll_interval = 0.1

[checkpoint]
path = "{checkpoints}"

[reader]
concurrency = 8
chunk_bytes = 65536

[[sink]]
type = "file"
format = "ecs"
path = "{out}"

[[sink]]
name = "slow-hec"
type = "splunk_hec"
format = "ecs"
url = "{hec.url}"
token = "{TOKEN}"
batch_max_events = 50
max_in_flight = 2
""")
        rng = random.Random(11)
        kills = 0
        saved_at_kills: list[dict[str, int]] = []
        proc = start_forwarder(config)
        try:
            for minute in range(30):
                for w in writers:
                    w.append_minute()
                time.sleep(rng.uniform(0.0, 0.3))
                if minute % 3 == 2:
                    kill9(proc)
                    kills += 1
                    saved_at_kills.append(saved_offsets(checkpoints))
                    proc = start_forwarder(config)
                    time.sleep(rng.uniform(0.3, 1.2))  # sometimes mid-import, sometimes mid-delivery
        finally:
            kill9(proc)
        kills += 1
        saved_at_kills.append(saved_offsets(checkpoints))
        drain = start_forwarder(config, "--once")
        _, err = drain.communicate(timeout=120)
        assert drain.returncode == 0, err.decode()
        hec_ids = [event_id_of(e["event"]) for e in hec.events]

    expected: dict[str, tuple[str, int]] = {}  # event id -> (blob key, record offset)
    for w in writers:
        key = f"local/{w.spec.container}/{w.spec.blob_name}"
        conv = FileConverter(io.BytesIO(w.path.read_bytes()), key, IssueLog())
        for batch in conv.events():
            for e in batch:
                expected[e.event_id] = (key, e.ctx.record_offset)
    assert len(expected) == len(writers) * 30 * tuples_per_minute

    for sink, got in (("file", read_ids(out)), ("slow-hec", hec_ids)):
        counts = Counter(got)
        missing = set(expected) - set(counts)
        assert not missing, f"{sink}: {len(missing)} events lost after {kills} kills"
        assert set(counts) == set(expected), f"{sink}: events that no blob holds"
        for event_id, n in counts.items():
            if n == 1:
                continue
            key, offset = expected[event_id]
            # Sent again only if, at some kill, its record was not yet behind the blob's saved checkpoint.
            assert any(offset >= saved.get(key, 0) for saved in saved_at_kills), (
                f"{sink}: {event_id} was confirmed and checkpointed, yet sent {n} times"
            )
        print(f"{sink}: kills={kills} events={len(expected)} duplicates={sum(n - 1 for n in counts.values())}")
    validate_lines("ecs", out.read_text().splitlines())
