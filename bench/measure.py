"""Run a command and report its own peak RSS.

``ru_maxrss`` of a child is not enough: after a vfork, the kernel records the *parent's* high-water
mark into the child at exec, so a benchmark that generated a large input first would report its own
peak. The child's VmHWM in /proc, read until it exits, is the child's alone.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path


def run_measured(
    cmd: list[str], stdout: int | None = subprocess.DEVNULL, timeout: float | None = None
) -> tuple[float, float, str, int]:
    """(seconds, peak RSS in MB, stderr, exit status) of cmd; killed (TimeoutExpired) after ``timeout`` seconds."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
    peak = [0]

    def watch() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, err_bytes = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    err = err_bytes.decode()
    status_code = proc.returncode
    seconds = time.perf_counter() - began
    watcher.join(1)
    return seconds, peak[0] / 1024, err, status_code
