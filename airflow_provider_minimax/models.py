"""Pydantic wire models for the MiniMax task API and chat completions API.

Requests enforce the seed's bounds so that bad input fails before any HTTP call; responses
parse tolerantly (unknown fields are kept, the older error forms are accepted).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, to_json

TASK_MODEL = "minimax:m2.7@highspeed"
CHAT_MODEL = "minimax-m2.7"
MAX_SEED = 4_294_967_295
TASK_MAX_TOKENS = 196_608
CHAT_MAX_TOKENS = 16_384
MAX_SYSTEM_PROMPT_CHARS = 200_000
TERMINAL_STATUSES = frozenset({"success", "error"})
#: A version-4 UUID in its canonical form: lower-case hex, hyphenated, RFC 4122 variant.
_CANONICAL_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
#: What an image part may point at: a web URL or inline base64 image data.
_IMAGE_URL = re.compile(r"^(https?://[^/\s]+\S*|data:image/[\w.+-]+;base64,\S+)$", re.IGNORECASE)


def _two_decimals(value: float) -> float:
    """Reject a sampling value that is not on the API's 0.01 grid."""
    if abs(round(value, 2) - value) > 1e-9:
        raise ValueError("must be a multiple of 0.01")
    return value


def _uuid4_shaped(value: str) -> str:
    """Accept only a UUID with the version-4 nibble and the RFC 4122 variant, as the API requires."""
    if _CANONICAL_UUID4.fullmatch(value):  # already in the form it is sent in (uuid4() gives it)
        return value
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID v4") from None
    if parsed.version != 4 or parsed.variant != uuid.RFC_4122:
        raise ValueError("must be a UUID v4 (version nibble 4, RFC 4122 variant)")
    return str(parsed)


def refuse_bool(value: Any) -> Any:
    """Refuse ``True``/``False`` where a number is expected: pydantic would read them as 1 and 0.

    :param value: the raw value.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def short_repr(value: Any, limit: int = 120) -> str:
    """The repr of a rejected value, cut so a 200000-character prompt does not flood the log.

    :param value: the value.
    :param limit: the most characters kept.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def problem_text(problem: ErrorDetails) -> str:
    """One pydantic error as ``<rule> (got <value>)``.

    The validators here state the rule only; the value is added here, so every message says it once.

    :param problem: one item of ``ValidationError.errors()``.
    """
    return f"{problem['msg']} (got {short_repr(problem.get('input'))})"


def _not_blank(value: str) -> str:
    """Refuse text that is only whitespace: it would be sent and billed for nothing."""
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _none_as_empty(value: Any) -> Any:
    """Read ``null`` as an empty list: gateways send ``"choices": null`` beside a ``base_resp`` error."""
    return [] if value is None else value


def _http_url(value: str) -> str:
    """Check a webhook URL without rewriting it: its query string may carry the receiver's auth."""
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in {"http", "https"} or not rest or rest.startswith("/"):
        raise ValueError("must be an absolute http(s) URL")
    return value


def _json_data(value: Any) -> Any:
    """Refuse what has no JSON form in a free-form field: it is sent as given, so it must be JSON.

    NaN and the infinities would reach the server as the non-JSON tokens ``NaN`` and
    ``Infinity``; a set or any other object has no JSON form at all.
    """
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        where, item = pending.pop()
        if item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"must be JSON: {where or 'the value'} is {item}, which JSON cannot carry")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"must be JSON: key {key!r} at {where or 'the top'} is not a string")
                pending.append((f"{where}.{key}" if where else key, inner))
        elif isinstance(item, list | tuple):
            pending.extend((f"{where}[{index}]", inner) for index, inner in enumerate(item))
        else:
            raise ValueError(f"must be JSON: {where or 'the value'} is a {type(item).__name__}")
    return value


NotABool = BeforeValidator(refuse_bool)
UnitInterval = Annotated[float, NotABool, Field(ge=0, le=1), AfterValidator(_two_decimals)]
Count = Annotated[int, NotABool]
Number = Annotated[float, NotABool, Field(allow_inf_nan=False)]
#: A free-form JSON object sent as given (tools, routing, response_format, extra_body...).
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_data)]
Text = Annotated[str, AfterValidator(_not_blank)]
WebhookURL = Annotated[str, AfterValidator(_http_url)]
TaskUUID = Annotated[str, AfterValidator(_uuid4_shaped)]


class _CamelModel(BaseModel):
    """Base for task API messages: snake_case in Python, camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """Serialize to the JSON the API expects."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def task_array(tasks: Sequence[_CamelModel]) -> bytes:
    """The body of a task-API request: the tasks' wire form (as ``to_wire`` gives it) as one JSON array.

    Encoded by pydantic straight from the models, without the dicts in between.

    :param tasks: the tasks of one request.
    """
    return to_json(tasks, by_alias=True, exclude_none=True)


