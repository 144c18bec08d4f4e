"""The file sink against real files and real processes: rotation, gzip, manifest, crash recovery, reopen."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from forwarder.sinks.base import Batch, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.file import (
    DEFAULT_ROTATE_BYTES,
    FileSink,
    FileSinkConfigError,
    StdoutSink,
    from_config,
    parse_config,
)
from forwarder.sinks.file_archive import MANIFEST_NAME, main_verify, verify_archive
from forwarder.sinks.retry import RetryPolicy
from tests.support.events import validate_lines
from tests.support.file_sink import (
    FORMAT,
    archive_lines,
    closed_files,
    event_id,
    file_lines,
    make_batch,
    open_sink,
)

REPO = Path(__file__).resolve().parents[1]
CLOSED_NAME = r"^flows-\d{8}T\d{6}Z-\d{6}\.ndjson(\.gz)?$"


def sent_lines(batches: list[Batch]) -> list[str]:
    return [line for b in batches for line in b.lines]


def send_all(sink: FileSink, first: int, count: int, **kw: Any) -> list[Batch]:
    batches = [make_batch(n, **kw) for n in range(first, first + count)]
    for b in batches:
        sink.send(b)
    return batches


def snapshot(paths: list[Path]) -> dict[str, tuple[int, int, int, str]]:
    out = {}
    for p in paths:
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


# -- writing ---------------------------------------------------------------------------------------------


def test_send_appends_every_line_and_it_is_on_disk_when_send_returns(tmp_path: Path) -> None:
    active = tmp_path / "out" / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 0})
    batches = []
    for n in range(3):
        batch = make_batch(n, kind="vnet" if n == 1 else "nsg")
        sink.send(batch)
        batches.append(batch)
        # Another reader sees the whole batch as soon as send returns: it was written, not buffered.
        assert file_lines(active) == sent_lines(batches)
    sink.close()
    lines = file_lines(active)
    docs = validate_lines(FORMAT, lines)
    assert [event_id(d) for d in docs] == [e.event_id for b in batches for e in b.events]
    assert stat.S_IMODE(active.stat().st_mode) == 0o640
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_restart_appends_to_the_existing_active_file(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active)})
    first = send_all(sink, 0, 2)
    sink.close()
    sink = open_sink({"path": str(active)})
    second = send_all(sink, 2, 2)
    sink.close()
    assert file_lines(active) == sent_lines(first + second)
    assert closed_files(active) == []


def test_a_second_writer_on_the_same_path_is_refused(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active)})
    with pytest.raises(SinkFatal, match="another process"):
        open_sink({"path": str(active)})
    sink.close()
    open_sink({"path": str(active)}).close()  # free again once the first one closed


# -- rotation --------------------------------------------------------------------------------------------


def test_rotation_by_size_keeps_every_line_in_order_and_lists_closed_files(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": "200KiB"})
    batches = send_all(sink, 0, 12)
    sink.close()

    closed = closed_files(active)
    total = sum(len("\n".join(b.lines)) + 1 for b in batches)
    # Batches are never split, so each closed file holds more than 200 KiB minus one batch.
    assert len(closed) >= max(2, total // (200 * 1024) - 1)
    sizes = [p.stat().st_size for p in closed]
    batch_bytes = max(len("\n".join(b.lines)) + 1 for b in batches)
    assert batch_bytes < 200 * 1024
    assert all(size <= 200 * 1024 for size in sizes), sizes
    assert all(size > 200 * 1024 - batch_bytes for size in sizes), "a file was closed before it had to be"
    assert all(re.match(CLOSED_NAME, p.name) for p in closed), [p.name for p in closed]
    assert [int(p.name.split("-")[2].split(".")[0]) for p in closed] == list(range(1, len(closed) + 1))
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o440 for p in closed)

    lines = archive_lines(active)
    assert lines == sent_lines(batches)
    validate_lines(FORMAT, lines)

    report = verify_archive(tmp_path)
    assert report.ok, report.problems()
    assert sorted(report.verified) == sorted(p.name for p in closed)
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", MANIFEST_NAME], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(": OK") == len(closed)


def test_a_batch_larger_than_rotate_bytes_gets_a_file_of_its_own_and_is_never_split(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 1000})
    batches = send_all(sink, 0, 3)
    sink.close()
    closed = closed_files(active)
    assert [file_lines(p) for p in closed] == [list(b.lines) for b in batches[:2]]
    assert file_lines(active) == list(batches[2].lines)


class FakeClock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_rotation_on_time_boundaries_names_files_by_the_end_of_their_interval(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    ten = 1795600800.0  # 2026-11-25T10:00:00Z
    clock = FakeClock(ten + 5)
    sink = open_sink({"path": str(active), "rotate_interval": "1h", "rotate_bytes": 0}, clock=clock)
    first = send_all(sink, 0, 1)
    clock.now = ten + 1800
    first += send_all(sink, 1, 1)
    assert closed_files(active) == []
    clock.now = ten + 3600 + 1  # the next hour: the 10:00 file is closed before the 11:00 lines are written
    second = send_all(sink, 2, 1)
    clock.now = ten + 5 * 3600 + 7
    third = send_all(sink, 3, 1)
    sink.close()

    closed = closed_files(active)
    assert [p.name for p in closed] == ["flows-20261125T110000Z-000001.ndjson", "flows-20261125T120000Z-000002.ndjson"]
    assert file_lines(closed[0]) == sent_lines(first)
    assert file_lines(closed[1]) == sent_lines(second)
    assert file_lines(active) == sent_lines(third)
    assert verify_archive(tmp_path).ok


def test_an_idle_file_is_closed_soon_after_its_interval_ends(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_interval": 1, "rotate_bytes": 0})
    batch = make_batch(0)
    sink.send(batch)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (closed_files(active) and verify_archive(tmp_path).verified):
        time.sleep(0.05)
    sink.close()
    closed = closed_files(active)
    assert len(closed) == 1, "no file was closed without a further write"
    assert file_lines(closed[0]) == list(batch.lines)
    assert active.stat().st_size == 0
    assert verify_archive(tmp_path).ok


def test_a_restart_after_the_boundary_closes_the_stale_file_first(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    ten = 1795600800.0
    clock = FakeClock(ten + 60)
    sink = open_sink({"path": str(active), "rotate_interval": "1h", "rotate_bytes": 0}, clock=clock)
    old = send_all(sink, 0, 1)
    sink.close()
    os.utime(active, (ten + 60, ten + 60))  # the file's last write is what says which hour it belongs to
    clock.now = ten + 2 * 3600 + 30
    sink = open_sink({"path": str(active), "rotate_interval": "1h", "rotate_bytes": 0}, clock=clock)
    new = send_all(sink, 1, 1)
    sink.close()
    closed = closed_files(active)
    assert [p.name for p in closed] == ["flows-20261125T110000Z-000001.ndjson"]
    assert file_lines(closed[0]) == sent_lines(old)
    assert file_lines(active) == sent_lines(new)


# -- gzip and the manifest -------------------------------------------------------------------------------


def test_gzip_closed_files_decompress_to_exactly_the_lines_written(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 150_000, "gzip": True})
    batches = send_all(sink, 0, 10, kind="vnet")
    sink.close()  # waits for the compression of what was closed last

    closed = closed_files(active)
    assert len(closed) >= 4
    assert all(p.name.endswith(".ndjson.gz") for p in closed), [p.name for p in closed]
    assert not list(tmp_path.glob(".*.tmp"))
    lines = archive_lines(active)
    assert lines == sent_lines(batches)
    validate_lines(FORMAT, lines)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o440 for p in closed)
    if shutil.which("gzip"):
        for p in closed:
            assert subprocess.run(["gzip", "-t", str(p)]).returncode == 0
    report = verify_archive(tmp_path)
    assert report.ok, report.problems()
    assert sorted(report.verified) == sorted(p.name for p in closed)


def test_closed_files_are_never_rewritten(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    table = {"path": str(active), "rotate_bytes": 150_000, "gzip": True}
    sink = open_sink(table)
    send_all(sink, 0, 6)
    sink.close()
    before = snapshot(closed_files(active))
    manifest_before = (tmp_path / MANIFEST_NAME).read_bytes()
    time.sleep(0.02)  # mtimes would differ if anything touched the files

    open_sink(table).close()  # a restart re-examines the directory and must leave a finished archive alone
    assert snapshot(closed_files(active)) == before
    assert (tmp_path / MANIFEST_NAME).read_bytes() == manifest_before

    sink = open_sink(table)
    send_all(sink, 6, 6)
    sink.close()
    after = snapshot(closed_files(active))
    assert {name: after[name] for name in before} == before
    assert len(after) > len(before)
    assert min(int(n.split("-")[2][:6]) for n in set(after) - set(before)) > max(
        int(n.split("-")[2][:6]) for n in before
    ), "sequence numbers went back after a restart"
    manifest_after = (tmp_path / MANIFEST_NAME).read_bytes()
    assert manifest_after.startswith(manifest_before), "the manifest was rewritten instead of appended to"
    assert verify_archive(tmp_path).ok


def test_verify_reports_tampered_missing_and_unlisted_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 150_000, "gzip": True})
    send_all(sink, 0, 10)
    sink.close()
    closed = closed_files(active)
    assert len(closed) >= 4
    assert main_verify([str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("OK:")

    tampered, missing, copied = closed[0], closed[1], closed[2]
    tampered.chmod(0o640)
    data = bytearray(gzip.decompress(tampered.read_bytes()))
    data[10:11] = b"X" if data[10:11] != b"X" else b"Y"
    tampered.write_bytes(gzip.compress(bytes(data)))
    missing.unlink()
    unlisted = tmp_path / "flows-20261125T100000Z-999999.ndjson.gz"
    shutil.copyfile(copied, unlisted)
    (tmp_path / ".flows-20261125T100000Z-999998.ndjson.gz.tmp").write_bytes(b"partial")

    report = verify_archive(tmp_path)
    assert not report.ok
    assert report.altered == [tampered.name]
    assert report.missing == [missing.name]
    assert report.unlisted == [unlisted.name]
    assert report.incomplete == [".flows-20261125T100000Z-999998.ndjson.gz.tmp"]
    assert set(report.verified) == {p.name for p in closed[2:]}

    assert main_verify([str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"ALTERED {tampered.name}" in out
    assert f"MISSING {missing.name}" in out
    assert f"UNLISTED {unlisted.name}" in out
    assert out[-1].startswith("FAILED:")


def test_a_restart_does_not_list_a_foreign_file_older_than_the_manifest(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    table = {"path": str(active), "rotate_bytes": 150_000, "gzip": True}
    sink = open_sink(table)
    send_all(sink, 0, 6)
    sink.close()
    planted = tmp_path / "flows-20261125T100000Z-000000.ndjson.gz"
    planted.write_bytes(gzip.compress(b'{"planted": true}\n'))
    open_sink(table).close()
    report = verify_archive(tmp_path)
    assert report.unlisted == [planted.name]
    assert planted.name not in (tmp_path / MANIFEST_NAME).read_text()


def test_verify_fails_without_a_manifest_or_with_a_garbled_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_verify([str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().out
    (tmp_path / MANIFEST_NAME).write_text("this is not a checksum line\n")
    report = verify_archive(tmp_path)
    assert not report.ok and "not a sha256sum line" in report.manifest_problems[0]
    assert main_verify([str(tmp_path / "nope")]) == 1


def test_a_torn_manifest_line_from_a_crash_is_repaired_on_start(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    table = {"path": str(active), "rotate_bytes": 150_000}
    sink = open_sink(table)
    batches = send_all(sink, 0, 6)
    sink.close()
    manifest = tmp_path / MANIFEST_NAME
    text = manifest.read_text()
    manifest.write_text(text[: len(text) - 30])  # the last append was cut short by a power loss
    assert not verify_archive(tmp_path).ok

    open_sink(table).close()
    report = verify_archive(tmp_path)
    assert report.ok, report.problems()
    assert len(report.verified) == len(closed_files(active))
    assert archive_lines(active) == sent_lines(batches)


def test_a_torn_last_line_in_the_active_file_is_removed_on_start(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active)})
    first = send_all(sink, 0, 1)
    sink.close()
    with active.open("ab") as f:
        f.write(make_batch(1).lines[0][:100].encode())  # a batch whose send never returned
    sink = open_sink({"path": str(active)})
    second = send_all(sink, 2, 1)
    sink.close()
    lines = file_lines(active)
    assert lines == sent_lines(first + second)
    validate_lines(FORMAT, lines)


# -- crash safety with a real process killed by SIGKILL ------------------------------------------------


def run_child(directory: Path, *args: str) -> tuple[int, list[str]]:
    """Run the writer child to its end (or its death); the event ids it saw sent."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.file_sink", str(directory), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    ids = [i for line in proc.stdout.splitlines() if line.startswith("SENT ") for i in line.split()[1:]]
    return proc.returncode, ids


