"""systemd's sd_notify protocol: one datagram per state change to $NOTIFY_SOCKET (no library needed)."""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    """Sends READY=1, STATUS=..., WATCHDOG=1 and STOPPING=1 when run under systemd; does nothing otherwise."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self._address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *states: str) -> None:
        if self._sock is None:
            return
        # systemd went away or the socket is gone: nothing useful to do about it.
        with contextlib.suppress(OSError):
            self._sock.sendto("\n".join(states).encode(), self._address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=Stopping: finishing in-flight delivery and saving checkpoints")
