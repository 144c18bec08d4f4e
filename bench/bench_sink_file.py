"""Throughput of the file sink with an fsync per batch, with and without rotation and gzip.

Formats sample events once, then sends them through the sink for a few seconds per case, in batches
of 5,000 events and of 58,000 (what one 4 MiB blob chunk holds), and prints events/s and MB/s of
output; ``drained_in`` is how long close() then waited for the compression still pending.
Usage: python bench/bench_sink_file.py [--dir DIR] [--seconds 5] [--format ecs|cef|ocsf]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import RecordDecoder
from forwarder.formats import formatter
from forwarder.samples.generator import HEAD, BlobSpec, data_blocks
from forwarder.sinks.base import Batch
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.file import FileSink, parse_config
from forwarder.sinks.retry import RetryPolicy


def sample_events(n: int) -> list[FlowEvent]:
    events: list[FlowEvent] = []
    hour = 0
    while len(events) < n:
        spec = BlobSpec(tuples_per_minute=200, seed=hour)
        source = f"bench/{spec.container}/{spec.blob_name}"
        issues = IssueLog()
        decoder = RecordDecoder(source, len(HEAD), issues)
        normaliser = Normaliser(source, issues)
        for block in data_blocks(spec):
            for record in decoder.feed(block):
                events.extend(normaliser.events(record))
        hour += 1
    return events[:n]


def run(directory: Path, label: str, table: dict[str, object], lines: list[str], events: list[FlowEvent],
        batch_events: int, seconds: float) -> None:  # fmt: skip
    sink = FileSink(parse_config(table, label), label, DeadLetter(None), RetryPolicy())
    sink.open()
    batches = [
        Batch(events[i : i + batch_events], lines[i : i + batch_events], "bench", i, i + batch_events)
        for i in range(0, len(lines) - batch_events + 1, batch_events)
    ]
    sent = nbytes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in batches:
            sink.send(batch)
            sent += len(batch.lines)
            nbytes += sum(map(len, batch.lines)) + len(batch.lines)
    elapsed = time.perf_counter() - start
    sink.close()  # waits for compression of what is still pending
    total = time.perf_counter() - start
    print(
        f"{label:<28} batch={batch_events:>6} events/s={sent / elapsed:>10,.0f} MB/s={nbytes / elapsed / 1e6:>7.1f} "
        f"rotations={sink.rotations:>3} drained_in={total - elapsed:5.2f}s"
    )
    for f in directory.iterdir():
        if f.is_file():
            f.chmod(0o600)
            f.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--format", default="ecs")
    args = parser.parse_args()
    events = sample_events(120_000)
    lines = formatter(args.format).format_many(events)
    print(f"format={args.format} mean_line_bytes={sum(map(len, lines)) / len(lines):.0f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        path = str(d / "flows.ndjson")
        for batch_events in (5_000, 58_000):
            run(d, "no rotation", {"path": path, "rotate_bytes": 0}, lines, events, batch_events, args.seconds)
            run(d, "rotate 100MiB", {"path": path}, lines, events, batch_events, args.seconds)
            for level in (1, 3, 6):
                table = {"path": path, "gzip": True, "gzip_level": level}
                run(d, f"rotate 100MiB gzip={level}", table, lines, events, batch_events, args.seconds)


if __name__ == "__main__":
    main()
