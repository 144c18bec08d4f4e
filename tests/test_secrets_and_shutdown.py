"""Secrets never show in anything the process writes; SIGTERM during a slow delivery ends cleanly and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from forwarder.samples.generator import BlobSpec
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import Azurite, azurite  # noqa: F401 (fixture)
from tests.support.events import validate_lines
from tests.support.http_receivers import ElasticsearchReceiver, HecReceiver, NdjsonReceiver
from tests.support.net import free_port
from tests.support.process import start_forwarder

HEC_TOKEN = "hec-SECRET-5d1f0c7e-0000-4b4b-9c9c-777777777777"
ES_KEY = "ZXMtU0VDUkVULWFwaS1rZXktOTk5OQ=="
HEADER_SECRET = "Bearer hdr-SECRET-31337"


def write_config(tmp: Path, source: str, sinks: str, extra: str = "") -> Path:
    path = tmp / "forwarder.toml"
    path.write_text(
        f'{source}\n[checkpoint]\npath = "{tmp / "state" / "checkpoints.json"}"\n'
        f'[dead_letter]\npath = "{tmp / "state" / "dead.ndjson"}"\n{extra}\n{sinks}'
    )
    path.chmod(0o600)
    return path


def azure_source(container: str, poll: float = 0.2) -> str:
    return (
        f'[source]\ntype = "azure_blob"\nconnection_string = "${{AZURE_STORAGE_CONNECTION_STRING}}"\n'
        f'container = "{container}"\npoll_interval = {poll}\nlate_commit_grace = 7200\n'
    )


def everything_written(tmp: Path, *texts: str) -> str:
    files = [p.read_text(errors="replace") for p in tmp.rglob("*") if p.is_file() and p.suffix != ".toml"]
    return "\n".join([*texts, *files])


def test_secrets_appear_in_no_log_error_metric_or_validate_output(
    azurite: Azurite,  # noqa: F811
    tmp_path: Path,
) -> None:
    cc = azurite.new_container()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    AzureWriter(cc).write_all(BlobSpec(hour=hour, minutes=2, tuples_per_minute=5))
    good_cs = azurite.connection_string
    bad_key = "QkFELVNFQ1JFVC1LRVktZm9yLXRlc3RzLW9ubHktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="
    bad_cs = good_cs.replace(azurite.account_key, bad_key)
    sas_sig = "sig=SAS-SECRET-abcdef0123456789%3D"
    sas_cs = f"BlobEndpoint={azurite.account_url};SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rl&{sas_sig}"
    secrets = [HEC_TOKEN, ES_KEY, HEADER_SECRET.split()[1], bad_key, azurite.account_key, "SAS-SECRET-abcdef"]
    port = free_port()
    with (
        HecReceiver(token="another-token") as hec,
        ElasticsearchReceiver(api_key=ES_KEY) as es,
        NdjsonReceiver(required_headers={"Authorization": HEADER_SECRET}) as ndjson,
    ):
        sinks = (
            f'[[sink]]\ntype = "elasticsearch"\nurl = "{es.url}"\napi_key = "${{ES_API_KEY}}"\n'
            f'[[sink]]\ntype = "http"\nurl = "{ndjson.url}/ingest"\n[sink.headers]\nAuthorization = "{HEADER_SECRET}"\n'
            f'[[sink]]\ntype = "splunk_hec"\nurl = "{hec.url}"\ntoken = "${{HEC_TOKEN}}"\n'
        )
        config = write_config(
            tmp_path, azure_source(cc.container_name), sinks, f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
        env = {"HEC_TOKEN": HEC_TOKEN, "ES_API_KEY": ES_KEY, "AZURE_STORAGE_CONNECTION_STRING": good_cs}
        outputs: list[str] = []

        done = subprocess.run(
            [sys.executable, "-m", "forwarder", "validate", "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]

        # Metrics of a running service whose sinks accept the events (HEC left out: it would stop it).
        running = config.with_name("running.toml")
        running.write_text(config.read_text().split('[[sink]]\ntype = "splunk_hec"')[0])
        proc = start_forwarder(running, env=env)
        metrics = ""
        delivered = 'nsg_forwarder_events_delivered_total{sink="http[1]"} 10.0'
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and delivered not in metrics and proc.poll() is None:
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    metrics = r.read().decode()
            except OSError:
                continue
        running_ok = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        outputs += [out.decode(), err.decode(), metrics]
        assert running_ok and delivered in metrics, f"exit={proc.returncode} metrics={metrics!r} stderr={err!r}"
        assert len(ndjson.lines) == sum(len(d) for d in es.streams.values()) == 10

        # HEC answers 401 for the wrong token: the service stops with a clear error, token not in it.
        (tmp_path / "state" / "checkpoints.json").unlink()  # so that this run has events to send to HEC
        proc = start_forwarder(config, env=env)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert "401" in err.decode() or "token" in err.decode().lower()
        outputs += [out.decode(), err.decode(), metrics]

        # Wrong account key and a SAS: storage refuses; the key and the signature stay out of the error.
        for cs in (bad_cs, sas_cs):
            proc = start_forwarder(config, "--once", env={**env, "AZURE_STORAGE_CONNECTION_STRING": cs})
            out, err = proc.communicate(timeout=60)
            assert proc.returncode != 0
            outputs += [out.decode(), err.decode()]
    text = everything_written(tmp_path, *outputs)
    assert metrics and "nsg_forwarder_" in metrics
    for secret in secrets:
        assert secret not in text, f"a secret leaked: {secret[:6]}..."


def test_sigterm_during_a_slow_delivery_exits_within_the_grace_period_and_loses_nothing(
    azurite: Azurite,  # noqa: F811
    tmp_path: Path,
) -> None:
    cc = azurite.new_container()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    specs = [BlobSpec(hour=hour, mac=f"000D3A00000{i}", minutes=6, tuples_per_minute=20) for i in range(3)]
    writer = AzureWriter(cc)
    for spec in specs:
        writer.write_all(spec)
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    grace = 3
    with HecReceiver(latency=2.5) as slow:
        sinks = f'[[sink]]\ntype = "splunk_hec"\nurl = "{slow.url}"\ntoken = "{slow.token}"\n'
        extra = f"[service]\nshutdown_grace = {grace}\n[reader]\nchunk_bytes = 65536\n"
        config = write_config(tmp_path, azure_source(cc.container_name), sinks, extra)
        slow_url = slow.url
        proc = start_forwarder(config, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not slow.requests_to("/services/collector"):
            time.sleep(0.05)
        assert slow.requests_to("/services/collector"), "no delivery started"
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=grace + 10)
        took = time.monotonic() - began
        first_run = [e["event"] for e in slow.events]
    assert rc == 0, proc.communicate()[1].decode()
    assert took <= grace + 2.5, took
    with HecReceiver() as fast:
        config.write_text(config.read_text().replace(slow_url, fast.url).replace(slow.token, fast.token))
        proc = start_forwarder(config, "--once", env=env)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        second_run = [e["event"] for e in fast.events]
    got = {e["event"]["id"] for e in first_run + second_run}
    assert len(got) == 3 * 6 * 20, len(got)
    validate_lines("ecs", [json.dumps(e) for e in first_run + second_run])
