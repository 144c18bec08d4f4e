"""HTTP sinks through an egress proxy: a CONNECT tunnel with the endpoint's TLS checked end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from forwarder.sinks.base import SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.http import from_config
from forwarder.sinks.http_common import SinkConfigError, settings_from
from tests.support.connect_proxy import ConnectProxy
from tests.support.events import validate_lines
from tests.support.http_events import make_batch
from tests.support.http_receivers import NdjsonReceiver, make_self_signed
from tests.support.http_sinks import (
    dead_entries,
    dead_letter_fixture,  # noqa: F401 (fixture)
    events_fixture,  # noqa: F401 (fixture)
    open_sink,
)

PROXY_USER = "forwarder"
PROXY_PASSWORD = "pr0xy-SECRET-pass"


def test_events_go_through_the_proxy_tunnel_with_its_credentials(
    tmp_path: Path, dead_letter: DeadLetter, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_self_signed(tmp_path / "tls")
    with (
        NdjsonReceiver("/ingest", tls=tls) as receiver,
        ConnectProxy(auth=f"{PROXY_USER}:{PROXY_PASSWORD}") as proxy,
        caplog.at_level(logging.DEBUG),
    ):
        table = {"type": "http", "url": receiver.url + "/ingest", "tls_ca_file": str(tls.cert),
                 "proxy": proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"), "batch_max_events": 50}  # fmt: skip
        sink = open_sink(from_config, table, "http[0]", dead_letter)
        sink.send(make_batch("ecs", events[:120]))
        sink.close()
        host_port = receiver.url.split("://", 1)[1]
    got = sorted(json.loads(line)["event"]["id"] for line in receiver.lines)
    assert got == sorted(e.event_id for e in events[:120])
    validate_lines("ecs", receiver.lines)
    assert proxy.connects and set(proxy.connects) == {host_port}, "every request went through the tunnel"
    assert not dead_entries(dead_letter)
    assert PROXY_PASSWORD not in caplog.text


def test_a_proxy_that_refuses_the_credentials_stops_the_sink_without_showing_them(
    tmp_path: Path, dead_letter: DeadLetter, events: list[Any]
) -> None:
    tls = make_self_signed(tmp_path / "tls")
    with NdjsonReceiver("/ingest", tls=tls) as receiver, ConnectProxy(auth="forwarder:right") as proxy:
        table = {"type": "http", "url": receiver.url + "/ingest", "tls_ca_file": str(tls.cert),
                 "proxy": proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}")}  # fmt: skip
        sink = open_sink(from_config, table, "http[0]", dead_letter)
        with pytest.raises(SinkFatal) as raised:
            sink.send(make_batch("ecs", events[:5]))
        sink.close()
    assert "407" in str(raised.value) and PROXY_PASSWORD not in str(raised.value)
    assert not receiver.lines


def test_https_proxy_from_the_environment_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.corp.example:3128")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.delenv("no_proxy", raising=False)

    def proxy_for(url: str, **cfg: Any) -> str:
        return settings_from({"url": url, **cfg}, "http[0]", batch_max_events=10, batch_max_bytes=10_000).proxy

    assert proxy_for("https://splunk.example.net:8088") == "http://egress.corp.example:3128"
    assert proxy_for("https://es.internal.example:9200") == ""  # NO_PROXY
    assert proxy_for("https://127.0.0.1:9200") == ""  # loopback is always direct
    assert proxy_for("http://collector.example.net/ingest") == ""  # plain http is never proxied
    assert proxy_for("https://splunk.example.net:8088", proxy="") == ""  # the key overrides the environment
    with pytest.raises(SinkConfigError, match="proxy tunnels https only"):
        proxy_for("http://collector.example.net/ingest", proxy="http://egress:3128")
    with pytest.raises(SinkConfigError, match="proxy must be"):
        proxy_for("https://splunk.example.net:8088", proxy="socks5://egress:1080")
