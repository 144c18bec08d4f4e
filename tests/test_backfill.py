"""``nsg-forwarder backfill`` as an operator uses it: after a start at "latest", with times typed by hand,
and with its progress bar on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime, timedelta
from pathlib import Path

from forwarder.samples.generator import BlobSpec, write_blob
from tests.support.events import validate_lines
from tests.support.process import read_ids


def nsg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "forwarder", *args], capture_output=True, text=True, timeout=120)


def config(tmp: Path, start: str = "earliest") -> Path:
    path = tmp / "c.toml"
    path.write_text(
        f'[source]\ntype = "directory"\npath = "logs"\nstart = "{start}"\n'
        '[checkpoint]\npath = "state/cp.json"\n[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n'
    )
    return path


def test_backfill_after_a_first_run_at_latest_forwards_the_older_hours_of_a_directory_source(tmp_path: Path) -> None:
    """The README's advice for 'nothing arrives' (start = latest, then backfill older hours) works for a folder."""
    old = BlobSpec(minutes=3, tuples_per_minute=4)  # 2026-11-25T10:00Z, days before now
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    current = BlobSpec(minutes=2, tuples_per_minute=5, mac="000D3A0000CC", hour=this_hour)
    write_blob(tmp_path / "logs", old)
    write_blob(tmp_path / "logs", current)
    cfg = config(tmp_path, start="latest")
    first = nsg("run", "--config", str(cfg), "--once")
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "out" / "flows.ndjson").exists() or not read_ids(tmp_path / "out" / "flows.ndjson")

    done = nsg("backfill", "--config", str(cfg), "--since", "2026-11-25T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert "Backfill finished: blobs=2 events=12" in done.stderr, done.stderr
    lines = (tmp_path / "out" / "flows.ndjson").read_text().splitlines()
    assert len(lines) == 12  # the old hour, once; the current hour stays where "latest" put it
    validate_lines("ecs", lines)
    again = nsg("backfill", "--config", str(cfg), "--since", "2026-11-25T00:00:00Z")
    assert again.returncode == 0 and len((tmp_path / "out" / "flows.ndjson").read_text().splitlines()) == 12


def test_backfill_takes_durations_and_says_what_is_wrong_with_a_time(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=1, tuples_per_minute=2))
    cfg = str(config(tmp_path))
    bad = nsg("backfill", "--config", cfg, "--since", "yesterday")
    assert bad.returncode == 2 and "invalid _time value" not in bad.stderr
    assert (
        "argument --since: expected an RFC 3339 time such as 2026-11-01T00:00:00Z, or a time before now such as "
        in (bad.stderr)
    )
    naive = nsg("backfill", "--config", cfg, "--since", "2026-11-25T00:00:00")
    assert naive.returncode == 2 and "has no UTC offset" in naive.stderr and "2026-11-25T00:00:00Z" in naive.stderr
    future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:00:00Z")
    ahead = nsg("backfill", "--config", cfg, "--since", future)
    assert ahead.returncode == 2 and "is in the future; nothing to forward yet" in ahead.stderr
    assert "--until" not in ahead.stderr
    backwards = nsg("backfill", "--config", cfg, "--since", "2026-11-25T00:00:00Z", "--until", "2026-11-24T00:00:00Z")
    assert backwards.returncode == 2 and "--until 2026-11-24T00:00:00+00:00 must be after --since" in backwards.stderr
    recent = nsg("backfill", "--config", cfg, "--since", "2h")
    assert recent.returncode == 0 and "Backfill finished: blobs=0" in recent.stderr  # the sample hour is older
    for text in (bad.stderr, naive.stderr, ahead.stderr, backwards.stderr, recent.stderr):
        assert "Traceback" not in text


def test_the_progress_bar_on_a_terminal_keeps_log_lines_whole_and_counts_events_in_full(tmp_path: Path) -> None:
    # 1000 events, a number tqdm would show as "1e+3"; a damaged tuple makes a warning while the bar is drawn.
    spec = BlobSpec(minutes=10, tuples_per_minute=100)
    path = write_blob(tmp_path / "logs", spec)
    spec2 = BlobSpec(minutes=1, tuples_per_minute=4, mac="000D3A0000DD")
    damaged = write_blob(tmp_path / "logs", spec2)
    text = damaged.read_bytes()
    at = text.index(b'"flowTuples":["') + len(b'"flowTuples":["')
    damaged.write_bytes(text[:at] + b"garbage," + text[at:])
    assert path.exists()
    cfg = config(tmp_path)
    main, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal 160 columns wide
    proc = subprocess.Popen(
        [sys.executable, "-m", "forwarder", "backfill", "--config", str(cfg), "--since", "2026-11-25T00:00:00Z"],
        stdout=subprocess.DEVNULL,
        stderr=tty,
    )
    os.close(tty)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "events=1,003" in screen and "e+" not in screen.split("Backfill finished")[0]
    # Every log line starts where a line starts (tqdm clears the bar first), never after the bar's text.
    for line in screen.replace("\r\n", "\n").split("\n"):
        last = line.split("\r")[-1]
        if " WARNING " in last or " INFO " in last:
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (INFO|WARNING) ", last), repr(line)
    assert "Skipped bad input: bad flow tuple" in screen
