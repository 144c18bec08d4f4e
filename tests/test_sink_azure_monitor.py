"""Azure Monitor Logs Ingestion sink against a local receiver that answers as the API does, with tokens
from a local managed-identity endpoint (DefaultAzureCredential finds it as it would on App Service)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forwarder.flowlog.model import FlowEvent
from forwarder.probe import Unreachable
from forwarder.sinks.azure_monitor import MAX_BODY, from_config
from forwarder.sinks.base import Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_common import SinkConfigError
from forwarder.sinks.retry import RetryPolicy
from tests.support.events import validate_lines
from tests.support.formats import make_context, make_event
from tests.support.http_events import make_batch, sample_events
from tests.support.http_receivers import Action
from tests.support.http_sinks import (
    dead_entries,
    dead_letter_fixture,  # noqa: F401 (fixture)
    fast_retry,
    open_sink,
)
from tests.support.identity import IDENTITY_HEADER, IdentityEndpoint, identity_env
from tests.support.logs_ingestion import DCR, STREAM, LogsIngestionReceiver


@pytest.fixture(name="events", scope="module")
def events_fixture() -> list[FlowEvent]:
    return sample_events(tuples_per_minute=5, minutes=10)  # 200 events of NSG v1, v2 and VNet v4


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEndpoint]:
    """A managed identity that is the only credential DefaultAzureCredential finds in this process."""
    with IdentityEndpoint(audience=None) as endpoint:
        env = identity_env(endpoint)
        for key in [k for k in os.environ if k not in env]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield endpoint


@pytest.fixture
def monitor() -> Iterator[LogsIngestionReceiver]:
    with LogsIngestionReceiver() as receiver:
        yield receiver


def make_sink(
    receiver: LogsIngestionReceiver, dead_letter: DeadLetter, retry: RetryPolicy | None = None, **cfg: Any
) -> Sink:
    table = {"type": "azure_monitor", "endpoint": receiver.url, "dcr_immutable_id": DCR, **cfg}
    return open_sink(from_config, table, "azure_monitor[0]", dead_letter, retry)


def uids(events: list[FlowEvent]) -> list[str]:
    return sorted(e.event_id for e in events)


@pytest.mark.parametrize("gzip", [True, False])
def test_every_row_arrives_once_with_a_token_for_azure_monitor(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter, events: list[Any], gzip: bool
) -> None:
    sink = make_sink(monitor, dead_letter, gzip=gzip, batch_max_events=64, max_in_flight=1)
    sink.send(make_batch("asim", events))
    sink.close()
    assert monitor.uids() == [e.event_id for e in events], "in order (one request at a time), each once"
    validate_lines("asim", [json.dumps(row) for row in monitor.rows])
    posts = monitor.requests_to("/dataCollectionRules/")
    assert len(posts) == -(-len(events) // 64)
    for post in posts:
        assert post.path == f"/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01"
        assert post.headers["content-type"] == "application/json"
        assert (post.headers.get("content-encoding") == "gzip") is gzip
        assert post.headers["authorization"].startswith("Bearer ey")
        uuid.UUID(post.headers["x-ms-client-request-id"])
    assert len({p.headers["x-ms-client-request-id"] for p in posts}) == len(posts)
    assert len({p.peer for p in posts}) == 1, "one keep-alive connection"
    # One token, asked for Azure Monitor's audience, for every request.
    assert [q["resource"] for q in identity.requests] == [["https://monitor.azure.com"]]
    assert monitor.tokens_seen == set(identity.tokens)


def test_bodies_stay_under_the_1_mb_limit_measured_as_sent(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter
) -> None:
    events = sample_events(tuples_per_minute=60, minutes=15)  # ~3,600 rows, ~4.5 MB of JSON
    for gzip in (False, True):
        sink = make_sink(monitor, dead_letter, gzip=gzip)
        sink.send(make_batch("asim", events))
        sink.close()
    posts = monitor.requests_to("/dataCollectionRules/")
    assert all(p.wire_bytes <= MAX_BODY and len(p.body) <= MAX_BODY for p in posts)
    plain = [p for p in posts if "content-encoding" not in p.headers]
    assert sum(len(p.body) for p in plain) > 4 * MAX_BODY and len(plain) >= 5, "several full requests"
    assert sorted(monitor.uids()) == sorted(uids(events) * 2)
    assert not dead_entries(dead_letter)


def test_a_413_halves_the_request_until_it_fits(
    identity: IdentityEndpoint, dead_letter: DeadLetter, events: list[Any]
) -> None:
    with LogsIngestionReceiver(max_body=40_000) as monitor:  # a proxy in front with a lower limit
        make_sink(monitor, dead_letter, gzip=False, max_in_flight=1).send(make_batch("asim", events))
        assert monitor.uids() == [e.event_id for e in events], "in order, none twice"
        statuses = [p for p in monitor.requests_to("/dataCollectionRules/") if len(p.body) > 40_000]
        assert statuses, "the first request was refused with 413"
    assert not dead_entries(dead_letter)


def test_a_row_over_the_limit_alone_is_dead_lettered_before_it_is_sent(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter
) -> None:
    ctx = make_context(rule="R" * (MAX_BODY + 10))  # compresses to almost nothing: the raw size counts too
    normal = make_context()
    events = [make_event(normal, 0), make_event(ctx, 1), make_event(normal, 2)]
    make_sink(monitor, dead_letter).send(make_batch("asim", events))
    assert sorted(monitor.uids()) == sorted([events[0].event_id, events[2].event_id])
    (dead,) = dead_entries(dead_letter)
    assert dead["event_id"] == events[1].event_id
    assert "over the Logs Ingestion API's 1 MB per call" in dead["reason"]
    assert all(len(p.body) <= MAX_BODY for p in monitor.seen)


def test_throttling_and_server_errors_are_retried_after_retry_after(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    monitor.script(Action(429, retry_after="1"), Action(503, retry_after="1"), Action(500))
    make_sink(monitor, dead_letter, max_in_flight=1).send(make_batch("asim", events[:50]))
    posts = monitor.requests_to("/dataCollectionRules/")
    assert len(posts) == 4
    assert posts[1].at - posts[0].at >= 0.95, "waited the Retry-After of the 429"
    assert posts[2].at - posts[1].at >= 0.95, "waited the Retry-After of the 503"
    assert monitor.uids() == [e.event_id for e in events[:50]]
    assert not dead_entries(dead_letter)


def test_the_dcr_request_limit_is_waited_out(
    identity: IdentityEndpoint, dead_letter: DeadLetter, events: list[Any]
) -> None:
    with LogsIngestionReceiver(requests_per_window=3, window=1.0) as monitor:
        make_sink(monitor, dead_letter, batch_max_events=20, max_in_flight=2).send(make_batch("asim", events))
        assert monitor.throttled > 0
        assert sorted(monitor.uids()) == uids(events)
    assert not dead_entries(dead_letter)


def test_a_row_the_service_refuses_is_dead_lettered_alone_with_its_message(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    bad = events[37].event_id
    monitor.poison.add(bad)
    make_sink(monitor, dead_letter, max_in_flight=1).send(make_batch("asim", events[:100]))
    assert sorted(monitor.uids()) == sorted(e.event_id for e in events[:100] if e.event_id != bad)
    (dead,) = dead_entries(dead_letter)
    assert dead["event_id"] == bad and dead["sink"] == "azure_monitor[0]"
    assert dead["reason"] == "Azure Monitor rejected the row: HTTP 400 InvalidPayload: Record 0: column " + (
        "'SrcIpAddr' could not be converted."
    )
    assert dead["blob"] == events[37].ctx.source and dead["offset"] == events[37].ctx.record_offset


def test_a_missing_role_stops_the_sink_naming_the_role_and_the_delay(
    identity: IdentityEndpoint, dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with LogsIngestionReceiver(granted=frozenset()) as monitor:
        sink = make_sink(monitor, dead_letter)
        with caplog.at_level(logging.DEBUG), pytest.raises(SinkFatal) as raised:
            sink.send(make_batch("asim", events[:10]))
    message = str(raised.value)
    assert "HTTP 403" in message and "Monitoring Metrics Publisher" in message and DCR in message
    assert "up to 30 minutes" in message and "does not have access to ingest data" in message
    assert not dead_entries(dead_letter), "nothing is dropped: the service stops and the chunk is sent again later"
    for secret in [IDENTITY_HEADER, *identity.tokens]:
        assert secret not in message and secret not in caplog.text


def test_a_token_for_another_cloud_stops_the_sink(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    sink = make_sink(monitor, dead_letter, audience="https://monitor.azure.us")
    with pytest.raises(SinkFatal) as raised:
        sink.send(make_batch("asim", events[:10]))
    message = str(raised.value)
    assert "HTTP 401" in message and "https://monitor.azure.us/.default" in message
    assert "Monitoring Metrics Publisher" in message
    assert [q["resource"] for q in identity.requests] == [["https://monitor.azure.us"]]
    assert not any(token in message for token in identity.tokens)


def test_an_unknown_stream_stops_the_sink(
    identity: IdentityEndpoint, monitor: LogsIngestionReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    sink = make_sink(monitor, dead_letter, stream="Custom-Other")
    with pytest.raises(SinkFatal, match=r"HTTP 404.*dcr_immutable_id and stream"):
        sink.send(make_batch("asim", events[:10]))


def test_the_token_is_renewed_five_minutes_before_it_expires(
    monkeypatch: pytest.MonkeyPatch, monitor: LogsIngestionReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    with IdentityEndpoint(audience=None, lifetime=302) as endpoint:  # within the renewal margin 2 s after issue
        for key, value in identity_env(endpoint).items():
            monkeypatch.setenv(key, value)
        sink = make_sink(monitor, dead_letter, max_in_flight=1)
        sink.send(make_batch("asim", events[:50]))
        time.sleep(2.5)
        sink.send(make_batch("asim", events[50:100]))
        sink.close()
        assert len(endpoint.tokens) == 2 and monitor.tokens_seen == set(endpoint.tokens)
    assert monitor.uids() == [e.event_id for e in events[:100]]


def test_no_credential_at_all_fails_at_open_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch, monitor: LogsIngestionReceiver, dead_letter: DeadLetter
) -> None:
    for key in [k for k in os.environ if k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))]:
        monkeypatch.delenv(key)
    # The instance metadata service pointed at a closed port, in case the tests run on an Azure VM.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("PATH", "/nonexistent")  # no az, azd or pwsh to ask
    with pytest.raises(SinkFatal) as raised:
        make_sink(monitor, dead_letter)
    assert "no Entra ID token for https://monitor.azure.com/.default from DefaultAzureCredential" in str(raised.value)
    assert "managed_identity_client_id" in str(raised.value)


def test_a_client_secret_is_read_from_its_file_and_never_shown(tmp_path: Path, dead_letter: DeadLetter) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret~Value.Of-The_App\n")
    table = {
        "type": "azure_monitor",
        "endpoint": "https://dcr-1.westeurope-1.ingest.monitor.azure.com",
        "dcr_immutable_id": DCR,
        "tenant_id": "00000000-0000-0000-0000-00000000abcd",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret_file": str(secret_file),
    }
    sink = from_config(table, "azure_monitor[0]", dead_letter, fast_retry())
    tokens = sink.tokens  # type: ignore[attr-defined]
    assert tokens.how == "client secret of app 11111111-2222-3333-4444-555555555555"
    assert type(tokens.credential).__name__ == "ClientSecretCredential"
    assert sink._redact("echo s3cret~Value.Of-The_App and eyJhbGciOi.eyJzdWIi.sig") == "echo <redacted> and <redacted>"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"endpoint": "http://monitor.example.net"}, "endpoint must be https"),
        (
            {"endpoint": "https://x.ingest.monitor.azure.com/dataCollectionRules"},
            "endpoint is the ingestion host alone",
        ),
        ({"dcr_immutable_id": "my-dcr"}, "dcr_immutable_id must be the DCR's immutable id"),
        ({"stream": "NsgFlows"}, "stream must be a stream of the DCR"),
        ({"format": "ecs"}, "format must be one of asim"),
        ({"audience": "monitor.azure.com"}, "audience must be an https URL"),
        ({"batch_max_bytes": 2_000_000}, "batch_max_bytes must be below the API's limit"),
        ({"client_id": "11111111-2222-3333-4444-555555555555"}, "missing tenant_id, client_secret"),
        ({"managed_identity_client_id": "me"}, "managed_identity_client_id must be a GUID"),
        ({"url": "https://x"}, "unknown key(s) url"),
    ],
)
def test_bad_tables_are_config_errors(dead_letter: DeadLetter, table: dict[str, Any], message: str) -> None:
    base = {"type": "azure_monitor", "endpoint": "https://dcr-1.westeurope-1.ingest.monitor.azure.com"}
    with pytest.raises(SinkConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_config({**base, "dcr_immutable_id": DCR, **table}, "azure_monitor[0]", dead_letter, fast_retry())


def test_a_config_file_with_the_sink_validates_and_a_typo_is_named(tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("s3cret~Value\n")
    sink = f"""
