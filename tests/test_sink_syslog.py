"""Syslog sink against a real rsyslogd: what rsyslog parsed must be what we meant, and nothing is lost."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder
from forwarder.formats import formatter
from forwarder.samples.generator import BlobSpec, blob_bytes
from forwarder.sinks.base import Batch, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetryPolicy
from forwarder.sinks.syslog import SyslogConfigError, SyslogSink, from_config
from forwarder.sinks.syslog_format import Framer
from tests.support import rsyslog as rsyslog_support
from tests.support.events import validate_lines
from tests.support.rsyslog import Rsyslog, parsed_msg

# The receiver fixtures live with the receiver; naming them here makes pytest find them.
rsyslog = rsyslog_support.rsyslog
syslog_certs = rsyslog_support.syslog_certs

pytestmark = [pytest.mark.rsyslog, pytest.mark.timeout(60)]

LOCAL0 = 16
INFO, NOTICE = 6, 5


# --- events -------------------------------------------------------------------------------------


def blob_events(spec: BlobSpec) -> list[FlowEvent]:
    data = blob_bytes(spec)
    head = HEAD_RE.match(data)
    tail = TAIL_RE.search(data)
    assert head and tail
    source = f"teststorage/{spec.container}/{spec.blob_name}"
    issues = IssueLog()
    decoder = RecordDecoder(source, head.end(), issues)
    normaliser = Normaliser(source, issues)
    events = [e for r in decoder.feed(data[head.end() : tail.start()], final=True) for e in normaliser.events(r)]
    assert issues.total == 0
    return events


def make_events(minutes: int = 3, per_minute: int = 20) -> list[FlowEvent]:
    """NSG v2 and VNet events (both MSGIDs, allowed and denied, IPv4 and IPv6)."""
    hour = datetime(2026, 11, 25, 10, tzinfo=UTC)
    nsg = BlobSpec(kind="nsg", version=2, minutes=minutes, tuples_per_minute=per_minute, hour=hour)
    vnet = BlobSpec(kind="vnet", version=4, minutes=minutes, tuples_per_minute=per_minute, hour=hour, seed=2)
    return blob_events(nsg) + blob_events(vnet)


def make_batch(events: list[FlowEvent], fmt: str) -> Batch:
    return Batch(events, formatter(fmt).format_many(events), "test", 0, 0)


def event_id(fmt: str, doc: dict[str, Any]) -> str:
    if fmt == "cef":
        return str(doc["extension"]["externalId"])
    if fmt == "ecs":
        return str(doc["event"]["id"])
    return str(doc["metadata"]["uid"])


def fast_retry(**kw: Any) -> RetryPolicy:
    return RetryPolicy(initial=0.05, maximum=0.5, **kw)


def make_sink(
    receiver: Rsyslog, listener: str, tmp_path: Path, retry: RetryPolicy | None = None, **cfg: Any
) -> tuple[SyslogSink, DeadLetter]:
    protocol = "udp" if listener == "udp" else "tls" if "tls" in listener else "tcp"
    table: dict[str, Any] = {
        "type": "syslog",
        "format": "cef",
        "host": receiver.host,
        "port": receiver.ports[listener],
        "protocol": protocol,
        "timeout": 10,
    }
    if protocol == "tls":
        table["tls_ca_file"] = str(receiver.certs.ca)
    if listener == "mtls":
        table["tls_cert_file"] = str(receiver.certs.client_cert)
        table["tls_key_file"] = str(receiver.certs.client_key)
    table.update(cfg)
    table = {k: v for k, v in table.items() if v is not None}
    dead_letter = DeadLetter(tmp_path / "dead-letter.ndjson")
    sink = from_config(table, f"syslog[{listener}]", dead_letter, retry or fast_retry())
    assert isinstance(sink, SyslogSink)
    return sink, dead_letter


def dead_lettered(dead_letter: DeadLetter) -> list[dict[str, Any]]:
    if dead_letter.path is None or not dead_letter.path.exists():
        return []
    return [json.loads(line) for line in dead_letter.path.read_text().splitlines()]


def check_messages(
    fmt: str, events: list[FlowEvent], got: list[dict[str, Any]], rfc: str = "5424", hostname: str | None = None
) -> None:
    """Every event arrived exactly once, parsed by rsyslog as the intended RFC, with a valid event as MSG."""
    assert len(got) == len(events), f"{len(got)} messages for {len(events)} events"
    docs = validate_lines(fmt, [parsed_msg(m) for m in got])
    by_id = {e.event_id: e for e in events}
    seen = [event_id(fmt, d) for d in docs]
    assert sorted(seen) == sorted(by_id), "the event ids rsyslog received differ from those sent"
    pid = str(os.getpid())
    for message, eid in zip(got, seen, strict=True):
        event = by_id[eid]
        assert message["pri"] == str(LOCAL0 * 8 + (INFO if event.allowed else NOTICE)), message
        assert message["app_name"] == "nsg-forwarder", message
        assert message["procid"] == pid, message
        if hostname is not None:
            assert message["hostname"] == hostname, message
        flow_time = datetime.fromtimestamp(event.timestamp_ms / 1000, UTC)
        if rfc == "5424":
            assert message["version"] == "1", message
            assert message["msgid"] == ("NSGFLOW" if event.ctx.kind == "nsg" else "VNETFLOW"), message
            assert datetime.fromisoformat(message["timestamp"]) == flow_time, message
        else:
            assert message["version"] == "0", message  # rsyslog's legacy (RFC 3164) parser took it
            assert message["tag"] == f"nsg-forwarder[{pid}]:", message
            # No year or zone in RFC 3164: rsyslog fills in its own year; month, day and time must match.
            assert message["timestamp"][5:19] == flow_time.strftime("%m-%dT%H:%M:%S"), message


# --- delivery over each transport ---------------------------------------------------------------


@pytest.mark.parametrize("framing", ["octet-counting", "lf"])
def test_tcp_delivers_every_event_parsed_as_rfc5424(rsyslog: Rsyslog, tmp_path: Path, framing: str) -> None:
    events = make_events()
    sink, dead_letter = make_sink(rsyslog, "tcp", tmp_path, framing=framing, hostname="fw01.example.net")
    sink.open()
    for start in range(0, len(events), 50):
        sink.send(make_batch(events[start : start + 50], "cef"))
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tcp", len(events)), hostname="fw01.example.net")
    assert dead_lettered(dead_letter) == []


def test_tcp_ecs_json_with_default_hostname(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events()
    sink, _ = make_sink(rsyslog, "tcp", tmp_path, format="ecs")
    sink.open()
    sink.send(make_batch(events, "ecs"))
    sink.close()
    got = rsyslog.wait_for("tcp", len(events))
    check_messages("ecs", events, got, hostname=sink.config.hostname)
    assert sink.config.hostname not in ("", "-")


def test_rfc3164_over_tcp(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events()
    sink, _ = make_sink(rsyslog, "tcp", tmp_path, rfc="3164", hostname="fw01", framing="lf")
    sink.open()
    sink.send(make_batch(events, "cef"))
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tcp", len(events)), rfc="3164", hostname="fw01")


def test_udp_delivers_one_datagram_per_event(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=2, per_minute=20)
    sink, _ = make_sink(rsyslog, "udp", tmp_path, hostname="fw01.example.net")
    sink.open()
    # Small batches with pauses: UDP has no flow control, and an unprivileged rsyslog cannot enlarge
    # its socket buffer, so a burst could overflow it (which is UDP's nature, not the sink's doing).
    for start in range(0, len(events), 10):
        sink.send(make_batch(events[start : start + 10], "cef"))
        time.sleep(0.01)
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("udp", len(events)), hostname="fw01.example.net")


def test_udp_rfc3164_ecs(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1, per_minute=20)
    sink, _ = make_sink(rsyslog, "udp", tmp_path, rfc=3164, format="ecs", hostname="fw01")
    sink.open()
    for start in range(0, len(events), 10):
        sink.send(make_batch(events[start : start + 10], "ecs"))
        time.sleep(0.01)
    sink.close()
    check_messages("ecs", events, rsyslog.wait_for("udp", len(events)), rfc="3164", hostname="fw01")


def test_udp_messages_above_max_datagram_are_dead_lettered_not_cut(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1, per_minute=20)
    batch = make_batch(events, "ecs")
    sink, dead_letter = make_sink(rsyslog, "udp", tmp_path, format="ecs")
    framer = Framer(
        rfc="5424", facility=LOCAL0, severity_allowed=INFO, severity_denied=NOTICE, hostname=sink.config.hostname,
        app_name="nsg-forwarder", procid=str(os.getpid()), msgid=None, sd_id=None, octet_counting=False,
    )  # fmt: skip
    sizes = [len(d) for d in framer.datagrams(batch.events, batch.lines)]
    limit = sorted(sizes)[len(sizes) // 2]
    assert min(sizes) <= limit < max(sizes)
    sink, dead_letter = make_sink(rsyslog, "udp", tmp_path, format="ecs", max_datagram=limit)
    sink.open()
    sink.send(batch)
    sink.close()
    small = {e.event_id for e, n in zip(events, sizes, strict=True) if n <= limit}
    big = {e.event_id for e, n in zip(events, sizes, strict=True) if n > limit}
    got = rsyslog.wait_for("udp", len(small))
    docs = validate_lines("ecs", [parsed_msg(m) for m in got])
    assert sorted(event_id("ecs", d) for d in docs) == sorted(small)
    entries = dead_lettered(dead_letter)
    assert sorted(e["event_id"] for e in entries) == sorted(big)
    assert all(f"max_datagram={limit}" in e["reason"] for e in entries)
    validate_lines("ecs", [e["event"] for e in entries])  # the whole event is kept, not a cut one


def test_structured_data_carries_the_event_id(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1)
    sink, _ = make_sink(rsyslog, "tcp", tmp_path, sd_id="nsgflow@32473", msgid="FLOW", facility="local4")
    sink.open()
    sink.send(make_batch(events, "cef"))
    sink.close()
    got = rsyslog.wait_for("tcp", len(events))
    docs = validate_lines("cef", [parsed_msg(m) for m in got])
    for message, doc in zip(got, docs, strict=True):
        assert message["sd"] == f'[nsgflow@32473 id="{event_id("cef", doc)}"]'
        assert message["msgid"] == "FLOW"
        assert int(message["pri"]) // 8 == 20  # local4


# --- TLS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("listener", "fmt"), [("tls", "ecs"), ("mtls", "ocsf")])
def test_tls_delivers_every_event(rsyslog: Rsyslog, tmp_path: Path, listener: str, fmt: str) -> None:
    events = make_events()
    sink, dead_letter = make_sink(rsyslog, listener, tmp_path, format=fmt, hostname="fw01.example.net")
    sink.open()
    for start in range(0, len(events), 40):
        sink.send(make_batch(events[start : start + 40], fmt))
    sink.close()
    check_messages(fmt, events, rsyslog.wait_for(listener, len(events)), hostname="fw01.example.net")
    assert dead_lettered(dead_letter) == []


def test_tls_by_host_name(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1)
    sink, _ = make_sink(rsyslog, "tls", tmp_path, host="localhost")
    sink.open()
    sink.send(make_batch(events, "cef"))
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tls", len(events)))


def test_tls_certificate_for_another_name_is_fatal(rsyslog: Rsyslog, tmp_path: Path) -> None:
    sink, _ = make_sink(rsyslog, "tls_wrongname", tmp_path)
    with pytest.raises(SinkFatal, match=r"not valid for '127\.0\.0\.1'.*tls_server_name"):
        sink.open()
    # Also when the receiver changes its certificate while we are running: no retry loop, no plain fallback.
    with pytest.raises(SinkFatal, match="certificate"):
        sink.send(make_batch(make_events(minutes=1), "cef"))
    assert rsyslog.messages("tls_wrongname") == []


def test_tls_server_name_override_accepts_the_name_on_the_certificate(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1)
    sink, _ = make_sink(rsyslog, "tls_wrongname", tmp_path, tls_server_name="wrong.example.net")
    sink.open()
    sink.send(make_batch(events, "cef"))
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tls_wrongname", len(events)))


def test_tls_untrusted_ca_is_fatal(rsyslog: Rsyslog, tmp_path: Path) -> None:
    sink, _ = make_sink(rsyslog, "tls_untrusted", tmp_path)
    with pytest.raises(SinkFatal, match=r"not signed by a trusted CA.*tls_ca_file"):
        sink.open()
    assert rsyslog.messages("tls_untrusted") == []


def test_tls_without_verification_is_an_explicit_choice(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1)
    sink, _ = make_sink(rsyslog, "tls_untrusted", tmp_path, tls_ca_file=None, tls_verify=False)
    sink.open()
    sink.send(make_batch(events, "cef"))
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tls_untrusted", len(events)))


def test_mutual_tls_without_a_client_certificate_says_so(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1)
    sink, dead_letter = make_sink(
        rsyslog, "mtls", tmp_path, retry=fast_retry(max_attempts=3), tls_cert_file=None, tls_key_file=None
    )
    sink.open()
    sink.send(make_batch(events, "cef"))  # the test policy gives up after 3 attempts: dead-letter
    sink.close()
    entries = dead_lettered(dead_letter)
    assert sorted(e["event_id"] for e in entries) == sorted(e.event_id for e in events)
    assert "set tls_cert_file and tls_key_file" in entries[0]["reason"]
    assert rsyslog.messages("mtls") == []


def test_missing_tls_files_are_fatal_at_open(rsyslog: Rsyslog, tmp_path: Path) -> None:
    sink, _ = make_sink(rsyslog, "mtls", tmp_path, tls_cert_file=str(tmp_path / "nope.pem"))
    with pytest.raises(SinkFatal, match="cannot load the TLS files"):
        sink.open()


# --- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["tcp", "tls"])
def test_receiver_restart_mid_run_loses_nothing(rsyslog: Rsyslog, tmp_path: Path, listener: str) -> None:
    events = make_events(minutes=20, per_minute=20)  # 800 events
    sink, dead_letter = make_sink(rsyslog, listener, tmp_path)
    sink.open()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for start in range(0, len(events), 20):
                sink.send(make_batch(events[start : start + 20], "cef"))
                time.sleep(0.002)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    sender = threading.Thread(target=run)
    sender.start()
    rsyslog.wait_for(listener, len(events) // 4, settle=0)
    rsyslog.stop()
    time.sleep(0.5)  # the sender meets a dead receiver and retries
    rsyslog.start()
    sender.join(timeout=40)
    assert not sender.is_alive() and not errors, errors
    sink.close()
    expected = {e.event_id for e in events}
    deadline = time.monotonic() + 20
    while True:
        got = rsyslog.messages(listener)
        seen = {event_id("cef", d) for d in validate_lines("cef", [parsed_msg(m) for m in got])}
        if expected <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    missing = expected - seen
    assert not missing, f"{len(missing)} of {len(expected)} events lost across the receiver restart"
    assert dead_lettered(dead_letter) == []


def test_receiver_down_at_start_is_waited_for(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=1)
    rsyslog.stop()
    sink, _ = make_sink(rsyslog, "tcp", tmp_path)
    sink.open()  # only a warning: sends retry until the receiver is there
    starter = threading.Timer(1.0, rsyslog.start)
    starter.start()
    began = time.monotonic()
    sink.send(make_batch(events, "cef"))
    assert time.monotonic() - began >= 0.9
    starter.join()
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tcp", len(events)))


def test_udp_receiver_down_is_backpressure_then_dead_letter_when_retries_are_capped(
    rsyslog: Rsyslog, tmp_path: Path
) -> None:
    events = make_events(minutes=1)
    rsyslog.stop()
    sink, dead_letter = make_sink(rsyslog, "udp", tmp_path, retry=fast_retry(max_attempts=3))
    sink.open()
    sink.send(make_batch(events, "cef"))
    sink.close()
    entries = dead_lettered(dead_letter)
    assert sorted(e["event_id"] for e in entries) == sorted(e.event_id for e in events)
    assert "Connection refused" in entries[0]["reason"]


def test_reopen_reconnects_and_keeps_delivering(rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = make_events(minutes=2)
    half = len(events) // 2
    sink, _ = make_sink(rsyslog, "tls", tmp_path)
    sink.open()
    sink.send(make_batch(events[:half], "cef"))
    assert sink._conn is not None
    before = sink._conn.sock.getsockname()
    sink.reopen()
    sink.send(make_batch(events[half:], "cef"))
    assert sink._conn is not None and sink._conn.sock.getsockname() != before
    sink.close()
    check_messages("cef", events, rsyslog.wait_for("tls", len(events)))
    assert "non-properly terminated" not in rsyslog.diagnostics()  # we close TLS with close_notify


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"protocol": "sctp"}, "protocol: expected one of udp, tcp, tls"),
        ({"framing": "nul"}, "framing"),
        ({"rfc": "5425"}, "rfc"),
        ({"facility": "local9"}, "facility: unknown value 'local9'"),
        ({"facility": 24}, "facility: must be between 0 and 23"),
        ({"severity_denied": "loud"}, "severity_denied"),
        ({"app_name": "nsg forwarder"}, "app_name"),
        ({"sd_id": "nsg"}, "sd_id"),
        ({"max_datagram": 70000}, "max_datagram"),
        ({"tls_ca_file": "/x"}, "tls_ca_file: only applies with protocol"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"host": ""}, "host is required"),
    ],
)
def test_bad_config_names_the_key(cfg: dict[str, Any], message: str, tmp_path: Path) -> None:
    table = {"type": "syslog", "format": "cef", "host": "127.0.0.1", **cfg}
    with pytest.raises(SyslogConfigError, match=message):
        from_config(table, "syslog[0]", DeadLetter(tmp_path / "dl"), fast_retry())


def test_defaults(tmp_path: Path) -> None:
    sink = from_config(
        {"type": "syslog", "host": "siem.example.net", "format": "cef"}, "s", DeadLetter(None), fast_retry()
    )
    assert isinstance(sink, SyslogSink)
    c = sink.config
    assert (c.protocol, c.port, c.framing, c.rfc) == ("tcp", 514, "octet-counting", "5424")
    assert (c.facility, c.severity_allowed, c.severity_denied) == (LOCAL0, INFO, NOTICE)
    assert (c.app_name, c.max_datagram, c.tls_verify) == ("nsg-forwarder", 8192, True)
    tls = from_config({"type": "syslog", "host": "h", "protocol": "tls"}, "s", DeadLetter(None), fast_retry())
    assert isinstance(tls, SyslogSink) and tls.config.port == 6514


def test_schema_fragment_matches_the_keys_the_code_accepts() -> None:
    from forwarder.sinks.syslog import KEYS

    fragment = json.loads((Path(__file__).parents[1] / "schemas" / "fragments" / "sink-syslog.json").read_text())
    assert set(fragment["properties"]) == KEYS
    assert fragment["additionalProperties"] is False
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(fragment)
    good = {"type": "syslog", "format": "cef", "host": "h", "protocol": "tls", "port": 6514, "facility": "local4"}
    assert not list(Draft202012Validator(fragment).iter_errors(good))
    assert list(Draft202012Validator(fragment).iter_errors({**good, "facility": "local9"}))


def test_event_time_not_send_time_in_header() -> None:
    events = make_events(minutes=1)[:3]
    framer = Framer(
        rfc="5424", facility=LOCAL0, severity_allowed=INFO, severity_denied=NOTICE, hostname="h",
        app_name="a", procid="1", msgid=None, sd_id=None, octet_counting=True,
    )  # fmt: skip
    payload = framer.stream_payload(events, ["x"] * 3).decode()
    for e in events:
        stamp = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=e.timestamp_ms)).isoformat(
            timespec="milliseconds"
        )
        assert stamp.replace("+00:00", "Z") in payload


# --- acknowledged but never read ------------------------------------------------------------------


def read_octet_counted(data: bytes) -> list[str]:
    out = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        out.append(data[space + 1 : space + 1 + length].decode())
        pos = space + 1 + length
    assert pos == len(data), "the stream ends in the middle of a frame"
    return out


@pytest.mark.parametrize("unread", [True, False])
def test_batches_a_receiver_acknowledged_but_never_read_are_sent_again(tmp_path: Path, unread: bool) -> None:
    """A receiver's kernel acknowledges bytes its process may never read. When such a receiver goes
    away (reset), the next connection carries the recent batches again; after a clean close by a
    receiver that read everything (FIN), nothing is sent twice."""
    events = make_events(minutes=2)
    first, second = events[:40], events[40:]
    assert first and second
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        table = {"type": "syslog", "format": "cef", "host": "127.0.0.1", "port": server.getsockname()[1]}
        sink = from_config(table, "syslog[0]", DeadLetter(tmp_path / "dl"), fast_retry())
        assert isinstance(sink, SyslogSink)
        sink.open()
        conn1, _ = server.accept()
        sink.send(make_batch(first, "cef"))  # returns once conn1's kernel acknowledged it
        if unread:
            conn1.close()  # bytes left unread: the kernel answers with a reset
        else:
            conn1.settimeout(10)
            received = b""
            while len(received) < len(make_sink_payload(first)):
                received += conn1.recv(1 << 20)
            conn1.shutdown(socket.SHUT_RDWR)  # everything read: a clean FIN
            conn1.close()
        time.sleep(0.1)
        chunks: list[bytes] = []

        def serve() -> None:
            conn2, _ = server.accept()
            with conn2:
                while data := conn2.recv(1 << 20):
                    chunks.append(data)

        reader = threading.Thread(target=serve)
        reader.start()
        sink.send(make_batch(second, "cef"))
        sink.close()
        reader.join(timeout=10)
    messages = read_octet_counted(b"".join(chunks))
    ids = [event_id("cef", d) for d in validate_lines("cef", [m.split(" ", 7)[7] for m in messages])]
    if unread:
        assert ids == [e.event_id for e in first + second]
        assert sink.resent_batches == 1
    else:
        assert ids == [e.event_id for e in second]
        assert sink.resent_batches == 0


def make_sink_payload(events: list[FlowEvent]) -> bytes:
    batch = make_batch(events, "cef")
    framer = Framer(
        rfc="5424", facility=LOCAL0, severity_allowed=INFO, severity_denied=NOTICE, hostname="h",
        app_name="nsg-forwarder", procid="1", msgid=None, sd_id=None, octet_counting=True,
    )  # fmt: skip
    return framer.stream_payload(batch.events, batch.lines)
