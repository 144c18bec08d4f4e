"""HTTP sink throughput: formatted ECS events into the local HEC and Elasticsearch receivers.

The sink runs here, on one core, single-threaded, as in the service; the receiver runs in another
process (pinned to another core when there is one) and only decompresses and counts, so it does
not eat the sink's CPU time. Timing covers ``send()`` alone: building the request bodies, gzip,
HTTP, reading the answers (for Elasticsearch, one status per document). Events are formatted
before the clock starts; bench_core.py measures formatting.

Usage: python bench/bench_http.py [--events 200000] [--batch 5000] [--sinks hec,es,http] [--levels 1,3,0]
       [--in-flight 1,2]        (gzip level 0 means gzip off)

"events/s per CPU-second" is what one core sustains; "wall" also counts time spent waiting for the
receiver, which on a small shared machine is the receiver's speed more than the sink's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forwarder.sinks.base import Batch
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetryPolicy
from tests.support.http_events import make_batch, sample_events
from tests.support.http_receivers import ElasticsearchReceiver, HecReceiver, NdjsonReceiver, Receiver

TOKEN = "bench-0000-0000-0000-000000000000"


def _serve(kind: str, conn: Connection, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    receiver: Receiver
    if kind == "hec":
        receiver = HecReceiver(TOKEN)
    elif kind == "es":
        receiver = ElasticsearchReceiver()
    else:
        receiver = NdjsonReceiver("/ingest")
    receiver.count_only = True
    with receiver:
        conn.send(receiver.url)
        conn.recv()  # "count?"
        conn.send(receiver.counted)
        conn.recv()  # "stop"


def _sink(kind: str, url: str, level: int, in_flight: int, dead_letter: DeadLetter) -> Any:
    common = {"url": url, "gzip": level > 0, "gzip_level": max(level, 1), "max_in_flight": in_flight}
    if kind == "hec":
        from forwarder.sinks.splunk_hec import from_config as hec

        return hec({**common, "token": TOKEN}, "splunk_hec[bench]", dead_letter, RetryPolicy())
    if kind == "es":
        from forwarder.sinks.elasticsearch import from_config as es

        return es(common, "elasticsearch[bench]", dead_letter, RetryPolicy())
    from forwarder.sinks.http import from_config as http

    return http({**common, "url": url + "/ingest"}, "http[bench]", dead_letter, RetryPolicy())


def run(kind: str, batches: list[Batch], level: int, in_flight: int, cpus: list[int]) -> None:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_serve, args=(kind, child, cpus[1] if len(cpus) > 1 else None), daemon=True)
    proc.start()
    url = parent.recv()
    dead_letter = DeadLetter(None)
    sink = _sink(kind, url, level, in_flight, dead_letter)
    sink.open()
    sink.send(batches[0])  # warm up: connection, caches
    n = sum(len(b.lines) for b in batches)
    raw_bytes = sum(len(line) + 1 for b in batches for line in b.lines)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for batch in batches:
        sink.send(batch)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    client = sink._client
    sink.close()
    parent.send("count?")
    counted = parent.recv()
    parent.send("stop")
    proc.join(5)
    expected = n + len(batches[0].lines)
    gz = f"gzip {level}" if level else "no gzip"
    per_request = client.bytes_sent / max(client.requests, 1) / 1e3
    print(
        f"{kind:4s} {gz:7s} in-flight {in_flight}: {n / cpu:>8,.0f} events/s per sink CPU-second, "
        f"{n / wall:>8,.0f} events/s wall ({raw_bytes / wall / 1e6:5.1f} MB/s of events); "
        f"{client.requests} requests of {per_request:6.1f} kB on the wire; receiver counted {counted}/{expected}"
        + ("" if counted == expected else "  <-- MISMATCH")
        + ("" if not dead_letter.counts else f"  dead-lettered {sum(dead_letter.counts.values())}"),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000, help="events per send() (one blob chunk)")
    ap.add_argument("--sinks", default="hec,es,http")
    ap.add_argument("--levels", default="1,3,0", help="gzip levels to try; 0 = off")
    ap.add_argument("--in-flight", default="1,2", help="max_in_flight values to try")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    per_blob = 4 * 60  # sample_specs: four blobs an hour, 60 records each
    tpm = max(1, -(-args.events // per_blob))
    events = sample_events(tuples_per_minute=tpm, minutes=60)[: args.events]
    lines_batch = make_batch("ecs", events)
    batches = [
        Batch(events[i : i + args.batch], lines_batch.lines[i : i + args.batch], "bench", i, i + args.batch)
        for i in range(0, len(events), args.batch)
    ]
    avg = sum(len(line) for line in lines_batch.lines) / len(events)
    print(
        f"{len(events):,} ECS events (avg {avg:.0f} bytes), {len(batches)} batches of {args.batch}; "
        f"sink on CPU {cpus[0]}, receiver on CPU {cpus[1] if len(cpus) > 1 else cpus[0]}",
        flush=True,
    )
    for kind in args.sinks.split(","):
        for level in (int(x) for x in args.levels.split(",")):
            for in_flight in (int(x) for x in args.in_flight.split(",")):
                run(kind, batches, level, in_flight, cpus)


if __name__ == "__main__":
    main()
