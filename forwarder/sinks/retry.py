"""Retry transient sink failures with capped exponential backoff and jitter (tenacity).

By default a sink retries for as long as it takes, so an outage turns into backpressure rather
than loss. Waiting is interruptible: on shutdown the pipeline sets ``stop`` and the wait ends at
once with ``Interrupted`` (the chunk stays unconfirmed and is sent again after the restart).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_never

log = logging.getLogger("forwarder.retry")
T = TypeVar("T")

# While a failure is waited out, the log says so at least this often (plus one attempt's connect timeout):
# a service that is silent for minutes looks hung, whatever it is doing.
REMIND_EVERY = 30.0


class TransientError(Exception):
    """Worth retrying: timeouts, refused connections, 429, 5xx. ``retry_after`` in seconds if the peer said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RetriesExhausted(Exception):
    """The configured attempt limit was reached; the caller dead-letters what it could not send."""


class Interrupted(Exception):
    """Shutdown was requested while waiting to retry."""


def without_prefix(error: BaseException | None, what: str) -> str:
    """The error's text without a leading ``what: ``, which the log line already shows once."""
    return str(error).removeprefix(f"{what}: ") if error is not None else ""


class PatientSleep:
    """tenacity's sleep for one retried call: ``stop`` ends a wait at once (Interrupted), and a long wait is
    cut into pieces so that ``remind(seconds_left)`` is called whenever nothing was said for REMIND_EVERY."""

    def __init__(self, stop: threading.Event, what: str, remind: Callable[[float], None]):
        self.stop = stop
        self.what = what
        self.remind = remind
        self.began = time.monotonic()
        self.last_said = self.began

    def said(self) -> None:
        self.last_said = time.monotonic()

    def __call__(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            quiet_left = REMIND_EVERY - (time.monotonic() - self.last_said)
            if quiet_left <= 0:
                self.remind(left)
                self.said()
                continue
            if self.stop.wait(min(left, quiet_left)):
                raise Interrupted(f"shutdown requested while retrying {self.what}")


@dataclass
class RetryPolicy:
    initial: float = 0.5  # seconds before the first retry
    maximum: float = 60.0  # cap on one wait
    max_attempts: int = 0  # 0 = retry forever
    stop: threading.Event = field(default_factory=threading.Event)
    on_retry: Callable[[str], None] | None = None  # metrics hook, called with the sink name

    def wait_seconds(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter on top, capped; a peer's Retry-After wins when it says more."""
        exponent = min(state.attempt_number - 1, 30)
        backoff = min(self.maximum, self.initial * 2.0**exponent) + random.uniform(0, self.initial)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            # Honour the peer, but never sleep for hours on a bogus header.
            peer = float(min(exc.retry_after, max(self.maximum, 300.0)))
            return max(backoff if exc.retry_after <= 0 else 0.0, peer)
        return backoff

    def call(self, fn: Callable[[], T], what: str, sink: str = "") -> T:
        """Run fn, retrying TransientError. Raises RetriesExhausted or Interrupted."""

        last: dict[str, object] = {"error": "", "attempts": 0}

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            last.update(error=without_prefix(exc, what), attempts=state.attempt_number)
            log.warning(
                "Retrying after a transient failure: sink=%s what=%s attempt=%d failing_for_s=%.0f wait_s=%.1f "
                "error=%s",
                sink,
                what,
                state.attempt_number,
                time.monotonic() - sleep.began,
                wait,
                last["error"],
            )
            sleep.said()
            if self.on_retry:
                self.on_retry(sink)

        def remind(left: float) -> None:
            log.warning(
                "Still waiting for the sink to take events again: sink=%s what=%s attempts=%s failing_for_s=%.0f "
                "next_attempt_in_s=%.0f error=%s",
                sink,
                what,
                last["attempts"],
                time.monotonic() - sleep.began,
                left,
                last["error"],
            )

        sleep = PatientSleep(self.stop, what, remind)
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=self.wait_seconds,
            stop=stop_after_attempt(self.max_attempts) if self.max_attempts > 0 else stop_never,
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except TransientError as exc:
            raise RetriesExhausted(f"{what}: gave up after {self.max_attempts} attempts: {exc}") from exc
