"""Using a machine's cores: `run --once` over a folder of NSG v2 blobs, one instance reading one blob at a time
or many at once (the compiled core parses and formats without the GIL, so reader threads use several cores),
and N instances each with a share of the NICs ([service] shard = K/N).

Each instance is a real `nsg-forwarder run --once` process with a file sink (ECS) and its own checkpoint
file; the instances of a run start together. Prints wall seconds and tuples per second for the whole folder.

Usage: python bench/bench_shards.py [--nics 32] [--mb-per-blob 2] [--instances 1,2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forwarder.samples.generator import BlobSpec, write_blob


def write_config(tmp: Path, logs: Path, name: str, shard: str, concurrency: int) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f'[source]\ntype = "directory"\npath = "{logs}"\n[service]\nshard = "{shard}"\n'
        f"[reader]\nconcurrency = {concurrency}\n"
        f'[checkpoint]\npath = "{tmp / name / "checkpoints.json"}"\n'
        f'[[sink]]\ntype = "file"\nformat = "ecs"\npath = "{tmp / name / "flows.ndjson"}"\n'
    )
    return path


def count_lines(folder: Path) -> int:
    return sum(sum(1 for _ in f.open("rb")) for f in folder.glob("flows*.ndjson"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nics", type=int, default=32)
    ap.add_argument("--mb-per-blob", type=float, default=2.0)
    ap.add_argument("--instances", default="1,2")
    args = ap.parse_args()
    tuples_per_minute = int(args.mb_per_blob * 1e6 / 60 / 66)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        logs = tmp / "logs"
        for n in range(args.nics):
            write_blob(logs, BlobSpec(mac=f"000D3A0001{n:02X}", tuples_per_minute=tuples_per_minute))
        tuples = args.nics * 60 * tuples_per_minute
        mb = args.mb_per_blob
        print(f"input: {args.nics} NSG v2 blobs of {mb:.0f} MB, {tuples:,} tuples; cores: {os.cpu_count()}")
        print(f"{'':44} {'seconds':>8} {'tuples/s':>12}")
        cases = [
            ("1 instance, 1 blob at a time, pure Python", 1, 1, True),
            ("1 instance, 1 blob at a time", 1, 1, False),
            ("1 instance, 32 blobs at once", 1, 32, False),
        ]
        cases += [(f"{n} instances ([service] shard), 32 blobs at once", n, 32, False)
                  for n in (int(c) for c in args.instances.split(",")) if n > 1]  # fmt: skip
        for i, (label, count, concurrency, pure) in enumerate(cases):
            run = tmp / f"run{i}"
            run.mkdir()
            configs = [write_config(run, logs, f"s{k}", f"{k}/{count}", concurrency) for k in range(1, count + 1)]
            env = {**os.environ, "NSG_FORWARDER_PURE_PYTHON": "1" if pure else ""}
            began = time.perf_counter()
            procs = [
                subprocess.Popen([sys.executable, "-m", "forwarder", "run", "--config", str(c), "--once"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                for c in configs
            ]  # fmt: skip
            for proc in procs:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    sys.exit(f"run failed: {err.decode()[-500:]}")
            seconds = time.perf_counter() - began
            # The file sink rotates at 100 MB: count the closed files too.
            split = [count_lines(run / f"s{k}") for k in range(1, count + 1)]
            if sum(split) != tuples:
                sys.exit(f"expected {tuples} events, got {sum(split)}")
            shares = f"   events per instance: {split}" if count > 1 else ""
            print(f"{label:44} {seconds:8.2f} {tuples / seconds:12,.0f}{shares}")


if __name__ == "__main__":
    main()
