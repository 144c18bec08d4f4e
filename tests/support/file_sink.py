"""Helpers for the file sink tests: real events, reading an archive back, and a child process to SIGKILL.

Run as ``python -m tests.support.file_sink DIR --kill-at STEP --occurrence N ...``: the child writes
events through the sink in a loop and prints ``SENT <event ids>`` after every send that returned,
so the parent knows which events the sink promised were durable before it was killed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import RecordDecoder
from forwarder.formats import formatter
from forwarder.samples.generator import HEAD, BlobSpec, data_blocks
from forwarder.sinks import file as file_sink
from forwarder.sinks.base import Batch
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.file import FileSink, parse_config
from forwarder.sinks.file_archive import Naming
from forwarder.sinks.retry import RetryPolicy

FORMAT = "ecs"


@cache
def blob_events(n: int, kind: str = "nsg", tuples_per_minute: int = 10, minutes: int = 6) -> tuple[FlowEvent, ...]:
    """Events of the n-th generated blob (a different hour each), so every id is unique across n."""
    hour = datetime(2026, 11, 25, 10, tzinfo=UTC) - timedelta(hours=n)
    spec = BlobSpec(kind=kind, version=4 if kind == "vnet" else 2, hour=hour, minutes=minutes,  # type: ignore[arg-type]
                    tuples_per_minute=tuples_per_minute, seed=n)  # fmt: skip
    source = f"testaccount/{spec.container}/{spec.blob_name}"
    issues = IssueLog()
    decoder = RecordDecoder(source, len(HEAD), issues)
    normaliser = Normaliser(source, issues)
    events: list[FlowEvent] = []
    for block in data_blocks(spec):
        for record in decoder.feed(block):
            events.extend(normaliser.events(record))
    assert issues.total == 0, issues.summary()
    return tuple(events)


def make_batch(n: int, **kw: Any) -> Batch:
    events = blob_events(n, **kw)
    lines = formatter(FORMAT).format_many(events)
    return Batch(events, lines, events[0].ctx.source, 12, 12 + len(lines))


def open_sink(table: dict[str, Any], clock: Any = None) -> FileSink:
    config = parse_config({"type": "file", "format": FORMAT, **table}, "file[0]")
    sink = FileSink(config, "file[0]", DeadLetter(None), RetryPolicy(initial=0.01, maximum=0.05),
                    **({"clock": clock} if clock else {}))  # fmt: skip
    sink.open()
    return sink


def closed_files(active: Path) -> list[Path]:
    """Closed files of ``active``'s archive, in sequence order."""
    naming = Naming.for_active(active)
    found = [(naming.seq(p.name), p) for p in active.parent.iterdir() if not p.name.startswith(".")]
    return [p for seq, p in sorted((s, p) for s, p in found if s is not None)]


def file_lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    text = data.decode()
    assert text == "" or text.endswith("\n"), f"{path.name} ends in the middle of a line"
    return text.split("\n")[:-1]


def archive_lines(active: Path) -> list[str]:
    """Every line of the archive in write order: closed files by sequence number, then the active file."""
    lines: list[str] = []
    for path in closed_files(active):
        lines += file_lines(path)
    if active.exists():
        lines += file_lines(active)
    return lines


def event_id(doc: dict[str, Any]) -> str:
    value = doc["event"]["id"]
    assert isinstance(value, str)
    return value


def child_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--kill-at", default="", help="rotation step at which the process SIGKILLs itself")
    parser.add_argument("--occurrence", type=int, default=1)
    parser.add_argument("--first-blob", type=int, default=0)
    parser.add_argument("--blobs", type=int, default=1000)
    parser.add_argument("--rotate-bytes", type=int, default=150_000)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--hup", action="store_true", help="reopen the file on SIGHUP, as the service does")
    args = parser.parse_args(argv)
    seen = 0

    def hook(step: str) -> None:
        nonlocal seen
        if step == args.kill_at:
            seen += 1
            if seen == args.occurrence:
                os.kill(os.getpid(), signal.SIGKILL)

    file_sink.step_hook = hook
    sink = open_sink({"path": str(args.directory / "flows.ndjson"), "rotate_bytes": args.rotate_bytes,
                      "gzip": args.gzip})  # fmt: skip
    if args.hup:
        signal.signal(signal.SIGHUP, lambda *_: sink.reopen())
    for n in range(args.first_blob, args.first_blob + args.blobs):
        batch = make_batch(n)
        sink.send(batch)
        sys.stdout.write("SENT " + " ".join(e.event_id for e in batch.events) + "\n")
        sys.stdout.flush()
    sink.close()


if __name__ == "__main__":
    child_main()
