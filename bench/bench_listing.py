"""Listing cost of discovery: hierarchical (AzureBlobSource) against a flat listing of the container.

Fills a fresh Azurite with tiny hourly blobs for N days × R resources (NSGs and VNet flow logs)
× M NICs, then measures, with the clock set to the last generated hour:

- a flat ``list_blobs()`` of the whole container (what forwarders that list everything do per poll),
- the source's first ``discover()`` with start = earliest (the one-off backlog walk),
- steady-state polls at hh:30 (current hour only) and at hh:05 (previous hour still live).

Usage: python bench/bench_listing.py [--days 30] [--resources 4] [--macs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forwarder.samples.generator import HEAD, TAIL, BlobSpec
from forwarder.sources.azure_blob import AzureBlobSource, from_config
from tests.support.azurite import start_azurite

NOW_HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def row(what: str, entries: int, requests: int, seconds: float, blobs: int) -> None:
    print(f"{what:38} {entries:>9,} {requests:>9,} {seconds * 1000:>9.0f} {blobs:>9,}")


def timed_discover(source: AzureBlobSource) -> tuple[int, int, float, int]:
    before = source.requests
    began = time.perf_counter()
    n = sum(1 for _ in source.discover())
    return source.entries_listed, source.requests - before, time.perf_counter() - began, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--resources", type=int, default=4, help="NSGs + VNet flow logs (every 4th is a flow log)")
    ap.add_argument("--macs", type=int, default=2, help="NICs per resource")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        az = start_azurite(Path(tmp))
        try:
            cc = az.new_container("bench")
            specs = [
                BlobSpec(
                    kind="vnet" if r % 4 == 3 else "nsg",
                    name=f"RES{r:03d}",
                    mac=f"000D3A{r:03d}{m:03d}",
                    hour=NOW_HOUR - h * timedelta(hours=1),
                )
                for h in range(args.days * 24)
                for r in range(args.resources)
                for m in range(args.macs)
            ]
            began = time.perf_counter()
            az.upload_many(cc.container_name, ((s.blob_name, HEAD + TAIL) for s in specs))
            print(
                f"retained: {len(specs):,} blobs = {args.days} days x 24 h x {args.resources} resources "
                f"x {args.macs} NICs (uploaded in {time.perf_counter() - began:.1f} s)\n"
            )
            print(f"{'':38} {'entries':>9} {'requests':>9} {'ms':>9} {'blobs':>9}")
            began = time.perf_counter()
            flat = sum(1 for _ in cc.list_blobs())
            row("flat list_blobs() of the container", flat, -(-flat // 5000), time.perf_counter() - began, flat)

            clock = Clock(NOW_HOUR + timedelta(minutes=5))
            source = from_config(
                {"type": "azure_blob", "container": cc.container_name, "connection_string": az.connection_string},
                now=clock,
            )
            try:
                row("first discover(), start=earliest", *timed_discover(source))
                for _ in range(3):
                    steady = timed_discover(source)
                row("steady-state poll at hh:05 (2 hours)", *steady)
                clock.t = NOW_HOUR + timedelta(minutes=30)
                timed_discover(source)  # the previous hour's last listing
                for _ in range(3):
                    steady = timed_discover(source)
                row("steady-state poll at hh:30 (1 hour)", *steady)
            finally:
                source.close()
        finally:
            az.stop()


if __name__ == "__main__":
    main()
