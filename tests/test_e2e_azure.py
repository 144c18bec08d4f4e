"""End to end against a real storage emulator: a simulated Network Watcher grows blobs in Azurite
(several NSGs, NSG v1 and v2, a VNet flow log, an hour boundary, a rewrite and a deletion) while a
real forwarder process polls; then the same with the process SIGKILLed over and over."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter
from forwarder.samples.generator import HEAD, TAIL, BlobSpec, data_blocks
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import Azurite, azurite  # noqa: F401 (fixture)
from tests.support.events import validate_lines
from tests.support.process import kill9, read_ids, start_forwarder

MINUTES = 8


def ids_of(key: str, blob: bytes) -> list[str]:
    conv = FileConverter(io.BytesIO(blob), key, IssueLog())
    return [e.event_id for batch in conv.events() for e in batch]


def config(tmp: Path, container: str, out: Path) -> Path:
    path = tmp / f"{container}.toml"
    path.write_text(
        f"""
[source]
type = "azure_blob"
connection_string = "${{AZURE_STORAGE_CONNECTION_STRING}}"
container = "{container}"
start = "earliest"
poll_interval = 0.2
late_commit_grace = 7200
discovery_refresh = 1

[checkpoint]
path = "{tmp / container / "checkpoints.json"}"

[[sink]]
type = "file"
format = "ecs"
path = "{out}"
"""
    )
    return path


class Scenario:
    """Drives one container: specs of the previous and the current hour, one rewrite, one deletion."""

    def __init__(self, cc: ContainerClient, kind: str):
        self.cc = cc
        self.writer = AzureWriter(cc)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        h0, h1 = now - timedelta(hours=1), now
        if kind == "nsg":
            base = [
                BlobSpec(name="WEB-NSG", mac="000D3A000001", hour=h0, tuples_per_minute=12, minutes=MINUTES),
                BlobSpec(name="WEB-NSG", mac="000D3A000002", hour=h0, tuples_per_minute=12, minutes=MINUTES),
                BlobSpec(name="OLD-NSG", mac="000D3A000003", version=1, hour=h0, tuples_per_minute=12, minutes=MINUTES),
            ]
        else:
            vnet = {"kind": "vnet", "version": 4, "name": "FL-EAST", "tuples_per_minute": 12, "minutes": MINUTES}
            base = [
                BlobSpec(mac="0022487BC201", hour=h0, **vnet),  # type: ignore[arg-type]
                BlobSpec(mac="0022487BC202", hour=h0, **vnet),  # type: ignore[arg-type]
                BlobSpec(mac="0022487BC203", hour=h0, **vnet),  # type: ignore[arg-type]
            ]
        self.h0 = base
        self.h1 = [dataclasses.replace(s, hour=h1) for s in base[:2]]
        self.gone: list[bytes] = []  # blob contents that were replaced or deleted, as they were
        self.prefixes: dict[str, bytes] = {}

    def key(self, spec: BlobSpec) -> str:
        return f"devstoreaccount1/{self.cc.container_name}/{spec.blob_name}"

    def content(self, spec: BlobSpec, minutes: int) -> bytes:
        return HEAD + b"".join(list(data_blocks(spec))[:minutes]) + TAIL

    def steps(self) -> list[str]:
        """Run the writer one step at a time (the caller interleaves kills); returns step names."""
        return [f"h0-{m}" for m in range(MINUTES)] + [f"h1-{m}" for m in range(MINUTES)]

    def do(self, step: str) -> None:
        hour, minute = step.split("-")
        m = int(minute)
        if hour == "h0":
            if m == 0:
                for s in self.h0:
                    self.writer.start(s)
            self.writer.tick(self.h0)
            if m == 4:  # rewritten from scratch: shorter, other bytes, new etag
                old = self.h0[1]
                self.gone.append(self.content(old, m + 1))
                self.h0[1] = dataclasses.replace(old, seed=99)
                self.writer.rewrite(self.h0[1], minutes=2)
            if m == 6:  # deleted by retention
                victim = self.h0.pop(2)
                self.gone.append(self.content(victim, m + 1))
                self.gone_keys = [self.key(victim)]
                self.writer.delete(victim)
        else:
            if m == 0:
                for s in self.h1:
                    self.writer.start(s)
            self.writer.tick(self.h1)

    def expected(self) -> tuple[set[str], set[str]]:
        """(ids that must arrive exactly once, ids that may arrive at most once: replaced/deleted content)."""
        must: set[str] = set()
        for spec in self.h0 + self.h1:
            blob = self.cc.get_blob_client(spec.blob_name).download_blob().readall()
            must.update(ids_of(self.key(spec), blob))
        rewritten = self.h0[1]
        deleted_key = self.gone_keys[0]
        may = set(ids_of(self.key(rewritten), self.gone[0])) | set(ids_of(deleted_key, self.gone[1]))
        return must, may


def wait_for(out: Path, want: set[str], seconds: float = 40) -> list[str]:
    deadline = time.monotonic() + seconds
    got: list[str] = []
    while time.monotonic() < deadline:
        got = read_ids(out) if out.exists() else []
        if want <= set(got):
            break
        time.sleep(0.2)
    return got


@pytest.mark.parametrize("kind", ["nsg", "vnet"])
def test_every_tuple_arrives_exactly_once_through_growth_rewrite_deletion_and_an_hour_boundary(
    azurite: Azurite,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    cc = azurite.new_container()
    scenario = Scenario(cc, kind)
    out = tmp_path / "out.ndjson"
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    proc = start_forwarder(config(tmp_path, cc.container_name, out), env=env)
    try:
        for step in scenario.steps():
            scenario.do(step)
            time.sleep(0.3)
        must, may = scenario.expected()
        got = wait_for(out, must)
    finally:
        kill9(proc)
    counts = Counter(got)
    missing = must - set(counts)
    log = proc.communicate()[1].decode(errors="replace")[-4000:]
    assert not missing, f"{len(missing)} of {len(must)} flows never arrived; the forwarder said:\n{log}"
    assert all(counts[i] == 1 for i in must), "a flow arrived twice without any crash"
    extra = set(counts) - must
    assert extra <= may, f"{len(extra - may)} events that were never written"
    assert all(counts[i] == 1 for i in extra)
    validate_lines("ecs", out.read_text().splitlines())


def test_sigkill_twenty_times_loses_nothing_and_repeats_only_unconfirmed_chunks(
    azurite: Azurite,  # noqa: F811
    tmp_path: Path,
) -> None:
    cc = azurite.new_container()
    scenario = Scenario(cc, "nsg")
    out = tmp_path / "out.ndjson"
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    cfg = config(tmp_path, cc.container_name, out)
    rng = random.Random(3)
    kills = 0
    proc = start_forwarder(cfg, env=env)
    try:
        for step in scenario.steps():
            scenario.do(step)
            for _ in range(2):
                time.sleep(rng.uniform(0.05, 0.6))
                kill9(proc)
                kills += 1
                proc = start_forwarder(cfg, env=env)
    finally:
        kill9(proc)
    assert kills >= 20
    drain = start_forwarder(cfg, "--once", env=env)
    _, err = drain.communicate(timeout=120)
    assert drain.returncode == 0, err.decode()[-2000:]
    must, may = scenario.expected()
    counts = Counter(read_ids(out))
    missing = must - set(counts)
    assert not missing, f"{len(missing)} of {len(must)} flows lost after {kills} kills"
    assert set(counts) - must <= may
    duplicates = sum(n - 1 for n in counts.values())
    # A kill repeats at most the chunk in flight: one minute's block of one blob.
    assert duplicates <= kills * 12 * 2, duplicates
    print(f"kills={kills} flows={len(must)} duplicates={duplicates}")
    validate_lines("ecs", [json.dumps(json.loads(line)) for line in out.read_text().splitlines()])
