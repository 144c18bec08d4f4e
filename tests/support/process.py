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
