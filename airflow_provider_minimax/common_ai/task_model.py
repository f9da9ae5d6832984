"""The pydantic-ai model of a ``pydanticai_minimax`` connection with ``api: task``.

It speaks ``textInference`` through :class:`MiniMaxHook`: ``request`` with sync delivery,
``request_stream`` over SSE. Usage (thinking tokens included) and cost come back on the
response; structured output is prompted (the schema goes in the system prompt), because the
task API has neither ``response_format`` nor tools.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic_ai.exceptions import ModelAPIError, UserError
from pydantic_ai.messages import (
    FinishReason,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    ModelResponseStreamEvent,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from airflow_provider_minimax.common_ai.chat_model import THINK_TAGS, ThinkRouter, check_max_tokens
from airflow_provider_minimax.common_ai.outputs import PROMPTED_OUTPUT_TEMPLATE
from airflow_provider_minimax.exceptions import (
    MiniMaxConfigurationError,
    MiniMaxError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.models import TASK_MAX_TOKENS, TaskUsage, split_think

SYSTEM = "minimax"

MINIMAX_TASK_PROFILE = ModelProfile(
    supports_tools=False,
    supports_json_schema_output=False,
    supports_json_object_output=False,
    default_structured_output_mode="prompted",
    prompted_output_template=PROMPTED_OUTPUT_TEMPLATE,
    thinking_tags=THINK_TAGS,
    ignore_streamed_leading_whitespace=True,
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_call",
}
#: Our errors that say the request itself is wrong: a fallback model would not fix them.
_NOT_FOR_FALLBACK = (MiniMaxValidationError, MiniMaxConfigurationError)


class MiniMaxTaskModel(Model):
    """MiniMax M2.7 over the task API (``textInference``), as a pydantic-ai model.

    :param model_name: the task model, ``minimax:m2.7@highspeed``.
    :param hook: the hook that talks to the task API (its connection decides URL, key, retries).
    :param base_url: the task API URL, as reported to pydantic-ai (spans, responses).
    """

    def __init__(self, model_name: str, hook: MiniMaxHook, base_url: str) -> None:
        self._model_name = model_name
        self._hook = hook
        self._base_url = base_url
        super().__init__(profile=MINIMAX_TASK_PROFILE)

    @property
    def model_name(self) -> str:
        """The task model."""
        return self._model_name

    @property
    def system(self) -> str:
        """The provider name pydantic-ai reports."""
        return SYSTEM

    @property
    def base_url(self) -> str | None:
        """The task API URL."""
        return self._base_url

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """One ``textInference`` with sync delivery."""
        params, _ = self._task_params(messages, model_settings, model_request_parameters)
        try:
            outcome = await self._hook.atext_inference(**params)
        except _NOT_FOR_FALLBACK:
            raise
        except MiniMaxError as err:
            raise _model_api_error(err, self._model_name) from err
        finally:
            # The hook's async client belongs to this event loop; the next request may run in another.
            await self._hook.aclose()
        item = next(result for result in outcome.results if result.is_success)
        text, inline_reasoning = split_think(item.text)
        reasoning = "\n".join(item.reasoning_content) if item.reasoning_content else inline_reasoning
        parts: list[ModelResponsePart] = [ThinkingPart(content=reasoning)] if reasoning else []
        parts.append(TextPart(content=text.lstrip() if reasoning else text))
        return ModelResponse(
            parts=parts,
            usage=request_usage(item.usage),
            model_name=self._model_name,
            provider_name=SYSTEM,
            provider_url=self.base_url,
            provider_response_id=item.task_uuid,
            provider_details=_details(item.cost, item.task_uuid),
            finish_reason=_FINISH_REASONS.get(item.finish_reason or ""),
        )

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncGenerator[StreamedResponse]:
        """One ``textInference`` streamed over SSE."""
        params, model_request_parameters = self._task_params(
            messages, model_settings, model_request_parameters
        )
        stream = MiniMaxTaskStreamedResponse(
            model_request_parameters=model_request_parameters, _model=self, _hook=self._hook, _params=params
        )
        try:
            yield stream
        finally:
            await self._hook.aclose()

    def _task_params(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> tuple[dict[str, Any], ModelRequestParameters]:
        """The hook's textInference parameters and the prepared request parameters.

        Every check runs here, before any HTTP call.
        """
        model_settings, model_request_parameters = self.prepare_request(
            model_settings, model_request_parameters
        )
        if model_request_parameters.function_tools or model_request_parameters.output_tools:
            raise UserError(
                "The MiniMax task API has no tools: use a 'pydanticai_minimax' connection with "
                '{"api": "chat"} for agents with tools (or a tool-based output_type)'
            )
        check_max_tokens(model_settings, TASK_MAX_TOKENS, "task")
        instructions = [
            p.content for p in self._get_instruction_parts(messages, model_request_parameters) or []
        ]
        system, turns = task_messages(messages)
        settings = model_settings or {}
        params = {
            "messages": turns,
            "system_prompt": "\n\n".join([*system, *instructions]) or None,
            "model": self._model_name,
            "max_tokens": settings.get("max_tokens"),
            "temperature": settings.get("temperature"),
            "top_p": settings.get("top_p"),
            "seed": settings.get("seed"),
        }
        return params, model_request_parameters


@dataclass
class MiniMaxTaskStreamedResponse(StreamedResponse):
    """A streamed ``textInference``: reasoning deltas become thinking, text deltas become text."""

    _model: MiniMaxTaskModel
    _hook: MiniMaxHook
    _params: dict[str, Any]
    _think: ThinkRouter = field(default_factory=lambda: ThinkRouter(SYSTEM), init=False)
    _timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc), init=False)

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        try:
            async for chunk in self._hook.astream_text_inference(**self._params):
                if chunk.errors:
                    error = chunk.errors[0]
                    raise ModelAPIError(
                        self.model_name, f"{error.code}: {error.message}", provider_error_code=error.code
                    )
                if chunk.delta.reasoning_content:
                    for event in self._parts_manager.handle_thinking_delta(
                        vendor_part_id="reasoning", content=chunk.delta.reasoning_content
                    ):
                        yield event
                if chunk.delta.text:
                    for event in self._think.feed(self._parts_manager, chunk.delta.text):
                        yield event
                if chunk.usage is not None:
                    self._usage = request_usage(chunk.usage)
                if chunk.finish_reason:
                    self.finish_reason = _FINISH_REASONS.get(chunk.finish_reason)
                if chunk.cost is not None or chunk.task_uuid:
                    self.provider_details = _details(chunk.cost, chunk.task_uuid)
                    self.provider_response_id = chunk.task_uuid
        except _NOT_FOR_FALLBACK:
            raise
        except MiniMaxError as err:
            raise _model_api_error(err, self.model_name) from err
        for event in self._think.flush(self._parts_manager):
            yield event

    @property
    def model_name(self) -> str:
        """The task model, as the model that opened the stream names it."""
        return self._model.model_name

    @property
    def provider_name(self) -> str:
        """The provider name pydantic-ai reports."""
        return SYSTEM

    @property
    def provider_url(self) -> str | None:
        """The task API URL of the model that opened the stream."""
        return self._model.base_url

    @property
    def timestamp(self) -> datetime:
        """When the stream started."""
        return self._timestamp


def task_messages(messages: Sequence[ModelMessage]) -> tuple[list[str], list[dict[str, str]]]:
    """pydantic-ai's history as (system prompts, task API turns); consecutive turns of one role are joined.

    :param messages: the history, the new request last.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []

    def add(role: str, text: str) -> None:
        if not text:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})

    for message in messages:
        if isinstance(message, ModelResponse):
            add("assistant", "".join(p.content for p in message.parts if isinstance(p, TextPart)))
            continue
        for part in message.parts if isinstance(message, ModelRequest) else ():
            if isinstance(part, SystemPromptPart):
                system.append(part.content)
            elif isinstance(part, UserPromptPart):
                if not isinstance(part.content, str):
                    raise UserError("The MiniMax task API takes text prompts only; got a multimodal prompt")
                add("user", part.content)
            elif isinstance(part, RetryPromptPart):
                add("user", part.model_response())
            else:
                raise UserError(
                    f"The MiniMax task API cannot carry a {type(part).__name__}: use a 'pydanticai_minimax' "
                    'connection with {"api": "chat"} for tools'
                )
    return system, turns


def request_usage(usage: TaskUsage | None) -> RequestUsage:
    """The task API's usage as pydantic-ai's; thinking tokens are part of the output tokens.

    :param usage: the result's usage, when the API reported it.
    """
    if usage is None:
        return RequestUsage()
    thinking = usage.thinking_tokens or 0
    return RequestUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        output_reasoning_tokens=thinking,
        details={"thinking_tokens": thinking} if thinking else {},
    )


def _details(cost: float | None, task_uuid: str | None) -> dict[str, Any] | None:
    details = {"cost_usd": cost, "task_uuid": task_uuid}
    return {key: value for key, value in details.items() if value is not None} or None


def _model_api_error(err: MiniMaxError, model_name: str) -> ModelAPIError:
    """Our API error as pydantic-ai's, so ``fallback_conn_ids`` moves on to the next connection."""
    return ModelAPIError(model_name, str(err), provider_error_code=err.code)