[[sink]]
type = "azure_monitor"
endpoint = "https://nsg-dcr-a1b2.westeurope-1.ingest.monitor.azure.com"
dcr_immutable_id = "{DCR}"
tenant_id = "00000000-0000-0000-0000-00000000abcd"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "{secret_file}"
"""
    source = f'[source]\ntype = "directory"\npath = "{tmp_path}"\n[checkpoint]\npath = "{tmp_path / "cp.json"}"\n'
    good = tmp_path / "good.toml"
    good.write_text(source + sink)
    bad = tmp_path / "bad.toml"
    bad.write_text(source + sink + 'dcr_imutable_id = "x"\n')
    run = [sys.executable, "-m", "forwarder", "validate", "--config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "s3cret~Value" not in ok.stdout + ok.stderr
    assert (
        f"sink azure_monitor[0]: asim -> https://nsg-dcr-a1b2.westeurope-1.ingest.monitor.azure.com {DCR}/" in ok.stdout
    )
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2
    assert "sink[0]: unknown key 'dcr_imutable_id'" in failed.stdout + failed.stderr


def test_the_connection_check_sends_no_row_and_names_a_missing_role(
    identity: IdentityEndpoint, dead_letter: DeadLetter
) -> None:
    with LogsIngestionReceiver() as monitor:
        sink = make_sink(monitor, dead_letter)
        assert "accepts the token" in sink.probe()  # type: ignore[attr-defined]
        assert monitor.rows == []
    with LogsIngestionReceiver(granted=frozenset()) as monitor:
        sink = make_sink(monitor, dead_letter)
        with pytest.raises(Unreachable) as raised:
            sink.probe()  # type: ignore[attr-defined]
        assert "Monitoring Metrics Publisher" in str(raised.value) and monitor.rows == []
    for secret in [IDENTITY_HEADER, *identity.tokens]:
        assert secret not in str(raised.value)
