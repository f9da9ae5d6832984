"""Waiting on async tasks: the poll cadence, reading getResponse answers, and the worker-side waiter.

The pure pieces here are shared by :class:`~airflow_provider_minimax.triggers.minimax.MiniMaxTaskTrigger`
(through the shared poller), the worker-side :func:`wait_for_tasks` and the sensor, so all three
poll at the same cadence, call a task finished by the same rule and report the same
:class:`~airflow_provider_minimax.results.TasksOutcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from airflow_provider_minimax.exceptions import (
    MiniMaxConfigurationError,
    MiniMaxError,
    MiniMaxTaskFailedError,
    MiniMaxTimeoutError,
    MiniMaxTransientError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.hooks.responses import NOT_FOUND_CODE, error_type
from airflow_provider_minimax.models import ApiError, TaskResult, TaskUUID
from airflow_provider_minimax.results import TaskBatchResult, TasksOutcome

if TYPE_CHECKING:
    from airflow_provider_minimax.hooks.minimax import MiniMaxHook

log = logging.getLogger(__name__)

#: Each wait is this much longer than the previous one, up to ``max_poll_interval`` (the contract's x1.5).
BACKOFF_FACTOR = 1.5

#: Seconds a task we know was accepted (our submit's acknowledgement, or ``conflictTaskUUID``) may
#: read as ``taskFailedOrNotFound`` and still count as running: the submit and poll paths are
#: only eventually consistent. Past it, not found is a failure.
DEFAULT_NOT_FOUND_GRACE = 120.0

#: What one getResponse answer says about one task: (items, error) as grouped by :func:`group_batch`.
TaskItems = tuple[list[TaskResult], ApiError | None]

_TASK_UUIDS: TypeAdapter[list[str]] = TypeAdapter(list[TaskUUID])


def normalise_task_uuids(task_uuids: Iterable[str]) -> list[str]:
    """Check that every taskUUID is a UUID v4 and spell it as the API echoes it (lower case), once.

    :param task_uuids: the UUIDs; duplicates are dropped, order kept.
    """
    given = list(task_uuids)
    try:
        checked = _TASK_UUIDS.validate_python(given)
    except ValidationError as err:
        problem = err.errors()[0]
        raise MiniMaxValidationError(
            f"Invalid taskUUID {problem.get('input')!r}: {problem['msg']}", parameter="task_uuids"
        ) from None
    # The caller's string where it already was canonical: one copy of each UUID in memory (a
    # triggerer holds thousands).
    return list(dict.fromkeys(g if g == c else c for g, c in zip(given, checked, strict=True)))


# ------------------------------------------------------------------------------------ settings


def seconds(value: float | timedelta) -> float:
    """A duration parameter given as seconds or a timedelta, in seconds (validated by the caller).

    :param value: the parameter.
    """
    return value.total_seconds() if isinstance(value, timedelta) else value


def refuse_bool(value: Any) -> Any:
    """A pydantic ``before`` validator for numbers: ``True`` is not 1 here (a typo, never meant).

    :param value: the raw value.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not a boolean ({value})")
    return value


class WaitOptions(BaseModel):
    """How an operator waits for async tasks, checked before its first HTTP call (extended per operator)."""

    model_config = ConfigDict(extra="forbid")

    poll_interval: float = Field(gt=0)
    max_poll_interval: float = Field(gt=0)
    wait_timeout: float = Field(gt=0)
    not_found_grace: float = Field(ge=0)

    _numbers = field_validator(
        "poll_interval", "max_poll_interval", "wait_timeout", "not_found_grace", mode="before"
    )(refuse_bool)

    @model_validator(mode="after")
    def _cadence(self) -> Self:
        if self.max_poll_interval < self.poll_interval:
            raise ValueError(
                f"max_poll_interval ({self.max_poll_interval}) must be >= "
                f"poll_interval ({self.poll_interval})"
            )
        return self


def require_task_api(hook: MiniMaxHook, who: str) -> None:
    """Refuse a connection on the chat API where the task API is needed (reads it; no HTTP call).

    :param hook: the hook of the operator's connection.
    :param who: the operator or sensor, for the message.
    """
    api = hook.settings.api
    if api != "task":
        raise MiniMaxConfigurationError(
            f"{who} needs a connection on the task API (extra.api = 'task'), but connection "
            f"{hook.minimax_conn_id!r} is on the {api} API; use another connection, or "
            "MiniMaxChatOperator for the chat API"
        )


# ------------------------------------------------------------------------------------ cadence


def check_cadence(poll_interval: float, max_poll_interval: float, number_results: int = 1) -> None:
    """Refuse timing that would poll in a busy loop or never grow; raises ``ValueError``.

    :param poll_interval: seconds before the first poll.
    :param max_poll_interval: the cap of the wait between polls.
    :param number_results: results per task (1..4).
    """
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
    if max_poll_interval < poll_interval:
        raise ValueError(
            f"max_poll_interval ({max_poll_interval}) must be >= poll_interval ({poll_interval})"
        )
    if not 1 <= number_results <= 4:
        raise ValueError(f"number_results must be 1..4, got {number_results}")


