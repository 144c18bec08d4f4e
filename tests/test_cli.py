"""The command line as a user meets it: convert, validate, checkpoints, exit codes, messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forwarder.samples.generator import BlobSpec, blob_bytes, write_blob
from tests.support.events import validate_lines
from tests.support.process import start_forwarder


def nsg(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("fmt", ["ecs", "cef", "ocsf"])
@pytest.mark.parametrize("kind,version", [("nsg", 1), ("nsg", 2), ("vnet", 4)])
def test_convert_turns_every_tuple_into_one_valid_event(tmp_path: Path, fmt: str, kind: str, version: int) -> None:
    path = write_blob(tmp_path, BlobSpec(kind=kind, version=version, minutes=3, tuples_per_minute=25))  # type: ignore[arg-type]
    done = nsg("convert", str(path), "--format", fmt)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 75
    validate_lines(fmt, lines)
    summary = done.stderr.decode()
    assert "records=3 tuples=75 events=75 skipped=0" in summary


def test_convert_reads_stdin_and_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "events.ndjson"
    done = nsg("convert", "-", "--output", str(out), stdin=blob_bytes(BlobSpec(minutes=2, tuples_per_minute=5)))
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 10


def test_convert_reports_bad_input_with_its_place_and_converts_the_rest(tmp_path: Path) -> None:
    blob = blob_bytes(BlobSpec(minutes=3, tuples_per_minute=4)).decode()
    first_tuple = blob.index('"flowTuples":["') + len('"flowTuples":["')
    broken = blob[:first_tuple] + "garbage," + blob[first_tuple:]  # one tuple gets a 14th field
    path = tmp_path / "PT1H.json"
    path.write_text(broken)
    done = nsg("convert", str(path))
    assert done.returncode == 0
    err = done.stderr.decode()
    assert "bad flow tuple" in err and f"source={path} offset=12 record=0" in err
    assert "events=11" in err and "skipped=1" in err
    assert len(done.stdout.decode().splitlines()) == 11
    strict = nsg("convert", str(path), "--strict")
    assert strict.returncode == 3


def test_convert_refuses_what_is_not_a_flow_log(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not JSON")
    done = nsg("convert", str(path))
    assert done.returncode == 1
    assert b"is not a flow log" in done.stderr
    assert nsg("convert", str(tmp_path / "missing.json")).returncode == 1


def test_convert_of_an_empty_blob_with_only_head_and_tail(tmp_path: Path) -> None:
    path = tmp_path / "PT1H.json"
    path.write_bytes(b'{"records":[]}')
    done = nsg("convert", str(path))
    assert done.returncode == 0 and done.stdout == b""
    assert b"events=0" in done.stderr


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(body)
    path.chmod(0o600)
    return path


GOOD = """
[source]
type = "directory"
path = "{root}"

[checkpoint]
path = "{root}/cp.json"

