"""Waiting for a sync task the API had already accepted: its answer was lost, the retry met a conflict.

The submit ran (and was paid for) but its answer never arrived; the retried submit drew
``conflictTaskUUID``. The result is fetched with ``getResponse`` at the contract's cadence (first
wait ~1 s, x1.5, capped at ~10 s) within the call's ``total_timeout``. A poll that leaves the UUID
out, says ``processing`` or ``conflictTaskUUID``, or says not found within :data:`NOT_FOUND_GRACE`
reads as pending.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    retry_if_result,
    wait_exponential,
)

from airflow_provider_minimax.exceptions import MiniMaxDeadlineError, MiniMaxError
from airflow_provider_minimax.hooks.call_budget import CallBudget
from airflow_provider_minimax.hooks.responses import CONFLICT_CODE, NOT_FOUND_CODE, api_error
from airflow_provider_minimax.models import GetResponseTask, TextInferenceTask, task_array
from airflow_provider_minimax.poll_cadence import BACKOFF_FACTOR, DEFAULT_NOT_FOUND_GRACE
from airflow_provider_minimax.results import TaskBatchResult
from airflow_provider_minimax.task_progress import task_state

log = logging.getLogger(__name__)

#: Seconds after the conflict during which "not found" means "not visible yet" (the operators' default).
NOT_FOUND_GRACE = DEFAULT_NOT_FOUND_GRACE
#: The first wait between polls and the cap of the waits, in seconds (the contract's cadence).
FIRST_POLL_WAIT = 1.0
MAX_POLL_WAIT = 10.0


class AcceptedTask:
    """The polls of one sync task the API had already accepted, until its result or the call's deadline.

    :param task: the task that drew ``conflictTaskUUID``.
    :param budget: the budget of the whole call; the polls share its deadline.
    """

    def __init__(self, task: TextInferenceTask, budget: CallBudget) -> None:
        self.task_uuid = task.task_uuid
        self.number_results = task.number_results or 1
        self.budget = budget
        # Kept as "seconds left at the end of the grace", on the budget's own (monotonic) clock.
        self._grace_ends_at_remaining = budget.remaining() - NOT_FOUND_GRACE
        self.poll = task_array([GetResponseTask(task_uuid=self.task_uuid)])

    def read(self, answer: TaskBatchResult) -> TaskBatchResult | None:
        """The task's results once finished, None while pending; a failure the API reports raises.

        :param answer: one getResponse answer.
        """
        found = (answer.results_for(self.task_uuid), answer.error_for(self.task_uuid))
        results, error = task_state(self.task_uuid, found, self.number_results)
        if results is not None:
            return TaskBatchResult(results=results)
        if error is None or error.code == CONFLICT_CODE or self._not_visible_yet(error.code):
            return None  # a conflict again says the API knows the task: still pending
        raise api_error(error, answer.http_status_for(self.task_uuid))

    def _not_visible_yet(self, code: str | None) -> bool:
        return code == NOT_FOUND_CODE and self.budget.remaining() > self._grace_ends_at_remaining

    def _unscoped_not_found(self, error: BaseException) -> bool:
        # A one-UUID poll refused with an error naming no task is about this task.
        return isinstance(error, MiniMaxError) and self._not_visible_yet(error.code)

    def wait(self, poll: Callable[[], TaskBatchResult]) -> TaskBatchResult:
        """Poll until the task's results arrive; past the deadline, an error naming the UUID.

        :param poll: one getResponse request for the task, under the call's budget.
        """
        try:
            finished = Retrying(**self._controller_options())(lambda: self.read(poll()))
        except (RetryError, MiniMaxDeadlineError):
            finished = None
        if finished is None:
            raise self.timed_out()  # outside the handler: no tenacity context on the error
        return finished

    async def await_result(self, poll: Callable[[], Awaitable[TaskBatchResult]]) -> TaskBatchResult:
        """Async :meth:`wait`.

        :param poll: one getResponse request for the task, under the call's budget.
        """

        async def attempt() -> TaskBatchResult | None:
            return self.read(await poll())

        try:
            finished: TaskBatchResult | None = await AsyncRetrying(**self._controller_options())(attempt)
        except (RetryError, MiniMaxDeadlineError):
            finished = None
        if finished is None:
            raise self.timed_out()
        return finished

    def _controller_options(self) -> dict[str, Any]:
        """Tenacity options: poll again while pending, back off x1.5, stop before the deadline."""
        return {
            "retry": retry_if_result(lambda finished: finished is None)
            | retry_if_exception(self._unscoped_not_found),
            "wait": wait_exponential(multiplier=FIRST_POLL_WAIT, max=MAX_POLL_WAIT, exp_base=BACKOFF_FACTOR),
            "stop": lambda state: state.upcoming_sleep >= self.budget.remaining(),
            "before_sleep": self._log_wait,
        }

    def _log_wait(self, retry_state: RetryCallState) -> None:
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.info(
            "MiniMax task %s was accepted earlier and has no result yet (poll %d); polling again in %.1f s",
            self.task_uuid,
            retry_state.attempt_number,
            wait,
        )

    def timed_out(self) -> MiniMaxDeadlineError:
        """The error for a call whose deadline came before the result; it names the UUID to fetch later."""
        total = self.budget.settings.total_timeout
        return MiniMaxDeadlineError(
            f"MiniMax task {self.task_uuid} was accepted (its first answer was lost) but had no result "
            f"within the call's total_timeout of {total:g} s; it may still finish upstream: fetch it with "
            f"get_responses({self.task_uuid!r}) rather than submitting it again",
            task_uuid=self.task_uuid,
            task_uuids=[self.task_uuid],
        )
