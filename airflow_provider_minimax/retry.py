"""The one retry policy of the provider: which failures to retry and how long to wait (tenacity)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from airflow_provider_minimax.exceptions import MiniMaxTransientError

log = logging.getLogger(__name__)

#: Transport failures worth another attempt: nothing was answered, or the answer was cut off.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
RETRYABLE_STATUSES = frozenset({408, 429})
_RETRYABLE = retry_if_exception_type((MiniMaxTransientError, *RETRYABLE_TRANSPORT_ERRORS))


def is_retryable_status(status_code: int) -> bool:
    """Whether an HTTP status is transient: 408, 429 and every 5xx."""
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, in its seconds or HTTP-date form.

    :param value: the header value, or None when absent.
    :param now: the current epoch time, for tests.
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
    current = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter that honours ``Retry-After``.

    :param max_retries: retries after the first attempt (0 = try once).
    :param base_wait: the first backoff window in seconds.
    :param max_wait: the cap of the backoff window in seconds.
    :param max_retry_after: the longest ``Retry-After`` we accept to wait, in seconds.
    """

    max_retries: int = 4
    base_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 120.0

    def wait_seconds(self, retry_state: RetryCallState) -> float:
        """The wait before the next attempt: the server's ``Retry-After`` if given, else full jitter."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, MiniMaxTransientError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        jitter = wait_random_exponential(multiplier=self.base_wait, max=self.max_wait)
        return float(jitter(retry_state))

    def retrying(self, sleep: Callable[[float], None] = time.sleep) -> Retrying:
        """A tenacity controller for synchronous calls."""
        return Retrying(sleep=sleep, **self._controller_options())

    def async_retrying(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> AsyncRetrying:
        """A tenacity controller for asynchronous calls."""
        return AsyncRetrying(sleep=sleep, **self._controller_options())

    def _controller_options(self) -> dict[str, Any]:
        """What the sync and async controllers share: when to stop, how long to wait, what to retry."""
        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": self.wait_seconds,
            "retry": _RETRYABLE,
            "before_sleep": self._log_retry,
            "reraise": True,
        }

    def _log_retry(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
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
