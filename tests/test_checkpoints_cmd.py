"""``nsg-forwarder checkpoints show|reset`` say what is true, and reset never forgets without being asked."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from forwarder.samples.generator import HEAD, BlobSpec, data_blocks, write_blob


def nsg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def estate(tmp: Path) -> Path:
    """A complete blob, a blob cut before its tail, and a file that is not a flow log; one run over them."""
    logs = tmp / "logs"
    write_blob(logs, BlobSpec(minutes=2, tuples_per_minute=3))
    cut = BlobSpec(minutes=3, tuples_per_minute=2, mac="000D3A0000C7")
    path = logs / cut.container / cut.blob_name
    path.parent.mkdir(parents=True)
    path.write_bytes(HEAD + b"".join(data_blocks(cut)))  # no closing ]}: still being written, or cut short
    junk = logs / cut.container / cut.blob_name.replace("000D3A0000C7", "000D3A0000EE")
    junk.parent.mkdir(parents=True)
    junk.write_text("<html>403 Forbidden</html>")
    config = tmp / "c.toml"
    config.write_text(
        '[source]\ntype = "directory"\npath = "logs"\naccount = "acct"\n[checkpoint]\npath = "state/cp.json"\n'
        '[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n'
    )
    done = nsg("run", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    return config


def test_show_before_any_run_says_there_is_no_checkpoint_file_yet(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[source]\ntype = "directory"\npath = "logs"\n[checkpoint]\npath = "state/cp.json"\n'
        '[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n'
    )
    done = nsg("checkpoints", "show", "--config", str(config))
    assert done.returncode == 0
    where = tmp_path / "state" / "cp.json"
    assert done.stdout.strip() == f"No checkpoint file at {where} yet: nothing has been delivered with this config."


def test_show_tells_complete_open_and_refused_blobs_apart(tmp_path: Path) -> None:
    config = estate(tmp_path)
    done = nsg("checkpoints", "show", "--config", str(config))
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        if "\t" in line:
            rows[line.split("\t")[0].rsplit("macAddress=")[1]] = line.split("\t")
    assert rows["000D3AF87856/PT1H.json"][4] == "complete" and rows["000D3AF87856/PT1H.json"][3] == "events=6"
    assert not rows["000D3AF87856/PT1H.json"][2].endswith("=-")
    assert rows["000D3A0000C7/PT1H.json"][4] == "open" and rows["000D3A0000C7/PT1H.json"][2] == "size=-"
    assert rows["000D3A0000C7/PT1H.json"][3] == "events=6"  # the whole records before the cut were delivered
    assert rows["000D3A0000EE/PT1H.json"][4] == "not-a-flow-log"
    assert "3 blobs in" in done.stdout and "state: complete = " in done.stdout


def test_a_prefix_without_the_account_selects_blobs_and_one_that_matches_nothing_says_so(tmp_path: Path) -> None:
    config = estate(tmp_path)
    rg = "resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/"
    shown = nsg("checkpoints", "show", "--config", str(config), "--prefix", rg)
    assert f"3 blobs matching {rg!r}" in shown.stdout
    within = nsg(
        "checkpoints", "show", "--config", str(config), "--prefix", "insights-logs-networksecuritygroupflowevent/"
    )
    assert "3 blobs matching" in within.stdout
    nothing = nsg("checkpoints", "show", "--config", str(config), "--prefix", "resourceId=/SUBSCRIPTIONS/FFFF")
    assert "0 blobs matching" in nothing.stdout
    assert "No key starts with 'resourceId=/SUBSCRIPTIONS/FFFF'; keys look like: acct/insights-logs-" in nothing.stderr
    reset = nsg("checkpoints", "reset", "--config", str(config), "--prefix", "resourceId=/SUBSCRIPTIONS/FFFF", "--yes")
    assert reset.returncode == 0 and "No checkpoint matches" in reset.stdout and "nothing changed" in reset.stdout
    forgot = nsg("checkpoints", "reset", "--config", str(config), "--prefix", rg, "--yes")
    assert forgot.returncode == 0 and "Forgot 3 checkpoints" in forgot.stdout


def test_reset_without_a_terminal_and_without_yes_refuses_and_changes_nothing(tmp_path: Path) -> None:
    config = estate(tmp_path)
    checkpoints = tmp_path / "state" / "cp.json"
    before = checkpoints.read_bytes()
    for stdin in ("", "y\n"):  # cron, ssh without -t, or a pipe that happens to say yes
        done = nsg("checkpoints", "reset", "--config", str(config), stdin=stdin)
        assert done.returncode == 2
        assert "refusing without --yes, since there is no terminal to ask on" in done.stderr
        assert "Nothing changed." in done.stderr
        assert checkpoints.read_bytes() == before
    assert nsg("checkpoints", "reset", "--config", str(config), "--yes").returncode == 0
    assert checkpoints.read_bytes() != before


def on_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    main, tty = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "forwarder", *args], stdin=tty, stdout=tty, stderr=tty)
    os.close(tty)
    os.write(main, answer)
    out = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    os.close(main)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_reset_on_a_terminal_asks_and_no_says_that_nothing_changed(tmp_path: Path) -> None:
    config = estate(tmp_path)
    checkpoints = tmp_path / "state" / "cp.json"
    before = checkpoints.read_bytes()
    code, screen = on_a_terminal(["checkpoints", "reset", "--config", str(config)], b"n\n")
    assert code == 1
    assert "Forget checkpoints of ALL blobs in" in screen and "Nothing changed." in screen
    assert checkpoints.read_bytes() == before
    code, screen = on_a_terminal(["checkpoints", "reset", "--config", str(config)], b"y\n")
    assert code == 0 and "Forgot 3 checkpoints" in screen
