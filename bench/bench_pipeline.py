"""Keeping up with an estate: N NICs whose blobs change every minute, storage and SIEM with latency.

Azurite sits behind a proxy that delays every request by --storage-ms (a storage account in another
region) and counts them; a Splunk HEC receiver answers after --siem-ms (Splunk Cloud over the
internet). N NIC blobs of the current hour (ten NICs per NSG) get one data block of --tuples tuples
per "minute", committed as fast as the writer can; the forwarder (`nsg-forwarder run`, a separate
process, poll_interval --poll) forwards them to HEC as ECS. For each minute it prints how long after
the last commit every event of that minute had reached the receiver (poll wait included), the
storage requests per changed blob (listings included), and the forwarder's peak RSS.

The baseline, in the same run, is the serial pipeline of an earlier revision (--baseline, default the
last commit before the concurrent pipeline), checked out into a temporary git worktree.

Usage: python bench/bench_pipeline.py [--nics 100,1000,5000] [--baseline-nics 100,1000] [--minutes 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forwarder.samples.generator import BlobSpec  # noqa: E402
from tests.support.azure_writer import AzureWriter  # noqa: E402
from tests.support.azurite import Azurite, start_azurite  # noqa: E402
from tests.support.http_receivers import HecReceiver  # noqa: E402
from tests.support.latency_proxy import LatencyProxy  # noqa: E402
from tests.support.net import free_port  # noqa: E402

BASELINE_REV = "423acba"  # the serial pipeline: one blob at a time, each chunk waited for by every sink
TOKEN = "00000000-1111-2222-3333-444444444444"
NICS_PER_NSG = 10


@dataclass
class Minute:
    latency: float  # seconds from the last commit to the last event at the receiver
    requests_per_blob: float
    commit_seconds: float  # how long the writer took to commit the minute for every NIC


@dataclass
class Result:
    label: str
    nics: int
    catch_up: float  # the first minute, with every blob new (heads learned)
    minutes: list[Minute]
    peak_rss_mb: float
    finished: bool


def vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def config_text(tmp: Path, proxy: LatencyProxy, az: Azurite, container: str, hec: HecReceiver, poll: float,
                concurrent: bool, metrics_port: int) -> str:  # fmt: skip
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={az.account_name};AccountKey={az.account_key};"
        f"BlobEndpoint=http://127.0.0.1:{proxy.port}/{az.account_name};"
    )
    reader = "[reader]\nconcurrency = 32\n" if concurrent else ""
    return f"""
[source]
type = "azure_blob"
connection_string = "{conn}"
container = "{container}"
start = "earliest"
poll_interval = {poll}

[checkpoint]
path = "{tmp / "checkpoints.json"}"

