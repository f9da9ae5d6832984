"""Waiting on async tasks as an operator or sensor does: in the worker, and reading how a wait ended.

:func:`wait_for_tasks` polls in the worker (``deferrable=False``) at the cadence of
:mod:`~airflow_provider_minimax.poll_cadence`, reads answers by the rules of
:mod:`~airflow_provider_minimax.task_progress`, and ends with the same
:class:`~airflow_provider_minimax.results.TasksOutcome` as the
:class:`~airflow_provider_minimax.triggers.minimax.MiniMaxTaskTrigger` event, which
:func:`outcome_from_event` and :func:`results_of` read back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from airflow_provider_minimax.exceptions import (
    MiniMaxConfigurationError,
    MiniMaxError,
    MiniMaxTaskFailedError,
    MiniMaxTimeoutError,
)
from airflow_provider_minimax.hooks.responses import error_type
from airflow_provider_minimax.models import TaskResult
from airflow_provider_minimax.poll_cadence import check_cadence, next_interval, progress_delay
from airflow_provider_minimax.results import TasksOutcome
from airflow_provider_minimax.task_progress import (
    TaskProgress,
    abbreviate,
    get_responses,
    group_batch,
    is_transient,
    pending_estimate,
    sample_of,
)

if TYPE_CHECKING:
    from airflow_provider_minimax.hooks.minimax import MiniMaxHook

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------ worker waiter


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
    clock: Callable[[], float] = time.time,
    on_progress: Callable[[TaskProgress], None] | None = None,
) -> TasksOutcome:
    """Poll in the worker (``deferrable=False``) at the trigger's cadence; same result shape as its event.

    Only tasks still running are polled again, at the pace their progress predicts
    (:func:`~airflow_provider_minimax.poll_cadence.progress_delay`). While more tasks are pending
    than one request carries, a tick first polls a sample spread over them (one request), and
    polls the rest only once the sample says most of them finished (:func:`poll_tick`): a batch
    of N tasks costs about N / ``max_tasks_per_request`` requests plus one per tick, however
    early its first ticks come. Transient failures (after the hook's retries) count against
    ``max_consecutive_failures``; any other failure ends the wait at once.

    :param hook: the hook to poll with.
    :param task_uuids: the tasks to wait on.
    :param end_time: the deadline, epoch seconds.
    :param poll_interval: seconds before the first poll.
    :param max_poll_interval: the cap of the wait between polls.
    :param number_results: results each task was submitted with.
    :param max_consecutive_failures: failed polls in a row tolerated before giving up.
    :param not_found_until: epoch until which ``taskFailedOrNotFound`` means still running.
    :param clock: the epoch clock (tests pass a fake one, moved by their stand-in for ``time.sleep``).
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
        time.sleep(min(delay, remaining))
        if clock() >= end_time:
            break
        try:
            estimate = poll_tick(hook, progress, clock)
        except MiniMaxError as err:
            failures += 1
            if not is_transient(err) or failures >= max_consecutive_failures:
                return progress.failed(err)
            log.warning("Polling MiniMax failed (%d of %d): %s", failures, max_consecutive_failures, err)
            delay = next_interval(delay, max_poll_interval)
            continue
        failures = 0
        if on_progress is not None:
            on_progress(progress)
        if progress.done:
            return progress.succeeded()
        log.info("%d MiniMax task(s) still running: %s", len(progress.pending), abbreviate(progress.pending))
        delay = progress_delay(progress, clock() - started, delay, poll_interval, max_poll_interval, estimate)
    return progress.timed_out(end_time)


def poll_tick(hook: MiniMaxHook, progress: TaskProgress, clock: Callable[[], float]) -> float:
    """One tick of :func:`wait_for_tasks`: a sample of the pending tasks, then the rest if most finished.

    :param hook: the hook to poll with.
    :param progress: the wait's progress, updated in place.
    :param clock: the epoch clock.
    :return: how many tasks are estimated still running (exact unless only a sample was polled).
    """
    before = len(progress.pending)
    sample = sample_of(progress.pending, hook.settings.max_tasks_per_request)
    progress.update(group_batch(get_responses(hook, sample)), clock())
    estimate = pending_estimate(progress, before, len(sample))
    if estimate is not None:
        return estimate
    progress.update(group_batch(get_responses(hook, progress.pending)), clock(), since=before)
    return len(progress.pending)


# ------------------------------------------------------------------------------------ how a wait ended


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
