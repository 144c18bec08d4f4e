"""Conversion speed and memory: a generated NSG v2 PT1H.json of ~100 MB through `convert`, per format.

Each format runs in its own process (one core), writing to /dev/null; peak RSS is that process's
ru_maxrss. Usage: python bench/bench_formats.py [--mb 100] [--formats ecs,cef,ocsf]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import run_measured
from forwarder.samples.generator import BlobSpec, write_blob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=float, default=100.0, help="approximate blob size in MB (default 100)")
    ap.add_argument("--formats", default="ecs,cef,ocsf")
    ap.add_argument("--kind", default="nsg", choices=["nsg", "vnet"])
    args = ap.parse_args()
    # ~66 bytes of JSON per NSG v2 tuple (a tuple string plus its share of the record).
    tuples_per_minute = int(args.mb * 1e6 / 60 / 66)
    with tempfile.TemporaryDirectory() as tmp:
        spec = BlobSpec(kind=args.kind, version=2 if args.kind == "nsg" else 4, tuples_per_minute=tuples_per_minute)
        path = write_blob(Path(tmp), spec)
        size = path.stat().st_size
        print(f"input: {args.kind} PT1H.json {size / 1e6:.1f} MB, {60 * tuples_per_minute:,} tuples")
        print(f"{'format':8} {'seconds':>8} {'tuples/s':>12} {'MB/s':>8} {'peak RSS MB':>12}")
        for fmt in args.formats.split(","):
            cmd = [sys.executable, "-m", "forwarder", "convert", str(path), "--format", fmt, "--output", os.devnull]
            seconds, rss_mb, err, status = run_measured(cmd)
            if status != 0:
                sys.exit(f"convert failed: {err}")
            m = re.search(r"events=(\d+)", err)
            events = int(m.group(1)) if m else 0
            print(f"{fmt:8} {seconds:8.2f} {events / seconds:12,.0f} {size / 1e6 / seconds:8.1f} {rss_mb:12.1f}")


if __name__ == "__main__":
    main()