[[sink]]
type = "file"
format = "ecs"
path = "{root}/out.ndjson"
"""


@pytest.mark.parametrize(
    "change,key",
    [
        ('[[sink]]\ntype = "file"\nformat = "ecs"\npath = "x"\ncolour = "red"\n', "sink[1]: unknown key 'colour'"),
        ('[[sink]]\ntype = "syslog"\nformat = "cef"\nhost = "h"\nport = "514"\n', "sink[1].port"),
        ('[[sink]]\ntype = "carrier-pigeon"\n', "sink[1].type"),
        ("[checkpoint]\npath = 5\n", None),
    ],
)
def test_validate_names_the_bad_key(tmp_path: Path, change: str, key: str | None) -> None:
    body = GOOD.format(root=tmp_path) + change
    if key is None:  # a duplicate table is a TOML error, reported with its line
        done = nsg("validate", "--config", str(write_config(tmp_path, body)))
        assert done.returncode == 2 and b"not valid TOML" in done.stderr
        return
    done = nsg("validate", "--config", str(write_config(tmp_path, body)))
    assert done.returncode == 2
    assert key in done.stderr.decode(), done.stderr


def test_validate_accepts_a_good_config_and_expands_environment_variables(tmp_path: Path) -> None:
    body = GOOD.format(root="${ROOT}")
    done = nsg("validate", "--config", str(write_config(tmp_path, body)), env={"ROOT": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert f"checkpoints: {tmp_path}/cp.json" in done.stdout.decode()


def test_missing_environment_variables_are_reported_all_at_once_with_the_file_and_keys(tmp_path: Path) -> None:
    config = write_config(tmp_path, GOOD.format(root="${NOPE_NOT_SET}"))
    done = nsg("validate", "--config", str(config))
    assert done.returncode == 2
    assert (
        f"{config}: environment variable NOPE_NOT_SET is not set (used by source.path, checkpoint.path, sink[0].path)"
    ) in done.stderr.decode()
    body = GOOD.format(root=tmp_path) + '[[sink]]\ntype = "splunk_hec"\nurl = "${HEC_URL}"\ntoken = "${HEC_TOKEN}"\n'
    done = nsg("validate", "--config", str(write_config(tmp_path, body)))
    err = done.stderr.decode()
    assert done.returncode == 2 and err.count("\n") == 1, err
    both = "2 environment variables are not set: HEC_TOKEN (used by sink[1].token), HEC_URL (used by sink[1].url)"
    assert both in err


def test_run_once_then_checkpoints_show_and_reset(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=5))
    config = write_config(tmp_path, GOOD.replace('path = "{root}"', 'path = "{root}/logs"').format(root=tmp_path))
    done = nsg("run", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out.ndjson").read_text().splitlines()
    assert len(lines) == 10
    validate_lines("ecs", lines)
    again = nsg("run", "--config", str(config), "--once")
    assert again.returncode == 0 and len((tmp_path / "out.ndjson").read_text().splitlines()) == 10
    shown = nsg("checkpoints", "show", "--config", str(config)).stdout.decode()
    assert "1 blobs" in shown and "events=10" in shown and "complete" in shown
    assert nsg("checkpoints", "reset", "--config", str(config), "--yes").returncode == 0
    nsg("run", "--config", str(config), "--once")
    assert len((tmp_path / "out.ndjson").read_text().splitlines()) == 20  # read again after the reset


def test_a_corrupt_checkpoint_file_stops_run_and_reset_moves_it_aside(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=1, tuples_per_minute=2))
    config = write_config(tmp_path, GOOD.replace('path = "{root}"', 'path = "{root}/logs"').format(root=tmp_path))
    (tmp_path / "cp.json").write_text("{ torn")
    done = nsg("run", "--config", str(config), "--once")
    assert done.returncode == 1
    assert b"corrupt" in done.stderr and b"checkpoints reset" in done.stderr
    assert not (tmp_path / "out.ndjson").exists()
    assert nsg("checkpoints", "reset", "--config", str(config), "--yes").returncode == 0
    assert list(tmp_path.glob("cp.json.corrupt-*"))
    assert nsg("run", "--config", str(config), "--once").returncode == 0


def test_a_second_process_on_the_same_checkpoint_file_is_refused(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=5))
    config = write_config(tmp_path, GOOD.replace('path = "{root}"', 'path = "{root}/logs"').format(root=tmp_path))
    (tmp_path / ".cp.json.k2j4x0.tmp").write_text('{"torn')  # left by a save that a SIGKILL interrupted
    service = start_forwarder(config)  # polls until stopped, holding cp.json
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (tmp_path / "cp.json").exists():
            time.sleep(0.1)
        for args in (
            ("run", "--config", str(config), "--once"),
            ("backfill", "--config", str(config), "--since", "2026-11-25T00:00:00Z"),
            ("checkpoints", "reset", "--config", str(config), "--yes"),
        ):
            done = nsg(*args)
            err = done.stderr.decode()
            assert done.returncode == 1, (args, err)
            assert "Another nsg-forwarder process" in err and f"path={tmp_path / 'cp.json'}" in err, err
            assert "Traceback" not in err
        assert nsg("checkpoints", "show", "--config", str(config)).returncode == 0  # reading is fine
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=20) == 0
    assert len((tmp_path / "out.ndjson").read_text().splitlines()) == 10  # nothing sent twice
    assert not list(tmp_path.glob(".cp.json.*.tmp")), "a crashed save's temporary file is cleaned up"
    assert nsg("checkpoints", "reset", "--config", str(config), "--yes").returncode == 0  # free again


def test_every_command_has_help() -> None:
    for cmd in ["run", "validate", "convert", "backfill", "checkpoints", "sample", "verify-archive"]:
        done = nsg(cmd, "--help")
        assert done.returncode == 0 and b"usage: nsg-forwarder " + cmd.encode() in done.stdout
    assert nsg().returncode == 2
    version = nsg("--version")
    assert version.returncode == 0 and version.stdout.decode().startswith("nsg-forwarder ")


def test_every_command_and_option_says_what_it_is_for() -> None:
    import argparse

    from forwarder.cli import build_parser

    def missing(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                for name, sub in action.choices.items():
                    out += [] if name in helped else [" ".join([*path, name])]
                    out += missing(sub, [*path, name])
            elif action.help != argparse.SUPPRESS and not action.help:
                out.append(" ".join([*path, *(action.option_strings or [action.dest])]))
        return out

    assert missing(build_parser(), ["nsg-forwarder"]) == []


def test_sample_writes_the_container_layout(tmp_path: Path) -> None:
    done = nsg("sample", str(tmp_path), "--hours", "1", "--tuples-per-minute", "3", "--start", "2026-11-25T09:40:00Z")
    assert done.returncode == 0
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("PT1H.json"))
    assert len(files) == 4
    assert any(f.startswith("insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/") for f in files)
    assert any(f.startswith("insights-logs-flowlogflowevent/flowLogResourceID=/") for f in files)
    assert all("/y=2026/m=11/d=25/h=09/" in f for f in files)
    first = json.loads((tmp_path / files[0]).read_text())
    assert len(first["records"]) == 60
    again = tmp_path / "again"
    nsg("sample", str(again), "--hours", "1", "--tuples-per-minute", "3", "--start", "2026-11-25T09:00:00Z")
    assert (again / files[0]).read_bytes() == (tmp_path / files[0]).read_bytes()  # seeded: the same bytes


def test_sample_defaults_to_the_most_recent_complete_hours(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    done = nsg("sample", str(tmp_path), "--hours", "2", "--tuples-per-minute", "1")
    after = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert done.returncode == 0, done.stderr
    hours = {p.parts[-7:-3] for p in tmp_path.rglob("PT1H.json")}
    expected = [
        {
            (f"y={h:%Y}", f"m={h:%m}", f"d={h:%d}", f"h={h:%H}")
            for h in (now - timedelta(hours=2), now - timedelta(hours=1))
        }
        for now in (before, after)
    ]
    assert hours in expected, hours


@pytest.mark.parametrize("args", [["--hours", "0"], ["--hours", "-1"], ["--tuples-per-minute", "0"]])
def test_sample_refuses_counts_that_are_not_positive(tmp_path: Path, args: list[str]) -> None:
    done = nsg("sample", str(tmp_path), *args)
    assert done.returncode == 2
    assert b"must be 1 or more" in done.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["ecs", "cef", "ocsf"])
def test_a_byte_that_is_not_utf8_in_a_name_does_not_stop_any_format(tmp_path: Path, fmt: str) -> None:
    blob = blob_bytes(BlobSpec(minutes=2, tuples_per_minute=4))
    at = blob.index(b'"rule":"') + len(b'"rule":"')
    path = tmp_path / "PT1H.json"
    path.write_bytes(blob[:at] + b"\xff" + blob[at:])
    done = nsg("convert", str(path), "--format", fmt)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 8
    docs = validate_lines(fmt, lines)
    assert "\ufffd" in str(docs)  # shown as the replacement character, not dropped


def test_relative_paths_mean_the_same_files_whatever_the_current_directory(tmp_path: Path) -> None:
    """Paths are relative to the config's folder: a run from elsewhere finds the same checkpoints and sends
    nothing again, and the source identity (part of every event id) does not change."""
    import os

    write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=5))
    etc = tmp_path / "etc"
    etc.mkdir()
    container = "../logs/insights-logs-networksecuritygroupflowevent"
    config = write_config(etc, GOOD.replace('path = "{root}"', f'path = "{container}"').replace("{root}/", ""))
    first = subprocess.run(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config), "--once"],
        cwd="/",
        capture_output=True,
        timeout=120,
        env=os.environ,
    )
    assert first.returncode == 0, first.stderr
    out = etc / "out.ndjson"
    ids = [json.loads(line)["event"]["id"] for line in out.read_text().splitlines()]
    assert len(ids) == 10
    second = subprocess.run(
        [sys.executable, "-m", "forwarder", "run", "--config", "c.toml", "--once"],
        cwd=etc,
        capture_output=True,
        timeout=120,
        env=os.environ,
    )
    assert second.returncode == 0, second.stderr
    assert len(out.read_text().splitlines()) == 10  # the same checkpoint file: nothing sent twice
    shown = nsg("checkpoints", "show", "--config", str(config)).stdout.decode()
    assert "local/insights-logs-networksecuritygroupflowevent/resourceId=" in shown
    assert not (Path("/") / "out.ndjson").exists()
