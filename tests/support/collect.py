"""A sink for reader tests that keeps what it was sent in memory (the file sink tests cover real files)."""

from __future__ import annotations

from dataclasses import dataclass, field

from forwarder.sinks.base import Batch


@dataclass
class CollectingSink:
    name: str = "collect"
    format: str = "ecs"
    batches: list[Batch] = field(default_factory=list)
    fail_next: int = 0

    @property
    def event_ids(self) -> list[str]:
        return [e.event_id for b in self.batches for e in b.events]

    def open(self) -> None:
        pass

    def send(self, batch: Batch) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("receiver unavailable")
        self.batches.append(batch)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass
