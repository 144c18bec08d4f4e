"""Run the real ``nsg-forwarder`` as a child process, as an operator or systemd would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def start_forwarder(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def read_ids(path: Path) -> list[str]:
    """event ids of every ECS line in a file sink's active file (and its rotated siblings)."""
    import json

    ids: list[str] = []
    for f in sorted(path.parent.glob(path.stem + "*")):
        if f.suffix == ".gz" or f.name.startswith("."):
            continue
        for line in f.read_text().splitlines():
            if line.strip():
                ids.append(json.loads(line)["event"]["id"])
    return ids


def directory_config(tmp: Path, extra: str = "", poll: float = 0.2, logs: Path | None = None) -> Path:
    """tmp/forwarder.toml: a directory source (``logs``, default tmp/logs) into one ECS file sink,
    tmp/out/flows.ndjson, with checkpoints in tmp/state; ``extra`` is appended as TOML."""
    path = tmp / "forwarder.toml"
    path.write_text(
        f"""
[source]
type = "directory"
path = "{logs or tmp / "logs"}"
poll_interval = {poll}

[checkpoint]
path = "{tmp / "state" / "checkpoints.json"}"

[[sink]]
type = "file"
format = "ecs"
path = "{tmp / "out" / "flows.ndjson"}"
{extra}
"""
    )
    return path