def next_interval(interval: float, max_poll_interval: float) -> float:
    """The wait after ``interval``: x1.5, capped.

    :param interval: the wait just used.
    :param max_poll_interval: the cap.
    """
    return min(interval * BACKOFF_FACTOR, max_poll_interval)


def poll_delays(poll_interval: float, max_poll_interval: float) -> Iterator[float]:
    """The waits before each poll, forever: ``poll_interval``, then x1.5 up to ``max_poll_interval``.

    :param poll_interval: the wait before the first poll (~1 s by the contract).
    :param max_poll_interval: the cap (~10 s by the contract).
    """
    interval = min(poll_interval, max_poll_interval)
    while True:
        yield interval
        interval = next_interval(interval, max_poll_interval)


def progress_delay(
    progress: TaskProgress, elapsed: float, last_wait: float, poll_interval: float, max_poll_interval: float
) -> float:
    """The wait before the next poll, predicted from the tasks finished so far.

    Once some tasks finished, the rate they finish at predicts when the rest will be done: the
    next poll is then (at most ``max_poll_interval`` away), so a batch's last tasks are seen about
    one ``poll_interval`` after they finish instead of one grown back-off later, and no poll is
    spent while little can have changed. Past the prediction, the wait is ``poll_interval`` while
    tasks keep finishing; it grows x1.5 once a poll finds none finished (stragglers), and while
    nothing finished yet.

    :param progress: what is known about the tasks.
    :param elapsed: seconds since the wait started.
    :param last_wait: the wait that led to the poll just made.
    :param poll_interval: the shortest wait.
    :param max_poll_interval: the cap of the wait.
    """
    finished = len(progress.task_uuids) - len(progress.pending)
    if finished <= 0 or elapsed <= 0:
        return next_interval(last_wait, max_poll_interval)
    eta = len(progress.pending) * elapsed / finished
    if eta > poll_interval:
        return min(max_poll_interval, eta)
    # Due by now: short waits while the last ones keep finishing, growing once they stop (stragglers).
    return poll_interval if progress.progressed else next_interval(last_wait, max_poll_interval)


# ------------------------------------------------------------------------------------ classification


def group_batch(batch: TaskBatchResult) -> dict[str, TaskItems]:
    """Index one getResponse answer by taskUUID, in one pass (the poller reads it for many waiters).

    :param batch: what :meth:`MiniMaxHook.aget_responses` returned.
    """
    grouped: dict[str, TaskItems] = {}
    for item in batch.results:
        items, error = grouped.get(item.task_uuid, ([], None))
        items.append(item)
        grouped[item.task_uuid] = (items, error)
    for error in batch.errors:
        if error.task_uuid:
            items, earlier = grouped.get(error.task_uuid, ([], None))
            grouped[error.task_uuid] = (items, earlier or error)
    return grouped


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


class TaskProgress:
    """What is known so far about tasks being waited on; builds the :class:`TasksOutcome`.

    :param task_uuids: every UUID waited on, in order (checked and normalised).
    :param number_results: results each task was submitted with.
    :param not_found_until: epoch until which ``taskFailedOrNotFound`` reads as still running
        (the grace after an accepted submit); None: not found is a failure at once.
    """

    __slots__ = (
        "errors",
        "not_found_until",
        "number_results",
        "pending",
        "progressed",
        "results",
        "task_uuids",
    )

    def __init__(
        self, task_uuids: Sequence[str], number_results: int = 1, not_found_until: float | None = None
    ) -> None:
        self.task_uuids = normalise_task_uuids(task_uuids)
        self.number_results = number_results
        self.not_found_until = not_found_until
        # The same list until the first update replaces it (never changed in place): one list less
        # per waiting trigger.
        self.pending: list[str] = self.task_uuids
        self.results: dict[str, list[TaskResult]] = {}
        self.errors: dict[str, ApiError] = {}
        #: Whether the last update saw tasks finish or fail.
        self.progressed = False

    @property
    def done(self) -> bool:
        """Whether every task finished or failed."""
        return not self.pending

    def update(self, grouped: dict[str, TaskItems], now: float | None = None) -> None:
        """Take in one poll's answer; finished and failed tasks leave ``pending``.

        :param grouped: the answer, as :func:`group_batch` indexed it.
        :param now: the epoch time of the answer, for the not-found grace (default: now).
        """
        until = self.not_found_until
        in_grace = until is not None and (time.time() if now is None else now) < until
        still: list[str] = []
        for task_uuid in self.pending:
            results, error = task_state(task_uuid, grouped.get(task_uuid), self.number_results)
            if results is not None:
                self.results[task_uuid] = results
            elif error is not None and not (in_grace and is_not_found(error)):
                self.errors[task_uuid] = error
            else:
                still.append(task_uuid)
        self.progressed = len(still) < len(self.pending)
        self.pending = still

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


# ------------------------------------------------------------------------------------ worker waiter


