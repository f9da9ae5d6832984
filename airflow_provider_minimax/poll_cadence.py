"""When to poll async tasks: the one cadence rule, the wait options built on it, and the waits between polls.

:class:`PollCadence` owns the rule (``poll_interval > 0``, ``max_poll_interval >= poll_interval``).
The operators check it by building :class:`WaitOptions`; the trigger, the shared poller, the
sensor and :func:`~airflow_provider_minimax.polling.wait_for_tasks` by :func:`check_cadence`.
Either way a bad value is a :class:`~airflow_provider_minimax.exceptions.MiniMaxValidationError`
naming the field and the bound, before any HTTP call.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from airflow_provider_minimax.hooks.request_building import validation_error
from airflow_provider_minimax.models import refuse_bool

if TYPE_CHECKING:
    from airflow_provider_minimax.task_progress import TaskProgress

#: Each wait is this much longer than the previous one, up to ``max_poll_interval`` (the contract's x1.5).
BACKOFF_FACTOR = 1.5

#: Seconds a task we know was accepted (our submit's acknowledgement, or ``conflictTaskUUID``) may
#: read as ``taskFailedOrNotFound`` and still count as running: the submit and poll paths are
#: only eventually consistent. Past it, not found is a failure.
DEFAULT_NOT_FOUND_GRACE = 120.0


def seconds(value: float | timedelta) -> float:
    """A duration parameter given as seconds or a timedelta, in seconds (validated by the caller).

    :param value: the parameter.
    """
    return value.total_seconds() if isinstance(value, timedelta) else value


# ------------------------------------------------------------------------------------ the rule


class PollCadence(BaseModel):
    """How often a wait polls: never in a busy loop, and with room for the waits to grow.

    :param poll_interval: seconds before the first poll (> 0).
    :param max_poll_interval: the cap of the wait between polls (>= ``poll_interval``).
    """

    model_config = ConfigDict(extra="forbid")

    poll_interval: float = Field(gt=0)
    max_poll_interval: float = Field(gt=0)

    _cadence_numbers = field_validator("poll_interval", "max_poll_interval", mode="before")(refuse_bool)

    @field_validator("max_poll_interval")
    @classmethod
    def _not_below_the_first_wait(cls, value: float, info: ValidationInfo) -> float:
        first = info.data.get("poll_interval")  # absent when it was refused already
        if first is not None and value < first:
            raise ValueError(f"must be >= poll_interval ({first})")
        return value


class WaitOptions(PollCadence):
    """How an operator waits for async tasks, checked before its first HTTP call (extended per operator)."""

    wait_timeout: float = Field(gt=0)
    not_found_grace: float = Field(ge=0)

    _wait_numbers = field_validator("wait_timeout", "not_found_grace", mode="before")(refuse_bool)


class _TaskWait(PollCadence):
    """The cadence of a wait on tasks with ``number_results`` results each (see :func:`check_cadence`)."""

    number_results: int = Field(ge=1, le=4)


def check_cadence(poll_interval: float, max_poll_interval: float, number_results: int = 1) -> None:
    """Refuse timing that would poll in a busy loop or never grow, before any HTTP call.

    Strict: these values arrive as numbers (never rendered text), and a string or a boolean
    here is a mistake to report now rather than a ``TypeError`` deep inside a wait.

    :param poll_interval: seconds before the first poll.
    :param max_poll_interval: the cap of the wait between polls.
    :param number_results: results per task (1..4).
    :raises MiniMaxValidationError: naming the field and the bound (also a ``ValueError``).
    """
    fields = {
        "poll_interval": poll_interval,
        "max_poll_interval": max_poll_interval,
        "number_results": number_results,
    }
    try:
        _TaskWait.model_validate(fields, strict=True)
    except ValidationError as err:
        raise validation_error(err, "poll timing") from None


# ------------------------------------------------------------------------------------ the waits


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
    progress: TaskProgress,
    elapsed: float,
    last_wait: float,
    poll_interval: float,
    max_poll_interval: float,
    pending: float | None = None,
) -> float:
    """The wait before the next poll, predicted from the tasks finished so far.

    Once some tasks finished, the rate they finish at predicts when the rest will be done: the
    next poll is then (at most ``max_poll_interval`` away, and no further ahead than the rate was
    seen over), so a batch's last tasks are seen about one ``poll_interval`` after they finish
    instead of one grown back-off later, and no poll is spent while little can have changed.
    Past the prediction, the wait is ``poll_interval`` while tasks keep finishing; it grows x1.5
    once a poll finds none finished (stragglers), and while nothing finished yet.

    :param progress: what is known about the tasks.
    :param elapsed: seconds since the wait started.
    :param last_wait: the wait that led to the poll just made.
    :param poll_interval: the shortest wait.
    :param max_poll_interval: the cap of the wait.
    :param pending: how many tasks are estimated still running, when the last poll asked only a
        sample of them (:func:`~airflow_provider_minimax.task_progress.pending_estimate`); default:
        every task not seen finished.
    """
    if pending is None:
        pending = len(progress.pending)
    finished = len(progress.task_uuids) - pending
    if finished <= 0 or elapsed <= 0:
        return next_interval(last_wait, max_poll_interval)
    eta = pending * elapsed / finished
    if eta > poll_interval:
        # A rate seen over `elapsed` seconds predicts no further than that much ahead (the first
        # tasks' own latency skews an early one): measure it again by then.
        return min(max_poll_interval, eta, max(poll_interval, elapsed))
    # Due by now: short waits while the last ones keep finishing, growing once they stop (stragglers).
    return poll_interval if progress.progressed else next_interval(last_wait, max_poll_interval)
