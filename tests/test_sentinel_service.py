"""The real ``nsg-forwarder run`` with an azure_monitor sink and format asim: every tuple reaches the local
Logs Ingestion receiver as a valid row, SIGKILL during delivery loses nothing, and neither the token nor
the managed identity's header ever appears in what the process writes."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter
from forwarder.samples.generator import BlobSpec
from tests.support.events import validate_lines
from tests.support.identity import IDENTITY_HEADER, IdentityEndpoint, identity_env
from tests.support.local_writer import LocalWriter
from tests.support.logs_ingestion import DCR, LogsIngestionReceiver
from tests.support.process import kill9


def sentinel_config(tmp: Path, logs: Path, endpoint: str) -> Path:
    path = tmp / "forwarder.toml"
    path.write_text(
        f"""
[source]
type = "directory"
path = "{logs}"
poll_interval = 0.1

[checkpoint]
path = "{tmp / "state" / "checkpoints.json"}"

[log]
level = "debug"

[[sink]]
type = "azure_monitor"
format = "asim"
endpoint = "{endpoint}"
dcr_immutable_id = "{DCR}"
batch_max_events = 50
"""
    )
    return path


def start(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def expected_ids(writers: list[LocalWriter]) -> list[str]:
    ids: list[str] = []
    for w in writers:
        conv = FileConverter(
            io.BytesIO(w.path.read_bytes()), f"local/{w.spec.container}/{w.spec.blob_name}", IssueLog()
        )
        ids += [e.event_id for batch in conv.events() for e in batch]
    return ids


def test_sigkill_during_delivery_to_azure_monitor_loses_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "flowlogs"
    per_minute = 30
    writers = [
        LocalWriter(logs, BlobSpec(name="WEB-NSG", mac="000D3A000001", tuples_per_minute=per_minute)),
        LocalWriter(
            logs, BlobSpec(kind="vnet", version=4, name="FL", mac="000D3A000003", tuples_per_minute=per_minute)
        ),
    ]
    rng = random.Random(11)
    outputs: list[bytes] = []
    kills = 0
    # Slow answers keep requests in flight when the process dies.
    with IdentityEndpoint(audience=None) as identity, LogsIngestionReceiver(latency=0.05) as monitor:
        env = identity_env(identity)
        config = sentinel_config(tmp_path, logs, monitor.url)
        proc = start(config, env)
        try:
            for minute in range(24):
                for w in writers:
                    w.append_minute()
                time.sleep(rng.uniform(0.05, 0.3))
                if minute % 3 == 2:
                    kill9(proc)
                    kills += 1
                    outputs += proc.communicate()
                    proc = start(config, env)
                    time.sleep(rng.uniform(0.3, 1.0))
        finally:
            kill9(proc)
            outputs += proc.communicate()
        drain = start(config, env, "--once")
        out, err = drain.communicate(timeout=120)
        outputs += [out, err]
        assert drain.returncode == 0, err.decode()

        expected = expected_ids(writers)
        counts = Counter(monitor.uids())
        missing = set(expected) - set(counts)
        assert not missing, f"{len(missing)} rows lost after {kills} kills"
        assert set(counts) == set(expected)
        duplicates = sum(n - 1 for n in counts.values())
        # A kill repeats at most what was read and not yet confirmed: per blob, the three minutes appended
        # since the kill before. A checkpoint that never advanced would repeat everything, again and again.
        assert duplicates <= kills * len(writers) * per_minute * 3, duplicates
        validate_lines("asim", [json.dumps(row) for row in monitor.rows])
        assert len(monitor.requests_to("/dataCollectionRules/")) > kills
        text = b"".join(outputs).decode("utf-8", "replace")
        assert "Got an Azure Monitor token" in text, "the log was captured (debug level)"
        for secret in [IDENTITY_HEADER, *identity.tokens, *monitor.tokens_seen]:
            assert secret not in text
        assert len(identity.tokens) >= kills, "each process got its own token"
    print(f"kills={kills} rows={len(expected)} duplicates={duplicates}")