class _TolerantModel(BaseModel):
    """Base for responses: unknown fields are kept, aliases and field names both accepted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


# --------------------------------------------------------------------------------------------
# Task API: requests
# --------------------------------------------------------------------------------------------


class TaskMessage(_CamelModel):
    """One turn of a textInference conversation."""

    role: Literal["user", "assistant"]
    content: Text


class TextInferenceSettings(_CamelModel):
    """Sampling settings nested under ``settings`` in a textInference task."""

    system_prompt: Text | None = Field(default=None, min_length=1, max_length=MAX_SYSTEM_PROMPT_CHARS)
    temperature: UnitInterval | None = None
    top_p: UnitInterval | None = None
    max_tokens: Count | None = Field(default=None, ge=1, le=TASK_MAX_TOKENS)


class TextInferenceTask(_CamelModel):
    """A ``textInference`` task, validated against the seed's bounds."""

    task_type: Literal["textInference"] = "textInference"
    task_uuid: TaskUUID = Field(alias="taskUUID")
    model: str = Field(default=TASK_MODEL, min_length=1)
    delivery_method: Literal["sync", "async", "stream"] = "sync"
    webhook_url: WebhookURL | None = Field(default=None, alias="webhookURL")
    include_cost: bool | None = None
    include_usage: bool | None = None
    number_results: Count | None = Field(default=None, ge=1, le=4)
    seed: Count | None = Field(default=None, ge=0, le=MAX_SEED)
    messages: list[TaskMessage] = Field(min_length=1)
    settings: TextInferenceSettings | None = None
    tools: list[JsonObject] | None = None
    tool_choice: JsonObject | str | None = None
    output_format: Literal["TEXT"] | None = None
    routing: JsonObject | None = None

    @field_validator("messages")
    @classmethod
    def _last_message_is_user(cls, messages: list[TaskMessage]) -> list[TaskMessage]:
        if messages and messages[-1].role != "user":
            raise ValueError(f"the last message must have role 'user', got {messages[-1].role!r}")
        return messages

    @field_validator("number_results")
    @classmethod
    def _stream_has_one_result(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A field validator (delivery_method is declared earlier) so the error names numberResults.
        if info.data.get("delivery_method") == "stream" and (value or 1) > 1:
            raise ValueError("must be 1 with deliveryMethod 'stream' (numberResults > 1 cannot stream)")
        return value


class GetResponseTask(_CamelModel):
    """A ``getResponse`` poll for one async task."""

    task_type: Literal["getResponse"] = "getResponse"
    task_uuid: TaskUUID = Field(alias="taskUUID")


# --------------------------------------------------------------------------------------------
# Task API: responses
# --------------------------------------------------------------------------------------------


class TaskUsage(_TolerantModel):
    """Token usage of a textInference result."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    thinking_tokens: int | None = None


class ApiError(_TolerantModel):
    """One entry of the task API's ``errors`` list (or the older single ``error`` object)."""

    code: str = "unknown"
    message: str = ""
    parameter: str | list[str] | None = None
    task_type: str | None = None
    task_uuid: str | None = Field(default=None, alias="taskUUID")
    documentation: str | None = None
    allowed_values: list[Any] | None = None


class TaskResult(_TolerantModel):
    """One item of ``data``: an acknowledgement, a getResponse status or a finished result."""

    task_type: str
    task_uuid: str = Field(alias="taskUUID")
    status: str | None = None
    progress: float | None = None
    text: str | None = None
    finish_reason: str | None = None
    usage: TaskUsage | None = None
    cost: float | None = None
    seed: int | None = None
    reasoning_content: list[str] | None = None
    result_index: int | None = None
    error: ApiError | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether polling can stop: any status other than success/error means still running."""
        return self.status in TERMINAL_STATUSES

    @property
    def is_success(self) -> bool:
        """Whether this item is a finished result (sync results carry text and no status)."""
        return self.status == "success" or (self.status is None and self.text is not None)


class TaskApiResponse(_TolerantModel):
    """The task API envelope: ``data`` and/or ``errors``; the older ``error`` forms accepted."""

    data: list[TaskResult] = Field(default_factory=list)
    errors: list[ApiError] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fold_in_the_older_error_form(self) -> TaskApiResponse:
        # After validation, not before: a "before" step would have pydantic turn every answer
        # into Python objects first, to hand them over, and only then validate them.
        extra = self.__pydantic_extra__ or {}
        single = extra.pop("error", None)
        if isinstance(single, dict):
            single = {**single}
            for key in ("taskUUID", "taskType"):
                if key in extra and key not in single:
                    single[key] = extra.pop(key)
            self.errors.append(ApiError.model_validate(single))
        return self


class TextInferenceDelta(_TolerantModel):
    """The incremental part of a streamed textInference chunk."""

    text: str | None = None
    reasoning_content: str | None = None


class TextInferenceChunk(_TolerantModel):
    """One SSE chunk of a streamed textInference (``{"data": {...}}`` wrapping accepted)."""

    task_type: str | None = None
    task_uuid: str | None = Field(default=None, alias="taskUUID")
    delta: TextInferenceDelta = Field(default_factory=TextInferenceDelta)
    finish_reason: str | None = None
    usage: TaskUsage | None = None
    cost: float | None = None
    errors: list[ApiError] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
            raw = raw["data"]
        if isinstance(raw, dict) and isinstance(raw.get("error"), dict):
            raw = {**raw, "errors": [*raw.get("errors", []), raw["error"]]}
            raw.pop("error")
        return raw


# --------------------------------------------------------------------------------------------
# Chat completions API (OpenAI protocol): requests
# --------------------------------------------------------------------------------------------


class _OpenAIModel(BaseModel):
    """Base for chat API messages: snake_case on the wire, unknown request keys refused."""

    model_config = ConfigDict(extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """Serialize to the JSON the API expects."""
        return self.model_dump(mode="json", exclude_none=True)


class ChatToolCallFunction(BaseModel):
    """The function name and JSON-encoded arguments of a tool call."""

    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str = "{}"


class ChatToolCall(BaseModel):
    """A tool call the assistant asks for."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: ChatToolCallFunction


class ChatMessage(_OpenAIModel):
    """One OpenAI chat message; content is a string or a list of parts (text, image_url).

    Unknown keys (``reasoning_details``, ``refusal``...) are kept: a previous assistant turn
    goes back exactly as it came.
    """

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[JsonObject] | None = None
    name: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts_are_usable(
        cls, content: str | list[dict[str, Any]] | None
    ) -> str | list[dict[str, Any]] | None:
        for index, part in enumerate(content if isinstance(content, list) else []):
            if part.get("type") == "text" and not str(part.get("text") or "").strip():
                raise ValueError(f"part {index}: a text part needs non-blank text")
            if part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str) or not _IMAGE_URL.match(url):
                    raise ValueError(f"part {index}: image_url.url must be an http(s) or data:image/ URL")
        return content

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        if self.role == "assistant" and self.tool_calls:
            return self
        blank = isinstance(self.content, str) and not self.content.strip()
        if self.content is None or blank or (isinstance(self.content, list) and len(self.content) == 0):
            raise ValueError(f"a {self.role!r} message needs non-empty content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs tool_call_id")
        return self