def check_archive_after_restart(directory: Path, promised: list[str], gz: bool, validate: bool = True) -> list[str]:
    active = directory / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 150_000, "gzip": gz})  # the restart recovers
    sink.close()
    report = verify_archive(directory)
    assert report.ok, report.problems()
    assert not list(directory.glob(".*.tmp"))
    closed = closed_files(active)
    if gz:
        assert all(p.name.endswith(".gz") for p in closed), [p.name for p in closed]
    lines = archive_lines(active)
    docs = validate_lines(FORMAT, lines) if validate else [json.loads(line) for line in lines]
    ids = [event_id(d) for d in docs]
    assert len(ids) == len(set(ids)), "a line was written twice"
    missing = set(promised) - set(ids)
    assert not missing, f"{len(missing)} events lost that send() had returned for"
    return ids


STEPS = [
    "rotate:closed",
    "rotate:renamed",
    "rotate:new-active",
    "finalise:compressed-tmp",
    "finalise:renamed-gz",
    "finalise:listed",
    "finalise:removed-uncompressed",
]


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_of_rotation_loses_nothing(tmp_path: Path, step: str) -> None:
    code, promised = run_child(tmp_path, "--gzip", "--kill-at", step, "--occurrence", "3", "--blobs", "40")
    assert code == -signal.SIGKILL, "the child was not killed at the step"
    assert promised, "the child sent nothing before it was killed"
    check_archive_after_restart(tmp_path, promised, gz=True)


