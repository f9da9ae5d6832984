"""Client-side rate control for many concurrent calls: an adaptive concurrency cap and an RPM cap.

On a 429 the whole batch slows down instead of each request retrying blindly: the allowed
concurrency is cut multiplicatively (once per round of requests, like TCP's AIMD) and every new
start waits for the server's ``Retry-After`` (or the retry policy's jittered backoff when it gives
none; :meth:`RetryPolicy.backoff` decides both, caps included).
While requests succeed, the cap grows again by one per round of successes, up to the maximum.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from airflow_provider_minimax.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass
class LimiterStats:
    """What the limiter did, for logs, manifests and tests.

    :param requests: slots handed out.
    :param rate_limited: 429 answers reported.
    :param decreases: times the cap was cut.
    :param increases: times the cap grew back.
    :param lowest_limit: the lowest cap reached.
    :param peak_in_flight: the most requests in flight at once.
    """

    requests: int = 0
    rate_limited: int = 0
    decreases: int = 0
    increases: int = 0
    lowest_limit: int = 0
    peak_in_flight: int = 0


class AdaptiveLimiter:
    """Admit at most ``limit`` requests at once and ``requests_per_minute`` starts; adapt the limit to 429s.

    Use ``async with limiter.slot() as started: ...`` around each request, and report how it went
    with :meth:`on_success` or :meth:`on_rate_limited` (passing ``started``) before leaving the
    slot. The limiter belongs to one event loop.

    :param max_concurrency: the cap on requests in flight, and where the adaptive cap starts.
    :param requests_per_minute: the cap on request starts per minute (None: no cap).
    :param min_concurrency: the floor of the adaptive cap.
    :param decrease_factor: the cap is multiplied by this on a 429 (0 < factor < 1).
    :param policy: the retry policy whose :meth:`~RetryPolicy.backoff` sets each pause.
    :param clock: monotonic clock (tests pass a fake one).
    :param sleep: async sleep (tests pass a fake one).
    """

    def __init__(
        self,
        max_concurrency: int,
        requests_per_minute: float | None = None,
        *,
        min_concurrency: int = 1,
        decrease_factor: float = 0.5,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be > 0 or None, got {requests_per_minute}")
        if not 1 <= min_concurrency <= max_concurrency:
            raise ValueError(f"min_concurrency must be 1..{max_concurrency}, got {min_concurrency}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be between 0 and 1, got {decrease_factor}")
        self.max_concurrency = max_concurrency
        self.min_concurrency = min_concurrency
        self.decrease_factor = decrease_factor
        self.policy = policy or RetryPolicy()
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self.limit = max_concurrency
        self.stats = LimiterStats(lowest_limit=max_concurrency)
        self._in_flight = 0
        self._next_start = 0.0
        self._paused_until = 0.0
        self._last_decrease = -math.inf
        self._successes = 0
        self._consecutive_429 = 0
        self._changed: asyncio.Condition | None = None

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now."""
        return self._in_flight

    def _condition(self) -> asyncio.Condition:
        # Created on first use, inside the running loop the limiter serves.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> float:
        """Wait for a free slot, the end of any pause and the next allowed start; return the start time."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self._in_flight < self.limit)
            self._in_flight += 1
            self.stats.requests += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self._in_flight)
            # Reserve the start under the lock so concurrent callers space out by the RPM interval.
            start = max(self._clock(), self._paused_until, self._next_start)
            if self._interval:
                self._next_start = start + self._interval
        try:
            while (wait := max(start, self._paused_until) - self._clock()) > 0:
                # A 429 seen while we waited extends the pause for us too.
                await self._sleep(wait)
        except BaseException:
            await self.release()
            raise
        return self._clock()

    async def release(self) -> None:
        """Give a slot back."""
        changed = self._condition()
        async with changed:
            self._in_flight -= 1
            changed.notify_all()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a slot for one request; yields the time the request started."""
        started = await self.acquire()
        try:
            yield started
        finally:
            await self.release()

    def on_success(self, started: float) -> None:
        """Report a request that was not rate limited: after a full round of them, allow one more.

        :param started: what :meth:`slot` yielded for that request.
        """
        self._consecutive_429 = 0
        if self.limit >= self.max_concurrency:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self.stats.increases += 1
            # Waiters see the larger cap when this request's slot is released (release notifies).

    def on_rate_limited(self, started: float, retry_after: float | None = None) -> float:
        """Report a 429: cut the cap (once per round) and pause every new start; return the pause.

        Only a request that started after the last cut may cut again, so a burst of 429s from
        the same round counts as one signal rather than collapsing the cap to the floor.

        :param started: what :meth:`slot` yielded for that request.
        :param retry_after: the server's ``Retry-After`` in seconds, when it sent one.
        """
        self.stats.rate_limited += 1
        self._consecutive_429 += 1
        now = self._clock()
        if started > self._last_decrease:
            new_limit = max(self.min_concurrency, math.floor(self.limit * self.decrease_factor))
            if new_limit < self.limit:
                log.warning("Rate limited (429): lowering concurrency from %d to %d", self.limit, new_limit)
                self.limit = new_limit
                self.stats.decreases += 1
                self.stats.lowest_limit = min(self.stats.lowest_limit, new_limit)
            self._last_decrease = now
            self._successes = 0
        pause = self.policy.backoff(self._consecutive_429, retry_after)
        self._paused_until = max(self._paused_until, now + pause)
        return pause