{reader}
[log]
level = "warning"
format = "text"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[[sink]]
type = "splunk_hec"
format = "ecs"
url = "{hec.url}"
token = "{TOKEN}"
"""


def wait_for(hec: HecReceiver, count: int, proc: subprocess.Popen[bytes], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while hec.counted < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    return time.monotonic()


def run_case(label: str, forwarder_root: Path, az: Azurite, proxy: LatencyProxy, hec: HecReceiver, nics: int,
             args: argparse.Namespace, concurrent: bool) -> Result:  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    container = az.new_container(f"nics{nics}{label[:4].lower()}")
    writer = AzureWriter(container)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    specs = [
        BlobSpec(
            name=f"NSG-{i // NICS_PER_NSG:04d}",
            mac=f"000D3A{i:06X}",
            hour=hour,
            minutes=args.minutes + 1,
            tuples_per_minute=args.tuples,
            seed=i,
        )
        for i in range(nics)
    ]
    pool = ThreadPoolExecutor(16)
    list(pool.map(writer.append_minute, specs))  # head, tail and the first minute
    hec.counted = 0
    cfg = tmp / "bench.toml"
    cfg.write_text(config_text(tmp, proxy, az, container.container_name, hec, args.poll, concurrent, free_port()))
    env = {**os.environ, "PYTHONPATH": str(forwarder_root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forwarder", "run", "--config", str(cfg)], cwd=forwarder_root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    peak = [0.0]

    def watch() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], vm_hwm_mb(proc.pid))
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    expected = nics * args.tuples
    began = time.monotonic()
    done = wait_for(hec, expected, proc, args.timeout)
    catch_up = (done - began) if done else float("nan")
    minutes: list[Minute] = []
    finished = done is not None
    for _ in range(args.minutes if finished else 0):
        requests_before = proxy.requests
        t0 = time.monotonic()
        list(pool.map(writer.append_minute, specs))
        last_commit = time.monotonic()
        expected += nics * args.tuples
        done = wait_for(hec, expected, proc, args.timeout)
        if done is None:
            finished = False
            break
        minutes.append(Minute(done - last_commit, (proxy.requests - requests_before) / nics, last_commit - t0))
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGTERM) and not finished:
        print(err.decode(errors="replace")[-3000:], file=sys.stderr)
    pool.shutdown()
    container.delete_container()
    return Result(label, nics, catch_up, minutes, peak[0], finished)


def baseline_tree(rev: str) -> Path | None:
    tree = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "tree"
    made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode:
        print(f"baseline {rev} unavailable: {made.stderr.strip()}", file=sys.stderr)
        return None
    return tree


def report(r: Result, args: argparse.Namespace) -> None:
    if not r.minutes:
        print(f"{r.label:<30} {r.nics:>6}  did not deliver a minute within {args.timeout:.0f}s "
              f"(first minute: {r.catch_up:.1f}s)  peak RSS {r.peak_rss_mb:.0f} MB")  # fmt: skip
        return
    worst = max(m.latency for m in r.minutes)
    mean = sum(m.latency for m in r.minutes) / len(r.minutes)
    req = sum(m.requests_per_blob for m in r.minutes) / len(r.minutes)
    commit = max(m.commit_seconds for m in r.minutes)
    print(
        f"{r.label:<30} {r.nics:>6}  {worst:>8.1f}s {mean:>8.1f}s  {req:>10.2f}  {commit:>9.1f}s  "
        f"{r.catch_up:>9.1f}s  {r.peak_rss_mb:>6.0f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nics", default="100,1000,5000")
    ap.add_argument("--baseline-nics", default="100,1000")
    ap.add_argument("--baseline", default=BASELINE_REV, help="git revision of the baseline ('' for none)")
    ap.add_argument("--minutes", type=int, default=2)
    ap.add_argument("--tuples", type=int, default=60, help="tuples per NIC per minute")
    ap.add_argument("--poll", type=float, default=5.0)
    ap.add_argument("--storage-ms", type=float, default=20.0)
    ap.add_argument("--siem-ms", type=float, default=50.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one minute's events")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-azurite-"))
    az = start_azurite(tmp)
    proxy = LatencyProxy("127.0.0.1", az.port, args.storage_ms / 1000).start()
    hec = HecReceiver(TOKEN, latency=args.siem_ms / 1000)
    hec.count_only = True
    hec.start()
    results: list[Result] = []
    tree = baseline_tree(args.baseline) if args.baseline and args.baseline_nics else None
    print(
        f"storage +{args.storage_ms:.0f} ms per request, HEC answers after {args.siem_ms:.0f} ms, {args.tuples} "
        f"tuples per NIC per minute, poll_interval {args.poll:.0f}s; latency = last commit of a minute to its last "
        f"event at HEC"
    )
    print(f"{'forwarder':<30} {'NICs':>6}  {'latency':>9} {'mean':>8}  {'req/blob':>10}  {'commit':>10}  "
          f"{'1st min':>10}  {'peak RSS':>9}")  # fmt: skip
    try:
        for n in [int(x) for x in args.nics.split(",") if x]:
            if tree is not None and str(n) in args.baseline_nics.split(","):
                r = run_case(f"baseline {args.baseline} (serial)", tree, az, proxy, hec, n, args, concurrent=False)
                report(r, args)
                results.append(r)
            r = run_case("pipeline (concurrency 32)", ROOT, az, proxy, hec, n, args, concurrent=True)
            report(r, args)
            results.append(r)
    finally:
        hec.stop()
        proxy.stop()
        az.stop()
        if tree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


if __name__ == "__main__":
    main()
