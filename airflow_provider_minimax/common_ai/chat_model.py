"""The pydantic-ai model of a ``pydanticai_minimax`` connection with ``api: chat``.

pydantic-ai's OpenAI chat-completions model, pointed at the connection's base URL, with what
MiniMax M2.7 needs on top: the leading ``<think>`` block becomes a thinking part without the
blank lines that follow it, earlier assistant turns go back with their think block exactly as
MiniMax wrote it (the model reasons worse without them), ``max_tokens`` is checked against the
chat API's cap before any HTTP call, and transient failures are retried by our retry policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from openai import AsyncOpenAI
from pydantic_ai.messages import ModelResponse, ModelResponseStreamEvent, TextPart, ThinkingPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIStreamedResponse
from pydantic_ai.profiles.openai import OpenAIModelProfile
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from airflow_provider_minimax import __version__
from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxTransientError, MiniMaxValidationError
from airflow_provider_minimax.hooks.request_building import refuse_seed_on_chat
from airflow_provider_minimax.models import CHAT_MAX_TOKENS
from airflow_provider_minimax.retry import RetryPolicy, is_retryable_status, parse_retry_after
from airflow_provider_minimax.streaming import ThinkSplitter

THINK_TAGS = ("<think>", "</think>")
#: What MiniMax writes between the think block and the answer.
THINK_SEPARATOR = "\n\n"

MINIMAX_CHAT_PROFILE = OpenAIModelProfile(
    thinking_tags=THINK_TAGS,
    ignore_streamed_leading_whitespace=True,
    # MiniMax wants the think block back inside the assistant content, where it came from.
    openai_chat_send_back_thinking_parts="tags",
    supports_tools=True,
    supports_json_schema_output=True,
    default_structured_output_mode="native",
)


class RetryingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that retries 408/429/5xx and network errors with our retry policy.

    The last attempt's response is returned as it is, so the OpenAI SDK reports the status.

    :param policy: the provider's retry policy.
    :param inner: the transport that does the I/O.
    """

    def __init__(self, policy: RetryPolicy, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying transient failures."""
        with self._policy.async_retrying() as retrying:
            async for attempt in retrying:
                with attempt:
                    response = await self._inner.handle_async_request(request)
                    last = attempt.retry_state.attempt_number > self._policy.max_retries
                    if is_retryable_status(response.status_code) and not last:
                        await response.aread()
                        await response.aclose()
                        raise MiniMaxTransientError(
                            f"MiniMax chat API answered HTTP {response.status_code}",
                            status_code=response.status_code,
                            retry_after=parse_retry_after(response.headers.get("Retry-After")),
                        )
                    return response
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class MiniMaxChatModel(OpenAIChatModel):
    """MiniMax M2.7 over the chat completions API, as a pydantic-ai model.

    :param model_name: the chat model, ``minimax-m2.7``.
    :param settings: the validated connection settings (base URL, key, timeout, retries).
    """

    def __init__(self, model_name: str, settings: MiniMaxConnectionSettings) -> None:
        policy = RetryPolicy.for_connection(settings)
        http_client = httpx.AsyncClient(
            transport=RetryingTransport(policy),
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            headers={"User-Agent": f"airflow-provider-minimax/{__version__}"},
        )
        client = AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            # openai 1.x/2.x take an httpx client natively, 3.x still accepts one at run time; our
            # retry policy and its transport are httpx's.
            http_client=http_client,  # type: ignore[arg-type]
            max_retries=0,  # our transport retries; two layers would multiply the attempts
        )
        super().__init__(
            model_name, provider=OpenAIProvider(openai_client=client), profile=MINIMAX_CHAT_PROFILE
        )
        self._conn_id = settings.conn_id

    @property
    def system(self) -> str:
        """The provider name pydantic-ai reports (spans, usage, fallbacks)."""
        return "minimax"

    def prepare_request(
        self, model_settings: ModelSettings | None, model_request_parameters: ModelRequestParameters
    ) -> tuple[ModelSettings | None, ModelRequestParameters]:
        """Merge settings as pydantic-ai does, then reject a ``seed`` or a ``max_tokens`` above the cap."""
        model_settings, model_request_parameters = super().prepare_request(
            model_settings, model_request_parameters
        )
        check_max_tokens(model_settings, CHAT_MAX_TOKENS, "chat")
        refuse_seed_on_chat((model_settings or {}).get("seed"), "chat", self._conn_id)
        return model_settings, model_request_parameters

    @property
    def _streamed_response_cls(self) -> type[OpenAIStreamedResponse]:
        """Streams whose ``<think>`` block may arrive split across chunks."""
        return MiniMaxChatStreamedResponse

    def _process_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        """Split the think block off as pydantic-ai does, and drop the blank lines MiniMax puts after it."""
        processed = super()._process_response(response, **kwargs)
        processed.parts = strip_after_thinking(processed.parts)
        return processed

    def _map_model_response(self, message: ModelResponse) -> Any:
        """An earlier assistant turn as MiniMax wrote it: ``<think>…</think>`` then the answer."""
        mapped = super()._map_model_response(message)
        if mapped is None or not any(isinstance(p, ThinkingPart) for p in message.parts):
            return mapped
        pieces = [
            f"{THINK_TAGS[0]}{part.content}{THINK_TAGS[1]}"
            if isinstance(part, ThinkingPart)
            else part.content
            for part in message.parts
            if isinstance(part, ThinkingPart | TextPart)
        ]
        return {**mapped, "content": THINK_SEPARATOR.join(pieces)}


@dataclass
class ThinkRouter:
    """Streamed content into a thinking part and a text part, as MiniMax's leading ``<think>`` block goes.

    pydantic-ai splits thinking tags only when a tag is a chunk of its own; MiniMax's may come
    inside any chunk, so :class:`ThinkSplitter` does the splitting (and drops the blank lines
    after the block).

    :param provider_name: the name stamped on the thinking part.
    """

    provider_name: str | None
    _splitter: ThinkSplitter = field(default_factory=ThinkSplitter)

    def feed(self, parts_manager: Any, piece: str) -> Iterator[ModelResponseStreamEvent]:
        """Events for the next piece of streamed content."""
        yield from self._events(parts_manager, self._splitter.feed(piece))

    def flush(self, parts_manager: Any) -> Iterator[ModelResponseStreamEvent]:
        """Events for what is still held when the stream ends."""
        yield from self._events(parts_manager, self._splitter.flush())

    def _events(
        self, parts_manager: Any, pieces: Iterable[tuple[str, str]]
    ) -> Iterator[ModelResponseStreamEvent]:
        for kind, text in pieces:
            if kind == "reasoning":
                yield from parts_manager.handle_thinking_delta(
                    vendor_part_id="minimax-think",
                    content=text,
                    id="content",
                    provider_name=self.provider_name,
                )
            else:
                yield from parts_manager.handle_text_delta(vendor_part_id="minimax-text", content=text)


@dataclass
class MiniMaxChatStreamedResponse(OpenAIStreamedResponse):
    """pydantic-ai's chat stream, with the think block routed by :class:`ThinkRouter`."""

    _think: ThinkRouter | None = field(default=None, init=False)

    def _router(self) -> ThinkRouter:
        if self._think is None:
            self._think = ThinkRouter(self.provider_name)
        return self._think

    def _map_text_delta(self, choice: Any) -> Iterable[ModelResponseStreamEvent]:
        content = choice.delta.content
        if isinstance(content, str) and content:
            self._raw_text_content += content
            yield from self._router().feed(self._parts_manager, content)

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        async for event in super()._get_event_iterator():
            yield event
        for event in self._router().flush(self._parts_manager):
            yield event


def strip_after_thinking(parts: Any) -> list[Any]:
    """Parts with the whitespace after each thinking part removed; text left empty by that is dropped.

    :param parts: the parts of a response.
    """
    out: list[Any] = []
    for part in parts:
        if isinstance(part, TextPart) and out and isinstance(out[-1], ThinkingPart):
            part = replace(part, content=part.content.lstrip())
            if not part.content:
                continue
        out.append(part)
    return out


def check_max_tokens(model_settings: ModelSettings | None, cap: int, api: str) -> None:
    """Reject a ``max_tokens`` setting outside ``1..cap`` before any HTTP call.

    :param model_settings: the merged model settings.
    :param cap: the API's largest ``max_tokens``.
    :param api: the API's name, for the message.
    """
    max_tokens = (model_settings or {}).get("max_tokens")
    if max_tokens is not None and not 1 <= max_tokens <= cap:
        raise MiniMaxValidationError(
            f"model_settings 'max_tokens' must be between 1 and {cap} on the MiniMax {api} API, "
            f"got {max_tokens}",
            parameter="max_tokens",
        )
