"""MiniMaxHook: the task API and the chat completions API, sync and async, behind one retry policy."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.sdk import BaseHook
from httpx_sse import EventSource
from pydantic import ValidationError

from airflow_provider_minimax import __version__
from airflow_provider_minimax.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    DEFAULT_MODELS,
    MiniMaxConnectionSettings,
)
from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxConnectionError,
    MiniMaxCreditError,
    MiniMaxError,
    MiniMaxTransientError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.hooks.responses import (
    CONFLICT_CODE,
    api_error,
    chat_chunk,
    is_event_stream,
    parse_chat_response,
    parse_task_response,
    raise_for_chat_stream_status,
    raise_for_task_stream_status,
    task_chunk,
)
from airflow_provider_minimax.models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    GetResponseTask,
    TextInferenceChunk,
    TextInferenceSettings,
    TextInferenceTask,
    split_think,
)
from airflow_provider_minimax.results import GenerateResult, TaskBatchResult, Usage
from airflow_provider_minimax.retry import RETRYABLE_TRANSPORT_ERRORS, RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from pydantic import BaseModel

T = TypeVar("T")
Messages = str | Sequence[Mapping[str, Any]]
TaskLike = TextInferenceTask | GetResponseTask


def validation_error(err: ValidationError, what: str) -> MiniMaxValidationError:
    """Turn a pydantic error into one that names the field, the value and the bound.

    :param err: the pydantic error.
    :param what: the request being built, for the message.
    """
    problems = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or what
        problems.append(f"{field}: {item['msg']} (got {_short_repr(item.get('input'))})")
    first = err.errors()[0]["loc"] if err.errors() else ()
    return MiniMaxValidationError(
        f"Invalid {what}: " + "; ".join(problems),
        parameter=".".join(str(part) for part in first) or None,
    )


def _short_repr(value: Any, limit: int = 120) -> str:
    """The repr of a rejected value, cut so a 200000-character prompt does not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def build(model_cls: type[BaseModel], what: str, **fields: Any) -> Any:
    """Validate a request model, raising :class:`MiniMaxValidationError` before any HTTP call.

    :param model_cls: the pydantic request model.
    :param what: the request being built, for the message.
    :param fields: the model's fields.
    """
    try:
        return model_cls.model_validate(fields)
    except ValidationError as err:
        raise validation_error(err, what) from None


def normalise_messages(messages: Messages) -> list[dict[str, Any]]:
    """Accept a prompt string or a list of message mappings.

    :param messages: a prompt, or OpenAI-style message dicts.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(message) for message in messages]


def split_system(
    messages: list[dict[str, Any]], system_prompt: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Move ``system`` messages into the task API's ``systemPrompt`` (it has no system role).

    :param messages: message dicts.
    :param system_prompt: an explicit system prompt, which comes first.
    """
    system_parts = [system_prompt] if system_prompt is not None else []
    turns = []
    for message in messages:
        if message.get("role") == "system":
            system_parts.append(str(message.get("content") or ""))
        else:
            turns.append({"role": message.get("role"), "content": message.get("content")})
    if not system_parts:
        return turns, None
    # A system prompt given but empty is bad input (1..200000 chars): "" lets validation name it.
    return turns, "\n\n".join(part for part in system_parts if part)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _submit_outcome(envelope: TaskBatchResult) -> TaskBatchResult:
    """Count ``conflictTaskUUID`` as accepted: the first submit of that UUID went through."""
    conflicts = [e for e in envelope.errors if e.code == CONFLICT_CODE and e.task_uuid]
    envelope.already_accepted.extend(str(e.task_uuid) for e in conflicts)
    envelope.errors = [e for e in envelope.errors if e.code != CONFLICT_CODE]
    return envelope


def _batch(response: httpx.Response) -> TaskBatchResult:
    envelope = parse_task_response(response)
    outcome = TaskBatchResult(results=envelope.data, errors=envelope.errors)
    if response.status_code >= 400:
        outcome.note_http_status(response.status_code)
    return outcome


