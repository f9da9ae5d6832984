"""One waiter's tasks, poll cadence and failure budget inside the shared poller."""

from __future__ import annotations

import asyncio

from airflow_provider_minimax.poll_cadence import next_interval, progress_delay
from airflow_provider_minimax.task_progress import TaskProgress

#: What a registration's future holds when its deadline passed first.
DEADLINE = object()


class Registration:
    """One waiter's tasks, cadence and failure budget inside a :class:`TaskPoller`.

    ``future`` resolves to None when every task finished, to the error that ended polling, or
    to :data:`DEADLINE` (set by the waiter's own timer, see :func:`expire`).

    :param progress: the tasks and what is known about them.
    :param future: resolved by the poller.
    :param started: loop time of the registration.
    :param poll_interval: the first (and shortest) wait.
    :param max_poll_interval: the cap of the wait.
    :param max_consecutive_failures: transient poll failures in a row tolerated.
    """

    __slots__ = (
        "due",
        "failures",
        "future",
        "max_consecutive_failures",
        "max_poll_interval",
        "poll_interval",
        "progress",
        "started",
        "wait",
    )

    def __init__(
        self,
        progress: TaskProgress,
        future: asyncio.Future[object],
        started: float,
        poll_interval: float,
        max_poll_interval: float,
        max_consecutive_failures: int,
    ) -> None:
        self.progress = progress
        self.future = future
        self.started = started
        self.poll_interval = self.wait = poll_interval
        self.due = started + poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_consecutive_failures = max_consecutive_failures
        self.failures = 0

    def reschedule(self, now: float, failed: bool = False, pending: float | None = None) -> None:
        """Plan the next poll: when progress predicts the rest done, or one grown wait after a failure.

        :param now: loop time the last poll ended.
        :param failed: whether the last poll failed (nothing new was learnt).
        :param pending: the tasks estimated still running when the poll asked only a sample.
        """
        if failed:
            self.wait = next_interval(self.wait, self.max_poll_interval)
        else:
            elapsed = now - self.started
            self.wait = progress_delay(
                self.progress, elapsed, self.wait, self.poll_interval, self.max_poll_interval, pending
            )
        self.due = now + self.wait


def expire(future: asyncio.Future[object]) -> None:
    """End a wait at its deadline (a loop timer calls this); a settled wait is left alone.

    :param future: a registration's future.
    """
    if not future.done():
        future.set_result(DEADLINE)
