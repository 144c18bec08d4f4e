"""Sizing: how many bytes each format writes per byte of flow log read, plain and gzipped (the file sink's
closed files, level 3; HTTP sinks send level 1), for NSG v2 and VNet v4 input.

The baseline is the input itself: every ratio is output bytes / input bytes of the same PT1H.json, so a
SIEM's ingest volume (which counts uncompressed events) is the flow-log volume times the ratio.
Usage: python bench/bench_sizing.py [--mb 20]
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forwarder.samples.generator import BlobSpec, write_blob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=float, default=20.0, help="approximate blob size in MB (default 20)")
    args = ap.parse_args()
    tuples_per_minute = int(args.mb * 1e6 / 60 / 66)  # ~66 bytes of JSON per NSG v2 tuple
    header = f"{'input':8} {'format':6} {'input MB':>9} {'tuples':>10} {'out MB':>8} {'out/in':>7} "
    print(header + f"{'gzip-3 MB':>10} {'gzip/in':>8} {'bytes/event':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, version in (("nsg", 2), ("vnet", 4)):
            path = write_blob(Path(tmp), BlobSpec(kind=kind, version=version, tuples_per_minute=tuples_per_minute))
            size = path.stat().st_size
            tuples = 60 * tuples_per_minute
            for fmt in ("ecs", "cef", "ocsf"):
                out = Path(tmp) / f"{kind}.{fmt}"
                cmd = [sys.executable, "-m", "forwarder", "convert", str(path), "--format", fmt, "--output", str(out)]
                subprocess.run(cmd, check=True, capture_output=True)
                written = out.stat().st_size
                with out.open("rb") as f:
                    packed = len(gzip.compress(f.read(), compresslevel=3))
                out.unlink()
                row = f"{kind + ' v' + str(version):8} {fmt:6} {size / 1e6:9.1f} {tuples:10,} {written / 1e6:8.1f} "
                row += f"{written / size:7.2f} {packed / 1e6:10.2f} {packed / size:8.3f} {written / tuples:12.0f}"
                print(row)
            path.unlink()


if __name__ == "__main__":
    main()
