"""Protocol-neutral results the hook returns above the wire models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from airflow_provider_minimax.models import ApiError, TaskResult


class Usage(BaseModel):
    """Token usage, the same shape for both APIs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class GenerateResult(BaseModel):
    """One answer from either API: text without the think block, reasoning kept apart.

    :param text: the answer.
    :param reasoning: the model's reasoning, when it gave one.
    :param usage: tokens spent.
    :param cost: the price in USD when the API reports it (task API with includeCost).
    :param finish_reason: why generation stopped (``stop``, ``length``, ``tool_calls``...).
    :param model: the model that answered.
    :param task_uuid: the taskUUID (task API only).
    :param raw_content: the assistant content exactly as received, for multi-turn replay.
    """

    text: str
    reasoning: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost: float | None = None
    finish_reason: str | None = None
    model: str | None = None
    task_uuid: str | None = None
    raw_content: str | None = None


class TaskBatchResult(BaseModel):
    """What a multi-task request returned: successes and per-task errors, none dropped.

    :param results: every ``data`` item (acknowledgements, statuses or results), in order.
    :param errors: errors scoped to one taskUUID (``conflictTaskUUID`` excluded on submit).
    :param already_accepted: UUIDs the API had already accepted (``conflictTaskUUID``): poll them.
    """

    results: list[TaskResult] = Field(default_factory=list)
    errors: list[ApiError] = Field(default_factory=list)
    already_accepted: list[str] = Field(default_factory=list)
    # The HTTP status each task's error came with (a 400 carrying scoped errors), for typed errors.
    _http_statuses: dict[str, int] = PrivateAttr(default_factory=dict)

    def extend(self, other: TaskBatchResult) -> None:
        """Add another chunk's outcome to this one."""
        self.results.extend(other.results)
        self.errors.extend(other.errors)
        self.already_accepted.extend(other.already_accepted)
        self._http_statuses.update(other._http_statuses)

    def note_http_status(self, status_code: int) -> None:
        """Remember the HTTP status the scoped errors of this response came with.

        :param status_code: the response's status.
        """
        for error in self.errors:
            if error.task_uuid:
                self._http_statuses[error.task_uuid] = status_code

    def http_status_for(self, task_uuid: str) -> int | None:
        """The HTTP status that came with a task's error, when it was not 2xx."""
        return self._http_statuses.get(task_uuid)

    def results_for(self, task_uuid: str) -> list[TaskResult]:
        """The items of one task, ordered by ``resultIndex``."""
        items = [r for r in self.results if r.task_uuid == task_uuid]
        return sorted(items, key=lambda r: r.result_index or 0)

    def error_for(self, task_uuid: str) -> ApiError | None:
        """The error of one task: a top-level ``errors`` entry or an item's ``status: error``."""
        for error in self.errors:
            if error.task_uuid == task_uuid:
                return error
        for item in self.results_for(task_uuid):
            if item.status == "error":
                return item.error or ApiError(code="unknown", message="task failed", taskUUID=task_uuid)
        return None

    def to_jsonable(self) -> dict[str, Any]:
        """Plain JSON, for XCom and trigger events."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class TasksOutcome(BaseModel):
    """How waiting on async tasks ended: the trigger's event payload and the worker poller's result.

    :param status: ``success`` (every task finished, each with results or an error),
        ``timeout`` (the deadline passed; ``pending`` names the tasks still running) or
        ``error`` (polling itself failed, e.g. the key was revoked).
    :param task_uuids: every UUID waited on, in order.
    :param results: finished results per UUID, ordered by ``resultIndex``.
    :param errors: the error of each task that failed.
    :param pending: UUIDs not finished at the deadline.
    :param message: what happened, for ``timeout`` and ``error``.
    :param code: the API's error code, for ``error``.
    :param status_code: the HTTP status, for ``error``.
    """

    model_config = ConfigDict(extra="forbid")

    status: Literal["success", "timeout", "error"]
    task_uuids: list[str]
    results: dict[str, list[TaskResult]] = Field(default_factory=dict)
    errors: dict[str, ApiError] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)
    message: str | None = None
    code: str | None = None
    status_code: int | None = None

    def to_event(self) -> dict[str, Any]:
        """Plain JSON for a TriggerEvent or XCom."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
