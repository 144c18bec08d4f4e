"""A real forwarder process, killed with SIGKILL over and over while Azure-like writers grow the blobs:
nothing is lost, and the only duplicates are chunks that had not been confirmed."""

from __future__ import annotations

import io
import random
import time
from collections import Counter
from pathlib import Path

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter
from forwarder.samples.generator import BlobSpec
from tests.support.events import validate_lines
from tests.support.local_writer import LocalWriter
from tests.support.process import directory_config, kill9, read_ids, start_forwarder


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "flowlogs"
    out = tmp_path / "out" / "flows.ndjson"
    config = directory_config(tmp_path, poll=0.1, logs=root)
    tuples_per_minute = 40
    writers = [
        LocalWriter(root, BlobSpec(name="WEB-NSG", mac="000D3A000001", tuples_per_minute=tuples_per_minute)),
        LocalWriter(root, BlobSpec(name="DB-NSG", mac="000D3A000002", version=1, tuples_per_minute=tuples_per_minute)),
        LocalWriter(
            root, BlobSpec(kind="vnet", version=4, name="FL", mac="000D3A000003", tuples_per_minute=tuples_per_minute)
        ),
    ]
    rng = random.Random(7)
    kills = 0
    proc = start_forwarder(config)
    try:
        for _minute in range(60):
            for w in writers:
                w.append_minute()
            time.sleep(rng.uniform(0.0, 0.25))
            if _minute % 3 == 2:
                kill9(proc)
                kills += 1
                proc = start_forwarder(config)
                time.sleep(rng.uniform(0.2, 0.8))  # sometimes mid-import, sometimes mid-delivery
    finally:
        kill9(proc)
    assert kills >= 20
    drain = start_forwarder(config, "--once")
    _, err = drain.communicate(timeout=60)
    assert drain.returncode == 0, err.decode()

    expected: list[str] = []
    for w in writers:
        key = f"local/{w.spec.container}/{w.spec.blob_name}"
        conv = FileConverter(io.BytesIO(w.path.read_bytes()), key, IssueLog())
        expected += [e.event_id for batch in conv.events() for e in batch]
    got = read_ids(out)
    counts = Counter(got)
    missing = set(expected) - set(counts)
    assert not missing, f"{len(missing)} events lost after {kills} kills"
    assert set(counts) == set(expected)
    duplicates = sum(n - 1 for n in counts.values())
    # A kill can repeat only the chunk in flight: per blob, at most one minute's block each.
    assert duplicates <= kills * len(writers) * tuples_per_minute, duplicates
    print(f"kills={kills} events={len(expected)} duplicates={duplicates}")
    validate_lines("ecs", out.read_text().splitlines())