class ChatCompletionRequest(_OpenAIModel):
    """A chat completions request, validated against the contract's bounds.

    Unknown fields are refused so that a typo is not silently ignored by the server; fields the
    contract does not name go in ``extra_body``, sent as they are (as in the openai client).
    """

    model: str = Field(default=CHAT_MODEL, min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Count | None = Field(default=None, ge=1, le=CHAT_MAX_TOKENS)
    temperature: UnitInterval | None = None
    top_p: UnitInterval | None = None
    tools: list[JsonObject] | None = None
    tool_choice: str | JsonObject | None = None
    response_format: JsonObject | None = None
    stream: bool | None = None
    stream_options: JsonObject | None = None
    reasoning_split: bool | None = None
    # Further OpenAI-protocol parameters (no ``seed``: the contract names none for this API).
    stop: str | list[str] | None = None
    n: Count | None = Field(default=None, ge=1)
    parallel_tool_calls: bool | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logit_bias: dict[str, Number] | None = None
    logprobs: bool | None = None
    top_logprobs: Count | None = None
    user: str | None = None
    extra_body: JsonObject | None = Field(default=None, exclude=True)

    @field_validator("tools")
    @classmethod
    def _tools_name_their_function(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, tool in enumerate(tools or []):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if tool.get("type", "function") != "function" or not isinstance(name, str) or not name.strip():
                spec = "{'type': 'function', 'function': {'name': ..., 'parameters': {...}}}"
                raise ValueError(f"tool {index} must be {spec}")
        return tools

    @field_validator("response_format")
    @classmethod
    def _known_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be 'text', 'json_object' or 'json_schema'")
        spec = value.get("json_schema")
        if kind == "json_schema" and not (
            isinstance(spec, dict)
            and isinstance(spec.get("name"), str)
            and spec["name"].strip()
            and isinstance(spec.get("schema"), dict)
        ):
            raise ValueError("a 'json_schema' format needs json_schema: {'name': ..., 'schema': {...}}")
        return value

    @model_validator(mode="after")
    def _tool_messages_answer_a_call(self) -> ChatCompletionRequest:
        called: set[str] = set()
        for index, message in enumerate(self.messages):
            called.update(call.id for call in message.tool_calls or ())
            if message.role == "tool" and message.tool_call_id not in called:
                raise ValueError(
                    f"messages[{index}].tool_call_id {message.tool_call_id!r} answers no tool call of an "
                    "earlier assistant message"
                )
        return self

    def to_wire(self) -> dict[str, Any]:
        """Serialize to the JSON the API expects, ``extra_body`` merged in."""
        return {**super().to_wire(), **(self.extra_body or {})}


# --------------------------------------------------------------------------------------------
# Chat completions API: responses
# --------------------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)


def split_think(content: str | None) -> tuple[str, str | None]:
    """Split a MiniMax answer into (answer, reasoning): the leading ``<think>`` block is the reasoning."""
    if not content:
        return "", None
    match = _THINK_BLOCK.match(content)
    if match is None:
        return content, None
    return content[match.end() :], match.group(1).strip()


class ChatPromptTokensDetails(BaseModel):
    """``usage.prompt_tokens_details``: ``cached_tokens`` only when the gateway sends it."""

    model_config = ConfigDict(extra="allow")

    cached_tokens: int | None = None


class ChatCompletionTokensDetails(BaseModel):
    """``usage.completion_tokens_details``: ``reasoning_tokens`` only when the gateway sends it."""

    model_config = ConfigDict(extra="allow")

    reasoning_tokens: int | None = None


class ChatUsage(BaseModel):
    """Token usage of a chat completion."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: ChatPromptTokensDetails | None = None
    completion_tokens_details: ChatCompletionTokensDetails | None = None


class ChatResponseMessage(BaseModel):
    """The assistant message of a choice, kept verbatim for multi-turn replay."""

    model_config = ConfigDict(extra="allow")

    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    reasoning_details: list[dict[str, Any]] | None = None

    @property
    def answer(self) -> str:
        """The content without the leading ``<think>`` block."""
        return split_think(self.content)[0]

    @property
    def reasoning(self) -> str | None:
        """The reasoning: the ``<think>`` block, or ``reasoning_details`` when split server-side."""
        thought = split_think(self.content)[1]
        if thought is None and self.reasoning_details:
            thought = "\n".join(str(d.get("text", "")) for d in self.reasoning_details) or None
        return thought

    def as_request_message(self) -> ChatMessage:
        """The message to send back in a later turn: content unchanged, think block included."""
        extra = {"reasoning_details": self.reasoning_details} if self.reasoning_details else {}
        return ChatMessage(role="assistant", content=self.content, tool_calls=self.tool_calls, **extra)


class ChatChoice(BaseModel):
    """One choice of a chat completion."""

    model_config = ConfigDict(extra="allow")

    index: int = 0
    message: ChatResponseMessage
    finish_reason: str | None = None


class BaseResp(BaseModel):
    """MiniMax gateway status carried inside an HTTP 200; a non-zero code is an error."""

    model_config = ConfigDict(extra="allow")

    status_code: int = 0
    status_msg: str = ""


_Choice = TypeVar("_Choice", bound=BaseModel)


class _ChatAnswer(BaseModel, Generic[_Choice]):
    """What a chat completion and each of its streamed chunks carry: ids, choices, usage, gateway status."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    object: str
    created: int = 0
    model: str = ""
    choices: Annotated[list[_Choice], BeforeValidator(_none_as_empty)] = Field(default_factory=list)
    usage: ChatUsage | None = None
    base_resp: BaseResp | None = None


class ChatCompletion(_ChatAnswer[ChatChoice]):
    """A chat completion (``object: chat.completion``)."""

    object: str = "chat.completion"

    @property
    def message(self) -> ChatResponseMessage:
        """The first choice's message."""
        if not self.choices:
            return ChatResponseMessage(content="")
        return self.choices[0].message

    @property
    def answer(self) -> str:
        """The first choice's answer, think block removed."""
        return self.message.answer

    @property
    def reasoning(self) -> str | None:
        """The first choice's reasoning, when the model gave one."""
        return self.message.reasoning


class ChatDelta(BaseModel):
    """The incremental part of a streamed chat chunk."""

    model_config = ConfigDict(extra="allow")

    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChunkChoice(BaseModel):
    """One choice of a streamed chat chunk."""

    model_config = ConfigDict(extra="allow")

    index: int = 0
    delta: ChatDelta = Field(default_factory=ChatDelta)
    finish_reason: str | None = None


class ChatErrorDetail(BaseModel):
    """The OpenAI-style ``error`` object."""

    model_config = ConfigDict(extra="allow")

    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class ChatCompletionChunk(_ChatAnswer[ChatChunkChoice]):
    """One SSE chunk of a streamed chat completion (``object: chat.completion.chunk``)."""

    object: str = "chat.completion.chunk"
    error: ChatErrorDetail | None = None
