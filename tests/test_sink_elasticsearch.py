"""Elasticsearch sink against a local ``_bulk`` receiver with data-stream semantics."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import pytest

from forwarder.sinks.base import Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.elasticsearch import from_config
from forwarder.sinks.http_common import SinkConfigError
from forwarder.sinks.retry import RetryPolicy
from tests.support.events import validate_lines
from tests.support.http_events import make_batch
from tests.support.http_receivers import Action, ElasticsearchReceiver
from tests.support.http_sinks import (
    dead_entries,
    dead_letter_fixture,  # noqa: F401 (fixture)
    events_fixture,  # noqa: F401 (fixture)
    fast_retry,
    open_sink,
)

API_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
STREAM = "logs-azure.nsg_flow-default"
VNET_STREAM = "logs-azure.vnet_flow-default"


@pytest.fixture
def es() -> Any:
    with ElasticsearchReceiver(api_key=API_KEY) as receiver:
        yield receiver


def make_sink(
    receiver: ElasticsearchReceiver, dead_letter: DeadLetter, retry: RetryPolicy | None = None, **cfg: Any
) -> Sink:
    table = {"type": "elasticsearch", "url": receiver.url, "api_key": API_KEY, "batch_max_events": 64, **cfg}
    return open_sink(from_config, table, "elasticsearch[0]", dead_letter, retry)


def check_stored(es: ElasticsearchReceiver) -> dict[str, dict[str, Any]]:
    """Every stored ECS document, after checking that NSG and VNet flows went to their own data streams."""
    nsg, vnet = es.docs(STREAM), es.docs(VNET_STREAM)
    assert {d["event"]["dataset"] for d in nsg.values()} <= {"azure.nsg_flow"}
    assert {d["event"]["dataset"] for d in vnet.values()} <= {"azure.vnet_flow"}
    docs = {**nsg, **vnet}
    validate_lines("ecs", [json.dumps(d) for d in docs.values()])
    return docs


def test_every_event_is_stored_once_under_its_id(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    sink = make_sink(es, dead_letter, max_in_flight=2)
    sink.send(make_batch("ecs", events))
    docs = check_stored(es)
    assert sorted(docs) == sorted(e.event_id for e in events)
    assert all(doc["event"]["id"] == doc_id for doc_id, doc in docs.items())
    assert es.docs(STREAM) and es.docs(VNET_STREAM), "the sample holds NSG and VNet flows"
    bulks = es.requests_to(f"/{STREAM}/_bulk")
    assert len(bulks) == -(-len(events) // 64)
    assert all(b.headers["content-type"] == "application/x-ndjson" for b in bulks)
    assert all(b.headers["content-encoding"] == "gzip" and b.wire_bytes < len(b.body) / 4 for b in bulks)
    assert all(b.headers["authorization"] == f"ApiKey {API_KEY}" for b in bulks)
    peers = {b.peer for b in bulks}
    assert len(peers) <= sink.max_in_flight < len(bulks), "requests reuse max_in_flight (2) keep-alive connections"
    assert not dead_entries(dead_letter)


def test_a_configured_data_stream_takes_every_event(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    make_sink(es, dead_letter, data_stream="logs-azure.flows-prod").send(make_batch("ecs", events))
    docs = es.docs("logs-azure.flows-prod")
    assert sorted(docs) == sorted(e.event_id for e in events)
    assert set(es.streams) == {"logs-azure.flows-prod"}
    validate_lines("ecs", [json.dumps(d) for d in docs.values()])


def test_a_replayed_batch_adds_no_duplicates(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    batch = make_batch("ecs", events)
    sink = make_sink(es, dead_letter)
    sink.send(batch)
    sink.send(batch)  # the chunk again, as after a crash before the checkpoint
    sink.send(make_batch("ecs", events[50:120]))  # and an overlapping one
    assert len(check_stored(es)) == len(events)
    assert all(es.attempts[e.event_id] >= 2 for e in events), "the replay reached Elasticsearch"
    assert getattr(sink, "duplicates", None) == len(events) + 70, "every replayed document came back 409"
    assert not dead_entries(dead_letter), "409 means already stored, not rejected"
    check_stored(es)


def test_item_failures_are_handled_item_by_item(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    throttled = [events[3].event_id, events[70].event_id]
    unavailable = events[71].event_id
    poison = {events[5].event_id, events[199].event_id}
    es.fail_item(throttled[0], 429, 429)
    es.fail_item(throttled[1], 429)
    es.fail_item(unavailable, 503)
    es.poison = poison
    sink = make_sink(es, dead_letter)
    sink.send(make_batch("ecs", events))

    dead = dead_entries(dead_letter)
    assert sorted(d["event_id"] for d in dead) == sorted(poison)
    assert all(
        "HTTP 400 document_parsing_exception: [1:42] failed to parse field [source.port]" in d["reason"] for d in dead
    )
    docs = check_stored(es)
    assert sorted(docs) == sorted(e.event_id for e in events if e.event_id not in poison)
    assert es.attempts[throttled[0]] == 3 and es.attempts[throttled[1]] == 2 and es.attempts[unavailable] == 2
    resent = {doc_id for doc_id, n in es.attempts.items() if n > 1}
    assert resent == {*throttled, unavailable}, "only the items that failed were sent again"


def test_whole_request_overload_is_retried_after_retry_after(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    es.script(Action(503, retry_after="1"), Action(429, retry_after="1"), Action(502))
    sink = make_sink(es, dead_letter, max_in_flight=1)
    started = time.monotonic()
    sink.send(make_batch("ecs", events[:50]))
    assert time.monotonic() - started >= 1.9
    bulks = es.requests_to("/")
    assert bulks[1].at - bulks[0].at >= 0.95 and bulks[2].at - bulks[1].at >= 0.95
    assert sorted(check_stored(es)) == sorted(e.event_id for e in events[:50])
    assert not dead_entries(dead_letter)


def test_connections_dropped_mid_request_are_sent_again(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    es.script(Action(drop=True), times=3)
    sink = make_sink(es, dead_letter)
    sink.send(make_batch("ecs", events))
    assert sorted(check_stored(es)) == sorted(e.event_id for e in events)


def test_a_wrong_api_key_stops_the_sink_without_quoting_it(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    wrong_pair = "VuaCfGcBCdbkQm-e5aOx:WRONGWRONGWRONGWRONG"
    sink = make_sink(es, dead_letter, api_key=wrong_pair)
    with caplog.at_level(logging.DEBUG), pytest.raises(SinkFatal) as raised:
        sink.send(make_batch("ecs", events[:5]))
    message = str(raised.value)
    assert "HTTP 401" in message and "check api_key" in message
    encoded = base64.b64encode(wrong_pair.encode()).decode()
    for secret in (wrong_pair, "WRONGWRONGWRONGWRONG", encoded):
        assert secret not in message and secret not in caplog.text
    assert not dead_entries(dead_letter)


def test_basic_auth(dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    with ElasticsearchReceiver(username="forwarder", password="s3cret-pa55") as es:
        table = {"url": es.url, "username": "forwarder", "password": "s3cret-pa55"}
        from_config(table, "es", dead_letter, fast_retry()).send(make_batch("ecs", events[:10]))
        assert len(check_stored(es)) == 10
        bad = from_config({**table, "password": "not-the-pa55word"}, "es", dead_letter, fast_retry())
        with caplog.at_level(logging.DEBUG), pytest.raises(SinkFatal) as raised:
            bad.send(make_batch("ecs", events[10:20]))
        assert "not-the-pa55word" not in str(raised.value) and "not-the-pa55word" not in caplog.text


def test_a_forbidden_data_stream_stops_the_sink(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    es.forbidden_streams.add(STREAM)
    sink = make_sink(es, dead_letter)
    with pytest.raises(SinkFatal, match=r"HTTP 403.*create_doc"):
        sink.send(make_batch("ecs", events[:5]))


def test_a_request_too_large_is_split(dead_letter: DeadLetter, events: list[Any]) -> None:
    with ElasticsearchReceiver(api_key=API_KEY, max_content_length=30_000) as es:
        sink = make_sink(es, dead_letter, batch_max_events=5000)
        sink.send(make_batch("ecs", events))
        assert sorted(check_stored(es)) == sorted(e.event_id for e in events)
        assert not dead_entries(dead_letter)


def test_a_request_elasticsearch_cannot_read_is_narrowed_to_the_bad_document(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    # A proxy or an older cluster may refuse the whole request for one document; halving finds it.
    bad = events[17].event_id
    original = es.handle

    def refuse_requests_with_bad(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if bad.encode() in body:
            return es.scripted_reply(
                Action(400, {"error": {"type": "parse_exception", "reason": "request body is malformed"}})
            )
        return original(method, path, headers, body)

    es.handle = refuse_requests_with_bad  # type: ignore[method-assign]
    sink = make_sink(es, dead_letter)
    sink.send(make_batch("ecs", events[:64]))
    dead = dead_entries(dead_letter)
    assert [d["event_id"] for d in dead] == [bad]
    assert "HTTP 400" in dead[0]["reason"] and "parse_exception" in dead[0]["reason"]
    assert len(check_stored(es)) == 63


def test_ocsf_documents_get_the_timestamp_a_data_stream_needs(
    es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    sink = make_sink(es, dead_letter, format="ocsf", data_stream="logs-azure.nsg_flow_ocsf-default")
    batch = make_batch("ocsf", events[:40])
    sink.send(batch)
    docs = es.docs("logs-azure.nsg_flow_ocsf-default")
    assert len(docs) == 40 and not dead_entries(dead_letter)
    by_id = {e.event_id: e for e in events[:40]}
    for doc_id, doc in docs.items():
        assert doc["@timestamp"] == by_id[doc_id].timestamp_ms
    validate_lines("ocsf", [json.dumps({k: v for k, v in d.items() if k != "@timestamp"}) for d in docs.values()])


def test_a_pipeline_is_passed_on(es: ElasticsearchReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    make_sink(es, dead_letter, pipeline="azure-flows").send(make_batch("ecs", events[:3]))
    assert es.paths and all("pipeline=azure-flows" in p for p in es.paths)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "https://es:9200", "format": "cef"}, "format must be ecs or ocsf, not cef"),
        ({"url": "https://es:9200", "api_key": "k" * 20, "username": "u", "password": "p"}, "not both"),
        ({"url": "https://es:9200", "username": "u"}, "username and password go together"),
        ({"url": "https://es:9200", "data_stream": "Logs-Bad"}, "not a valid Elasticsearch index name"),
        ({"url": "https://es:9200/_bulk"}, "without /_bulk"),
        ({"url": "https://es:9200", "index": "x"}, "unknown key(s) index"),
    ],
)
def test_bad_tables_are_config_errors(dead_letter: DeadLetter, table: dict[str, Any], message: str) -> None:
    with pytest.raises(SinkConfigError) as raised:
        from_config(table, "elasticsearch[0]", dead_letter, fast_retry())
    assert message in str(raised.value)
    assert "k" * 20 not in str(raised.value)
