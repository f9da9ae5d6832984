"""Protocol-neutral results the hook returns above the wire models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from airflow_provider_minimax.models import (
    ApiError,
    ChatCompletion,
    ChatUsage,
    TaskResult,
    TaskUsage,
    split_think,
)

if TYPE_CHECKING:
    from airflow_provider_minimax.connection import MiniMaxConnectionSettings


def _add_counts(left: int | None, right: int | None) -> int | None:
    """Sum two counters an API may leave out: unreported + n is n, unreported twice stays None."""
    if left is None:
        return right
    if right is None:
        return left
    return left + right


class Usage(BaseModel):
    """Token usage, the same shape for both APIs; a counter the API did not send stays None.

    :param prompt_tokens: input tokens.
    :param completion_tokens: output tokens, reasoning included.
    :param total_tokens: prompt plus completion.
    :param thinking_tokens: task API ``thinkingTokens``: the part of the completion spent thinking.
    :param cached_tokens: chat API ``prompt_tokens_details.cached_tokens``: prompt tokens read
        from the prompt cache.
    :param reasoning_tokens: chat API ``completion_tokens_details.reasoning_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    thinking_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            thinking_tokens=_add_counts(self.thinking_tokens, other.thinking_tokens),
            cached_tokens=_add_counts(self.cached_tokens, other.cached_tokens),
            reasoning_tokens=_add_counts(self.reasoning_tokens, other.reasoning_tokens),
        )

    @classmethod
    def of_task(cls, usage: TaskUsage | None) -> Usage:
        """A task-API usage object (``None`` when the API sent none).

        :param usage: the result's ``usage``.
        """
        if usage is None:
            return cls()
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            thinking_tokens=usage.thinking_tokens,
        )

    @classmethod
    def of_chat(cls, usage: ChatUsage | None) -> Usage:
        """A chat-API usage object (``None`` when the API sent none).

        :param usage: the completion's ``usage``.
        """
        if usage is None:
            return cls()
        prompt_details, completion_details = usage.prompt_tokens_details, usage.completion_tokens_details
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_tokens=prompt_details.cached_tokens if prompt_details else None,
            reasoning_tokens=completion_details.reasoning_tokens if completion_details else None,
        )

    def by_kind(self) -> str:
        """Tokens by kind for a log line, naming only the counters the API sent."""
        prompt = f"{self.prompt_tokens} prompt"
        if self.cached_tokens is not None:
            prompt += f" ({self.cached_tokens} cached)"
        completion = f"{self.completion_tokens} completion"
        thought = [
            f"{n} {kind}"
            for kind, n in (("thinking", self.thinking_tokens), ("reasoning", self.reasoning_tokens))
            if n is not None
        ]
        if thought:
            completion += f" ({', '.join(thought)})"
        return f"{self.total_tokens} tokens = {prompt} + {completion}"


class Prices(BaseModel):
    """Chat-API prices in USD per million tokens, from the connection; the gateway reports no cost.

    :param input: per million prompt tokens.
    :param cached_input: per million cached prompt tokens (the input price when not set).
    :param output: per million completion tokens.
    """

    input: float | None = None
    cached_input: float | None = None
    output: float | None = None

    def estimate(self, usage: Usage) -> float | None:
        """The cost of ``usage`` in USD; None unless both the input and the output price are set.

        :param usage: tokens spent.
        """
        if self.input is None or self.output is None:
            return None
        cached = usage.cached_tokens or 0
        cached_price = self.input if self.cached_input is None else self.cached_input
        micro = (usage.prompt_tokens - cached) * self.input + cached * cached_price
        return round((micro + usage.completion_tokens * self.output) / 1_000_000, 10)


def spend_summary(
    api: str, calls: int, usage: Usage, cost: float | None, *, estimated: bool, resends: int = 0
) -> str:
    """The one summary line a task logs: calls, tokens by kind, cost and where the cost comes from.

    :param api: ``task`` or ``chat``.
    :param calls: model calls (or rows) made.
    :param usage: tokens spent.
    :param cost: USD, or None.
    :param estimated: whether ``cost`` was computed from the connection's prices.
    :param resends: chat requests resent after a lost answer (each may have been billed twice).
    """
    if cost is None:
        money = "cost n/a" + (" (set the connection's price_per_million_* extras)" if api == "chat" else "")
    elif estimated:
        money = f"cost ~${cost:.6f} (estimate from the connection's prices)"
    else:
        money = f"cost ${cost:.6f} (reported by the API)"
    line = f"MiniMax {api} API: {calls} call(s), {usage.by_kind()}, {money}"
    if resends:
        line += f"; {resends} chat request(s) resent after a lost answer (each may have been billed twice)"
    return line


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