def test_sigkill_without_gzip_at_the_rename_loses_nothing(tmp_path: Path) -> None:
    code, promised = run_child(tmp_path, "--kill-at", "rotate:renamed", "--occurrence", "2", "--blobs", "40")
    assert code == -signal.SIGKILL
    check_archive_after_restart(tmp_path, promised, gz=False)


def test_repeated_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """A writer killed five times at random moments, restarted each time: one archive that verifies."""
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    promised: list[str] = []
    first_blob = 0
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.file_sink", str(tmp_path), "--gzip", "--first-blob",
             str(first_blob), "--blobs", "200", "--rotate-bytes", "100000"],
            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[str] = []
        want = rng.randint(3, 12)
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,))
        reader.start()
        deadline = time.monotonic() + 20
        while len(lines) < want and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.random() * 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
        promised += [i for line in lines if line.startswith("SENT ") for i in line.split()[1:]]
        first_blob += 200
        # Schema checks of the whole archive once, at the end: the lines written before are unchanged.
        check_archive_after_restart(tmp_path, promised, gz=True, validate=False)
    check_archive_after_restart(tmp_path, promised, gz=True)
    assert len(promised) >= 5 * 3 * 60


# -- logrotate and stdout ------------------------------------------------------------------------------------


def test_reopen_after_the_file_was_moved_starts_a_new_file(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 0})
    first = send_all(sink, 0, 2)
    moved = tmp_path / "flows.ndjson.1"
    active.rename(moved)  # what logrotate does before it sends SIGHUP
    more = send_all(sink, 2, 1)  # still goes to the moved file until the reopen
    sink.reopen()
    second = send_all(sink, 3, 2)
    sink.close()
    assert file_lines(moved) == sent_lines(first + more)
    assert file_lines(active) == sent_lines(second)
    assert stat.S_IMODE(active.stat().st_mode) == 0o640
    validate_lines(FORMAT, file_lines(moved) + file_lines(active))


