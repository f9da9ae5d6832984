"""The adaptive limiter: AIMD on 429, the requests-per-minute cap, pauses; fake clock, no real waiting."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_minimax.rate_control import AdaptiveLimiter
from airflow_provider_minimax.retry import RetryPolicy


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def limiter(
    max_concurrency: int = 8, rpm: float | None = None, **kwargs: object
) -> tuple[AdaptiveLimiter, FakeTime]:
    fake = FakeTime()
    return AdaptiveLimiter(max_concurrency, rpm, clock=fake.clock, sleep=fake.sleep, **kwargs), fake  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 4, "requests_per_minute": 0}, "requests_per_minute"),
        ({"max_concurrency": 4, "min_concurrency": 5}, "min_concurrency"),
        ({"max_concurrency": 4, "decrease_factor": 1.0}, "decrease_factor"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveLimiter(**kwargs)  # type: ignore[arg-type]


async def test_a_429_halves_the_cap_and_pauses_for_retry_after() -> None:
    lim, fake = limiter(8)
    started = await lim.acquire()
    pause = lim.on_rate_limited(started, retry_after=3.0)
    await lim.release()
    assert (lim.limit, pause, lim.stats.decreases) == (4, 3.0, 1)
    await lim.acquire()  # the next start waits for the pause
    assert fake.sleeps == [3.0]


async def test_a_burst_of_429s_from_one_round_cuts_once() -> None:
    lim, _ = limiter(8)
    starts = [await lim.acquire() for _ in range(5)]
    for started in starts:
        lim.on_rate_limited(started, retry_after=0)
    assert (lim.limit, lim.stats.decreases, lim.stats.rate_limited) == (4, 1, 5)


async def test_repeated_rounds_of_429s_go_down_to_the_floor() -> None:
    lim, fake = limiter(8, min_concurrency=2)
    for _ in range(4):
        started = await lim.acquire()
        lim.on_rate_limited(started, retry_after=0)
        await lim.release()
        fake.now += 1  # the next request starts after this cut
    assert (lim.limit, lim.stats.lowest_limit) == (2, 2)


async def test_successes_grow_the_cap_back_one_per_round() -> None:
    lim, _ = limiter(4)
    started = await lim.acquire()
    lim.on_rate_limited(started, retry_after=0)
    await lim.release()
    assert lim.limit == 2
    for _ in range(2 + 3):  # a round of 2 successes -> 3, a round of 3 -> 4
        started = await lim.acquire()
        lim.on_success(started)
        await lim.release()
    assert (lim.limit, lim.stats.increases) == (4, 2)


async def test_without_retry_after_the_pause_is_the_policy_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: high)  # the top of each jitter window
    lim, _ = limiter(4, policy=RetryPolicy(base_wait=1.0, max_wait=5.0))
    pauses = [lim.on_rate_limited(0.0) for _ in range(5)]
    assert pauses == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_retry_after_is_capped_by_the_policy() -> None:
    lim, _ = limiter(4, policy=RetryPolicy(max_retry_after=10.0))
    assert lim.on_rate_limited(0.0, retry_after=3600.0) == 10.0


async def test_requests_per_minute_spaces_the_starts() -> None:
    lim, fake = limiter(10, rpm=120)  # one start every 0.5 s
    for _ in range(3):
        await lim.acquire()
    assert fake.sleeps == [0.5, 0.5]


async def test_no_more_than_the_cap_in_flight() -> None:
    lim, _ = limiter(3)
    in_flight: list[int] = []

    async def one() -> None:
        async with lim.slot():
            in_flight.append(lim.in_flight)
            await asyncio.sleep(0)

    await asyncio.gather(*(one() for _ in range(10)))
    assert max(in_flight) == 3
    assert (lim.stats.requests, lim.stats.peak_in_flight, lim.in_flight) == (10, 3, 0)


async def test_a_lowered_cap_holds_new_requests_back() -> None:
    lim, _ = limiter(4)
    held = [await lim.acquire() for _ in range(4)]
    lim.on_rate_limited(held[0], retry_after=0)  # cap 2, 4 in flight
    waiter = asyncio.ensure_future(lim.acquire())
    for _ in range(2):
        await lim.release()
        await asyncio.sleep(0)
    assert not waiter.done()  # 2 in flight, cap 2
    await lim.release()
    await asyncio.sleep(0)
    assert waiter.done()
