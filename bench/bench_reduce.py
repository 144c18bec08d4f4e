"""Filters and aggregation next to plain conversion, in one run, on both cores; and how much they cut.

1. Speed. `nsg-forwarder convert --format ecs` of a generated estate-mix NSG v2 PT1H.json (40 MB by default):
   plain, --filter "denied only", --filter that keeps nine tuples in ten (a filter's worst case: it copies
   what it keeps, then all of it is rendered), --aggregate 10m, and both; with the compiled core and with
   NSG_FORWARDER_PURE_PYTHON=1, each next to plain conversion on the same core. Input tuples per second of
   whole processes (start-up included), best of --repeat runs. --compare-with runs another checkout's compiled
   convert the same way (main's, to see what the reduction cost before it ran in C).
2. Volume. Output events and bytes per input tuple in ECS, CEF and OCSF: plain, denied only, 10-minute
   aggregation; on the estate mix and the default ("flows") mix at four volumes a NIC, and on the golden
   samples (tests/golden: Microsoft's documented examples).

Usage: python bench/bench_reduce.py [--mb 40] [--repeat 3] [--compare-with ../main] [--skip-volume | --skip-speed]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import run_measured
from forwarder.samples.generator import HEAD, TAIL, BlobSpec, write_blob

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PURE = {"NSG_FORWARDER_PURE_PYTHON": "1"}
COMPILED = {"NSG_FORWARDER_PURE_PYTHON": ""}
DENIED_ONLY = '[[filter.include]]\ndecision = "denied"\n'
# The estate's wire server, DNS and metadata traffic: about a tenth of its tuples.
KEEP_MOST = '[[filter.exclude]]\nname = "platform"\naddress = "azure_platform"\n'


@dataclass
class Run:
    seconds: float
    tuples: int
    events: int


def convert(path: Path, extra: list[str], env: dict[str, str], out: str = os.devnull, cwd: Path = ROOT) -> Run:
    """One `convert` process: its wall time and the tuples and events of its summary line."""
    saved = dict(os.environ)
    saved_cwd = Path.cwd()
    try:
        os.environ.update(env)
        os.chdir(cwd)  # python -m forwarder imports the checkout it runs in
        cmd = [PY, "-m", "forwarder", "convert", str(path), "--output", out, *extra]
        seconds, _, err, status = run_measured(cmd)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved)
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err}")
    summary = err.strip().splitlines()[-1]
    found = {k: int(v) for k, v in re.findall(r"\b(tuples|events)=(\d+)", summary)}
    return Run(seconds, found["tuples"], found["events"])


def best(path: Path, extra: list[str], env: dict[str, str], repeat: int, cwd: Path = ROOT) -> Run:
    runs = [convert(path, extra, env, cwd=cwd) for _ in range(repeat)]
    return min(runs, key=lambda r: r.seconds)


def speed(path: Path, filters: dict[str, Path], repeat: int, other: Path | None) -> None:
    reductions = {
        "plain": [],
        "--filter denied-only": ["--filter", str(filters["denied"])],
        "--filter keep-90% (exclude azure_platform)": ["--filter", str(filters["most"])],
        "--aggregate 10m": ["--aggregate", "10m"],
        "--filter denied-only --aggregate 10m": ["--filter", str(filters["denied"]), "--aggregate", "10m"],
    }
    cores = [("compiled core", COMPILED, ROOT), ("pure Python", PURE, ROOT)]
    if other is not None:
        cores.append((f"{other.name}'s checkout, compiled", COMPILED, other))
    size = path.stat().st_size / 1e6
    print(f"\nconvert --format ecs, estate-mix NSG v2 PT1H.json of {size:.1f} MB, to /dev/null (best of {repeat})")
    print(f"{'':66} {'seconds':>7} {'tuples/s':>11} {'vs plain':>8} {'events':>9}")
    for label, env, cwd in cores:
        plain = None
        for what, extra in reductions.items():
            run = best(path, ["--format", "ecs", *extra], env, repeat, cwd)
            plain = plain or run
            ratio = plain.seconds / run.seconds
            print(
                f"{what + ' (' + label + ')':66} {run.seconds:7.2f} {run.tuples / run.seconds:11,.0f} "
                f"{ratio:7.0%} {run.events:9,}",
                flush=True,
            )


def volume(inputs: dict[str, Path], filters: dict[str, Path], tmp: Path) -> None:
    print("\noutput per input tuple (compiled core): events, and bytes in ECS / CEF / OCSF")
    print(f"{'':52} {'tuples':>9} {'in B':>6} {'events':>9} {'ECS B':>8} {'CEF B':>8} {'OCSF B':>8}")
    reductions = {
        "plain": [],
        "denied only": ["--filter", str(filters["denied"])],
        "10m aggregation": ["--aggregate", "10m"],
    }
    for name, path in inputs.items():
        for what, extra in reductions.items():
            sizes: dict[str, int] = {}
            run = None
            for fmt in ("ecs", "cef", "ocsf"):
                out = tmp / f"out.{fmt}"
                run = convert(path, ["--format", fmt, *extra], COMPILED, out=str(out))
                sizes[fmt] = out.stat().st_size
                out.unlink()
            assert run is not None
            t = run.tuples
            data = path.stat().st_size - len(HEAD) - len(TAIL)
            print(
                f"{name + ', ' + what:52} {t:9,} {data / t:6.0f} {run.events / t:9.4f} "
                f"{sizes['ecs'] / t:8.1f} {sizes['cef'] / t:8.1f} {sizes['ocsf'] / t:8.1f}",
                flush=True,
            )


def golden_blob(tmp: Path) -> Path:
    """The three golden samples (NSG v1, v2, VNet v4) as the records of one blob."""
    records = []
    for case in ("nsg_v1", "nsg_v2", "vnet_v4"):
        text = (ROOT / "tests" / "golden" / "ecs" / f"{case}.PT1H.json").read_bytes().strip()
        assert text.startswith(HEAD) and text.endswith(TAIL)
        records.append(text[len(HEAD) : -len(TAIL)])
    path = tmp / "golden.PT1H.json"
    path.write_bytes(HEAD + b",".join(records) + TAIL)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=40.0, help="size of the estate blob for the speed figures (default 40)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per speed figure; the best counts (default 3)")
    ap.add_argument("--compare-with", type=Path, help="another checkout whose compiled convert runs the same way")
    ap.add_argument("--skip-volume", action="store_true", help="leave out the output-per-tuple figures")
    ap.add_argument("--skip-speed", action="store_true", help="leave out the tuples/s figures")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; ", end="", flush=True)
    os.system(f"{PY} -m forwarder --version")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        filters = {"denied": tmp / "denied.toml", "most": tmp / "most.toml"}
        filters["denied"].write_text(DENIED_ONLY)
        filters["most"].write_text(KEEP_MOST)
        per_minute = int(args.mb * 1e6 / 60 / 63)  # ~63 bytes of JSON per estate NSG v2 tuple
        big = write_blob(
            tmp / "estate-big", BlobSpec(kind="nsg", version=2, mix="estate", tuples_per_minute=per_minute)
        )
        if not args.skip_speed:
            speed(big, filters, args.repeat, args.compare_with.resolve() if args.compare_with else None)
        if args.skip_volume:
            return
        inputs: dict[str, Path] = {}
        for mix in ("estate", "flows"):
            for rate in (20, 60, 200):  # a quiet NIC, the pipeline benchmark's, a busy one
                spec = BlobSpec(kind="nsg", version=2, mix=mix, tuples_per_minute=rate)
                inputs[f"{mix} mix, {rate} tuples/min"] = write_blob(tmp / f"{mix}-{rate}", spec)
            if mix == "estate":
                inputs[f"estate mix, {per_minute:,} tuples/min"] = big
            else:
                spec = BlobSpec(kind="nsg", version=2, mix=mix, tuples_per_minute=per_minute)
                inputs[f"flows mix, {per_minute:,} tuples/min"] = write_blob(tmp / "flows-big", spec)
        inputs["golden samples (NSG v1, v2, VNet v4)"] = golden_blob(tmp)
        volume(inputs, filters, tmp)


if __name__ == "__main__":
    main()
