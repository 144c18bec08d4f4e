"""``nsg-forwarder convert``: one PT1H.json (or a stream of records) to events, one per line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from forwarder.flowlog.core import DESCRIPTION as CORE_DESCRIPTION
from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter, NotAFlowLog
from forwarder.formats import FORMATS, formatter
from forwarder.logsetup import setup_logging


def register(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert one PT1H.json (NSG or VNet, detected) to events on stdout",
        description="Convert one PT1H.json (NSG flow log v1/v2 or VNet flow log v4, detected from the content) or "
        "a stream of records to one event per line. Bad records and tuples are reported on stderr with their "
        "byte offset and skipped; a one-line summary goes to stderr.",
    )
    p.add_argument("file", nargs="?", default="-", help="the PT1H.json to read, or - for stdin (default)")
    p.add_argument("--format", "-f", choices=FORMATS, default="ecs", help="output format (default: ecs)")
    p.add_argument("--output", "-o", default="-", help="write events to this file instead of stdout (replaced)")
    p.add_argument(
        "--source-id",
        help="identity used for deterministic event ids (default: the file path as given); use "
        "'<account>/<container>/<blob name>' to get the ids a live run gives",
    )
    p.add_argument("--strict", action="store_true", help="exit 3 if any input was skipped (for scripts and CI)")
    p.add_argument("--chunk-bytes", type=int, default=1 << 20, help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging("warning", "text")
    fmt = formatter(args.format)
    source = args.source_id or ("stdin" if args.file == "-" else args.file)
    issues = IssueLog()
    try:
        stream: BinaryIO = sys.stdin.buffer if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115
    except OSError as exc:
        print(f"nsg-forwarder convert: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    if _is_gzip(stream):
        shown = "the input" if args.file == "-" else args.file
        unzip = "zcat FILE | nsg-forwarder convert -" if args.file == "-" else f"gunzip -k {args.file}"
        print(f"nsg-forwarder convert: {shown} is gzip-compressed; decompress it first ({unzip})", file=sys.stderr)
        return 1
    try:
        out: BinaryIO = sys.stdout.buffer if args.output == "-" else Path(args.output).open("wb")  # noqa: SIM115
    except OSError as exc:
        print(f"nsg-forwarder convert: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        if stream is not sys.stdin.buffer:
            stream.close()
        return 1
    began = time.perf_counter()
    converter = FileConverter(stream, source, issues, args.chunk_bytes)
    events = 0
    try:
        for batch in converter.events():
            # Formatted lines are ~10x the input bytes: write them in slices to keep memory flat.
            for i in range(0, len(batch), 4096):
                out.write(fmt.format_joined(batch[i : i + 4096]))
            events += len(batch)
    except NotAFlowLog as exc:
        print(f"nsg-forwarder convert: {source} is not a flow log: {exc}", file=sys.stderr)
        return 1
    finally:
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    seconds = time.perf_counter() - began
    bad_tuples = issues.counts.get("bad flow tuple", 0)
    print(
        f"Converted {source}: format={args.format} records={converter.records} tuples={converter.tuples + bad_tuples} "
        f"events={events} {issues.summary()} seconds={seconds:.2f} rate={events / max(seconds, 1e-9):,.0f}/s "
        f"core={CORE_DESCRIPTION.split(',')[0].replace(' ', '-')}",
        file=sys.stderr,
    )
    return 3 if args.strict and issues.total else 0


def _is_gzip(stream: BinaryIO) -> bool:
    """Whether the input starts with gzip's magic bytes (looked at without consuming them)."""
    peek = getattr(stream, "peek", None)
    return peek is not None and bytes(peek(2))[:2] == b"\x1f\x8b"
