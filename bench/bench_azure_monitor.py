"""Azure Monitor sink throughput: ASIM rows into the local Logs Ingestion receiver over HTTPS, with a
managed-identity token, next to Microsoft's own client (azure-monitor-ingestion) sending the same rows
to the same receiver in the same run.

The sink runs here, on one core, as in the service; the receiver and the identity endpoint run in another
process (pinned to the other core) and only decompress and count rows. Timing covers sending alone: rows
are formatted before the clock starts (bench_formats.py measures formatting). For the SDK the rows are
handed over as the dicts its ``upload()`` wants, parsed before the clock starts too, so it is charged only
for what it does itself: size each row with json.dumps, serialise each 1 MiB chunk again, gzip, POST one
chunk after another.

Then the figures against a DCR's limits (2 GB/min and 12,000 requests/min, reference/monitor): the
request rate at the sink's speed and the rows/s one DCR takes before it throttles (429), which is where
a second DCR (and a second sink) is needed.

Usage: python bench/bench_azure_monitor.py [--rows 100000] [--batch 5000] [--sdk/--no-sdk]
       (the SDK baseline needs `pip install azure-monitor-ingestion`)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forwarder.sinks.azure_monitor import from_config
from forwarder.sinks.base import Batch
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetryPolicy
from tests.support.http_events import make_batch, sample_events
from tests.support.http_receivers import make_self_signed
from tests.support.identity import IdentityEndpoint, identity_env
from tests.support.logs_ingestion import DCR, STREAM, LogsIngestionReceiver

DCR_BYTES_PER_MIN = 2e9
DCR_REQUESTS_PER_MIN = 12_000


def _serve(conn: Connection, cpu: int | None, tls_dir: str) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    tls = make_self_signed(Path(tls_dir), "localhost")
    # The limit is raised for the SDK's sake: its chunks come out over 1 MiB of JSON (see sdk_oversized).
    with IdentityEndpoint(audience=None) as identity, LogsIngestionReceiver(tls=tls, max_body=2 << 20) as receiver:
        receiver.count_only = True
        conn.send((receiver.url.replace("127.0.0.1", "localhost"), identity.url, str(tls.cert)))
        while conn.recv() == "count?":
            conn.send(receiver.counted)


def ours(url: str, ca: str, batches: list[Batch], in_flight: int) -> tuple[float, float, dict[str, float]]:
    table = {"type": "azure_monitor", "endpoint": url, "dcr_immutable_id": DCR, "tls_ca_file": ca}
    sink: Any = from_config(
        {**table, "max_in_flight": in_flight}, "azure_monitor[bench]", DeadLetter(None), RetryPolicy()
    )
    sink.open()
    sink.send(batches[0])  # warm up: connection, token
    requests0, sent0, raw0 = sink._client.requests, sink._client.bytes_sent, sink.raw_bytes
    cpu0, t0 = time.process_time(), time.perf_counter()
    for batch in batches:
        sink.send(batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = {
        "requests": sink._client.requests - requests0,
        "sent": sink._client.bytes_sent - sent0,
        "raw": sink.raw_bytes - raw0,
    }
    sink.close()
    return cpu, wall, stats


def sdk(url: str, ca: str, rows: list[list[dict[str, Any]]]) -> tuple[float, float] | None:
    try:
        from azure.identity import DefaultAzureCredential
        from azure.monitor.ingestion import LogsIngestionClient
    except ImportError:
        return None
    oversized = sdk_oversized(rows)
    if oversized:
        print(
            f"azure-monitor-ingestion: {oversized[0]} of {oversized[1]} chunks are over 1 MiB of JSON (largest "
            f"{oversized[2]:,} bytes), which the API refuses with 413 ContentLengthLimitExceeded; the receiver's "
            "limit is raised for this run",
            flush=True,
        )
    credential = DefaultAzureCredential()
    client = LogsIngestionClient(url, credential, connection_verify=ca)
    client.upload(rule_id=DCR, stream_name=STREAM, logs=rows[0])  # warm up
    cpu0, t0 = time.process_time(), time.perf_counter()
    for chunk in rows:
        client.upload(rule_id=DCR, stream_name=STREAM, logs=chunk)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client.close()
    credential.close()
    return cpu, wall


def sdk_oversized(rows: list[list[dict[str, Any]]]) -> tuple[int, int, int] | None:
    """How many of the SDK's own chunks are over 1 MiB as it serialises them: it sizes a chunk by summing
    json.dumps of each row, then sends json.dumps of the list, which adds ", " between rows."""
    from azure.monitor.ingestion._helpers import _split_chunks

    sizes = [len(json.dumps(chunk).encode()) for batch in rows for chunk in _split_chunks(batch)]
    over = [size for size in sizes if size > 1 << 20]
    return (len(over), len(sizes), max(over)) if over else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000, help="rows per send() (one blob chunk)")
    ap.add_argument("--in-flight", default="1,4", help="max_in_flight values to try (4 is the default)")
    ap.add_argument("--sdk", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    events = sample_events(tuples_per_minute=max(1, -(-args.rows // 240)), minutes=60)[: args.rows]
    whole = make_batch("asim", events)
    batches = [
        Batch(events[i : i + args.batch], whole.lines[i : i + args.batch], "bench", i, i + args.batch)
        for i in range(0, len(events), args.batch)
    ]
    n = len(events)
    row_bytes = sum(len(line) for line in whole.lines) / n
    with tempfile.TemporaryDirectory() as tls_dir:
        parent, child = mp.Pipe()
        proc = mp.Process(target=_serve, args=(child, cpus[1] if len(cpus) > 1 else None, tls_dir), daemon=True)
        proc.start()
        url, identity_url, ca = parent.recv()
        os.environ.update(identity_env(IdentityEndpointStub(identity_url)))  # type: ignore[arg-type]
        print(
            f"{n:,} ASIM rows (avg {row_bytes:.0f} bytes of JSON), {len(batches)} batches of {args.batch}; "
            f"sink on CPU {cpus[0]}, receiver on CPU {cpus[1] if len(cpus) > 1 else cpus[0]}; HTTPS, gzip level 1",
            flush=True,
        )
        best: dict[str, float] = {}
        for in_flight in (int(x) for x in args.in_flight.split(",")):
            before = _count(parent)
            cpu, wall, stats = ours(url, ca, batches, in_flight)
            got = _count(parent) - before
            per_req = stats["raw"] / stats["requests"]
            print(
                f"nsg-forwarder azure_monitor, in-flight {in_flight}: {n / cpu:>9,.0f} rows/s per sink CPU-second, "
                f"{n / wall:>9,.0f} rows/s wall; {stats['requests']:.0f} requests of {per_req / 1e3:.0f} kB JSON "
                f"({stats['sent'] / stats['requests'] / 1e3:.0f} kB gzipped); {stats['raw'] / n:.0f} bytes/row raw, "
                f"{stats['sent'] / n:.0f} gzipped; receiver counted {got - args.batch}/{n}",
                flush=True,
            )
            if not best or n / cpu > best["rows_per_cpu"]:
                best = {"rows_per_cpu": n / cpu, "rows_per_request": n / stats["requests"], **stats}
        if args.sdk:
            chunks = [[json.loads(line) for line in b.lines] for b in batches]
            before = _count(parent)
            measured = sdk(url, ca, chunks)
            if measured is None:
                print("azure-monitor-ingestion: not installed (pip install azure-monitor-ingestion) - baseline skipped")
            else:
                cpu, wall = measured
                got = _count(parent) - before
                print(
                    f"azure-monitor-ingestion 1.x upload():    {n / cpu:>9,.0f} rows/s per CPU-second, "
                    f"{n / wall:>9,.0f} rows/s wall (sequential chunks, rows given as dicts); "
                    f"receiver counted {got - len(chunks[0])}/{n}",
                    flush=True,
                )
        parent.send("stop")
        proc.join(5)
    limits(best, n)


def limits(best: dict[str, float], n: int) -> None:
    rate = best["rows_per_cpu"]
    raw_row, sent_row = best["raw"] / n, best["sent"] / n
    per_request = best["rows_per_request"]
    print(
        f"\nAt {rate:,.0f} rows/s (one sink core): {rate / per_request * 60:,.0f} requests/min "
        f"(DCR limit {DCR_REQUESTS_PER_MIN:,}), {rate * raw_row * 60 / 1e9:.2f} GB/min of JSON, "
        f"{rate * sent_row * 60 / 1e9:.2f} GB/min gzipped (DCR limit 2 GB/min, 'compressed and uncompressed')"
    )
    by_requests = DCR_REQUESTS_PER_MIN / 60 * per_request
    by_bytes_raw = DCR_BYTES_PER_MIN / 60 / raw_row
    by_bytes_gz = DCR_BYTES_PER_MIN / 60 / sent_row
    print(
        f"One DCR takes about {min(by_requests, by_bytes_raw):,.0f} rows/s if its 2 GB/min counts the JSON "
        f"({by_bytes_raw:,.0f} by bytes, {by_requests:,.0f} by requests), {min(by_requests, by_bytes_gz):,.0f} "
        f"rows/s if it counts what is sent; beyond that, add a DCR (and a sink for it)."
    )


class IdentityEndpointStub:
    """The endpoint's URL, for identity_env: the endpoint itself lives in the receiver's process."""

    def __init__(self, url: str):
        self.url = url


def _count(conn: Connection) -> int:
    conn.send("count?")
    counted: int = conn.recv()
    return counted


if __name__ == "__main__":
    main()
