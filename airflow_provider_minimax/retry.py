"""The one retry policy of the provider: which failures to retry and how long to wait (tenacity)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from airflow_provider_minimax.exceptions import MiniMaxTransientError

if TYPE_CHECKING:
    from airflow_provider_minimax.connection import MiniMaxConnectionSettings

log = logging.getLogger(__name__)

#: Transport failures worth another attempt: nothing was answered, or the answer was cut off.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
#: Of those, the ones that come after the request was sent: the server may have processed it.
SENT_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
)
RETRYABLE_STATUSES = frozenset({408, 429})


def is_retryable_status(status_code: int) -> bool:
    """Whether an HTTP status is transient: 408, 429 and every 5xx."""
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, in its seconds or HTTP-date form.

    :param value: the header value, or None when absent.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.fromtimestamp(time.time(), tz=timezone.utc)
    return max(0.0, (when - current).total_seconds())


Controller = TypeVar("Controller", Retrying, AsyncRetrying)


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait would reach the deadline of the call running: no sleep outlives the call."""

    def __init__(self) -> None:
        #: Seconds left before that deadline; None: the call has none.
        self.time_left: Callable[[], float] | None = None

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.time_left is not None and retry_state.upcoming_sleep >= self.time_left()


class LentController(Generic[Controller]):
    """A tenacity controller lent to one call at a time: the ``with`` block is the loan.

    Lent again and again, a controller is not built, with its per-thread state, at every call
    (an async one then costs about half as much). Held by one call at a time, it stops before a
    wait that would reach that call's deadline. One whose call failed is not lent again: it
    would keep the failure alive until its next call.

    :param build: ``Retrying`` or ``AsyncRetrying``.
    :param attempts: the stop after the last attempt.
    :param options: the controller's other options.
    :param idle: where it waits to be lent again.
    """

    def __init__(
        self,
        build: Callable[..., Controller],
        attempts: stop_base,
        options: dict[str, Any],
        idle: list[LentController[Controller]],
    ) -> None:
        self.deadline = _StopBeforeDeadline()
        self._idle: list[LentController[Controller]] = idle
        self.controller: Controller = build(stop=attempts | self.deadline, **options)

    def __enter__(self) -> Controller:
        return self.controller

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.deadline.time_left = None
        if exc_type is None:
            self._idle.append(self)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter that honours ``Retry-After``.

    :param max_retries: retries after the first attempt (0 = try once).
    :param base_wait: the first backoff window in seconds.
    :param max_wait: the cap of the backoff window in seconds.
    :param max_retry_after: the longest ``Retry-After`` we accept to wait, in seconds; a longer
        one is not retried (see :meth:`waits_too_long`).
    :param retry_sent: retry transport failures that came after the request was sent
        (:data:`SENT_TRANSPORT_ERRORS`); off where a resend may be billed twice.
    :param on_resend: called before each retry of a request that had been sent.
    """

    max_retries: int = 4
    base_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 120.0
    retry_sent: bool = True
    on_resend: Callable[[], None] | None = field(default=None, compare=False)
    _idle_sync: list[LentController[Retrying]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    _idle_async: list[LentController[AsyncRetrying]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def waits_too_long(self, error: BaseException) -> bool:
        """Whether the server asked for a longer wait than we accept: the caller must come back later.

        :param error: the failure.
        """
        retry_after = getattr(error, "retry_after", None)
        return retry_after is not None and retry_after > self.max_retry_after

    def _should_retry(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, MiniMaxTransientError):
            return not self.waits_too_long(error)
        if isinstance(error, SENT_TRANSPORT_ERRORS):
            return self.retry_sent
        return isinstance(error, RETRYABLE_TRANSPORT_ERRORS)

    @classmethod
    def for_connection(
        cls, settings: MiniMaxConnectionSettings, max_retries: int | None = None
    ) -> RetryPolicy:
        """The policy a connection asks for (``max_retries``, ``retry_max_wait``).

        :param settings: the connection's settings.
        :param max_retries: overrides the connection's ``max_retries``.
        """
        return cls(
            max_retries=settings.max_retries if max_retries is None else max_retries,
            max_wait=settings.retry_max_wait,
        )

    def wait_seconds(self, retry_state: RetryCallState) -> float:
        """Tenacity's wait: :meth:`backoff` for the attempt that just failed."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = error.retry_after if isinstance(error, MiniMaxTransientError) else None
        return self.backoff(retry_state.attempt_number, retry_after)

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """The wait after ``failures`` failed attempts in a row: ``Retry-After``, else full jitter.

        The one back-off rule and the one place that caps it; the hook's tenacity loops ask it
        through :meth:`wait_seconds`, the batch runner and its rate limiter ask it directly.

        :param failures: failed attempts so far (1 after the first).
        :param retry_after: the server's ``Retry-After`` in seconds, when it sent one.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        # Tenacity's own full-jitter wait reads only the attempt number of the state it is given.
        state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = failures
        return float(wait_random_exponential(multiplier=self.base_wait, max=self.max_wait)(state))

    def retrying(self, time_left: Callable[[], float] | None = None) -> LentController[Retrying]:
        """A tenacity controller lent to one sync call (a ``with`` block); it waits with ``time.sleep``.

        :param time_left: seconds left before the call's deadline; no wait runs past it.
        """
        return self._lend(Retrying, self._idle_sync, time_left)

    def async_retrying(self, time_left: Callable[[], float] | None = None) -> LentController[AsyncRetrying]:
        """A tenacity controller lent to one async call (a ``with`` block); it waits with ``asyncio.sleep``.

        :param time_left: seconds left before the call's deadline; no wait runs past it.
        """
        return self._lend(AsyncRetrying, self._idle_async, time_left)

    def _lend(
        self,
        build: Callable[..., Controller],
        idle: list[LentController[Controller]],
        time_left: Callable[[], float] | None,
    ) -> LentController[Controller]:
        try:
            lent = idle.pop()  # atomic: two threads never take the same one
        except IndexError:
            attempts = stop_after_attempt(self.max_retries + 1)
            lent = LentController(build, attempts, self._controller_options, idle)
        lent.deadline.time_left = time_left
        return lent

    @cached_property
    def _controller_options(self) -> dict[str, Any]:
        """What every controller of this policy shares: how long to wait, what to retry, what to log.

        Every controller of the policy is built with them once (see :class:`LentController`).
        """
        return {
            "wait": self.wait_seconds,
            "retry": self._should_retry,
            # No step before an attempt (tenacity skips a None one): an async controller would
            # wrap even its default no-op in a coroutine, at every call.
            "before": None,
            "before_sleep": self._log_retry,
            "reraise": True,
        }

    def _log_retry(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, SENT_TRANSPORT_ERRORS) and self.on_resend is not None:
            self.on_resend()
        status = getattr(error, "status_code", None) or type(error).__name__
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning(
            "MiniMax call failed (%s: %s); retrying in %.2f s (attempt %d of %d)",
            status,
            error,
            wait,
            retry_state.attempt_number + 1,
            self.max_retries + 1,
        )
