"""The chat completions API calls of the hook (OpenAI protocol), sync, async and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic_core import to_json

from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.hooks.events import StreamShape
from airflow_provider_minimax.hooks.request_building import (
    Messages,
    build,
    checked_text,
    normalise_messages,
    refuse_seed_on_chat,
)
from airflow_provider_minimax.hooks.responses import (
    chat_chunk,
    parse_chat_response,
    raise_for_chat_stream_status,
)
from airflow_provider_minimax.hooks.transport import ApiCall, MiniMaxBaseHook
from airflow_provider_minimax.models import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest


class ChatApiMixin(MiniMaxBaseHook):
    """The chat completions half of :class:`~airflow_provider_minimax.hooks.minimax.MiniMaxHook`."""

    def new_chat_request(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
        extra_body: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletionRequest:
        """Build a validated chat completions request; bad input raises before any HTTP call.

        :param messages: a prompt, or OpenAI message dicts.
        :param system_prompt: a system message put first.
        :param model: the model; the connection's default when omitted.
        :param extra_body: fields sent as they are, unchecked (as in the openai client); any other
            unknown keyword argument is refused, so that a typo (``max_token``) is not ignored.
        :param params: ``max_tokens`` (<= 16384), ``temperature``, ``top_p``, ``tools``,
            ``tool_choice``, ``response_format``, ``reasoning_split``, ``stop``... (``seed`` is
            refused: the chat API takes none).
        """
        refuse_seed_on_chat(params.get("seed"), "chat", self.minimax_conn_id)
        turns = normalise_messages(messages)
        if checked_text(system_prompt, "system_prompt") is not None:
            turns.insert(0, {"role": "system", "content": system_prompt})
        fields = {key: value for key, value in params.items() if value is not None}
        return build(
            ChatCompletionRequest,
            "chat completions request",
            model=self._model(model, "chat"),
            messages=turns,
            extra_body=extra_body,
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
        settings = self.settings
        self._require_api(settings, "chat")
        request = self.new_chat_request(messages, **params)
        return self._send(self._chat_call(settings, request.to_wire(), max_retries), parse_chat_response)

    async def achat_completion(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> ChatCompletion:
        """Async :meth:`chat_completion`.

        :param messages: a prompt, or OpenAI message dicts.
        :param max_retries: retries for transient failures, for this call.
        :param params: any :meth:`new_chat_request` parameter.
        """
        settings = await self.aget_settings()
        self._require_api(settings, "chat")
        request = self.new_chat_request(messages, **params)
        return await self._asend(
            self._chat_call(settings, request.to_wire(), max_retries), parse_chat_response
        )

    def _chat_call(
        self, settings: MiniMaxConnectionSettings, body: dict[str, Any], max_retries: int | None
    ) -> ApiCall:
        return self._call(settings, settings.chat_completions_url, to_json(body), "chat", max_retries)

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
        settings = self.settings
        self._require_api(settings, "chat")
        body = self._stream_body(messages, params)
        yield from self._stream(self._chat_call(settings, body, max_retries), _STREAM)

    async def astream_chat_completion(
        self, messages: Messages, *, max_retries: int | None = None, **params: Any
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Async :meth:`stream_chat_completion`.

        :param messages: a prompt, or OpenAI message dicts.
        :param max_retries: retries before the first event, for this call.
        :param params: any :meth:`new_chat_request` parameter.
        """
        settings = await self.aget_settings()
        self._require_api(settings, "chat")
        body = self._stream_body(messages, params)
        async for chunk in self._astream(self._chat_call(settings, body, max_retries), _STREAM):
            yield chunk


_STREAM = StreamShape(
    raise_for_chat_stream_status,
    chat_chunk,
    is_final=lambda chunk: any(choice.finish_reason for choice in chunk.choices),
    text_length=lambda chunk: sum(
        len(choice.delta.content or "") for choice in chunk.choices if choice.index == 0
    ),
)
