"""``nsg-forwarder sample``: write realistic flow logs laid out like the storage container."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forwarder.samples.generator import sample_specs, write_blob


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="write a seeded sample of NSG v1/v2 and VNet flow logs into a folder",
        description="Write a deterministic sample estate (two NSGs, one of them version 1, and a VNet flow log) "
        "as PT1H.json files laid out exactly like the Azure containers, for demos, tests and benchmarks.",
    )
    p.add_argument("folder", type=Path, help="where to write (container folders are created inside)")
    p.add_argument("--hours", type=int, default=2, help="hours of logs per NIC (default 2)")
    p.add_argument("--tuples-per-minute", type=int, default=20, help="flow tuples per NIC and minute (default 20)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    paths = [write_blob(args.folder, spec) for spec in sample_specs(args.hours, args.seed, args.tuples_per_minute)]
    size = sum(p.stat().st_size for p in paths)
    print(f"Wrote {len(paths)} PT1H.json files ({size / 1e6:.1f} MB) under {args.folder}")
    return 0
