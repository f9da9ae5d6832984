"""Python callables as chat-API tools: JSON schemas from type hints and docstrings, validated calls."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ArgsKwargs, to_jsonable_python

from airflow_provider_minimax.models import ChatToolCall

# OpenAI-protocol function names: letters, digits, underscores and dashes, at most 64.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PARAM_LINE = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_ANY_FIELD_LINE = re.compile(r"^\s*:\w+")
_ALLOWED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
#: The most characters of one tool result sent back to the model.
MAX_RESULT_CHARS = 20_000


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Read a reST docstring: the first line, and each ``:param name:`` text (continuations joined).

    :param doc: the docstring, or None.
    """
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    summary = lines[0].strip() if lines else ""
    params: dict[str, str] = {}
    current: str | None = None
    for line in lines:
        match = _PARAM_LINE.match(line)
        if match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current and line.strip() and not _ANY_FIELD_LINE.match(line):
            params[current] = f"{params[current]} {line.strip()}".strip()
        else:
            current = None
    return summary, params


@dataclass(frozen=True)
class Tool:
    """A Python callable offered to the model as a function tool.

    :param name: the function name the model calls.
    :param description: what the tool does (the docstring's first line).
    :param parameters: the JSON schema of its arguments.
    :param function: the callable.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any] = field(repr=False, compare=False)
    _adapter: TypeAdapter[Any] = field(repr=False, compare=False)

    @classmethod
    def from_callable(cls, function: Callable[..., Any], name: str | None = None) -> Tool:
        """Derive a tool from a callable's signature, type hints and docstring.

        :param function: a function whose parameters are all nameable (no ``*args``, ``**kwargs``
            or positional-only parameters); unannotated parameters accept any JSON value.
        :param name: the name the model sees; the function's ``__name__`` when omitted.
        :raises TypeError: when the callable cannot be described as a tool.
        """
        tool_name = str(name or getattr(function, "__name__", ""))
        if not _NAME.match(tool_name):
            raise TypeError(
                f"Tool name {tool_name!r} is invalid: it must match [A-Za-z0-9_-] and be 1 to 64 "
                "characters; pass a named function"
            )
        for param in inspect.signature(function).parameters.values():
            if param.kind not in _ALLOWED_KINDS:
                raise TypeError(
                    f"Tool {tool_name!r}: parameter {param.name!r} is {param.kind.description}; "
                    "tools take named parameters only"
                )
        adapter: TypeAdapter[Any] = TypeAdapter(function)  # type: ignore[arg-type]  # callables are supported
        try:
            schema = adapter.json_schema()
        except Exception as err:
            raise TypeError(f"Tool {tool_name!r}: cannot derive a JSON schema: {err}") from None
        summary, param_docs = parse_docstring(inspect.getdoc(function))
        properties = schema.setdefault("properties", {})
        for param_name, text in param_docs.items():
            if param_name in properties and text:
                properties[param_name].setdefault("description", text)
        return cls(tool_name, summary, schema, function, adapter)

    def spec(self) -> dict[str, Any]:
        """The ``tools`` entry of a chat request."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def call(self, arguments: str | Mapping[str, Any] | None) -> Any:
        """Validate the model's arguments and run the tool.

        :param arguments: the JSON-encoded arguments (or a mapping) from the tool call.
        :raises ToolArgumentsError: when the arguments are not JSON or do not match the schema.
        """
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as err:
                raise ToolArgumentsError(f"arguments are not valid JSON: {err}") from None
        if not isinstance(arguments, Mapping):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            result = self._adapter.validate_python(ArgsKwargs((), dict(arguments)))
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(arguments)'}: {e['msg']}"
                for e in err.errors(include_url=False)
            )
            raise ToolArgumentsError(f"invalid arguments: {problems}") from None
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return result


class ToolArgumentsError(ValueError):
    """The model called a tool with arguments that do not fit its signature."""


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def result_text(result: Any) -> str:
    """A tool's return value as the text of a tool message (JSON unless it is already a string).

    :param result: what the tool returned.
    """
    if isinstance(result, str):
        text = result or '""'  # A tool message needs content: an empty string is sent as JSON.
    elif isinstance(result, BaseModel):
        text = result.model_dump_json()
    else:
        text = json.dumps(to_jsonable_python(result, fallback=str), ensure_ascii=False)
    if len(text) > MAX_RESULT_CHARS:
        text = f"{text[:MAX_RESULT_CHARS]}… (truncated, {len(text) - MAX_RESULT_CHARS} more characters)"
    return text


class ToolBox:
    """The tools of one operator: their request specs, and answers to the model's tool calls.

    :param tools: callables or ready :class:`Tool` objects; names must be unique.
    """

    def __init__(self, tools: Iterable[Callable[..., Any] | Tool]) -> None:
        self.tools: dict[str, Tool] = {}
        for item in tools:
            tool = item if isinstance(item, Tool) else Tool.from_callable(item)
            if tool.name in self.tools:
                raise TypeError(f"Two tools are named {tool.name!r}; tool names must be unique")
            self.tools[tool.name] = tool

    def specs(self) -> list[dict[str, Any]]:
        """The ``tools`` list of a chat request."""
        return [tool.spec() for tool in self.tools.values()]

    def answer(self, call: ChatToolCall) -> tuple[dict[str, Any], str | None]:
        """Run one tool call; failures become the tool result so the model can react.

        :param call: the tool call from the assistant message.
        :return: the ``tool`` message to send back, and the error text when the call failed.
        """
        error: str | None = None
        tool = self.tools.get(call.function.name)
        if tool is None:
            error = f"unknown tool {call.function.name!r}; available: {', '.join(self.tools)}"
        else:
            try:
                content = result_text(tool.call(call.function.arguments))
            except ToolArgumentsError as err:
                error = str(err)
            except Exception as err:
                # The model sees the failure and may retry or answer without it; the task goes on.
                error = f"{type(err).__name__}: {err}"
        if error is not None:
            content = f"error: {error}"
        return {"role": "tool", "tool_call_id": call.id, "content": content}, error