def test_sighup_in_a_running_writer_moves_output_to_a_new_file_without_losing_a_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.file_sink", str(tmp_path), "--hup", "--rotate-bytes", "0"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lines.extend, args=(proc.stdout,))
    reader.start()

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 20
        while len(lines) < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert len(lines) >= n, "the writer stopped sending"

    active, moved = tmp_path / "flows.ndjson", tmp_path / "flows.ndjson.1"
    wait_for(5)
    active.rename(moved)
    proc.send_signal(signal.SIGHUP)  # arrives wherever the writer is, often in the middle of a send
    wait_for(len(lines) + 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    reader.join(timeout=10)
    promised = [i for line in lines if line.startswith("SENT ") for i in line.split()[1:]]
    old, new = file_lines(moved), file_lines(active)
    assert len(new) >= 3 * 60, "writing did not move to the new file"
    ids = [event_id(d) for d in validate_lines(FORMAT, old + new)]
    assert len(ids) == len(set(ids))
    assert not set(promised) - set(ids)


def test_reopen_without_a_move_keeps_appending(tmp_path: Path) -> None:
    active = tmp_path / "flows.ndjson"
    sink = open_sink({"path": str(active), "rotate_bytes": 0})
    first = send_all(sink, 0, 1)
    sink.reopen()
    second = send_all(sink, 1, 1)
    sink.close()
    assert file_lines(active) == sent_lines(first + second)


def test_path_dash_writes_events_to_stdout(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from forwarder.sinks.file import from_config\n"
        "from forwarder.sinks.deadletter import DeadLetter\n"
        "from forwarder.sinks.retry import RetryPolicy\n"
        "from tests.support.file_sink import make_batch\n"
        "cfg = {'type': 'file', 'format': 'ecs', 'path': '-'}\n"
        "sink = from_config(cfg, 'file[0]', DeadLetter(None), RetryPolicy())\n"
        "sink.open()\n"
        "for n in range(2): sink.send(make_batch(n))\n"
        "sink.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = [line for n in range(2) for line in make_batch(n).lines]
    assert proc.stdout.splitlines() == expected
    validate_lines(FORMAT, proc.stdout.splitlines())


# -- config ----------------------------------------------------------------------------------------------


def fragment_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((REPO / "schemas" / "fragments" / "sink-file.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_config_defaults(tmp_path: Path) -> None:
    cfg = parse_config({"type": "file", "format": "ecs", "path": str(tmp_path / "f.ndjson")})
    assert cfg.rotate_bytes == DEFAULT_ROTATE_BYTES == 100 * 1024 * 1024
    assert (cfg.rotate_interval, cfg.gzip, cfg.manifest, cfg.mode, cfg.closed_mode) == (0, False, True, 0o640, 0o440)
    off = parse_config({"type": "file", "path": str(tmp_path / "f.ndjson"), "rotate_bytes": 0})
    assert not off.rotates and not off.manifest
    full = parse_config({"type": "file", "path": "x.ndjson", "rotate_bytes": "1GB", "rotate_interval": "1d",
                         "gzip": True, "mode": "0600"})  # fmt: skip
    assert (full.rotate_bytes, full.rotate_interval, full.mode, full.closed_mode) == (10**9, 86400, 0o600, 0o400)
    assert isinstance(from_config({"type": "file", "path": "-"}, "file[0]", DeadLetter(None), RetryPolicy()),
                      StdoutSink)  # fmt: skip


GOOD = [
    {"type": "file", "format": "cef", "path": "/var/log/nsg/flows.ndjson"},
    {"type": "file", "path": "a.ndjson", "rotate_bytes": "100MiB", "rotate_interval": "1h", "gzip": True,
     "gzip_level": 9, "manifest": True, "mode": 0o600, "name": "archive"},
    {"type": "file", "path": "a.ndjson", "rotate_bytes": 0, "manifest": False},
    {"type": "file", "path": "-", "rotate_bytes": 0},
]  # fmt: skip
BAD = [
    ({"type": "file"}, "path"),
    ({"type": "file", "path": "a", "colour": "red"}, "colour"),
    ({"type": "file", "path": "a", "format": "xml"}, "format"),
    ({"type": "file", "path": "a", "rotate_bytes": "lots"}, "rotate_bytes"),
    ({"type": "file", "path": "a", "rotate_bytes": -1}, "rotate_bytes"),
    ({"type": "file", "path": "a", "rotate_interval": "1w"}, "rotate_interval"),
    ({"type": "file", "path": "a", "gzip": "yes"}, "gzip"),
    ({"type": "file", "path": "a", "gzip_level": 0}, "gzip_level"),
    ({"type": "file", "path": "a", "mode": 0o444}, "mode"),
    ({"type": "file", "path": "a.ndjson.gz"}, "path"),
]


@pytest.mark.parametrize("table", GOOD)
def test_good_configs_pass_both_the_schema_and_the_sink(table: dict[str, Any]) -> None:
    assert list(fragment_validator().iter_errors(table)) == []
    parse_config(table)


@pytest.mark.parametrize(("table", "key"), BAD)
def test_bad_configs_fail_both_the_schema_and_the_sink_naming_the_key(table: dict[str, Any], key: str) -> None:
    assert list(fragment_validator().iter_errors(table)), f"the schema accepts {table}"
    with pytest.raises(FileSinkConfigError, match=key):
        parse_config(table, "file[0]")


@pytest.mark.parametrize("table", [{"path": "a", "rotate_bytes": 0, "gzip": True}, {"path": "-", "gzip": True},
                                   {"path": "a", "rotate_bytes": 0, "manifest": True}])  # fmt: skip
def test_gzip_and_manifest_without_rotation_are_config_errors(table: dict[str, Any]) -> None:
    with pytest.raises(FileSinkConfigError, match=r"gzip|manifest"):
        parse_config({"type": "file", **table}, "file[0]")
