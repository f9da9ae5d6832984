"""MiniMaxTaskSensor: waits for async MiniMax tasks submitted elsewhere and returns their results."""

from __future__ import annotations

import ast
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import MiniMaxTaskFailedError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.lineage import LineageMixin
from airflow_provider_minimax.models import short_repr
from airflow_provider_minimax.poll_cadence import DEFAULT_NOT_FOUND_GRACE, check_cadence, seconds
from airflow_provider_minimax.polling import outcome_from_event, polling_error, require_task_api
from airflow_provider_minimax.results import Spend, Usage, result_json
from airflow_provider_minimax.task_progress import abbreviate, classify, get_responses
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_minimax.models import ApiError, TaskResult


class MiniMaxSensorTasksFailedError(MiniMaxTaskFailedError, AirflowFailException):
    """Some waited-on tasks finished with an error; retrying the sensor cannot change that.

    :param task_uuids: the tasks that failed.
    """

    def __init__(self, message: str, *, task_uuids: Sequence[str] = (), **kwargs: Any) -> None:
        self.task_uuids = list(task_uuids)
        super().__init__(message, **kwargs)


def __getattr__(name: str) -> Any:
    # The old name differed by one letter from MiniMaxTaskFailedError (its base class).
    if name == "MiniMaxTasksFailedError":
        warnings.warn(
            "MiniMaxTasksFailedError is deprecated; use MiniMaxSensorTasksFailedError",
            AirflowProviderDeprecationWarning,
            stacklevel=2,
        )
        return MiniMaxSensorTasksFailedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MiniMaxTaskSensor(LineageMixin, BaseSensorOperator):
    """Wait for async MiniMax tasks submitted elsewhere (e.g. with a webhook) and return their results.

    Poking calls getResponse once per poke (free). Deferrable, it checks once, then waits in the
    triggerer with :class:`~airflow_provider_minimax.triggers.minimax.MiniMaxTaskTrigger` until
    ``timeout`` seconds from now.

    Returns (XCom) ``{task_uuid: result}``, each ``result`` shaped like the XCom of
    ``MiniMaxTextInferenceOperator``: ``{"text", "finish_reason", "usage": {"prompt_tokens",
    "completion_tokens", "total_tokens", "thinking_tokens", ...}, "cost", "task_uuid"}``. With
    ``number_results > 1``, ``text`` and ``finish_reason`` are lists and ``usage``/``cost`` are
    summed; ``cost`` is None when the task was submitted without includeCost.

    When a task failed it raises :class:`MiniMaxSensorTasksFailedError` naming the UUIDs and the API's
    codes (with ``soft_fail`` the task is skipped instead, as for any sensor).

    :param task_uuids: the taskUUIDs (templated): a list, or a string holding one UUID, a
        comma-separated list or a JSON/Python list (as rendered from an XCom).
    :param conn_id: the ``minimax`` connection.
    :param number_results: results each task was submitted with.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poll_interval: deferrable: seconds before the trigger's first poll.
    :param max_poll_interval: deferrable: cap of the wait between polls (x1.5 each time); also the
        default ``poke_interval`` when poking.
    :param max_consecutive_failures: deferrable: transient poll failures in a row tolerated.
    :param not_found_grace: seconds (or a timedelta) from the sensor's first poke during which the
        API's ``taskFailedOrNotFound`` reads as "not visible yet" rather than a failure (default 120):
        a task submitted just before is not always visible to getResponse at once.
    """

    template_fields: Sequence[str] = ("task_uuids", "conn_id")
    ui_color = "#f6e3ff"

    def __init__(
        self,
        *,
        task_uuids: str | Sequence[str],
        conn_id: str = DEFAULT_CONN_ID,
        number_results: int = 1,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        max_consecutive_failures: int = 5,
        not_found_grace: float | timedelta = DEFAULT_NOT_FOUND_GRACE,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", max_poll_interval)
        super().__init__(**kwargs)
        check_cadence(poll_interval, max_poll_interval, number_results)
        grace = seconds(not_found_grace)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
            raise MiniMaxValidationError(
                f"not_found_grace must be >= 0 seconds, got {not_found_grace!r}", parameter="not_found_grace"
            )
        self.task_uuids = task_uuids
        self.conn_id = conn_id
        self.number_results = number_results
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_consecutive_failures = max_consecutive_failures
        #: What the last successful check returned (the XCom value), for lineage.
        self.results_json: dict[str, dict[str, Any]] | None = None
        self.not_found_grace = float(grace)
        #: Epoch until which not found means not visible yet, fixed at the first poke.
        self._not_found_until: float | None = None

    @cached_property
    def hook(self) -> MiniMaxHook:
        """The hook of ``conn_id``."""
        return MiniMaxHook(minimax_conn_id=self.conn_id)

    @property
    def uuids(self) -> list[str]:
        """The rendered ``task_uuids`` as a list, whatever form the template gave."""
        uuids = parse_task_uuids(self.task_uuids)
        if not uuids:
            raise MiniMaxValidationError(
                f"{self.task_id}: task_uuids rendered to no taskUUID: {self.task_uuids!r}",
                parameter="task_uuids",
            )
        return uuids

    def execute(self, context: Context) -> Any:
        """Poke, or check once and defer to the trigger."""
        require_task_api(self.hook, type(self).__name__)
        if not self.deferrable:
            return super().execute(context)
        try:
            done = self.poke(context)
        except AirflowFailException as err:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping: {err}") from err
            raise
        if isinstance(done, PokeReturnValue):
            return done.xcom_value
        self.defer(
            trigger=MiniMaxTaskTrigger(
                self.uuids,
                conn_id=self.conn_id,
                end_time=time.time() + self.timeout,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                number_results=self.number_results,
                max_consecutive_failures=self.max_consecutive_failures,
                not_found_until=self.not_found_until(context),
            ),
            method_name="execute_complete",
        )
        return None  # pragma: no cover - defer() raises

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One getResponse call: done when every task finished; raises when one failed."""
        uuids = self.uuids
        batch = get_responses(self.hook, uuids)
        results, errors, pending = classify(batch, uuids, self.number_results, self.not_found_until(context))
        if pending:
            self.log.info(
                "Waiting for %d of %d MiniMax task(s): %s", len(pending), len(uuids), abbreviate(pending)
            )
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(results, errors))

    def not_found_until(self, context: Context) -> float:
        """The epoch until which not found reads as pending: the grace from the first poke.

        In ``reschedule`` mode every poke is a new process, so the first poke is the first reschedule.

        :param context: the task context.
        """
        if self._not_found_until is None:
            started = time.time()
            ti = context.get("ti")
            if self.reschedule and ti is not None and hasattr(ti, "get_first_reschedule_date"):
                first = ti.get_first_reschedule_date(context)
                started = first.timestamp() if first is not None else started
            self._not_found_until = started + self.not_found_grace
        return self._not_found_until

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Resume after the trigger: return the results, or raise what its event says."""
        outcome = outcome_from_event(event)
        if outcome.status == "timeout":
            raise AirflowSensorTimeout(outcome.message or f"MiniMax tasks still running: {outcome.pending}")
        if outcome.status == "error":
            raise polling_error(outcome, ", ".join(outcome.task_uuids))
        return self._finish(outcome.results, outcome.errors)

    def _finish(
        self, results: Mapping[str, list[TaskResult]], errors: Mapping[str, ApiError]
    ) -> dict[str, dict[str, Any]]:
        if errors:
            described = "; ".join(f"{u}: {e.code}: {e.message or 'no message'}" for u, e in errors.items())
            first_uuid, first = next(iter(errors.items()))
            raise MiniMaxSensorTasksFailedError(
                f"{len(errors)} MiniMax task(s) failed: {described}",
                task_uuids=list(errors),
                code=first.code,
                task_uuid=first_uuid if len(errors) == 1 else None,
            )
        self.results_json = {u: result_json(u, items, self.number_results) for u, items in results.items()}
        return self.results_json

    def lineage_spend(self) -> Spend | None:
        """What the awaited tasks spent (submitted elsewhere: this sensor made no model call)."""
        found = self.results_json
        if found is None:
            return None
        costs = [v["cost"] for v in found.values() if v["cost"] is not None]
        return Spend.start(self.hook.settings, None).model_copy(
            update={
                "usage": sum((Usage.model_validate(v["usage"]) for v in found.values()), Usage()),
                "cost": sum(costs) if costs else None,
                "task_uuids": list(found),
            }
        )


def parse_task_uuids(value: str | Sequence[str]) -> list[str]:
    """Normalise a rendered ``task_uuids``: a list, or a string with one, several or a list literal.

    :param value: the rendered value.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(item) for item in _list_literal(text)]
        return [part for part in text.replace(",", " ").split() if part]
    return [str(item) for item in value]


def _list_literal(text: str) -> list[Any]:
    """A rendered list: JSON, or a Python list rendered by a non-native template.

    :param text: the rendered ``task_uuids``, starting with ``[``.
    :raises MiniMaxValidationError: naming ``task_uuids`` when it is neither (``"[oops"``).
    """
    try:
        parsed: Any = json.loads(text)  # "[" makes it a list when it parses
        return parsed
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        parsed = None
    if not isinstance(parsed, list):
        raise MiniMaxValidationError(
            f"task_uuids rendered to {short_repr(text)}, which is neither a list of taskUUIDs nor "
            "taskUUIDs separated by commas or spaces",
            parameter="task_uuids",
        )
    return parsed
