"""Splunk HEC sink against a local receiver that answers as HEC does."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from forwarder.sinks.base import Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http_common import SinkConfigError
from forwarder.sinks.retry import Interrupted, RetryPolicy
from forwarder.sinks.splunk_hec import from_config
from tests.support.events import validate_lines
from tests.support.http_events import make_batch
from tests.support.http_receivers import Action, HecReceiver, TlsFiles, event_id_of, make_self_signed
from tests.support.http_sinks import (
    dead_entries,
    dead_letter_fixture,  # noqa: F401 (fixture)
    events_fixture,  # noqa: F401 (fixture)
    fast_retry,
    open_sink,
)

TOKEN = "5f3c2a10-9b7e-4d1e-8a55-0c1d2e3f4a5b"


@pytest.fixture
def hec() -> Any:
    with HecReceiver(TOKEN) as receiver:
        yield receiver


def make_sink(receiver: HecReceiver, dead_letter: DeadLetter, retry: RetryPolicy | None = None, **cfg: Any) -> Sink:
    table = {"type": "splunk_hec", "url": receiver.url, "token": TOKEN, "batch_max_events": 64, **cfg}
    return open_sink(from_config, table, "splunk_hec[0]", dead_letter, retry)


def indexed_ids(receiver: HecReceiver) -> list[str]:
    return [event_id_of(e["event"]) or "" for e in receiver.events]


def check_indexed(receiver: HecReceiver, fmt: str = "ecs") -> None:
    """Every event HEC indexed is a valid event of its format."""
    if fmt == "cef":
        lines = [e["event"] for e in receiver.events]
        assert all(isinstance(line, str) for line in lines)
    else:
        lines = [json.dumps(e["event"]) for e in receiver.events]
    validate_lines(fmt, lines)


@pytest.mark.parametrize("gzip", [True, False])
def test_every_event_is_indexed_once_with_its_envelope(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any], gzip: bool
) -> None:
    batch = make_batch("ecs", events)
    sink = make_sink(hec, dead_letter, gzip=gzip, index="netflow", host="collector-1", max_in_flight=2)
    sink.send(batch)
    sink.close()

    assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events)
    check_indexed(hec)
    by_id = {event_id_of(e["event"]): e for e in hec.events}
    for event in events:
        envelope = by_id[event.event_id]
        assert envelope["time"] == pytest.approx(event.timestamp_ms / 1000)
        assert envelope["sourcetype"] == "azure:nsg:flow"
        assert envelope["source"] == event.ctx.source  # the blob the event came from
        assert envelope["index"] == "netflow"
        assert envelope["host"] == "collector-1"
    posts = hec.requests_to("/services/collector/event")
    assert len(posts) == -(-len(events) // 64), "batch_max_events bounds every request"
    assert all(p.headers.get("content-encoding") == ("gzip" if gzip else None) for p in posts)
    assert all(p.headers["authorization"] == f"Splunk {TOKEN}" for p in posts)
    peers = {p.peer for p in posts}
    assert len(peers) <= sink.max_in_flight < len(posts), "requests reuse max_in_flight (2) keep-alive connections"
    assert not dead_entries(dead_letter)


def test_cef_lines_travel_as_json_strings(hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    batch = make_batch("cef", events[:50])
    sink = make_sink(hec, dead_letter, format="cef", source="azure-flowlogs")
    sink.send(batch)
    assert [e["event"] for e in hec.events] == list(batch.lines)
    assert {e["sourcetype"] for e in hec.events} == {"azure:nsg:flow:cef"}
    assert {e["source"] for e in hec.events} == {"azure-flowlogs"}
    check_indexed(hec, "cef")


def test_busy_and_throttled_answers_are_retried_after_retry_after(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    hec.script(Action(503, retry_after="1"), Action(429, {"text": "Too many requests"}, retry_after="1"))
    sink = make_sink(hec, dead_letter, max_in_flight=1)
    started = time.monotonic()
    sink.send(make_batch("ecs", events[:100]))
    elapsed = time.monotonic() - started

    posts = hec.requests_to("/services/collector/event")
    assert posts[1].at - posts[0].at >= 0.95, "waited the Retry-After of the 503"
    assert posts[2].at - posts[1].at >= 0.95, "waited the Retry-After of the 429"
    assert elapsed >= 1.9
    assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events[:100])
    assert not dead_entries(dead_letter)
    check_indexed(hec)


def test_an_invalid_event_is_dead_lettered_alone(hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    poison = {events[10].event_id, events[63].event_id, events[64].event_id, events[150].event_id}
    hec.poison = poison
    sink = make_sink(hec, dead_letter)
    sink.send(make_batch("ecs", events))

    dead = dead_entries(dead_letter)
    assert sorted(d["event_id"] for d in dead) == sorted(poison)
    assert all("HTTP 400 code 6 Invalid data format" in d["reason"] for d in dead)
    assert all(d["blob"] and d["event"] for d in dead)
    good = [e.event_id for e in events if e.event_id not in poison]
    assert sorted(indexed_ids(hec)) == sorted(good), "every other event indexed exactly once"
    check_indexed(hec)


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, {"text": "Invalid authorization", "code": 3}), (403, {"text": "Token disabled", "code": 1})],
)
def test_scripted_auth_failures_stop_the_sink(
    hec: HecReceiver,
    dead_letter: DeadLetter,
    events: list[Any],
    status: int,
    body: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hec.script(Action(status, body))
    sink = make_sink(hec, dead_letter)
    with caplog.at_level(logging.DEBUG), pytest.raises(SinkFatal) as raised:
        sink.send(make_batch("ecs", events[:5]))
    message = str(raised.value)
    assert f"HTTP {status}" in message and "check token" in message
    assert TOKEN not in message and TOKEN not in caplog.text
    assert not dead_entries(dead_letter), "a setup problem is not the events' fault"


def test_a_wrong_token_stops_the_sink_without_quoting_it(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "deadbeef-0000-4000-8000-123456789abc"
    sink = from_config({"url": hec.url, "token": wrong}, "splunk_hec[0]", dead_letter, fast_retry())
    with caplog.at_level(logging.DEBUG), pytest.raises(SinkFatal) as raised:
        sink.send(make_batch("ecs", events[:5]))
    assert "HTTP 403" in str(raised.value) and "HEC code 4" in str(raised.value)
    assert wrong not in str(raised.value) and wrong not in caplog.text


def test_connections_dropped_mid_request_are_sent_again(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    hec.script(Action(drop=True), times=3)
    sink = make_sink(hec, dead_letter)
    sink.send(make_batch("ecs", events))
    assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events)
    assert not dead_entries(dead_letter)
    check_indexed(hec)


def test_an_answer_slower_than_the_timeout_is_retried(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    hec.script(Action(503, delay=0.8))
    sink = make_sink(hec, dead_letter, timeout=0.3)
    started = time.monotonic()
    sink.send(make_batch("ecs", events[:20]))
    assert time.monotonic() - started >= 0.3
    assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events[:20])


def test_a_request_too_large_is_split(dead_letter: DeadLetter, events: list[Any]) -> None:
    with HecReceiver(TOKEN, max_content_length=20_000) as hec:
        sink = make_sink(hec, dead_letter, batch_max_events=1000, batch_max_bytes=5_000_000)
        sink.send(make_batch("ecs", events))
        assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events)
        assert any(s.wire_bytes and len(s.body) > 20_000 for s in hec.seen), "the first request was too large"
        assert not dead_entries(dead_letter)
    with HecReceiver(TOKEN, max_content_length=500) as tiny:
        sink = make_sink(tiny, dead_letter)
        sink.send(make_batch("ecs", events[:3]))
        dead = dead_entries(dead_letter)
        assert [d["event_id"] for d in dead] == [e.event_id for e in events[:3]]
        assert all("413" in d["reason"] for d in dead)


def test_an_index_the_token_may_not_use_stops_the_sink(dead_letter: DeadLetter, events: list[Any]) -> None:
    with HecReceiver(TOKEN, allowed_indexes=frozenset({"main"})) as hec:
        sink = make_sink(hec, dead_letter, index="netflow")
        with pytest.raises(SinkFatal, match="may not write to index 'netflow'"):
            sink.send(make_batch("ecs", events[:5]))


def test_indexer_acknowledgement_holds_send_until_indexed(dead_letter: DeadLetter, events: list[Any]) -> None:
    with HecReceiver(TOKEN, ack=True, ack_after_polls=3) as hec:
        sink = make_sink(hec, dead_letter, ack=True, ack_poll_interval=0.05)
        sink.send(make_batch("ecs", events))
        assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events), "all indexed when send returned"
        assert hec.ack_polls >= 3
        channels = {s.headers.get("x-splunk-request-channel") for s in hec.seen}
        assert len(channels) == 1
        uuid.UUID(channels.pop())  # a GUID, stable for the sink
        check_indexed(hec)


def test_an_ack_that_never_comes_sends_the_request_again(dead_letter: DeadLetter, events: list[Any]) -> None:
    with HecReceiver(TOKEN, ack=True) as hec:
        hec.lose_acks = 1
        sink = make_sink(hec, dead_letter, ack=True, ack_poll_interval=0.05, ack_timeout=0.4)
        started = time.monotonic()
        sink.send(make_batch("ecs", events[:100]))
        assert time.monotonic() - started >= 0.4
        assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events[:100])
        assert len(hec.requests_to("/services/collector/event")) == 3  # 64 + 36, then the lost 64 again


def test_ack_on_a_token_without_acknowledgement_stops_the_sink(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    sink = make_sink(hec, dead_letter, ack=True)
    with pytest.raises(SinkFatal, match="indexer acknowledgement"):
        sink.send(make_batch("ecs", events[:5]))


def test_a_retry_limit_dead_letters_what_could_not_be_sent(
    hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    hec.script(Action(503), times=3)
    sink = make_sink(hec, dead_letter, fast_retry(max_attempts=3), max_in_flight=1)
    sink.send(make_batch("ecs", events[:100]))  # 64 fail three times; the next 36 go through
    dead = dead_entries(dead_letter)
    assert [d["event_id"] for d in dead] == [e.event_id for e in events[:64]]
    assert "gave up after 3 attempts" in dead[0]["reason"] and "503" in dead[0]["reason"]
    assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events[64:100])


def test_shutdown_interrupts_a_retry_wait(hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    hec.script(Action(503, retry_after="30"), times=5)
    retry = fast_retry()
    sink = make_sink(hec, dead_letter, retry)
    threading.Timer(0.3, retry.stop.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        sink.send(make_batch("ecs", events[:5]))
    assert time.monotonic() - started < 5
    assert not dead_entries(dead_letter), "an interrupted chunk is sent again after the restart, not dropped"


def test_an_untrusted_certificate_is_a_clear_error_never_a_fallback(
    tmp_path: Path, dead_letter: DeadLetter, events: list[Any]
) -> None:
    tls = make_self_signed(tmp_path / "tls")
    with HecReceiver(TOKEN, tls=tls) as hec:
        assert hec.url.startswith("https://")
        sink = make_sink(hec, dead_letter)
        with pytest.raises(SinkFatal) as raised:
            sink.send(make_batch("ecs", events[:5]))
        assert "certificate verify failed" in str(raised.value) and "tls_ca_file" in str(raised.value)
        assert not hec.events

        trusted = make_sink(hec, dead_letter, tls_ca_file=str(tls.cert))
        trusted.send(make_batch("ecs", events[:5]))
        assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events[:5])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "https://splunk:8088"}, "token (or token_file) is required"),
        ({"url": "https://admin:pw@splunk:8088", "token": TOKEN}, "must not contain credentials"),
        ({"url": "https://splunk:8088/services/collector/event", "token": TOKEN}, "without /services"),
        ({"url": "https://splunk:8088", "token": TOKEN, "channel": "not-a-guid"}, "channel must be a GUID"),
        ({"url": "https://splunk:8088", "token": TOKEN, "batch_max_events": 0}, "batch_max_events must be"),
        ({"url": "https://splunk:8088", "token": TOKEN, "timeout": True}, "timeout must be an integer or a number"),
        ({"url": "https://splunk:8088", "token": TOKEN, "tokn": "x"}, "unknown key(s) tokn"),
        ({"url": "ftp://splunk", "token": TOKEN}, "url must be http(s)"),
    ],
)
def test_bad_tables_are_config_errors(dead_letter: DeadLetter, table: dict[str, Any], message: str) -> None:
    with pytest.raises(SinkConfigError) as raised:
        from_config(table, "splunk_hec[0]", dead_letter, fast_retry())
    assert message in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_token_file_is_read(tmp_path: Path, hec: HecReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    path = tmp_path / "hec-token"
    path.write_text(TOKEN + "\n")
    sink = from_config({"url": hec.url, "token_file": str(path)}, "splunk_hec[0]", dead_letter, fast_retry())
    sink.send(make_batch("ecs", events[:3]))
    assert len(hec.events) == 3


def test_a_client_certificate_is_presented_when_configured(
    tmp_path: Path, dead_letter: DeadLetter, events: list[Any]
) -> None:
    server = make_self_signed(tmp_path / "server")
    client = make_self_signed(tmp_path / "client", name="nsg-forwarder")
    tls = TlsFiles(server.cert, server.key, client_ca=client.cert)
    with HecReceiver(TOKEN, tls=tls) as hec:
        without = make_sink(hec, dead_letter, tls_ca_file=str(server.cert))
        with pytest.raises(SinkFatal, match="certificate"):
            without.send(make_batch("ecs", events[:5]))
        with_cert = make_sink(
            hec, dead_letter, tls_ca_file=str(server.cert), tls_cert_file=str(client.cert), tls_key_file=str(client.key)
        )
        with_cert.send(make_batch("ecs", events[:5]))
        assert sorted(indexed_ids(hec)) == sorted(e.event_id for e in events[:5])