class MiniMaxHook(BaseHook):
    """Talk to MiniMax M2.7 through the task API or the chat completions API.

    Both sync and async methods share request building, response classification and the
    retry policy; only the I/O differs. Clients are pooled and reused for the hook's life.

    :param minimax_conn_id: the ``minimax`` connection to use.
    :param max_retries: retries for transient failures; overrides the connection's value.
    :param timeout: seconds per HTTP response; overrides the connection's value.
    """

    conn_name_attr = "minimax_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "MiniMax"

    #: Sleep functions used between retries; tests replace them to avoid real waiting.
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    asleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        minimax_conn_id: str = DEFAULT_CONN_ID,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.minimax_conn_id = minimax_conn_id
        self._max_retries = max_retries
        self._timeout = timeout
        self._settings: MiniMaxConnectionSettings | None = None
        self._settings_loading: asyncio.Future[MiniMaxConnectionSettings] | None = None
        self._async_client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(minimax_conn_id={self.minimax_conn_id!r})"

    # ---------------------------------------------------------------- connection and clients

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Deprecated form hook, kept for Airflow < 3.2; provider info declares the form."""
        from airflow_provider_minimax.get_provider_info import get_provider_info

        return dict(get_provider_info()["connection-types"][0]["ui-field-behaviour"])

    def _settings_from(self, conn: Connection) -> MiniMaxConnectionSettings:
        settings = MiniMaxConnectionSettings.from_connection(conn)
        overrides = {
            key: value
            for key, value in (("max_retries", self._max_retries), ("timeout", self._timeout))
            if value is not None
        }
        return settings.model_copy(update=overrides) if overrides else settings

    @property
    def settings(self) -> MiniMaxConnectionSettings:
        """The validated connection settings, read once."""
        if self._settings is None:
            self._settings = self._settings_from(self.get_connection(self.minimax_conn_id))
        return self._settings

    async def aget_settings(self) -> MiniMaxConnectionSettings:
        """The validated connection settings, read once without blocking the event loop.

        Concurrent first callers (many rows or triggers starting at once) share one read.
        """
        if self._settings is None:
            if self._settings_loading is None:
                self._settings_loading = asyncio.ensure_future(self._aread_settings())
            loading = self._settings_loading
            try:
                # Shielded: one caller being cancelled must not cancel the read the others await.
                self._settings = await asyncio.shield(loading)
            finally:
                if self._settings_loading is loading and loading.done():
                    self._settings_loading = None  # a failed read is tried again by the next call
        return self._settings

    async def _aread_settings(self) -> MiniMaxConnectionSettings:
        aget = getattr(BaseHook, "aget_connection", None)
        if aget is not None:
            conn = await aget(self.minimax_conn_id)
        else:  # Airflow 3.0 has no async connection getter.
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.minimax_conn_id)
        return self._settings_from(conn)

    def _client_options(self, settings: MiniMaxConnectionSettings) -> dict[str, Any]:
        return {
            "headers": {
                "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
                "User-Agent": f"airflow-provider-minimax/{__version__}",
            },
            "timeout": httpx.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            "limits": httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            "verify": default_ssl_context(),
        }

    @cached_property
    def client(self) -> httpx.Client:
        """The pooled synchronous client."""
        return httpx.Client(**self._client_options(self.settings))

    async def aclient(self) -> httpx.AsyncClient:
        """The pooled asynchronous client, created on first use in the running event loop."""
        if self._async_client is None:
            settings = await self.aget_settings()
            await asyncio.to_thread(default_ssl_context)  # loads the CA bundle: never on the loop
            if self._async_client is None:
                self._async_client = httpx.AsyncClient(**self._client_options(settings))
        return self._async_client

    def close(self) -> None:
        """Close the synchronous client's connections."""
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        """Close the asynchronous client's connections."""
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def _policy(self, settings: MiniMaxConnectionSettings, max_retries: int | None) -> RetryPolicy:
        return RetryPolicy(
            max_retries=settings.max_retries if max_retries is None else max_retries,
            max_wait=settings.retry_max_wait,
        )

    # ---------------------------------------------------------------- the one send per API

    def _send(
        self,
        url: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        max_retries: int | None = None,
    ) -> T:
        """POST ``body`` and parse the answer, retrying transient failures."""
        settings = self.settings
        try:
            for attempt in self._policy(settings, max_retries).retrying(sleep=self.sleep):
                with attempt:
                    return parse(self.client.post(url, json=body))
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _asend(
        self,
        url: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        max_retries: int | None = None,
    ) -> T:
        """POST ``body`` and parse the answer without blocking the loop, retrying transient failures."""
        settings = await self.aget_settings()
        client = await self.aclient()
        try:
            async for attempt in self._policy(settings, max_retries).async_retrying(sleep=self.asleep):
                with attempt:
                    return parse(await client.post(url, json=body))
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _open_stream(
        self, url: str, body: Any, check: Callable[[httpx.Response], None], max_retries: int | None
    ) -> httpx.Response:
        """Open an SSE response; retries cover only what happens before the first event."""
        settings = self.settings

        def attempt_once() -> httpx.Response:
            request = self.client.build_request(
                "POST", url, json=body, headers={"Accept": "text/event-stream"}
            )
            response = self.client.send(request, stream=True)
            if not is_event_stream(response):
                response.read()
                response.close()
                check(response)
            return response

        try:
            for attempt in self._policy(settings, max_retries).retrying(sleep=self.sleep):
                with attempt:
                    return attempt_once()
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aopen_stream(
        self, url: str, body: Any, check: Callable[[httpx.Response], None], max_retries: int | None
    ) -> httpx.Response:
        """Open an SSE response asynchronously; retries cover only what happens before the first event."""
        settings = await self.aget_settings()
        client = await self.aclient()

        async def attempt_once() -> httpx.Response:
            request = client.build_request("POST", url, json=body, headers={"Accept": "text/event-stream"})
            response = await client.send(request, stream=True)
            if not is_event_stream(response):
                await response.aread()
                await response.aclose()
                check(response)
            return response

        try:
            async for attempt in self._policy(settings, max_retries).async_retrying(sleep=self.asleep):
                with attempt:
                    return await attempt_once()
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- task API

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
        sampling = {
            "system_prompt": system,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
        settings = build(TextInferenceSettings, "textInference settings", **sampling)
        return build(
            TextInferenceTask,
            "textInference task",
            task_uuid=task_uuid or str(uuid.uuid4()),
            model=model or self._default_model("task"),
            delivery_method=delivery_method,
            webhook_url=webhook_url,
            include_cost=include_cost or None,
            include_usage=include_usage or None,
            number_results=number_results,
            seed=seed,
            messages=turns,
            settings=settings if settings.model_dump(exclude_none=True) else None,
            **extra,
        )

    def _default_model(self, api: str) -> str:
        # Async callers load the settings first, so this never reads the connection on the event loop.
        settings = self._settings or self.settings
        return settings.model if settings.api == api else DEFAULT_MODELS[api]

    def _task_bodies(
        self, tasks: Sequence[TaskLike], settings: MiniMaxConnectionSettings
    ) -> list[list[dict[str, Any]]]:
        return [
            [task.to_wire() for task in chunk] for chunk in _chunks(tasks, settings.max_tasks_per_request)
        ]

    def submit_tasks(self, tasks: Sequence[TaskLike], *, max_retries: int | None = None) -> TaskBatchResult:
        """Send tasks as JSON arrays, chunked; partial success keeps every success.

        A ``conflictTaskUUID`` answer lands in ``already_accepted``: poll that UUID.

        :param tasks: validated tasks (textInference and/or getResponse).
        :param max_retries: retries for transient failures, for this call.
        """
        settings = self.settings
        outcome = TaskBatchResult()
        for body in self._task_bodies(tasks, settings):
            outcome.extend(_submit_outcome(self._send(settings.base_url, body, _batch, max_retries)))
        return outcome

    async def asubmit_tasks(
        self, tasks: Sequence[TaskLike], *, max_retries: int | None = None
    ) -> TaskBatchResult:
        """Async :meth:`submit_tasks`; chunks are sent concurrently over the pooled client.

        :param tasks: validated tasks (textInference and/or getResponse).
        :param max_retries: retries for transient failures, for this call.
        """
        settings = await self.aget_settings()
        replies = await asyncio.gather(
            *(
                self._asend(settings.base_url, body, _batch, max_retries)
                for body in self._task_bodies(tasks, settings)
            )
        )
        outcome = TaskBatchResult()
        for reply in replies:
            outcome.extend(_submit_outcome(reply))
        return outcome

    @staticmethod
    def _polls(task_uuids: Sequence[str]) -> list[GetResponseTask]:
        return [build(GetResponseTask, "getResponse task", task_uuid=u) for u in dict.fromkeys(task_uuids)]

    def get_responses(self, task_uuids: Sequence[str], *, max_retries: int | None = None) -> TaskBatchResult:
        """Poll several async tasks with ``getResponse``, many UUIDs per request.

        :param task_uuids: the tasks to poll.
        :param max_retries: retries for transient failures, for this call.
        """
        return self.submit_tasks(self._polls(task_uuids), max_retries=max_retries)

    async def aget_responses(
        self, task_uuids: Sequence[str], *, max_retries: int | None = None
    ) -> TaskBatchResult:
        """Async :meth:`get_responses`.

        :param task_uuids: the tasks to poll.
        :param max_retries: retries for transient failures, for this call.
        """
        return await self.asubmit_tasks(self._polls(task_uuids), max_retries=max_retries)

    def text_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> TaskBatchResult:
        """Run one textInference with sync delivery and return its result(s).

        :param messages: a prompt or message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_text_inference` parameter.
        """
        task = self.new_text_inference(messages, delivery_method="sync", **params)
        outcome = self.submit_tasks([task], max_retries=max_retries)
        if task.task_uuid in outcome.already_accepted:
            # A retried submit whose first answer was lost (read timeout, dropped connection):
            # the task ran and was paid for, so fetch its result instead of failing.
            outcome = self.get_responses([task.task_uuid], max_retries=max_retries)
        return _single_task(outcome, task.task_uuid)

    async def atext_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> TaskBatchResult:
        """Async :meth:`text_inference`.

        :param messages: a prompt or message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_text_inference` parameter.
        """
        await self.aget_settings()
        task = self.new_text_inference(messages, delivery_method="sync", **params)
        outcome = await self.asubmit_tasks([task], max_retries=max_retries)
        if task.task_uuid in outcome.already_accepted:
            outcome = await self.aget_responses([task.task_uuid], max_retries=max_retries)
        return _single_task(outcome, task.task_uuid)

    def stream_text_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> Iterator[TextInferenceChunk]:
        """Stream one textInference token by token (SSE).

        :param messages: a prompt or message dicts.
        :param params: any :meth:`new_text_inference` parameter but ``number_results``.
        """
        task = self.new_text_inference(messages, delivery_method="stream", **params)
        response = self._open_stream(
            self.settings.base_url, [task.to_wire()], raise_for_task_stream_status, max_retries
        )
        yield from _events(response, task_chunk)

    async def astream_text_inference(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> AsyncIterator[TextInferenceChunk]:
        """Async :meth:`stream_text_inference`.

        :param messages: a prompt or message dicts.
        :param params: any :meth:`new_text_inference` parameter but ``number_results``.
        """
        settings = await self.aget_settings()
        task = self.new_text_inference(messages, delivery_method="stream", **params)
        response = await self._aopen_stream(
            settings.base_url, [task.to_wire()], raise_for_task_stream_status, max_retries
        )
        async for chunk in _aevents(response, task_chunk):
            yield chunk

    # ---------------------------------------------------------------- chat API

    def new_chat_request(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
        **params: Any,
    ) -> ChatCompletionRequest:
        """Build a validated chat completions request; bad input raises before any HTTP call.

        :param messages: a prompt, or OpenAI message dicts.
        :param system_prompt: a system message put first.
        :param model: the model; the connection's default when omitted.
        :param params: ``max_tokens`` (<= 16384), ``temperature``, ``top_p``, ``tools``,
            ``tool_choice``, ``response_format``, ``reasoning_split``...
        """
        turns = normalise_messages(messages)
        if system_prompt is not None:
            turns.insert(0, {"role": "system", "content": system_prompt})
        fields = {key: value for key, value in params.items() if value is not None}
        return build(
            ChatCompletionRequest,
            "chat completions request",
            model=model or self._default_model("chat"),
            messages=turns,
            **fields,
        )

    def chat_completion(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> ChatCompletion:
        """Create one chat completion; ``.answer`` has the think block removed, ``.reasoning`` keeps it.

        :param messages: a prompt, or OpenAI message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_chat_request` parameter.
        """
        request = self.new_chat_request(messages, **params)
        return self._send(
            self.settings.chat_completions_url, request.to_wire(), parse_chat_response, max_retries
        )

    async def achat_completion(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> ChatCompletion:
        """Async :meth:`chat_completion`.

        :param messages: a prompt, or OpenAI message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_chat_request` parameter.
        """
        settings = await self.aget_settings()
        request = self.new_chat_request(messages, **params)
        return await self._asend(
            settings.chat_completions_url, request.to_wire(), parse_chat_response, max_retries
        )

    def _stream_body(self, messages: Messages, params: dict[str, Any]) -> dict[str, Any]:
        params.setdefault("stream_options", {"include_usage": True})
        return self.new_chat_request(messages, stream=True, **params).to_wire()

    def stream_chat_completion(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> Iterator[ChatCompletionChunk]:
        """Stream a chat completion; the last chunk carries usage (``stream_options.include_usage``).

        :param messages: a prompt, or OpenAI message dicts.
        :param max_retries: retries before the first event, for this call.
        :param params: any :meth:`new_chat_request` parameter.
        """
        body = self._stream_body(messages, params)
        response = self._open_stream(
            self.settings.chat_completions_url, body, raise_for_chat_stream_status, max_retries
        )
        yield from _events(response, chat_chunk)

    async def astream_chat_completion(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Async :meth:`stream_chat_completion`.

        :param messages: a prompt, or OpenAI message dicts.
        :param max_retries: retries before the first event, for this call.
        :param params: any :meth:`new_chat_request` parameter.
        """
        settings = await self.aget_settings()
        body = self._stream_body(messages, params)
        response = await self._aopen_stream(
            settings.chat_completions_url, body, raise_for_chat_stream_status, max_retries
        )
        async for chunk in _aevents(response, chat_chunk):
            yield chunk

    # ---------------------------------------------------------------- protocol-neutral

    def generate(
        self, messages: Messages, *, system_prompt: str | None = None, **settings: Any
    ) -> GenerateResult:
        """Ask the connection's API for one answer: text, usage and cost, whichever API it speaks.

        :param messages: a prompt, or message dicts.
        :param system_prompt: the system prompt.
        :param settings: ``temperature``, ``top_p``, ``max_tokens``, ``model`` and API-specific fields.
        """
        if self.settings.api == "chat":
            completion = self.chat_completion(messages, system_prompt=system_prompt, **settings)
            return result_from_chat(completion)
        return result_from_task(self.text_inference(messages, system_prompt=system_prompt, **settings))

    async def agenerate(
        self, messages: Messages, *, system_prompt: str | None = None, **settings: Any
    ) -> GenerateResult:
        """Async :meth:`generate`.

        :param messages: a prompt, or message dicts.
        :param system_prompt: the system prompt.
        :param settings: ``temperature``, ``top_p``, ``max_tokens``, ``model`` and API-specific fields.
        """
        if (await self.aget_settings()).api == "chat":
            completion = await self.achat_completion(messages, system_prompt=system_prompt, **settings)
            return result_from_chat(completion)
        return result_from_task(await self.atext_inference(messages, system_prompt=system_prompt, **settings))

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and the URL without spending money.

        The task API is asked for an unknown taskUUID (getResponse is free); the chat API gets
        an empty conversation, which is refused as invalid (not billed) only after the key passed.
        """
        try:
            settings = self.settings
        except MiniMaxError as err:
            return False, str(err)
        try:
            if settings.api == "task":
                self.get_responses([str(uuid.uuid4())], max_retries=0)
            else:
                body = {"model": settings.model, "messages": []}
                self._send(settings.chat_completions_url, body, parse_chat_response, max_retries=0)
        except (MiniMaxAuthError, MiniMaxCreditError) as err:
            return False, f"Reached MiniMax, but the key was refused: {err}"
        except MiniMaxConnectionError as err:
            return False, f"MiniMax is unreachable: {err}"
        except MiniMaxTransientError as err:
            return False, f"MiniMax is reachable but failing right now: {err}"
        except MiniMaxError as err:
            # The chat API refusing the empty conversation, or a task-API error code, proves the
            # key passed; anything else (a bare 404 page) means the base URL points elsewhere.
            passed = err.status_code in (400, 422) if settings.api == "chat" else bool(err.code)
            if passed:
                return True, f"Connected to the MiniMax {settings.api} API; the key is valid."
            return False, f"MiniMax at {settings.base_url} did not answer as the {settings.api} API: {err}"
        return True, f"Connected to the MiniMax {settings.api} API; the key is valid."


@cache
def default_ssl_context() -> ssl.SSLContext:
    """The TLS context every client shares, built once per process (loading CA certificates takes ~0.1 s)."""
    return httpx.create_ssl_context()


def _events(response: httpx.Response, parse: Callable[[str], T]) -> Iterator[T]:
    """Parse each SSE ``data`` line until ``[DONE]``, closing the response however the loop ends."""
    try:
        for event in EventSource(response).iter_sse():
            if event.data.strip() == "[DONE]":
                return
            if event.data:
                yield parse(event.data)
    finally:
        response.close()


async def _aevents(response: httpx.Response, parse: Callable[[str], T]) -> AsyncIterator[T]:
    """Async :func:`_events`."""
    try:
        async for event in EventSource(response).aiter_sse():
            if event.data.strip() == "[DONE]":
                return
            if event.data:
                yield parse(event.data)
    finally:
        await response.aclose()


def _unreachable(url: str, err: Exception) -> MiniMaxConnectionError:
    return MiniMaxConnectionError(
        f"Could not reach MiniMax at {url} after retries: {type(err).__name__}: {err}"
    )


def _single_task(outcome: TaskBatchResult, task_uuid: str) -> TaskBatchResult:
    """Raise the task's own error when a one-task request failed."""
    error = outcome.error_for(task_uuid)
    if error is not None:
        raise api_error(error, outcome.http_status_for(task_uuid))
    if task_uuid in outcome.already_accepted or not any(r.is_success for r in outcome.results_for(task_uuid)):
        raise MiniMaxValidationError(
            f"taskUUID {task_uuid} was already submitted and has no result yet; poll it with get_responses()",
            code=CONFLICT_CODE,
            task_uuid=task_uuid,
        )
    return outcome


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
        usage=Usage.of_task(item.usage),
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
