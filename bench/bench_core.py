"""The compiled core against a naive converter and against the pure-Python core, in one run.

On a generated NSG v2 PT1H.json (40 MB by default) and a VNet v4 one of the same size:
`nsg-forwarder convert --format ecs|cef|ocsf|asim` with the compiled core, the same with
NSG_FORWARDER_PURE_PYTHON=1, and bench/naive_convert.py (orjson.loads of the whole blob, one dict per
tuple, orjson.dumps); then `run --once` from a directory source to one ECS file sink, both cores, next
to the naive converter on the same blob; then peak RSS of `convert` on a 100 MB blob per format.

Every figure is a whole process, start-up included, writing its output to a file or /dev/null; each is
the best of --repeat runs (the machine is shared: the best run is the one least disturbed), peak RSS the
highest. Usage: python bench/bench_core.py [--mb 40] [--repeat 3] [--rss-mb 100] [--compare-with ../main]
[--formats ecs,cef,ocsf,asim]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import run_measured
from forwarder.samples.generator import BlobSpec, write_blob

HERE = Path(__file__).resolve().parent
PY = sys.executable


def measure(
    cmd: list[str], repeat: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float]:
    """(best seconds, highest peak RSS MB) over ``repeat`` runs; exits on a failed run. ``cwd``: run the
    forwarder of another checkout (python -m forwarder imports from the working directory first)."""
    best, peak = float("inf"), 0.0
    saved = dict(os.environ)
    saved_cwd = Path.cwd()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        for _ in range(repeat):
            seconds, rss, err, status = run_measured(cmd)
            if status != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{err}")
            best, peak = min(best, seconds), max(peak, rss)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved)
    return best, peak


def blob(tmp: Path, kind: str, mb: float) -> tuple[Path, int]:
    # ~66 bytes of JSON per NSG v2 tuple, ~77 per VNet v4 one.
    per_minute = int(mb * 1e6 / 60 / (66 if kind == "nsg" else 77))
    spec = BlobSpec(kind=kind, version=2 if kind == "nsg" else 4, tuples_per_minute=per_minute)  # type: ignore[arg-type]
    return write_blob(tmp / kind, spec), 60 * per_minute


PURE = {"NSG_FORWARDER_PURE_PYTHON": "1"}
COMPILED = {"NSG_FORWARDER_PURE_PYTHON": ""}


def row(what: str, tuples: int, seconds: float, rss: float, naive: float | None) -> None:
    ratio = f"{naive / seconds:5.2f}x" if naive else "     -"
    print(f"{what:44} {seconds:7.2f} {tuples / seconds:12,.0f} {ratio:>8} {rss:9.1f}", flush=True)


def header(title: str) -> None:
    print(f"\n{title}\n{'':44} {'seconds':>7} {'tuples/s':>12} {'vs naive':>8} {'RSS MB':>9}", flush=True)


def convert_rows(
    path: Path, tuples: int, kind: str, formats: list[str], pure: list[str], repeat: int, other: Path | None = None
) -> None:
    naive, rss = measure([PY, str(HERE / "naive_convert.py"), str(path), os.devnull], repeat)
    header(f"{kind} PT1H.json, {path.stat().st_size / 1e6:.1f} MB, {tuples:,} tuples: convert to /dev/null")
    row("naive orjson converter (baseline)", tuples, naive, rss, naive)
    for fmt, env, label in [(f, COMPILED, "compiled core") for f in formats] + [(f, PURE, "pure Python") for f in pure]:
        cmd = [PY, "-m", "forwarder", "convert", str(path), "--format", fmt, "--output", os.devnull]
        seconds, rss = measure(cmd, repeat, env)
        row(f"convert --format {fmt} ({label})", tuples, seconds, rss, naive)
    for fmt in pure if other else []:
        cmd = [PY, "-m", "forwarder", "convert", str(path), "--format", fmt, "--output", os.devnull]
        seconds, rss = measure(cmd, repeat, PURE, cwd=other)
        row(f"convert --format {fmt} ({other.name if other else ''} checkout)", tuples, seconds, rss, naive)


def run_rows(path: Path, tuples: int, repeat: int, tmp: Path) -> None:
    source = path.parents[len(path.relative_to(tmp / "nsg").parts) - 2]  # the container folder
    work = tmp / "run"
    config = tmp / "run.toml"
    config.write_text(
        f'[source]\ntype = "directory"\npath = "{source}"\n'
        f'[checkpoint]\npath = "{work / "checkpoints.json"}"\n'
        f'[[sink]]\ntype = "file"\nformat = "ecs"\npath = "{work / "flows.ndjson"}"\nrotate_bytes = 0\n'
    )
    naive_out = tmp / "naive.ndjson"
    naive, rss = measure([PY, str(HERE / "naive_convert.py"), str(path), str(naive_out)], repeat)
    header("run --once: directory source -> one ECS file sink (fsync per chunk, checkpoints)")
    row("naive orjson converter to a file (baseline)", tuples, naive, rss, naive)
    for env, label in ((COMPILED, "compiled core"), (PURE, "pure Python")):
        best, peak = float("inf"), 0.0
        for _ in range(repeat):
            shutil.rmtree(work, ignore_errors=True)
            seconds, rss = measure([PY, "-m", "forwarder", "run", "--config", str(config), "--once"], 1, env)
            best, peak = min(best, seconds), max(peak, rss)
        lines = sum(1 for _ in (work / "flows.ndjson").open("rb"))
        if lines != tuples:
            sys.exit(f"run --once wrote {lines} events, expected {tuples}")
        row(f"run --once ({label})", tuples, best, peak, naive)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=40.0, help="size of the NSG and VNet blobs (default 40)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts (default 3)")
    ap.add_argument("--rss-mb", type=float, default=100.0, help="blob size for the peak RSS check (0: skip)")
    ap.add_argument("--skip-run", action="store_true", help="leave out the run --once figures")
    ap.add_argument(
        "--compare-with",
        type=Path,
        help="another checkout (e.g. of main) whose convert runs next to the pure-Python core",
    )
    ap.add_argument(
        "--formats", default="ecs,cef,ocsf,asim", help="the formats to convert to (default ecs,cef,ocsf,asim)"
    )
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; core: ", end="", flush=True)
    os.system(f"{PY} -m forwarder --version")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nsg, nsg_tuples = blob(tmp, "nsg", args.mb)
        other = args.compare_with.resolve() if args.compare_with else None
        convert_rows(nsg, nsg_tuples, "NSG v2", formats, formats, args.repeat, other)
        vnet, vnet_tuples = blob(tmp, "vnet", args.mb)
        pure = [f for f in formats if f in ("ecs", "asim")]
        convert_rows(vnet, vnet_tuples, "VNet v4", formats, pure, args.repeat)
        if not args.skip_run:
            run_rows(nsg, nsg_tuples, args.repeat, tmp)
        if args.rss_mb:
            big, big_tuples = blob(tmp / "big", "nsg", args.rss_mb)
            header(f"peak RSS, NSG v2 PT1H.json of {big.stat().st_size / 1e6:.0f} MB ({big_tuples:,} tuples)")
            for fmt in formats:
                cmd = [PY, "-m", "forwarder", "convert", str(big), "--format", fmt, "--output", os.devnull]
                seconds, rss = measure(cmd, 1, COMPILED)
                row(f"convert --format {fmt} (compiled core)", big_tuples, seconds, rss, None)


if __name__ == "__main__":
    main()
