"""Acknowledgements flowing back from the sinks to the per-blob checkpoints.

Every chunk read from a blob gets a ``Ticket`` that carries the checkpoint to store once it is
delivered. Sinks confirm their part of a chunk in whatever order their batches complete; a blob's
checkpoint advances to a chunk's end only when every sink confirmed that chunk and every earlier
chunk of the same blob. A chunk that a sink could not deliver fails its blob for the rest of the
poll: the later chunks of that blob can no longer be checkpointed, and the next poll reads the blob
again from its last confirmed checkpoint (at-least-once: what other sinks already had is repeated).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from enum import Enum

from forwarder.checkpoints.store import BlobCheckpoint, CheckpointStore


class State(Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class Ticket:
    """One chunk of one blob on its way through the sinks."""

    __slots__ = ("checkpoint", "events", "key", "newest_ms", "remaining", "state")

    def __init__(self, key: str, checkpoint: BlobCheckpoint | None, events: int, newest_ms: int, remaining: int):
        self.key = key
        self.checkpoint = checkpoint  # None: part of a big record, the offset moves with its last part
        self.events = events
        self.newest_ms = newest_ms
        self.remaining = remaining  # sinks that have not confirmed their part yet
        self.state = State.PENDING

    @property
    def failed(self) -> bool:
        return self.state is State.FAILED


class AckTracker:
    """Per-blob queues of tickets in read order; stores checkpoints as their chunks complete in order."""

    def __init__(self, store: CheckpointStore, on_done: Callable[[Ticket], None]):
        self.store = store
        self.on_done = on_done  # called under the lock, in each blob's order: keep it cheap
        self.on_fail: Callable[[str], None] | None = None  # called (outside the lock) when a blob fails
        self._cond = threading.Condition()
        self._blobs: dict[str, deque[Ticket]] = {}
        self._failed: dict[str, str] = {}  # blob key -> why, until the next poll
        self._forget: set[str] = set()  # blobs deleted while being read: drop their checkpoint once drained
        self.pending = 0

    def add(self, key: str, checkpoint: BlobCheckpoint | None, events: int, newest_ms: int, sinks: int) -> Ticket:
        """A ticket for the next chunk of ``key``, to be confirmed once by each of ``sinks``; already failed if
        the blob failed earlier in this poll."""
        ticket = Ticket(key, checkpoint, events, newest_ms, sinks)
        with self._cond:
            if key in self._failed:
                ticket.state = State.FAILED
                return ticket
            self._blobs.setdefault(key, deque()).append(ticket)
            self.pending += 1
            if sinks == 0:
                ticket.state = State.DONE
                self._advance(key)
        return ticket

    def ack(self, ticket: Ticket) -> None:
        """One sink confirmed its part of the ticket's chunk."""
        with self._cond:
            if ticket.state is not State.PENDING:
                return
            ticket.remaining -= 1
            if ticket.remaining <= 0:
                ticket.state = State.DONE
                self._advance(ticket.key)

    def fail(self, ticket: Ticket, why: str) -> None:
        """A sink could not deliver its part: the blob is read again from its checkpoint next poll."""
        self.fail_blob(ticket.key, why)

    def fail_blob(self, key: str, why: str) -> None:
        """Every unsettled chunk of ``key`` fails; the blob is read again from its checkpoint next poll."""
        with self._cond:
            first = key not in self._failed
            self._failed.setdefault(key, why)
            for t in self._blobs.pop(key, ()):
                self.pending -= 1  # done ones too: behind this one they can no longer be checkpointed
                t.state = State.FAILED
            self._cond.notify_all()
        if first and self.on_fail is not None:
            self.on_fail(key)

    def blob_failed(self, key: str) -> bool:
        with self._cond:
            return key in self._failed

    def forget(self, key: str) -> None:
        """The blob was deleted: remove its checkpoint once what was read of it is settled."""
        with self._cond:
            if self._blobs.get(key):
                self._forget.add(key)
            else:
                self.store.remove(key)

    def new_poll(self) -> dict[str, str]:
        """Start a poll: blobs that failed may be read again. Returns the failures of the last one."""
        with self._cond:
            failed, self._failed = self._failed, {}
            return failed

    def wait_idle(self, abandon: Callable[[], bool], poll: float = 0.2) -> bool:
        """Wait until every ticket is done or failed; False if ``abandon()`` turned true first."""
        with self._cond:
            while self.pending:
                if abandon():
                    return False
                self._cond.wait(poll)
            return True

    @property
    def blobs_in_flight(self) -> int:
        with self._cond:
            return sum(1 for q in self._blobs.values() if q)

    def _advance(self, key: str) -> None:
        queue = self._blobs.get(key)
        while queue and queue[0].state is State.DONE:
            t = queue.popleft()
            self.pending -= 1
            if t.checkpoint is not None:
                self.store.put(key, t.checkpoint)
            self.on_done(t)
        if not queue:
            self._blobs.pop(key, None)
            if key in self._forget:
                self._forget.discard(key)
                self.store.remove(key)
        self._cond.notify_all()
