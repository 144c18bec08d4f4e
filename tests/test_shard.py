"""[service] shard: N instances divide the NICs between them, every flow forwarded by exactly one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forwarder.pipeline.shard import Shard
from forwarder.samples.generator import BlobSpec, write_blob
from forwarder.sources.blobpath import stream_key
from tests.support.events import validate_lines
from tests.support.process import start_forwarder

HOURS = [datetime(2026, 11, 25, 8, tzinfo=UTC) + timedelta(hours=h) for h in range(2)]
MACS = [f"000D3A0000{n:02X}" for n in range(12)]


def config(tmp: Path, shard: str) -> Path:
    name = shard.replace("/", "of")
    path = tmp / f"{name}.toml"
    path.write_text(
        f'[source]\ntype = "directory"\npath = "{tmp / "logs"}"\n'
        f'[service]\nshard = "{shard}"\n'
        f'[checkpoint]\npath = "{tmp / name / "checkpoints.json"}"\n'
        f'[[sink]]\ntype = "file"\nformat = "ecs"\npath = "{tmp / name / "flows.ndjson"}"\n'
    )
    return path


def test_two_shards_forward_every_flow_exactly_once_and_keep_each_nic_together(tmp_path: Path) -> None:
    specs = [BlobSpec(hour=h, mac=m, minutes=3, tuples_per_minute=4) for h in HOURS for m in MACS]
    for spec in specs:
        write_blob(tmp_path / "logs", spec)
    procs = [start_forwarder(config(tmp_path, s), "--once") for s in ("1/2", "2/2")]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    shares = []
    for name in ("1of2", "2of2"):
        lines = (tmp_path / name / "flows.ndjson").read_text().splitlines()
        validate_lines("ecs", lines)
        shares.append([json.loads(line) for line in lines])
    ids = [{e["event"]["id"] for e in share} for share in shares]
    assert not ids[0] & ids[1], "no flow is forwarded by both instances"
    assert len(ids[0]) + len(ids[1]) == len(specs) * 3 * 4 == sum(len(s) for s in shares)
    nics = [{e["azure"]["flowlog"]["mac"] for e in share} for share in shares]
    assert nics[0] and nics[1] and not nics[0] & nics[1], "each NIC, both hours, belongs to one instance"
    assert len(nics[0] | nics[1]) == len(MACS)


def test_a_nic_keeps_its_share_from_hour_to_hour() -> None:
    shard = Shard(1, 3)
    for mac in MACS:
        names = [BlobSpec(hour=h, mac=mac).blob_name for h in HOURS]
        assert len({stream_key(n) for n in names}) == 1
        assert len({shard.owns(n) for n in names}) == 1
    owners = [[Shard(k, 3).owns(BlobSpec(mac=m).blob_name) for k in (1, 2, 3)] for m in MACS]
    assert all(sum(o) == 1 for o in owners), "every NIC has exactly one owner"


@pytest.mark.parametrize("value", ["0/2", "3/2", "1/0", "a/b", "1-2"])
def test_a_bad_shard_is_a_config_error_naming_the_key(tmp_path: Path, value: str) -> None:
    (tmp_path / "logs").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "forwarder", "validate", "--config", str(config(tmp_path, value))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "service.shard" in done.stderr and "Traceback" not in done.stderr
