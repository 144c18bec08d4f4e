"""A cap on the bytes the pipeline holds at once: read, parsed, formatted and not yet confirmed.

Readers take a share before they read and give it back when every sink has confirmed the chunk, so a
slow or down sink fills the cap and then pauses reading: memory depends on the cap, never on the
number of NICs or the length of an outage. One holder may always go ahead when nothing else is held,
so a chunk bigger than the cap slows the pipeline down instead of stopping it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Budget:
    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.used = 0
        self.peak = 0
        self.waiting = 0  # readers paused until the sinks confirm what is held
        # Called when a reader starts waiting: nothing more can come until the sinks send what they hold, so
        # they should not wait for more (a batch's linger) before sending.
        self.on_wait: Callable[[], None] | None = None
        self._cond = threading.Condition()

    def acquire(self, n: int, cancelled: Callable[[], bool] | None = None) -> bool:
        """Wait until ``n`` more bytes fit (or nothing is held); False if ``cancelled()`` turned true meanwhile."""
        with self._cond:
            while self.used and self.used + n > self.limit:
                if cancelled is not None and cancelled():
                    return False
                if self.on_wait is not None:
                    self.on_wait()
                self.waiting += 1
                try:
                    self._cond.wait(0.2)
                finally:
                    self.waiting -= 1
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def adjust(self, n: int) -> None:
        """Take ``n`` more bytes (or give back ``-n``) without waiting: a share turned out bigger or smaller
        than estimated once the chunk was formatted."""
        with self._cond:
            self.used = max(0, self.used + n)
            self.peak = max(self.peak, self.used)
            if n < 0:
                self._cond.notify_all()

    def release(self, n: int) -> None:
        self.adjust(-n)