def abbreviate(items: Sequence[str], limit: int = 5) -> str:
    """A list for a log line: the first few items, then how many more.

    :param items: what to list.
    :param limit: how many to name.
    """
    named = ", ".join(items[:limit])
    return named if len(items) <= limit else f"{named} and {len(items) - limit} more"


def wait_for_tasks(
    hook: MiniMaxHook,
    task_uuids: Sequence[str],
    *,
    end_time: float,
    poll_interval: float = 1.0,
    max_poll_interval: float = 10.0,
    number_results: int = 1,
    max_consecutive_failures: int = 5,
    not_found_until: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    on_progress: Callable[[TaskProgress], None] | None = None,
) -> TasksOutcome:
    """Poll in the worker (``deferrable=False``) at the trigger's cadence; same result shape as its event.

    Only tasks still running are polled again, at the pace their progress predicts
    (:func:`progress_delay`). Transient failures (after the hook's retries)
    count against ``max_consecutive_failures``; any other failure ends the wait at once.

    :param hook: the hook to poll with.
    :param task_uuids: the tasks to wait on.
    :param end_time: the deadline, epoch seconds.
    :param poll_interval: seconds before the first poll.
    :param max_poll_interval: the cap of the wait between polls.
    :param number_results: results each task was submitted with.
    :param max_consecutive_failures: failed polls in a row tolerated before giving up.
    :param not_found_until: epoch until which ``taskFailedOrNotFound`` means still running.
    :param sleep: the sleep function (tests pass a fake one).
    :param clock: the epoch clock (tests pass a fake one).
    :param on_progress: called after every successful poll, e.g. to log a progress line.
    """
    check_cadence(poll_interval, max_poll_interval, number_results)
    progress = TaskProgress(task_uuids, number_results, not_found_until)
    failures = 0
    started, delay = clock(), min(poll_interval, max_poll_interval)
    while True:
        remaining = end_time - clock()
        if remaining <= 0:
            break
        sleep(min(delay, remaining))
        if clock() >= end_time:
            break
        try:
            batch = get_responses(hook, progress.pending)
        except MiniMaxError as err:
            failures += 1
            if not is_transient(err) or failures >= max_consecutive_failures:
                return progress.failed(err)
            log.warning("Polling MiniMax failed (%d of %d): %s", failures, max_consecutive_failures, err)
            delay = next_interval(delay, max_poll_interval)
            continue
        failures = 0
        progress.update(group_batch(batch), clock())
        if on_progress is not None:
            on_progress(progress)
        if progress.done:
            return progress.succeeded()
        log.info("%d MiniMax task(s) still running: %s", len(progress.pending), abbreviate(progress.pending))
        delay = progress_delay(progress, clock() - started, delay, poll_interval, max_poll_interval)
    return progress.timed_out(end_time)


def outcome_from_event(event: Any) -> TasksOutcome:
    """Read a :class:`MiniMaxTaskTrigger` event; anything else is a clear error.

    :param event: the event payload.
    """
    try:
        return TasksOutcome.model_validate(event)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise MiniMaxError(
            f"Unexpected trigger event (expected a MiniMaxTaskTrigger outcome): {problems}"
        ) from None


def results_of(outcome: TasksOutcome) -> list[TaskResult]:
    """The results of the (single) task waited on; a timeout, failure or polling error raises.

    :param outcome: how the wait ended.
    """
    uuids = ", ".join(outcome.task_uuids)
    if outcome.status == "timeout":
        pending = outcome.pending or outcome.task_uuids
        raise MiniMaxTimeoutError(
            f"MiniMax task(s) {', '.join(pending)} did not finish before the deadline"
            f"{f' ({outcome.message})' if outcome.message else ''}; they keep running upstream, "
            "and a retry re-attaches to them instead of paying again",
            task_uuids=pending,
        )
    if outcome.status == "error":
        raise polling_error(outcome, uuids)
    for task_uuid in outcome.task_uuids:
        error = outcome.errors.get(task_uuid)
        if error is not None:
            raise MiniMaxTaskFailedError(
                f"MiniMax task {task_uuid} failed: {error.code}: {error.message or 'no message'}",
                code=error.code,
                task_uuid=task_uuid,
            )
    results = outcome.results.get(outcome.task_uuids[0]) if outcome.task_uuids else None
    if not results:
        raise MiniMaxError(f"The wait for MiniMax task(s) {uuids or '(none)'} ended with no results")
    return results


def polling_error(outcome: TasksOutcome, uuids: str) -> MiniMaxError:
    """The typed error of a wait that ended because polling itself failed (auth, failure budget).

    :param outcome: the ``error`` outcome.
    :param uuids: the UUIDs waited on, for the message.
    """
    cls = error_type(outcome.status_code, outcome.code)
    return cls(
        f"Polling MiniMax task(s) {uuids} failed: {outcome.message or 'no message'}",
        status_code=outcome.status_code,
        code=outcome.code,
        task_uuid=outcome.task_uuids[0] if len(outcome.task_uuids) == 1 else None,
    )
