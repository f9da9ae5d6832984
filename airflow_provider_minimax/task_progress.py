"""What getResponse answers say about the tasks waited on: finished, failed or still running.

One rule for every waiter: the shared poller, :func:`~airflow_provider_minimax.polling.wait_for_tasks`,
the sensor and a resumed submit all index an answer with :func:`group_batch`, call a task finished
with :func:`task_state` and track a wait in :class:`TaskProgress`, which builds the
:class:`~airflow_provider_minimax.results.TasksOutcome` the wait ends with. A wait on more tasks
than one request carries asks a :func:`sample_of` them each tick and reads the rest's progress
from it (:func:`pending_estimate`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from airflow_provider_minimax.exceptions import MiniMaxError, MiniMaxTransientError, MiniMaxValidationError
from airflow_provider_minimax.hooks.responses import NOT_FOUND_CODE
from airflow_provider_minimax.models import ApiError, TaskResult, TaskUUID, problem_text
from airflow_provider_minimax.results import TaskBatchResult, TasksOutcome

if TYPE_CHECKING:
    from airflow_provider_minimax.hooks.minimax import MiniMaxHook

#: What one getResponse answer says about one task: (items, error) as grouped by :func:`group_batch`.
TaskItems = tuple[list[TaskResult], ApiError | None]

_TASK_UUIDS: TypeAdapter[list[str]] = TypeAdapter(list[TaskUUID])

#: The share of a sample found finished from which the rest of the pending tasks are polled in the
#: same tick: below it, most of a full poll's requests would ask about tasks still running.
FULL_POLL_SHARE = 0.75


def normalise_task_uuids(task_uuids: Iterable[str]) -> list[str]:
    """Check that every taskUUID is a UUID v4 and spell it as the API echoes it (lower case), once.

    :param task_uuids: the UUIDs; duplicates are dropped, order kept. A list that already is
        so is returned itself (never changed here): one list less per waiting trigger.
    """
    given = task_uuids if isinstance(task_uuids, list) else list(task_uuids)
    try:
        checked = _TASK_UUIDS.validate_python(given)
    except ValidationError as err:
        problem = err.errors()[0]
        raise MiniMaxValidationError(
            f"Invalid taskUUID: {problem_text(problem)}", parameter="task_uuids"
        ) from None
    # The caller's string where it already was canonical: one copy of each UUID in memory (a
    # triggerer holds thousands).
    normalised = list(dict.fromkeys(g if g == c else c for g, c in zip(given, checked, strict=True)))
    return given if normalised == given else normalised


def abbreviate(items: Sequence[str], limit: int = 5) -> str:
    """A list for a log line: the first few items, then how many more.

    :param items: what to list.
    :param limit: how many to name.
    """
    named = ", ".join(items[:limit])
    return named if len(items) <= limit else f"{named} and {len(items) - limit} more"


# ------------------------------------------------------------------------------------ reading answers


def group_batch(batch: TaskBatchResult, *, settled_only: bool = False) -> dict[str, TaskItems]:
    """Index one getResponse answer by taskUUID, in one pass (the poller reads it for many waiters).

    :param batch: what :meth:`MiniMaxHook.aget_responses` returned.
    :param settled_only: leave out items that only say a task is still running (:func:`task_state`
        reads nothing from them), so that the shared poller does not hold thousands of them until
        its tick ends.
    """
    grouped: dict[str, TaskItems] = {}
    for item in batch.results:
        if settled_only and not _is_settled(item):
            continue
        items, error = grouped.get(item.task_uuid, ([], None))
        items.append(item)
        grouped[item.task_uuid] = (items, error)
    for error in batch.errors:
        if error.task_uuid:
            items, earlier = grouped.get(error.task_uuid, ([], None))
            grouped[error.task_uuid] = (items, earlier or error)
    return grouped


def _is_settled(item: TaskResult) -> bool:
    """Whether an item says something :func:`task_state` reads: a result or a failure."""
    return item.is_terminal or item.is_success


def task_state(
    task_uuid: str, found: TaskItems | None, number_results: int
) -> tuple[list[TaskResult] | None, ApiError | None]:
    """Where one task stands: ``(results, None)`` done, ``(None, error)`` failed, ``(None, None)`` running.

    A task is finished when it has ``number_results`` distinct successful ``resultIndex`` values
    (as the official SDK counts them); any status other than success/error means still running.

    :param task_uuid: the task.
    :param found: its items and error in the answer (None when the answer did not mention it).
    :param number_results: results the task was submitted with.
    """
    if found is None:
        return None, None
    items, error = found
    successes = {item.result_index or 0: item for item in items if item.is_success}
    if len(successes) >= number_results:
        return [successes[index] for index in sorted(successes)], None
    if error is None:
        failed = next((item for item in items if item.status == "error"), None)
        if failed is not None:
            error = failed.error or ApiError(code="unknown", message="task failed", taskUUID=task_uuid)
    if error is not None and error.task_uuid is None:
        error = error.model_copy(update={"task_uuid": task_uuid})
    return None, error


def is_not_found(error: ApiError) -> bool:
    """Whether an error says the API does not know the task (or no longer shows it).

    :param error: a task's error.
    """
    return error.code == NOT_FOUND_CODE


def lone_not_found(task_uuids: Sequence[str], err: MiniMaxError) -> TaskBatchResult | None:
    """An unscoped ``taskFailedOrNotFound`` refusing a one-UUID poll, read as that task's answer.

    A server may answer a getResponse for one unknown UUID with a 400 that names no task; it
    still says "not found" about that one task, so the not-found rules (and the grace) apply.

    :param task_uuids: the UUIDs the refused request polled.
    :param err: what the request raised.
    """
    if len(task_uuids) != 1 or err.code != NOT_FOUND_CODE:
        return None
    error = ApiError(code=NOT_FOUND_CODE, message=err.message, taskUUID=task_uuids[0])
    return TaskBatchResult(errors=[error])


def get_responses(hook: MiniMaxHook, task_uuids: Sequence[str]) -> TaskBatchResult:
    """:meth:`MiniMaxHook.get_responses`, with :func:`lone_not_found` applied.

    :param hook: the hook to poll with.
    :param task_uuids: the tasks to poll.
    """
    try:
        return hook.get_responses(task_uuids)
    except MiniMaxError as err:
        answer = lone_not_found(task_uuids, err)
        if answer is None:
            raise
        return answer


def classify(
    batch: TaskBatchResult,
    task_uuids: Iterable[str],
    number_results: int = 1,
    not_found_until: float | None = None,
) -> tuple[dict[str, list[TaskResult]], dict[str, ApiError], list[str]]:
    """Split tasks into finished (with results), failed (with the API's error) and still running.

    :param batch: one getResponse answer.
    :param task_uuids: the tasks to look at.
    :param number_results: results each task was submitted with.
    :param not_found_until: epoch until which ``taskFailedOrNotFound`` means still running.
    """
    progress = TaskProgress(list(task_uuids), number_results, not_found_until)
    progress.update(group_batch(batch))
    return progress.results, progress.errors, list(progress.pending)


def is_transient(error: BaseException) -> bool:
    """Whether a failed poll is worth another one later (counts against the failure budget).

    :param error: what the poll raised after the hook's own retries.
    """
    return isinstance(error, MiniMaxTransientError)


# ------------------------------------------------------------------------------------ sampling a large wait


def sample_of(pending: Sequence[str], size: int) -> Sequence[str]:
    """At most ``size`` of the pending tasks, spread evenly over them (all of them when they fit).

    Spread over the submission order, a sample finishes at the pace of the whole wait whether
    the API runs tasks first come, first served or in any order.

    :param pending: the tasks still running, in submission order.
    :param size: the most UUIDs to pick (one request's worth).
    """
    if len(pending) <= size:
        return pending
    return pending[:: -(-len(pending) // size)]


def pending_estimate(progress: TaskProgress, before: int, sampled: int) -> float | None:
    """After a poll of a sample: how many tasks are likely still running, or None to poll the rest now.

    The tasks not asked about are likely to have finished at the sample's pace. Once at least
    :data:`FULL_POLL_SHARE` of the sample finished, the rest is worth polling in the same tick.

    :param progress: the wait, updated with the sample's answer.
    :param before: tasks pending before the sample was polled.
    :param sampled: tasks in the sample (:func:`sample_of`).
    """
    unasked = before - sampled
    if not unasked:
        return len(progress.pending)
    share = (before - len(progress.pending)) / sampled
    if share >= FULL_POLL_SHARE:
        return None
    return len(progress.pending) - unasked * share


class TaskProgress:
    """What is known so far about tasks being waited on; builds the :class:`TasksOutcome`.

    :param task_uuids: every UUID waited on, in order (checked and normalised; a list that
        already is so is kept, and never changed).
    :param number_results: results each task was submitted with.
    :param not_found_until: epoch until which ``taskFailedOrNotFound`` reads as still running
        (the grace after an accepted submit); None: not found is a failure at once.
    """

    __slots__ = (
        "_errors",
        "_results",
        "not_found_until",
        "number_results",
        "pending",
        "progressed",
        "task_uuids",
    )

    def __init__(
        self, task_uuids: Sequence[str], number_results: int = 1, not_found_until: float | None = None
    ) -> None:
        self.task_uuids = normalise_task_uuids(task_uuids)
        self.number_results = number_results
        self.not_found_until = not_found_until
        # The same list until an update sees a task finish (never changed in place): one list less
        # per waiting trigger.
        self.pending: list[str] = self.task_uuids
        # Made at the first result or error: two empty dicts less per waiting trigger.
        self._results: dict[str, list[TaskResult]] | None = None
        self._errors: dict[str, ApiError] | None = None
        #: Whether the last update saw tasks finish or fail.
        self.progressed = False

    @property
    def results(self) -> dict[str, list[TaskResult]]:
        """The finished tasks' results by UUID (read-only: :meth:`update` fills it)."""
        return {} if self._results is None else self._results

    @property
    def errors(self) -> dict[str, ApiError]:
        """The failed tasks' errors by UUID (read-only: :meth:`update` fills it)."""
        return {} if self._errors is None else self._errors

    @property
    def done(self) -> bool:
        """Whether every task finished or failed."""
        return not self.pending

    def update(
        self, grouped: dict[str, TaskItems], now: float | None = None, since: int | None = None
    ) -> None:
        """Take in one poll's answer; finished and failed tasks leave ``pending``.

        :param grouped: the answer, as :func:`group_batch` indexed it.
        :param now: the epoch time of the answer, for the not-found grace (default: now).
        :param since: the pending count at the start of the tick this poll ends (the rest polled
            after a sample): ``progressed`` then covers the whole tick, the sample included.
        """
        until = self.not_found_until
        in_grace = until is not None and (time.time() if now is None else now) < until
        still: list[str] = []
        for task_uuid in self.pending:
            results, error = task_state(task_uuid, grouped.get(task_uuid), self.number_results)
            if results is not None:
                self._results = self.results
                self._results[task_uuid] = results
            elif error is not None and not (in_grace and is_not_found(error)):
                self._errors = self.errors
                self._errors[task_uuid] = error
            else:
                still.append(task_uuid)
        if len(still) < len(self.pending):
            self.pending, self.progressed = still, True
        else:  # keep the list: no new one per waiter and poll while nothing changes
            self.progressed = since is not None and len(still) < since

    def _outcome(self, **fields: object) -> TasksOutcome:
        return TasksOutcome(
            task_uuids=self.task_uuids,
            results=self.results,
            errors=self.errors,
            pending=self.pending,
            **fields,
        )

    def succeeded(self) -> TasksOutcome:
        """Every task finished: results and per-task errors."""
        return self._outcome(status="success")

    def timed_out(self, end_time: float) -> TasksOutcome:
        """The deadline passed; the message names the tasks still running.

        :param end_time: the deadline, epoch seconds.
        """
        deadline = datetime.fromtimestamp(end_time, tz=timezone.utc).isoformat(timespec="seconds")
        message = (
            f"{len(self.pending)} of {len(self.task_uuids)} MiniMax task(s) still running at the "
            f"deadline {deadline}: {abbreviate(self.pending, 20)}. They may still finish upstream; a retry "
            "re-attaches to them without paying again."
        )
        return self._outcome(status="timeout", message=message)

    def failed(self, error: BaseException) -> TasksOutcome:
        """Polling itself failed for good (revoked key, missing connection, API down past the budget).

        :param error: the last error; its code and HTTP status are kept, never a credential.
        """
        if isinstance(error, MiniMaxError):
            return self._outcome(
                status="error", message=str(error), code=error.code, status_code=error.status_code
            )
        return self._outcome(status="error", message=f"{type(error).__name__}: {error}")
