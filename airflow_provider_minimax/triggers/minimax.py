"""MiniMaxTaskTrigger: waits in the triggerer for async MiniMax tasks, polling getResponse only."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.poll_cadence import check_cadence
from airflow_provider_minimax.results import TasksOutcome
from airflow_provider_minimax.triggers.poller import TaskPoller
from airflow_provider_minimax.triggers.registration import DEADLINE, expire

#: The deadline timer's context: ``expire`` reads no context variable, and a timer without one
#: would copy the caller's (one more object per waiting trigger).
_NO_CONTEXT = contextvars.Context()


class MiniMaxTaskTrigger(BaseTrigger):
    """Wait for async MiniMax tasks and fire one event with all their results or errors.

    The event is a :class:`~airflow_provider_minimax.results.TasksOutcome`: ``success`` when every
    task finished (a task's own failure sits in ``errors``), ``timeout`` at ``end_time`` (with
    ``pending`` and whatever finished) or ``error`` when polling itself failed for good (an auth
    error at once; transient failures, after the hook's retries, after
    ``max_consecutive_failures`` polls in a row).

    Its only side effect is getResponse calls, which are free: a triggerer restart re-runs it
    safely, and two copies at once (HA redistribution) are harmless. It serializes only the
    connection id, the UUIDs and the timing; credentials are read inside :meth:`run`.

    :param task_uuids: the taskUUIDs to wait on.
    :param conn_id: the ``minimax`` connection.
    :param end_time: the absolute deadline, epoch seconds (survives restarts).
    :param poll_interval: seconds before the first poll (the contract says ~1 s).
    :param max_poll_interval: the cap of the wait between polls; each wait is x1.5 the last.
    :param number_results: results each task was submitted with (a task is finished when all arrived).
    :param max_consecutive_failures: transient poll failures in a row tolerated before an error event.
    :param results_in_event: False keeps the event small whatever the number of tasks: only how the
        wait ended (``status``, ``message``, ``code``, ``status_code``), no UUIDs, results or errors;
        the worker fetches them after resuming (getResponse is free). MiniMaxBatchOperator does so.
    :param not_found_until: epoch until which ``taskFailedOrNotFound`` reads as still running (the
        grace after an accepted submit; an absolute time, so it survives a triggerer restart).
    """

    #: Triggers on one connection share one poller per event loop, so a triggerer sends one
    #: getResponse request per tick for up to ``max_tasks_per_request`` tasks. Set to False to
    #: give each trigger its own poller and HTTP client, as official providers do (for debugging,
    #: and for the benchmark's side-by-side figure).
    shared_polling: ClassVar[bool] = True

    def __init__(
        self,
        task_uuids: Sequence[str],
        *,
        conn_id: str = DEFAULT_CONN_ID,
        end_time: float,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        number_results: int = 1,
        max_consecutive_failures: int = 5,
        results_in_event: bool = True,
        not_found_until: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(task_uuids, str) or not task_uuids:
            raise ValueError(f"task_uuids must be a non-empty list of taskUUIDs, got {task_uuids!r}")
        if max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be >= 1, got {max_consecutive_failures}")
        check_cadence(poll_interval, max_poll_interval, number_results)
        self.task_uuids = list(task_uuids)
        self.conn_id = conn_id
        self.end_time = float(end_time)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.number_results = number_results
        self.max_consecutive_failures = max_consecutive_failures
        self.results_in_event = results_in_event
        self.not_found_until = None if not_found_until is None else float(not_found_until)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the kwargs to rebuild this trigger: ids and timing only."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "task_uuids": self.task_uuids,
                "conn_id": self.conn_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "number_results": self.number_results,
                "max_consecutive_failures": self.max_consecutive_failures,
                "results_in_event": self.results_in_event,
                "not_found_until": self.not_found_until,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait on the shared poller until the tasks finish, polling fails or the deadline passes."""
        poller = TaskPoller.shared(self.conn_id) if self.shared_polling else TaskPoller(self.conn_id)
        registration = poller.register(
            self.task_uuids,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            number_results=self.number_results,
            max_consecutive_failures=self.max_consecutive_failures,
            not_found_until=self.not_found_until,
        )
        progress = registration.progress
        # A timer, not the poller, enforces the deadline: a poll stuck in retries cannot delay it.
        deadline = asyncio.get_running_loop().call_later(
            max(0.0, self.end_time - time.time()), expire, registration.future, context=_NO_CONTEXT
        )
        try:
            # Cancellation (triggerer restart, redistribution) only unregisters, in `finally`.
            ending = await registration.future
        finally:
            deadline.cancel()
            poller.unregister(registration)
        if ending is DEADLINE:
            outcome = progress.timed_out(self.end_time)
        elif isinstance(ending, BaseException):
            outcome = progress.failed(ending)
        else:
            outcome = progress.succeeded()
        if not self.results_in_event:
            outcome = TasksOutcome(
                status=outcome.status,
                task_uuids=[],
                message=outcome.message,
                code=outcome.code,
                status_code=outcome.status_code,
            )
        yield TriggerEvent(outcome.to_event())

    async def on_kill(self) -> None:
        """Say what keeps running: the task API has no cancel call."""
        self.log.info(
            "MiniMax has no cancel call; tasks %s keep running upstream and their results stay "
            "available through getResponse",
            ", ".join(self.task_uuids),
        )
