"""Retry throttled or failed storage requests (tenacity), and map what is left to the source contract.

Storage answers 503 ``ServerBusy`` / 500 ``OperationTimedOut`` / 429 when an account is over its
limits, and networks time out; all of that is waited out with exponential backoff and jitter
(the SDK's own retry policy is switched off so there is one place that decides). By default it
waits for as long as it takes, so a storage outage becomes backpressure, never a gap. What
retrying cannot fix becomes ``BlobGone`` (the blob was deleted) or ``SourceError`` (credentials,
permissions, a missing container), with messages passed through the scrubber.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
)

from forwarder.sinks.retry import PatientSleep
from forwarder.sources.azure_auth import Scrubber
from forwarder.sources.base import BlobGone, SourceError

log = logging.getLogger("forwarder.source.azure")
T = TypeVar("T")

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_CODES = frozenset({"ServerBusy", "OperationTimedOut", "InternalError"})
_NETWORK_ERRORS = (ServiceRequestError, ServiceResponseError, IncompleteReadError, ConnectionError, TimeoutError)


class StorageRequestFailed(Exception):
    """A storage request failed in a way that is neither transient nor fatal for the source (e.g. a 400)."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientAuthenticationError):
        return False
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code in _TRANSIENT_STATUS or getattr(exc, "error_code", None) in _TRANSIENT_CODES
    return False


def _retry_after(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _status(exc: BaseException) -> str:
    return f"status={getattr(exc, 'status_code', None)} code={getattr(exc, 'error_code', None)}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


class StorageRetry:
    """Runs one storage call with retries; waits end at once when ``stop`` is set (raises Interrupted)."""

    def __init__(
        self,
        identity: str,
        scrub: Scrubber,
        *,
        stop: threading.Event | None = None,
        initial: float = 0.5,
        maximum: float = 30.0,
        max_attempts: int = 0,  # 0 = until it works
        auth_hint: str = "",
    ):
        self.identity = identity
        self.scrub = scrub
        self.stop = stop or threading.Event()
        self.initial = initial
        self.maximum = maximum
        self.max_attempts = max_attempts
        self.auth_hint = auth_hint
        self.retries = 0  # total waits, for metrics

    def _wait(self, state: RetryCallState) -> float:
        # Computed here rather than with wait_exponential_jitter, whose parameters changed across tenacity versions.
        exp = min(state.attempt_number - 1, 32)
        backoff = min(self.maximum, self.initial * 2.0**exp + random.uniform(0, self.initial))
        after = _retry_after(state.outcome.exception() if state.outcome else None)
        return max(backoff, min(after, self.maximum * 4)) if after is not None else backoff

    def _patience(self, what: str) -> tuple[Callable[[RetryCallState], None], PatientSleep]:
        """tenacity's before_sleep and sleep for one call: a line per attempt, and while waiting a reminder
        at least every REMIND_EVERY seconds of what is waited for."""
        last = {"error": "", "status": "", "attempts": 0}

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self.retries += 1
            last.update(
                error=self.scrub(_first_line(f"{type(exc).__name__}: {exc}")),
                status=_status(exc) if exc else "",
                attempts=state.attempt_number,
            )
            log.warning(
                "Retrying a storage request after a transient failure: "
                "source=%s what=%s attempt=%d failing_for_s=%.0f wait_s=%.1f %s error=%s",
                self.identity,
                what,
                state.attempt_number,
                time.monotonic() - sleep.began,
                wait,
                last["status"],
                last["error"],
            )
            sleep.said()

        def remind(left: float) -> None:
            log.warning(
                "Still waiting for storage to answer: source=%s what=%s attempts=%s failing_for_s=%.0f "
                "next_attempt_in_s=%.0f %s error=%s",
                self.identity,
                what,
                last["attempts"],
                time.monotonic() - sleep.began,
                left,
                last["status"],
                last["error"],
            )

        sleep = PatientSleep(self.stop, what, remind)
        return before_sleep, sleep

    def call(self, fn: Callable[[], T], what: str, *, blob: str | None = None) -> T:
        """fn() with retries. Raises BlobGone (when blob is given), SourceError, StorageRequestFailed, Interrupted."""
        before_sleep, sleep = self._patience(what)
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts) if self.max_attempts > 0 else stop_never,
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except ResourceNotFoundError as exc:
            if blob is not None and getattr(exc, "error_code", None) != "ContainerNotFound":
                raise BlobGone(blob) from None
            raise SourceError(f"The storage container does not exist: source={self.identity} {_status(exc)}") from None
        except AzureError as exc:
            # "from None": the original exception's text may quote a URL with a SAS signature.
            message = self.scrub(_first_line(str(exc.message if hasattr(exc, "message") else exc)))
            status = getattr(exc, "status_code", None)
            if isinstance(exc, ClientAuthenticationError) and status is None:
                # No response from storage: the credential itself could not get a token.
                raise SourceError(
                    f"No Azure credential could get a token for storage: source={self.identity} what={what} "
                    f"reason={message!r} hint='with account_url alone, run where a managed identity is assigned "
                    "(managed_identity_client_id for a user-assigned one), with workload identity, with "
                    "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET set, or after az login; or set "
                    "connection_string, account_key or sas_token'"
                ) from None
            if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
                raise SourceError(
                    f"Storage refused access: source={self.identity} {_status(exc)} what={what} "
                    f"reason={message!r}{self.auth_hint}"
                ) from None
            if is_transient(exc):
                failed = (
                    "Storage did not answer"
                    if self.max_attempts == 1
                    else f"Storage kept failing; gave up after {self.max_attempts} attempts"
                )
                raise SourceError(
                    f"{failed}: source={self.identity} what={what} {_status(exc)} reason={message!r}"
                ) from None
            raise StorageRequestFailed(
                f"Storage request failed: source={self.identity} what={what} {_status(exc)} reason={message!r}"
            ) from None
