"""The checkpointed reader, measured: egress, latency and memory (the listing cost is bench_listing.py).

- egress: bytes downloaded from storage / bytes of flow-log data, over a blob that grows through 60
  commits in Azurite, polled after every commit (target <= 1.05; re-downloading costs ~30x).
- latency: seconds from a block's commit in Azurite to its events in the sink, with poll_interval = 1
  (target: within one poll interval + 2 s).
- memory: peak RSS of `nsg-forwarder run --once` forwarding one ~1 GB PT1H.json (target <= 150 MB).
- nics: peak RSS of `run --once` over --nics small NIC blobs (thousands in flight at once), compiled core next to
  the pure-Python core (the baseline for memory per NIC).

Usage: python bench/bench_reader.py [egress] [latency] [memory --gb 1] [nics --nics 300,3000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.storage.blob import ContainerClient

from bench.measure import run_measured
from forwarder.checkpoints.store import CheckpointStore
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.service import Service
from forwarder.samples.generator import BlobSpec, write_blob
from forwarder.sinks.base import Batch
from forwarder.sources.azure_blob import from_config
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import start_azurite


class CountingSink:
    name = "count"
    format = "cef"

    def __init__(self) -> None:
        self.events = 0
        self.arrived = threading.Event()

    def open(self) -> None: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...

    def send(self, batch: Batch) -> None:
        self.events += len(batch.events)
        self.arrived.set()


def azure_service(azurite_cs: str, container: str, tmp: Path, sink: CountingSink) -> Service:
    source = from_config(
        {"type": "azure_blob", "connection_string": azurite_cs, "container": container, "late_commit_grace": 7200}
    )
    store = CheckpointStore.load(tmp / "cp.json")
    return Service(source, store, Delivery([sink]), poll_interval=1.0)  # type: ignore[list-item]


@contextmanager
def growing_blob(tmp: Path) -> Iterator[tuple[ContainerClient, AzureWriter, BlobSpec, Service, CountingSink]]:
    """Azurite with one blob of the current hour, started (head and tail), and a service polling it."""
    az = start_azurite(tmp)
    try:
        cc = az.container_client("insights-logs-networksecuritygroupflowevent")
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        spec = BlobSpec(hour=hour, tuples_per_minute=200)
        writer = AzureWriter(cc)
        sink = CountingSink()
        svc = azure_service(az.connection_string, cc.container_name, tmp, sink)
        writer.start(spec)
        yield cc, writer, spec, svc, sink
    finally:
        az.stop()


def egress(tmp: Path) -> None:
    with growing_blob(tmp) as (cc, writer, spec, svc, sink):
        for _ in range(60):
            writer.append_minute(spec)
            svc.poll()
        blob = cc.get_blob_client(spec.blob_name).download_blob().readall()
        data = len(blob) - 14
        ratio = svc.reader.bytes_read / data
        print(
            f"egress: blob grew through 60 commits to {len(blob):,} bytes; downloaded {svc.reader.bytes_read:,} "
            f"bytes for {data:,} bytes of data: ratio {ratio:.3f} (events {sink.events:,})"
        )


def latency(tmp: Path) -> None:
    with growing_blob(tmp) as (_, writer, spec, svc, sink):
        runner = threading.Thread(target=svc.run, daemon=True)
        runner.start()
        waits = []
        for _ in range(10):
            time.sleep(0.7)  # 0.7 s against a 1 s poll: commits drift across the poll cycle
            sink.arrived.clear()
            before = sink.events
            t0 = time.monotonic()
            writer.append_minute(spec)
            while sink.events == before:
                sink.arrived.wait(10)
            waits.append(time.monotonic() - t0)
        svc.stop.set()
        runner.join(10)
        print(
            f"latency: commit to sink with poll_interval=1s over {len(waits)} commits: "
            f"max {max(waits):.2f}s, mean {sum(waits) / len(waits):.2f}s (target <= 3.0s)"
        )


def memory(tmp: Path, gb: float) -> None:
    tuples_per_minute = int(gb * 1e9 / 60 / 66)
    spec = BlobSpec(tuples_per_minute=tuples_per_minute)
    began = time.monotonic()
    path = write_blob(tmp / "logs", spec)
    size = path.stat().st_size
    print(f"memory: generated {size / 1e9:.2f} GB PT1H.json in {time.monotonic() - began:.0f}s")
    config = tmp / "mem.toml"
    config.write_text(f"""
[source]
type = "directory"
path = "{tmp / "logs"}"
[checkpoint]
path = "{tmp / "cp.json"}"
[[sink]]
type = "file"
format = "cef"
path = "-"
""")
    cmd = [sys.executable, "-m", "forwarder", "run", "--config", str(config), "--once"]
    seconds, peak_mb, err, status = run_measured(cmd)
    if status:
        sys.exit(f"forwarder failed: {err[-2000:]}")
    print(
        f"memory: forwarded {size / 1e9:.2f} GB ({60 * tuples_per_minute:,} tuples) in {seconds:.0f}s; "
        f"peak RSS {peak_mb:.0f} MB (target <= 150 MB)"
    )


def nics(tmp: Path, counts: list[int]) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    print("nics: peak RSS of run --once over N NIC blobs of 3 minutes x 2 tuples, ten NICs per NSG, to an ECS file")
    for n in counts:
        logs = tmp / f"logs{n}"
        for i in range(n):
            write_blob(logs, BlobSpec(name=f"NSG-{i // 10}", mac=f"000D3A{i:06X}", tuples_per_minute=2, minutes=3,
                                      hour=hour))  # fmt: skip
        figures = []
        for core, pure in (("compiled core", ""), ("pure Python", "1")):
            run = tmp / f"run{n}{pure}"
            config = run / "c.toml"
            run.mkdir()
            config.write_text(
                f'[source]\ntype = "directory"\npath = "{logs}"\n[checkpoint]\npath = "{run / "cp.json"}"\n'
                f'[[sink]]\ntype = "file"\npath = "{run / "flows.ndjson"}"\n'
            )
            cmd = ["env", f"NSG_FORWARDER_PURE_PYTHON={pure}", sys.executable, "-m", "forwarder", "run",
                   "--config", str(config), "--once"]  # fmt: skip
            seconds, peak_mb, err, status = run_measured(cmd)
            if status:
                sys.exit(f"forwarder failed: {err[-2000:]}")
            figures.append(f"{core} {peak_mb:.0f} MB ({seconds:.1f}s)")
        print(f"nics: {n:>6,} NICs: " + ", ".join(figures))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="*", default=["egress", "latency", "memory"])
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--nics", default="300,3000", help="NIC counts for 'nics' (default 300,3000)")
    args = ap.parse_args()
    for what in args.what:
        with tempfile.TemporaryDirectory() as tmp:
            if what == "memory":
                memory(Path(tmp), args.gb)
            elif what == "nics":
                nics(Path(tmp), [int(n) for n in args.nics.split(",")])
            else:
                {"egress": egress, "latency": latency}[what](Path(tmp))


if __name__ == "__main__":
    main()
