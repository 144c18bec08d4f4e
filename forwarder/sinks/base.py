"""The contract between the pipeline and every sink."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from forwarder.flowlog.model import Event


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one blob chunk, formatted in the sink's format.

    ``lines[i]`` is ``events[i]`` rendered by the sink's formatter (one line, no newline).
    ``source``/``start``/``end`` say where the chunk came from, for messages. ``data``, when the pipeline
    has it, is the same lines as UTF-8 bytes, each followed by a newline: what a file sink writes as is.
    """

    events: Sequence[Event]
    lines: Sequence[str]
    source: str
    start: int
    end: int
    data: Sequence[memoryview] | None = None


class SinkFatal(Exception):
    """A failure no retry can fix (401/403, certificate mismatch, bad path): the service stops."""


class Sink(Protocol):
    name: str  # unique per config: "<type>[<index>]" unless named
    format: str  # "ecs" | "cef" | "ocsf"

    def open(self) -> None:
        """Connect / open files. May raise SinkFatal."""
        ...

    def send(self, batch: Batch) -> None:
        """Return only once every event is delivered or dead-lettered. Transient failures are retried
        here (by default forever: an outage becomes backpressure). Raises SinkFatal when retrying
        cannot help, or StopRequested-style interruption via the ``stop`` event of the retry policy."""
        ...

    def reopen(self) -> None:
        """SIGHUP: reopen output files / reconnect (logrotate)."""
        ...

    def close(self) -> None: ...
