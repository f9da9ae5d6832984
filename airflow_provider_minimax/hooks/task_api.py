"""The task API calls of the hook: textInference and getResponse tasks, sync, async and streamed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.hooks.accepted_task import AcceptedTask
from airflow_provider_minimax.hooks.call_budget import CallBudget
from airflow_provider_minimax.hooks.events import StreamShape
from airflow_provider_minimax.hooks.request_building import (
    Messages,
    build,
    normalise_messages,
    split_system,
)
from airflow_provider_minimax.hooks.responses import (
    CONFLICT_CODE,
    api_error,
    malformed,
    parse_task_response,
    raise_for_task_stream_status,
    task_chunk,
)
from airflow_provider_minimax.hooks.transport import ApiCall, MiniMaxBaseHook
from airflow_provider_minimax.models import (
    GetResponseTask,
    TextInferenceChunk,
    TextInferenceSettings,
    TextInferenceTask,
    task_array,
)
from airflow_provider_minimax.results import TaskBatchResult

T = TypeVar("T")
TaskLike = TextInferenceTask | GetResponseTask


class TaskApiMixin(MiniMaxBaseHook):
    """The task API half of :class:`~airflow_provider_minimax.hooks.minimax.MiniMaxHook`."""

    def new_text_inference(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        task_uuid: str | None = None,
        delivery_method: str = "sync",
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        number_results: int | None = None,
        seed: int | None = None,
        include_cost: bool = True,
        include_usage: bool = True,
        webhook_url: str | None = None,
        **extra: Any,
    ) -> TextInferenceTask:
        """Build a validated ``textInference`` task; bad input raises before any HTTP call.

        :param messages: a prompt, or message dicts (``system`` messages become the system prompt).
        :param system_prompt: the system prompt.
        :param task_uuid: the taskUUID; a random v4 UUID when omitted.
        :param delivery_method: ``sync``, ``async`` or ``stream``.
        :param model: the model; the connection's default when omitted.
        :param temperature: 0..1, step 0.01.
        :param top_p: 0..1, step 0.01.
        :param max_tokens: 1..196608.
        :param number_results: 1..4.
        :param seed: 0..4294967295.
        :param include_cost: ask for the cost.
        :param include_usage: ask for token usage.
        :param webhook_url: where the API POSTs the finished result.
        :param extra: further task fields (``tools``, ``tool_choice``, ``routing``...).
        """
        turns, system = split_system(normalise_messages(messages), system_prompt)
        given = {
            "webhook_url": webhook_url,
            "include_cost": include_cost or None,
            "include_usage": include_usage or None,
            "number_results": number_results,
            "seed": seed,
        }
        sampling = {
            "system_prompt": system,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
        if any(value is not None for value in sampling.values()):
            given["settings"] = build(TextInferenceSettings, "textInference settings", **sampling)
        return build(
            TextInferenceTask,
            "textInference task",
            # "is None", not "or": an empty or falsy value is bad input, never a silent default.
            task_uuid=str(uuid.uuid4()) if task_uuid is None else task_uuid,
            model=self._model(model, "task"),
            delivery_method=delivery_method,
            messages=turns,
            # An omitted field keeps its default (None) without running its validators.
            **{name: value for name, value in given.items() if value is not None},
            **extra,
        )

    def _task_bodies(self, tasks: Sequence[TaskLike], settings: MiniMaxConnectionSettings) -> list[bytes]:
        """The bodies of a submit of tasks given by the caller: the tasks checked, one body per chunk."""
        self._require_api(settings, "task")
        unique = _unique_tasks(tasks)
        return [task_array(chunk) for chunk in _chunks(unique, settings.max_tasks_per_request)]

    def submit_tasks(self, tasks: Sequence[TaskLike], *, max_retries: int | None = None) -> TaskBatchResult:
        """Send tasks as JSON arrays, chunked; partial success keeps every success.

        A ``conflictTaskUUID`` answer lands in ``already_accepted``: poll that UUID.

        :param tasks: validated tasks (textInference and/or getResponse).
        :param max_retries: retries for transient failures, for this call.
        """
        settings = self.settings
        return self._submit(settings, self._task_bodies(tasks, settings), max_retries)

    def _task_call(
        self,
        settings: MiniMaxConnectionSettings,
        body: bytes,
        max_retries: int | None,
        budget: CallBudget | None = None,
    ) -> ApiCall:
        return self._call(settings, settings.base_url, body, "task", max_retries, budget)

    def _submit(
        self,
        settings: MiniMaxConnectionSettings,
        bodies: list[bytes],
        max_retries: int | None,
        budget: CallBudget | None = None,
    ) -> TaskBatchResult:
        return _submit_outcome(
            [self._send(self._task_call(settings, body, max_retries, budget), _batch) for body in bodies]
        )

    async def asubmit_tasks(
        self, tasks: Sequence[TaskLike], *, max_retries: int | None = None
    ) -> TaskBatchResult:
        """Async :meth:`submit_tasks`; chunks are sent concurrently over the pooled client.

        :param tasks: validated tasks (textInference and/or getResponse).
        :param max_retries: retries for transient failures, for this call.
        """
        settings = await self.aget_settings()
        return await self._asubmit(settings, self._task_bodies(tasks, settings), max_retries)

    async def _asubmit(
        self,
        settings: MiniMaxConnectionSettings,
        bodies: list[bytes],
        max_retries: int | None,
        budget: CallBudget | None = None,
    ) -> TaskBatchResult:
        sends = [self._asend(self._task_call(settings, body, max_retries, budget), _batch) for body in bodies]
        # One chunk is awaited in place: gather would wrap it in a task, two more turns of the loop.
        return _submit_outcome([await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends))

    @staticmethod
    def _polls(task_uuids: str | Iterable[str]) -> list[GetResponseTask]:
        return [build(GetResponseTask, "getResponse task", task_uuid=u) for u in _uuid_list(task_uuids)]

    def get_responses(
        self, task_uuids: str | Iterable[str], *, max_retries: int | None = None
    ) -> TaskBatchResult:
        """Poll several async tasks with ``getResponse``, many UUIDs per request.

        :param task_uuids: the tasks to poll: UUIDs, or one string holding a UUID or a comma list.
        :param max_retries: retries for transient failures, for this call.
        """
        return self.submit_tasks(self._polls(task_uuids), max_retries=max_retries)

    async def aget_responses(
        self, task_uuids: str | Iterable[str], *, max_retries: int | None = None
    ) -> TaskBatchResult:
        """Async :meth:`get_responses`.

        :param task_uuids: the tasks to poll: UUIDs, or one string holding a UUID or a comma list.
        :param max_retries: retries for transient failures, for this call.
        """
        return await self.asubmit_tasks(self._polls(task_uuids), max_retries=max_retries)

    def text_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> TaskBatchResult:
        """Run one textInference with sync delivery and return its result(s).

        When the submit's answer was lost and the retry meets ``conflictTaskUUID`` (the task ran
        and was paid for), the result is polled for within the call's ``total_timeout``.

        :param messages: a prompt or message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_text_inference` parameter.
        """
        settings = self.settings
        task = self.new_text_inference(messages, delivery_method="sync", **params)
        self._require_api(settings, "task")
        budget = CallBudget(settings, settings.base_url)
        # The task was built here: it needs none of submit_tasks' checks of what a caller passes.
        outcome = self._submit(settings, [task_array([task])], max_retries, budget)
        if task.task_uuid not in outcome.already_accepted:
            return _sync_answer(outcome, task.task_uuid)
        accepted = AcceptedTask(task, budget)
        return accepted.wait(
            lambda: self._send(self._task_call(settings, accepted.poll, max_retries, budget), _batch)
        )

    async def atext_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> TaskBatchResult:
        """Async :meth:`text_inference`.

        :param messages: a prompt or message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_text_inference` parameter.
        """
        settings = await self.aget_settings()
        task = self.new_text_inference(messages, delivery_method="sync", **params)
        self._require_api(settings, "task")
        budget = CallBudget(settings, settings.base_url)
        outcome = await self._asubmit(settings, [task_array([task])], max_retries, budget)
        if task.task_uuid not in outcome.already_accepted:
            return _sync_answer(outcome, task.task_uuid)
        accepted = AcceptedTask(task, budget)
        return await accepted.await_result(
            lambda: self._asend(self._task_call(settings, accepted.poll, max_retries, budget), _batch)
        )

    def stream_text_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> Iterator[TextInferenceChunk]:
        """Stream one textInference token by token (SSE).

        :param messages: a prompt or message dicts.
        :param params: any :meth:`new_text_inference` parameter but ``number_results``.
        """
        settings = self.settings
        self._require_api(settings, "task")
        task = self.new_text_inference(messages, delivery_method="stream", **params)
        yield from self._stream(self._task_call(settings, task_array([task]), max_retries), _STREAM)

    async def astream_text_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> AsyncIterator[TextInferenceChunk]:
        """Async :meth:`stream_text_inference`.

        :param messages: a prompt or message dicts.
        :param params: any :meth:`new_text_inference` parameter but ``number_results``.
        """
        settings = await self.aget_settings()
        self._require_api(settings, "task")
        task = self.new_text_inference(messages, delivery_method="stream", **params)
        async for chunk in self._astream(self._task_call(settings, task_array([task]), max_retries), _STREAM):
            yield chunk


_STREAM = StreamShape(
    raise_for_task_stream_status,
    task_chunk,
    is_final=lambda chunk: chunk.finish_reason is not None,
    text_length=lambda chunk: len(chunk.delta.text or ""),
)


def _unique_tasks(tasks: Iterable[TaskLike]) -> list[TaskLike]:
    """Check what ``submit_tasks`` was given: built tasks only, one request per taskUUID.

    The same task twice is sent once; two different requests under one taskUUID are refused,
    since the API would answer the second with the first one's result.
    """
    if isinstance(tasks, str | bytes | Mapping) or not isinstance(tasks, Iterable):
        raise MiniMaxValidationError(
            f"tasks must be a list of tasks, got {type(tasks).__name__}", parameter="tasks"
        )
    unique: dict[str, TaskLike] = {}
    for index, task in enumerate(tasks):
        if not isinstance(task, TextInferenceTask | GetResponseTask):
            raise MiniMaxValidationError(
                f"tasks[{index}] must be a TextInferenceTask or GetResponseTask (build one with "
                f"new_text_inference()), got {type(task).__name__}",
                parameter=f"tasks[{index}]",
            )
        first = unique.setdefault(task.task_uuid, task)
        if first is not task and first != task:
            raise MiniMaxValidationError(
                f"tasks[{index}] reuses taskUUID {task.task_uuid} for a different request; "
                "each request needs its own taskUUID",
                parameter=f"tasks[{index}]",
                task_uuid=task.task_uuid,
            )
    return list(unique.values())


def _uuid_list(task_uuids: str | Iterable[str]) -> list[str]:
    """The UUIDs to poll, without repeats; one string is one UUID or a comma list, never its characters."""
    if isinstance(task_uuids, str):
        task_uuids = task_uuids.split(",")
    elif isinstance(task_uuids, bytes | Mapping) or not isinstance(task_uuids, Iterable):
        raise MiniMaxValidationError(
            f"task_uuids must be a UUID string or a list of them, got {type(task_uuids).__name__}",
            parameter="task_uuids",
        )
    return list(dict.fromkeys(u.strip() if isinstance(u, str) else u for u in task_uuids))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _submit_outcome(replies: Sequence[TaskBatchResult]) -> TaskBatchResult:
    """The answers to a submit's requests as one; ``conflictTaskUUID`` counts as accepted.

    A conflict means the first submit of that taskUUID went through: its task is to be polled.

    :param replies: the answer to each request, in order.
    """
    if len(replies) == 1:
        outcome = replies[0]
    else:
        outcome = TaskBatchResult()
        for reply in replies:
            outcome.extend(reply)
    if outcome.errors:
        conflicts = [e for e in outcome.errors if e.code == CONFLICT_CODE and e.task_uuid]
        outcome.already_accepted.extend(str(e.task_uuid) for e in conflicts)
        outcome.errors = [e for e in outcome.errors if e.code != CONFLICT_CODE]
    return outcome


def _batch(response: httpx.Response) -> TaskBatchResult:
    envelope = parse_task_response(response)
    outcome = TaskBatchResult(results=envelope.data, errors=envelope.errors)
    if response.status_code >= 400:
        outcome.note_http_status(response.status_code)
    return outcome


def _sync_answer(outcome: TaskBatchResult, task_uuid: str) -> TaskBatchResult:
    """The answer to a sync submit: its result, or the task's own error raised.

    An answer with neither (nothing for the task, or only a placeholder or a ``processing``
    item, which a sync answer never is) breaks the contract: the task may have been paid for,
    so it is not submitted again.

    :param outcome: the answer to the submit.
    :param task_uuid: the task.
    """
    error = outcome.error_for(task_uuid)
    if error is not None:
        # An item's own error (status "error") does not repeat the taskUUID: the task is known here.
        raise api_error(error.model_copy(update={"task_uuid": task_uuid}), outcome.http_status_for(task_uuid))
    results = outcome.results_for(task_uuid)
    if any(r.is_success for r in results):
        return outcome
    held = f"{len(results)} item(s) but no result" if results else "neither a result nor an error"
    raise malformed(
        "task", outcome.http_status_for(task_uuid), f"the sync answer holds {held} for taskUUID {task_uuid}"
    )
