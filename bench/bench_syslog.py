"""Syslog sink throughput: events per second through ``SyslogSink.send`` into a local receiver.

The receiver is a separate process (a plain socket reader that counts bytes, or with
``--receiver rsyslog`` a real rsyslogd writing every message to a file), so the figure is the
sender's: framing, one write per batch, and waiting for the receiver's TCP acknowledgement. Events
are generated and formatted before the clock starts (formatting is measured by bench_core.py).

Usage: python bench/bench_syslog.py [--events 500000] [--batch 5000] [--format cef]
       [--protocol tcp|tls] [--framing octet-counting|lf] [--rfc 5424|3164] [--receiver python|rsyslog]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forwarder.flowlog.issues import IssueLog  # noqa: E402
from forwarder.flowlog.model import FlowEvent  # noqa: E402
from forwarder.flowlog.normalise import Normaliser  # noqa: E402
from forwarder.flowlog.records import HEAD_RE, TAIL_RE, RecordDecoder  # noqa: E402
from forwarder.formats import formatter  # noqa: E402
from forwarder.samples.generator import BlobSpec, blob_bytes  # noqa: E402
from forwarder.sinks.base import Batch  # noqa: E402
from forwarder.sinks.deadletter import DeadLetter  # noqa: E402
from forwarder.sinks.retry import RetryPolicy  # noqa: E402
from forwarder.sinks.syslog import from_config  # noqa: E402

# Reads every connection to its end and prints the byte total when stdin closes.
_READER = r"""
import socket, ssl, sys, threading
tls = sys.argv[1:] and sys.argv[1] == "tls"
srv = socket.create_server(("127.0.0.1", 0))
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
print(srv.getsockname()[1], flush=True)
total = 0
def serve():
    global total
    while True:
        conn, _ = srv.accept()
        if tls:
            conn = ctx.wrap_socket(conn, server_side=True)
        buf = bytearray(1 << 20)
        with conn:
            while n := conn.recv_into(buf):
                total += n
threading.Thread(target=serve, daemon=True).start()
sys.stdin.read()
print(total, flush=True)
"""


def make_events(count: int) -> list[FlowEvent]:
    per_minute = max(1, count // 60 // 2 + 1)
    events: list[FlowEvent] = []
    for kind, version in (("nsg", 2), ("vnet", 4)):
        spec = BlobSpec(kind=kind, version=version, tuples_per_minute=per_minute)  # type: ignore[arg-type]
        data = blob_bytes(spec)
        head, tail = HEAD_RE.match(data), TAIL_RE.search(data)
        assert head and tail
        source = f"bench/{spec.container}/{spec.blob_name}"
        issues = IssueLog()
        decoder = RecordDecoder(source, head.end(), issues)
        normaliser = Normaliser(source, issues)
        for record in decoder.feed(data[head.end() : tail.start()], final=True):
            events.extend(normaliser.events(record))
    return events[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=5000, help="events per send() (one chunk of a blob)")
    ap.add_argument("--format", default="cef", choices=["cef", "ecs", "ocsf"])
    ap.add_argument("--protocol", default="tcp", choices=["tcp", "tls"])
    ap.add_argument("--framing", default="octet-counting", choices=["octet-counting", "lf"])
    ap.add_argument("--rfc", default="5424", choices=["5424", "3164"])
    ap.add_argument("--receiver", default="python", choices=["python", "rsyslog"])
    args = ap.parse_args()

    events = make_events(args.events)
    fmt = formatter(args.format)
    batches = []
    for start in range(0, len(events), args.batch):
        chunk = events[start : start + args.batch]
        batches.append(Batch(chunk, fmt.format_many(chunk), "bench", 0, 0))
    print(
        f"{len(events):,} {args.format} events in batches of {args.batch}, {args.protocol} {args.framing} "
        f"RFC {args.rfc}, receiver: {args.receiver}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        certs = None
        if args.protocol == "tls" or args.receiver == "rsyslog":
            from tests.support.rsyslog import make_certs

            certs = make_certs(work / "certs")
        receiver: subprocess.Popen[str] | None = None
        rsyslog = None
        if args.receiver == "python":
            cmd = [sys.executable, "-c", _READER]
            if args.protocol == "tls":
                assert certs is not None
                cmd += ["tls", str(certs.server_cert), str(certs.server_key)]
            receiver = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert receiver.stdout is not None
            host, port = "127.0.0.1", int(receiver.stdout.readline())
        else:
            from tests.support.rsyslog import Rsyslog, find_rsyslogd

            binary = find_rsyslogd()
            if binary is None:
                sys.exit("rsyslogd not found")
            assert certs is not None
            (work / "rsyslog").mkdir()
            rsyslog = Rsyslog(work / "rsyslog", certs, binary)
            rsyslog.start()
            host, port = rsyslog.host, rsyslog.ports[args.protocol]

        table = {"type": "syslog", "format": args.format, "host": host, "port": port, "protocol": args.protocol}
        table |= {"framing": args.framing, "rfc": args.rfc}
        if args.protocol == "tls":
            assert certs is not None
            table["tls_ca_file"] = str(certs.ca)
        sink = from_config(table, "syslog[bench]", DeadLetter(None), RetryPolicy(max_attempts=3))
        sink.open()
        sink.send(batches[0])  # warm up: connection, caches
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for batch in batches:
            sink.send(batch)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        sink.close()

        sent = len(events)
        if receiver is not None:
            assert receiver.stdin is not None and receiver.stdout is not None
            receiver.stdin.close()
            received_bytes = int(receiver.stdout.readline())
            receiver.wait()
            print(f"receiver got {received_bytes / 1e6:,.1f} MB")
        if rsyslog is not None:
            got = len(rsyslog.wait_for(args.protocol, sent + len(batches[0].lines), timeout=120, settle=0.5))
            rsyslog.stop()
            print(f"rsyslog wrote {got:,} messages")
        print(f"sender: {wall:.2f} s wall, {cpu:.2f} s CPU ({cpu / wall:.0%} of one core)")
        print(f"throughput: {sent / wall:,.0f} events/s ({os.cpu_count()} cores on this machine)")


if __name__ == "__main__":
    main()
