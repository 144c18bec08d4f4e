"""``nsg-forwarder convert``: one PT1H.json (or a stream of records) to events, one per line."""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from forwarder.flowlog.core import DESCRIPTION as CORE_DESCRIPTION
from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.stream import FileConverter, NotAFlowLog
from forwarder.formats import FORMATS, formatter
from forwarder.formats.aggregates import format_aggregates
from forwarder.logsetup import setup_logging
from forwarder.reduce.aggregate import (
    DEFAULT_KEY,
    KEY_FIELDS,
    AggregateSpec,
    WindowAggregator,
    parse_window,
    record_time_ms,
)
from forwarder.reduce.config import Reduction, address_lists, build_filter, key_problem


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
    p.add_argument(
        "--filter",
        type=Path,
        metavar="FILE",
        help="keep only what this filter keeps: a TOML file with [[filter.include]] / [[filter.exclude]] rule tables "
        "(and optional [address_lists]), as in a config",
    )
    p.add_argument(
        "--aggregate",
        metavar="WINDOW",
        help='one event per key and window ("10m", "1h", ...) instead of one per tuple, as a sink with aggregate does',
    )
    p.add_argument(
        "--key",
        metavar="FIELDS",
        help="with --aggregate: the fields that tell aggregates apart, comma-separated (default: Traffic Analytics' "
        "src_ip,dst_ip,dst_port,protocol,direction,decision,rule,resource)",
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
        reduction = _reduction(args)
    except (OSError, ValueError) as exc:
        print(f"nsg-forwarder convert: {exc}", file=sys.stderr)
        return 2
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
    events = dropped = 0
    window: WindowAggregator | None = None
    flt, spec = reduction.filter, reduction.aggregate
    try:
        for batch in converter.events():
            if not len(batch):
                continue
            kept: Sequence[FlowEvent] = batch
            if flt is not None:
                kept, why = flt.apply(batch)
                dropped += sum(why.values())
            if spec is not None:
                # A batch is one record's (or part of one): its window is the record's time.
                first = batch[0]
                at = record_time_ms(first.ctx.record_time)
                start = spec.window_of(first.timestamp_ms if at is None else at)
                if window is not None and window.window_ms != start:
                    events += _write_aggregates(out, args.format, window)
                    window = None
                if window is None:
                    window = WindowAggregator(spec, source, start, first.ctx.record_offset)
                window.add(kept)
                continue
            # Formatted lines are ~10x the input bytes: write them in slices to keep memory flat.
            for i in range(0, len(kept), 4096):
                out.write(fmt.format_joined(kept[i : i + 4096]))
            events += len(kept)
        if window is not None:
            events += _write_aggregates(out, args.format, window)
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
        f"events={events}{f' filtered={dropped}' if flt is not None else ''} {issues.summary()} "
        f"seconds={seconds:.2f} rate={converter.tuples / max(seconds, 1e-9):,.0f} tuples/s "
        f"core={CORE_DESCRIPTION.split(',')[0].replace(' ', '-')}",
        file=sys.stderr,
    )
    return 3 if args.strict and issues.total else 0


def _reduction(args: argparse.Namespace) -> Reduction:
    """The --filter file's filter and the --aggregate window, checked as a config's would be."""
    flt = None
    if args.filter is not None:
        try:
            doc = tomllib.loads(args.filter.read_text())
        except OSError as exc:
            raise OSError(f"cannot read the filter file {args.filter}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{args.filter}: not valid TOML: {exc}") from None
        unknown = sorted(set(doc) - {"filter", "address_lists"})
        if unknown or "filter" not in doc:
            raise ValueError(
                f"{args.filter}: expected a [filter] table (and optionally [address_lists]); got {unknown}"
            )
        flt = build_filter(doc["filter"], f"{args.filter}: filter", address_lists(doc))
    spec = None
    if args.aggregate is not None:
        key = DEFAULT_KEY
        if args.key:
            key = tuple(k.strip() for k in args.key.split(",") if k.strip())
            bad = [k for k in key if k not in KEY_FIELDS]
            if bad or not key:
                raise ValueError(f"--key: {bad[0] if bad else args.key} is not one of {', '.join(KEY_FIELDS)}")
        spec = AggregateSpec(parse_window(args.aggregate, "--aggregate"), tuple(k for k in KEY_FIELDS if k in key))
        problem = key_problem(args.format, spec.key)
        if problem:
            raise ValueError(f"--key: {problem}")
    elif args.key:
        raise ValueError("--key goes with --aggregate")
    return Reduction(flt, spec)


def _write_aggregates(out: BinaryIO, fmt: str, window: WindowAggregator) -> int:
    lines = format_aggregates(fmt, window.close())
    if lines:
        out.write(("\n".join(lines) + "\n").encode())
    return len(lines)


def _is_gzip(stream: BinaryIO) -> bool:
    """Whether the input starts with gzip's magic bytes (looked at without consuming them)."""
    peek = getattr(stream, "peek", None)
    return peek is not None and bytes(peek(2))[:2] == b"\x1f\x8b"