class Spend(BaseModel):
    """What one task spent over all its calls (re-asks, tool rounds, rows), for the log and lineage.

    :param api: ``task`` or ``chat``.
    :param host: the API's host (never credentials).
    :param model: the model asked.
    :param prompt_hash: SHA-256 of the rendered prompt template (see :mod:`..lineage`).
    :param calls: model calls made (rows, for a batch).
    :param usage: tokens spent.
    :param cost: USD: reported by the task API, estimated from the connection's prices on the chat API.
    :param cost_estimated: whether ``cost`` is an estimate from the connection's prices.
    :param task_uuids: the task API's taskUUIDs.
    :param resends: chat requests resent after a lost answer (extra ``chat_retry_on_read_timeout``).
    """

    api: str
    host: str
    model: str | None = None
    prompt_hash: str | None = None
    calls: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost: float | None = None
    cost_estimated: bool = False
    task_uuids: list[str] = Field(default_factory=list)
    resends: int = 0

    @classmethod
    def start(
        cls, settings: MiniMaxConnectionSettings, model: str | None, prompt_hash: str | None = None
    ) -> Spend:
        """Nothing spent yet.

        :param settings: the connection's settings.
        :param model: the operator's model (the connection's default when None).
        :param prompt_hash: the rendered prompt template's hash.
        """
        return cls(
            api=settings.api, host=settings.host, model=model or settings.model, prompt_hash=prompt_hash
        )

    def add(self, result: GenerateResult) -> GenerateResult:
        """Count one call's result and hand it back.

        :param result: the call's result.
        """
        self.usage = self.usage + result.usage
        if result.cost is not None:
            self.cost = (self.cost or 0.0) + result.cost
        if result.task_uuid:
            self.task_uuids.append(result.task_uuid)
        self.calls += 1
        return result

    def estimate_cost(self, prices: Prices) -> None:
        """On the chat API, which reports no cost, set ``cost`` from the connection's prices.

        :param prices: the connection's prices.
        """
        if self.api == "chat":
            self.cost = prices.estimate(self.usage)
            self.cost_estimated = self.cost is not None

    def summary(self) -> str:
        """The task's one summary log line."""
        return spend_summary(
            self.api, self.calls, self.usage, self.cost, estimated=self.cost_estimated, resends=self.resends
        )


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


def task_usage(item: TaskResult) -> Usage:
    """A task result's usage in the protocol-neutral shape.

    :param item: the finished result.
    """
    return Usage.of_task(item.usage)


def result_json(task_uuid: str, items: Sequence[TaskResult], number_results: int = 1) -> dict[str, Any]:
    """One finished task as plain JSON for XCom, shaped like MiniMaxTextInferenceOperator's XCom.

    :param task_uuid: the task.
    :param items: its results, ordered by ``resultIndex``.
    :param number_results: results it was submitted with: more than 1 makes ``text`` a list.
    """
    usage = sum((task_usage(item) for item in items), Usage())
    costs = [item.cost for item in items if item.cost is not None]
    texts = [split_think(item.text)[0] for item in items]
    reasons = [item.finish_reason for item in items]
    return {
        "text": texts[0] if number_results == 1 else texts,
        "finish_reason": reasons[0] if number_results == 1 else reasons,
        "usage": usage.model_dump(mode="json"),
        "cost": sum(costs) if costs else None,
        "task_uuid": task_uuid,
    }


def result_from_task(outcome: TaskBatchResult) -> GenerateResult:
    """The first textInference result of a sync call, as a protocol-neutral result.

    :param outcome: what :meth:`MiniMaxHook.text_inference` returned.
    """
    item = outcome.results[0]
    # M2.7 may think inline on this API too: strip a leading <think> block like the chat API does.
    text, inline_reasoning = split_think(item.text)
    return GenerateResult(
        text=text,
        reasoning="\n".join(item.reasoning_content) if item.reasoning_content else inline_reasoning,
        usage=task_usage(item),
        cost=item.cost,
        finish_reason=item.finish_reason,
        task_uuid=item.task_uuid,
        raw_content=item.text,
    )


def result_from_chat(completion: ChatCompletion) -> GenerateResult:
    """A chat completion as a protocol-neutral result (think block split off).

    :param completion: the completion.
    """
    return GenerateResult(
        text=completion.answer,
        reasoning=completion.reasoning,
        usage=Usage.of_chat(completion.usage),
        finish_reason=completion.choices[0].finish_reason if completion.choices else None,
        model=completion.model or None,
        raw_content=completion.message.content,
    )
