"""Run the real ``nsg-forwarder`` as a child process, as an operator or systemd would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO


class Forwarder(subprocess.Popen[bytes]):
    """A forwarder process whose output is read as it comes: a test that only looks at it at the end must not
    leave the process blocked on a full pipe (64 KiB of log lines). ``communicate()`` returns what it wrote;
    ``output()`` what it wrote so far."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        super().__init__(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._out: list[bytes] = [b"", b""]
        self._readers = [
            threading.Thread(target=self._drain, args=(stream, i), daemon=True)
            for i, stream in enumerate((self.stdout, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[bytes] | None, i: int) -> None:
        assert stream is not None
        fd = stream.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            self._out[i] += chunk

    def output(self) -> tuple[bytes, bytes]:
        return self._out[0], self._out[1]

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        self.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return self.output()


def start_forwarder(config: Path, *args: str, env: dict[str, str] | None = None) -> Forwarder:
    return Forwarder(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config), *args], {**os.environ, **(env or {})}
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
