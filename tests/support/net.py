"""Loopback ports for the test servers and the forwarder's own listeners."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free right now; whoever binds it later may still lose a race, so callers retry or check."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
