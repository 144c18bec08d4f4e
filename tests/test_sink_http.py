"""Generic NDJSON HTTP sink against a local NDJSON collector."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from forwarder.sinks.base import Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http import from_config
from forwarder.sinks.http_common import SinkConfigError
from forwarder.sinks.retry import RetryPolicy
from tests.support.events import validate_lines
from tests.support.http_events import make_batch
from tests.support.http_receivers import Action, NdjsonReceiver
from tests.support.http_sinks import (
    dead_entries,
    dead_letter_fixture,  # noqa: F401 (fixture)
    events_fixture,  # noqa: F401 (fixture)
    open_sink,
)

BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.sig"


@pytest.fixture
def collector() -> Any:
    with NdjsonReceiver("/ingest", required_headers={"Authorization": BEARER}) as receiver:
        yield receiver


def make_sink(receiver: NdjsonReceiver, dead_letter: DeadLetter, retry: RetryPolicy | None = None, **cfg: Any) -> Sink:
    table = {
        "type": "http",
        "url": receiver.url + "/ingest",
        "headers": {"Authorization": BEARER, "X-Source": "nsg-forwarder"},
        "batch_max_events": 64,
        **cfg,
    }
    return open_sink(from_config, table, "http[0]", dead_letter, retry)


def ids(lines: list[str]) -> list[str]:
    return sorted(json.loads(line)["event"]["id"] for line in lines)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_events_arrive_as_ndjson_with_the_configured_headers(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any], method: str
) -> None:
    batch = make_batch("ecs", events)
    make_sink(collector, dead_letter, method=method.lower(), max_in_flight=1).send(batch)
    assert collector.lines == list(batch.lines), "in order (one request at a time), one event per line"
    validate_lines("ecs", collector.lines)
    posts = collector.requests_to("/ingest")
    assert len(posts) == -(-len(events) // 64)
    assert {p.method for p in posts} == {method}
    assert all(p.headers["x-source"] == "nsg-forwarder" for p in posts)
    assert all(p.headers["content-type"] == "application/x-ndjson" for p in posts)
    assert all(p.headers["content-encoding"] == "gzip" and p.body.endswith(b"\n") for p in posts)
    assert len({p.peer for p in posts}) == 1, "one keep-alive connection"


def test_cef_goes_as_plain_text_lines(collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    batch = make_batch("cef", events[:30])
    make_sink(collector, dead_letter, format="cef", gzip=False).send(batch)
    assert collector.lines == list(batch.lines)
    validate_lines("cef", collector.lines)
    assert collector.seen[0].headers["content-type"].startswith("text/plain")
    assert "content-encoding" not in collector.seen[0].headers


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any], status: int
) -> None:
    collector.script(Action(status, "busy"), times=2)
    make_sink(collector, dead_letter).send(make_batch("ecs", events[:20]))
    assert ids(collector.lines) == sorted(e.event_id for e in events[:20])
    assert len(collector.seen) == 3 and not dead_entries(dead_letter)


def test_retry_after_is_honoured(collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    collector.script(Action(429, "slow down", retry_after="1"))
    started = time.monotonic()
    make_sink(collector, dead_letter).send(make_batch("ecs", events[:20]))
    assert time.monotonic() - started >= 0.95
    assert collector.seen[1].at - collector.seen[0].at >= 0.95
    assert len(collector.lines) == 20


def test_a_rejected_request_is_dead_lettered_with_status_and_excerpt(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    collector.script(Action(200, passthrough=True), Action(422, {"error": "field 'x' not allowed", "line": 7}))
    make_sink(collector, dead_letter, max_in_flight=1).send(make_batch("ecs", events[:150]))  # 64 + 64 + 22
    dead = dead_entries(dead_letter)
    assert [d["event_id"] for d in dead] == [e.event_id for e in events[64:128]]
    assert "HTTP 422" in dead[0]["reason"] and "field 'x' not allowed" in dead[0]["reason"]
    assert ids(collector.lines) == sorted(e.event_id for e in events[:64] + events[128:150])
    validate_lines("ecs", collector.lines)


def test_a_dead_letter_entry_torn_by_a_crash_is_cut_before_new_entries(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    assert dead_letter.path is not None
    whole = b'{"sink":"http[0]","reason":"earlier","event_id":"x-1"}\n'
    dead_letter.path.write_bytes(whole + b'{"sink":"http[0]","reason":"cut sh')  # the write a SIGKILL stopped
    collector.script(Action(422, {"error": "no"}))
    make_sink(collector, dead_letter, max_in_flight=1).send(make_batch("ecs", events[:3]))
    dead = dead_entries(dead_letter)  # every line parses: the torn one is gone, not merged with the next
    assert [d["event_id"] for d in dead] == ["x-1"] + [e.event_id for e in events[:3]]


def test_rejected_credentials_stop_the_sink_without_showing_them(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(collector, dead_letter, headers={"Authorization": "Bearer wrong-s3cret-value"})
    with caplog.at_level(logging.DEBUG), pytest.raises(SinkFatal) as raised:
        sink.send(make_batch("ecs", events[:5]))
    assert "HTTP 401" in str(raised.value)
    assert "wrong-s3cret-value" not in str(raised.value) and "wrong-s3cret-value" not in caplog.text
    assert not dead_entries(dead_letter)


def test_a_wrong_path_stops_the_sink(collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]) -> None:
    sink = make_sink(collector, dead_letter, url=collector.url + "/ingset")
    with pytest.raises(SinkFatal, match="HTTP 404"):
        sink.send(make_batch("ecs", events[:5]))


def test_a_query_string_is_kept_but_never_shown(
    dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with NdjsonReceiver("/ingest") as collector:
        collector.script(Action(503, "busy"))
        sink = make_sink(collector, dead_letter, url=collector.url + "/ingest?sig=Zm9vYmFyc2VjcmV0")
        with caplog.at_level(logging.DEBUG):
            sink.send(make_batch("ecs", events[:5]))
        assert all(s.path == "/ingest?sig=Zm9vYmFyc2VjcmV0" for s in collector.seen)
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("forwarder")]
        assert any("Retrying after a transient failure" in m for m in ours)
        # urllib3's own DEBUG lines show the request line; the service keeps urllib3 at WARNING.
        assert not any("Zm9vYmFyc2VjcmV0" in m for m in ours)


def test_connections_dropped_mid_request_are_sent_again(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    collector.script(Action(drop=True), times=3)
    make_sink(collector, dead_letter).send(make_batch("ecs", events))
    assert ids(collector.lines) == sorted(e.event_id for e in events)


def test_a_request_too_large_is_split(dead_letter: DeadLetter, events: list[Any]) -> None:
    with NdjsonReceiver("/ingest", required_headers={"Authorization": BEARER}, max_content_length=10_000) as c:
        make_sink(c, dead_letter, batch_max_events=500).send(make_batch("ecs", events))
        assert c.lines == list(make_batch("ecs", events).lines)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "https://x/in", "method": "GET"}, "method must be POST or PUT"),
        ({"url": "https://x/in", "headers": {"X-Key": 5}}, "headers.X-Key must be a string"),
        ({"url": "https://x/in", "headers": {"X-Key": "a\r\nInjected: 1"}}, "headers.X-Key contains a line break"),
        ({"url": "https://x/in", "headers": {"Content-Length": "5"}}, "set by the sink itself"),
        ({"url": "https://x/in", "headers": ["a"]}, "headers must be a table"),
        ({"url": "https://x/in#frag"}, "must not have a query or fragment"),
    ],
)
def test_bad_tables_are_config_errors(dead_letter: DeadLetter, table: dict[str, Any], message: str) -> None:
    with pytest.raises(SinkConfigError) as raised:
        from_config(table, "http[0]", dead_letter, RetryPolicy())
    assert message in str(raised.value)
    assert "Injected" not in str(raised.value)


@pytest.mark.parametrize("in_flight", [1, 3])
def test_requests_overlap_up_to_max_in_flight(dead_letter: DeadLetter, events: list[Any], in_flight: int) -> None:
    # Long answers so that a loaded machine cannot blur "one after the other" into "all at once".
    with NdjsonReceiver("/ingest", required_headers={"Authorization": BEARER}, latency=1.0) as slow:
        make_sink(slow, dead_letter, max_in_flight=in_flight).send(make_batch("ecs", events[:192]))  # 3 requests
        arrivals = sorted(s.at for s in slow.seen)
        assert len(arrivals) == 3 and sorted(ids(slow.lines)) == sorted(e.event_id for e in events[:192])
        spread = arrivals[-1] - arrivals[0]
        if in_flight == 1:
            assert spread >= 1.9, "each request waited for the answer to the one before"
        else:
            assert spread < 0.9, "all three were under way at once"
        assert len({s.peer for s in slow.seen}) == in_flight


def test_a_fatal_answer_stops_the_other_requests_of_the_batch(
    collector: NdjsonReceiver, dead_letter: DeadLetter, events: list[Any]
) -> None:
    # One request is refused for good while its siblings keep getting 503: send must still end.
    collector.script(Action(401), *[Action(503, "busy")] * 50)
    sink = make_sink(collector, dead_letter, max_in_flight=2)
    started = time.monotonic()
    with pytest.raises(SinkFatal, match="HTTP 401"):
        sink.send(make_batch("ecs", events))
    assert time.monotonic() - started < 5
    assert not dead_entries(dead_letter)


# -- the config schema fragments of the three HTTP sinks ------------------------------------------

FRAGMENTS = Path(__file__).resolve().parents[1] / "schemas" / "fragments"
SINK_MODULES = {
    "splunk_hec": "forwarder.sinks.splunk_hec",
    "elasticsearch": "forwarder.sinks.elasticsearch",
    "http": "forwarder.sinks.http",
}
MINIMAL = {
    "splunk_hec": {"type": "splunk_hec", "url": "https://splunk.example.net:8088", "token": "x" * 36},
    "elasticsearch": {"type": "elasticsearch", "url": "https://es.example.net:9200", "api_key": "k" * 40},
    "http": {"type": "http", "url": "https://collector.example.net/ingest"},
}


def fragment(kind: str) -> Any:
    import jsonschema

    schema = json.loads((FRAGMENTS / f"sink-{kind}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return schema, cls(schema)


@pytest.mark.parametrize("kind", sorted(SINK_MODULES))
def test_fragment_lists_exactly_the_keys_the_sink_takes_with_its_defaults(kind: str, dead_letter: DeadLetter) -> None:
    import importlib

    module = importlib.import_module(SINK_MODULES[kind])
    schema, check = fragment(kind)
    assert set(schema["properties"]) == set(module.KEYS)
    assert not list(check.iter_errors(MINIMAL[kind]))
    sink = module.from_config(MINIMAL[kind], kind, dead_letter, RetryPolicy())
    props = schema["properties"]
    for key in ("timeout", "tls_verify", "gzip", "gzip_level", "batch_max_events", "batch_max_bytes", "max_in_flight"):
        assert getattr(sink.settings, key) == props[key]["default"], key
    assert sink.format == props["format"]["default"]


@pytest.mark.parametrize(
    ("kind", "table"),
    [
        ("splunk_hec", {"type": "splunk_hec", "url": "https://s:8088", "token": "t", "tokn": "x"}),
        ("splunk_hec", {"type": "splunk_hec", "url": "https://s:8088"}),
        ("splunk_hec", {"type": "splunk_hec", "url": "https://s:8088", "token": "t", "token_file": "/f"}),
        ("splunk_hec", {"type": "splunk_hec", "url": "https://s:8088", "token": "t", "channel": "nope"}),
        ("splunk_hec", {"type": "splunk_hec", "url": "https://u:p@s:8088", "token": "t"}),
        ("elasticsearch", {"type": "elasticsearch", "url": "https://es:9200", "format": "cef"}),
        (
            "elasticsearch",
            {"type": "elasticsearch", "url": "https://es:9200", "api_key": "k", "username": "u", "password": "p"},
        ),
        ("elasticsearch", {"type": "elasticsearch", "url": "https://es:9200", "username": "u"}),
        ("elasticsearch", {"type": "elasticsearch", "url": "https://es:9200", "data_stream": "Logs-X"}),
        ("http", {"type": "http", "url": "https://c/in", "headers": {"Content-Length": "1"}}),
        ("http", {"type": "http", "url": "https://c/in", "method": "GET"}),
        ("http", {"type": "http", "url": "https://c/in", "batch_max_events": 0}),
    ],
)
def test_fragment_rejects_what_the_sink_rejects(kind: str, table: dict[str, Any], dead_letter: DeadLetter) -> None:
    import importlib

    _, check = fragment(kind)
    assert list(check.iter_errors(table)), "the schema lets it through"
    with pytest.raises(SinkConfigError):
        importlib.import_module(SINK_MODULES[kind]).from_config(table, kind, dead_letter, RetryPolicy())


def test_the_design_examples_validate() -> None:
    _, hec = fragment("splunk_hec")
    _, es = fragment("elasticsearch")
    assert not list(
        hec.iter_errors(
            {
                "type": "splunk_hec",
                "url": "https://splunk.example.net:8088",
                "token": "${HEC_TOKEN}",
                "sourcetype": "azure:nsg:flow",
            }
        )
    )
    assert not list(
        es.iter_errors(
            {
                "type": "elasticsearch",
                "url": "https://es.example.net:9200",
                "api_key": "${ES_API_KEY}",
                "data_stream": "logs-azure.nsg_flow-default",
            }
        )
    )
