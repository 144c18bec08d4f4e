"""The dead-letter file: events a sink rejected for good, with the reason and where they came from."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

from forwarder.flowlog.model import Event
from forwarder.sinks.torn_line import trim_torn_line

log = logging.getLogger("forwarder.deadletter")


class DeadLetter:
    """Appends NDJSON entries and fsyncs before returning: a dead-lettered event counts as handled,
    so it must be on disk before its chunk is confirmed."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # per sink name
        self._checked = False  # whether a torn last line from a crash was looked for

    def write(self, sink: str, reason: str, items: list[tuple[Event, str]]) -> None:
        if not items:
            return
        entries = []
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for event, line in items:
            entries.append(
                orjson.dumps(
                    {
                        "time": now,
                        "sink": sink,
                        "reason": reason,
                        "blob": event.ctx.source,
                        "offset": event.ctx.record_offset,
                        "event_id": event.event_id,
                        "event": line,
                    }
                )
            )
        with self._lock:
            self.counts[sink] += len(items)
            log.error(
                "Dead-lettered events a sink rejected for good: sink=%s count=%d reason=%s blob=%s offset=%d file=%s",
                sink,
                len(items),
                reason,
                items[0][0].ctx.source,
                items[0][0].ctx.record_offset,
                self.path,
            )
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self._checked:
                self._checked = True
                removed = trim_torn_line(self.path)
                if removed:
                    log.warning(
                        "Removed an incomplete last entry left by a crash; its events are handled again: "
                        "file=%s bytes=%d",
                        self.path,
                        removed,
                    )
            with self.path.open("ab") as out:
                out.write(b"\n".join(entries) + b"\n")
                out.flush()
                os.fsync(out.fileno())
