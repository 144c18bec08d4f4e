"""``nsg-forwarder sample``: write realistic flow logs laid out like the storage container."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forwarder.samples.generator import sample_specs, write_blob
from forwarder.sources.start import parse_time


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def _hour(value: str) -> datetime:
    try:
        return parse_time(value, "--start")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--start: ")) from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="write a seeded sample of NSG v1/v2 and VNet flow logs into a folder",
        description="Write a deterministic sample estate (two NSGs, one of them version 1, and a VNet flow log) "
        "as PT1H.json files laid out exactly like the Azure containers, for demos, tests and benchmarks. "
        "By default the hours are the most recent complete ones, so a forwarder reading them reports a lag "
        "of an hour or two.",
    )
    p.add_argument("folder", type=Path, help="where to write (container folders are created inside)")
    p.add_argument("--hours", type=_positive, default=2, help="hours of logs per NIC (default 2)")
    p.add_argument(
        "--start",
        type=_hour,
        help="first hour, RFC 3339 (2026-11-25T09:00:00Z; minutes are dropped). Default: the --hours most "
        "recent complete hours",
    )
    p.add_argument(
        "--tuples-per-minute", type=_positive, default=20, help="flow tuples per NIC and minute (default 20)"
    )
    p.add_argument(
        "--seed", type=int, default=1, help="random seed (default 1): the same seed and hours give the same bytes"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    start = args.start
    if start is None:
        last_complete = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        start = last_complete - timedelta(hours=args.hours - 1)
    try:
        specs = sample_specs(args.hours, args.seed, args.tuples_per_minute, first_hour=start)
        paths = [write_blob(args.folder, spec) for spec in specs]
    except OSError as exc:
        print(f"nsg-forwarder sample: cannot write under {args.folder}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in paths)
    first, last = specs[0].hour, specs[-1].hour
    hours = (
        f"hour {first:%Y-%m-%dT%H:00Z}" if first == last else f"hours {first:%Y-%m-%dT%H:00Z} to {last:%Y-%m-%dT%H:00Z}"
    )
    print(f"Wrote {len(paths)} PT1H.json files ({size / 1e6:.1f} MB) under {args.folder}, {hours}")
    return 0
