"""Every command, given something broken, ends with one clear line and the documented exit code: never a
traceback (README: 1 the job failed, 2 usage or configuration error)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from forwarder.samples.generator import BlobSpec, write_blob

GOOD = (
    '[source]\ntype = "directory"\npath = "logs"\n[checkpoint]\npath = "state/cp.json"\n'
    '[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n'
)


def setup(tmp: Path) -> None:
    (tmp / "logs").mkdir()
    blob = write_blob(tmp / "logs", BlobSpec(minutes=1, tuples_per_minute=2))
    (tmp / "PT1H.json").write_bytes(blob.read_bytes())
    (tmp / "PT1H.json.gz").write_bytes(gzip.compress(blob.read_bytes()))
    (tmp / "good.toml").write_text(GOOD)
    (tmp / "latin1.toml").write_bytes(GOOD.replace('"logs"', '"caf\xe9"').encode("latin-1"))
    (tmp / "listen.toml").write_text(GOOD + '[metrics]\nlisten = "nonsense"\n')
    (tmp / "a-file").write_text("not a folder")
    (tmp / "blocked.toml").write_text(GOOD.replace("state/cp.json", "a-file/cp.json"))


CASES = [
    # (arguments, exit code, what the one line says)
    (["run", "--config", "missing.toml"], 2, "Config file not found: missing.toml"),
    (["run", "--config", "latin1.toml"], 2, "not UTF-8 text (byte 0xe9 on line 3)"),
    (["run", "--config", "listen.toml", "--once"], 2, "metrics.listen: expected host:port"),
    (["run", "--config", "blocked.toml", "--once"], 1, "Cannot use the checkpoint folder"),
    (["validate", "--config", "logs"], 2, "logs is a folder, not a config file"),
    (["validate", "--config", "latin1.toml"], 2, "not UTF-8 text"),
    (["convert", "no-such.json"], 1, "cannot read no-such.json: No such file or directory"),
    (["convert", "PT1H.json", "-o", "/nonexistent/dir/out"], 1, "cannot write /nonexistent/dir/out"),
    (["convert", "PT1H.json.gz"], 1, "PT1H.json.gz is gzip-compressed; decompress it first (gunzip -k PT1H.json.gz)"),
    (["convert", "PT1H.json", "--format", "xml"], 2, "argument --format/-f: invalid choice: 'xml'"),
    (["backfill", "--config", "good.toml", "--since", "yesterday"], 2, "argument --since: expected an RFC 3339"),
    (["backfill", "--config", "missing.toml", "--since", "6h"], 2, "Config file not found"),
    (["checkpoints", "show", "--config", "missing.toml"], 2, "Config file not found"),
    (["checkpoints", "reset", "--config", "good.toml"], 2, "refusing without --yes"),
    (["checkpoints"], 2, "the following arguments are required: ACTION"),
    (["verify-archive", "/nonexistent"], 1, "not a directory: /nonexistent"),
    (["sample", "/proc/foo"], 1, "cannot write under /proc/foo"),
    (["sample", "out", "--hours", "0"], 2, "argument --hours: must be 1 or more, got 0"),
    (["sample", "out", "--start", "tomorrow"], 2, "argument --start: expected an RFC 3339 time"),
    ([], 2, "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize("args,code,says", CASES, ids=[" ".join(c[0]) or "(nothing)" for c in CASES])
def test_a_broken_argument_gives_one_clear_line_and_the_documented_exit_code(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    setup(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr.replace("error:", "")
    said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    if args[:1] != ["run"]:  # run logs what it did before the error; the others say one thing
        assert len(said) == 1, said
    assert any(says in line for line in said), said
