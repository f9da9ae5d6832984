"""Building requests: pydantic validation into errors that name the field, prompts into messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.models import (
    ChatMessage,
    ChatResponseMessage,
    TaskMessage,
    problem_text,
    short_repr,
)

#: A prompt, or a conversation of message dicts (or the hook's message models, see :func:`message_dict`).
Messages = str | Sequence[Mapping[str, Any] | ChatMessage | ChatResponseMessage | TaskMessage]


def validation_error(err: ValidationError, what: str) -> MiniMaxValidationError:
    """Turn a pydantic error into one that names the field, the value and the bound.

    :param err: the pydantic error.
    :param what: the request being built, for the message.
    """
    problems = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or what
        problems.append(f"{field}: {problem_text(item)}")
    first = err.errors()[0]["loc"] if err.errors() else ()
    return MiniMaxValidationError(
        f"Invalid {what}: " + "; ".join(problems),
        parameter=".".join(str(part) for part in first) or None,
    )


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


def refuse_seed_on_chat(seed: Any, api: str, conn_id: str) -> None:
    """Refuse ``seed`` on the chat API before any HTTP call: its contract names no ``seed``.

    One rule for the hook, ``MiniMaxChatOperator`` and ``MiniMaxBatchOperator``: a seed the server
    may ignore would promise reproducible answers it does not give.

    :param seed: the ``seed`` given.
    :param api: the connection's API.
    :param conn_id: the connection, for the message.
    """
    if api == "chat" and seed is not None:
        raise MiniMaxValidationError(
            f"'seed' is supported by the task API only (the chat completions API takes no seed); "
            f"{conn_id!r} speaks the chat API: drop 'seed', or use a connection with extra.api 'task'",
            parameter="seed",
        )


def checked_text(value: Any, parameter: str, *, required: bool = False) -> str | None:
    """A text parameter: a string with something in it, or None where it may be omitted.

    Checked before any string work, so a number or a blank value is refused naming the
    parameter rather than failing deep inside (a ``TypeError``) or being sent as it is.

    :param value: the parameter's value.
    :param parameter: its name, for the message.
    :param required: refuse None too.
    """
    if (value is not None or required) and (not isinstance(value, str) or not value.strip()):
        raise MiniMaxValidationError(
            f"{parameter} must be a non-blank string, got {short_repr(value)}", parameter=parameter
        )
    return value


def normalise_messages(messages: Messages) -> list[dict[str, Any]]:
    """Accept a prompt string or a list of messages: dicts, or the hook's own message models.

    :param messages: a prompt, or OpenAI-style message dicts; a :class:`ChatMessage` (such as
        ``completion.message.as_request_message()``), the ``completion.message`` itself or a
        :class:`TaskMessage` may stand for a dict.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, bytes | Mapping | BaseModel) or not isinstance(messages, Sequence):
        raise MiniMaxValidationError(
            f"messages must be a prompt string or a list of message dicts, got {type(messages).__name__}",
            parameter="messages",
        )
    return [message_dict(message, f"messages[{index}]") for index, message in enumerate(messages)]


def message_dict(message: Any, parameter: str) -> dict[str, Any]:
    """One message as the dict a request carries; the hook's message models are accepted as they are.

    :param message: a message dict, a :class:`ChatMessage`, a :class:`ChatResponseMessage` (an
        answer fed back into the conversation) or a :class:`TaskMessage`.
    :param parameter: the parameter it came in, for the message.
    """
    if isinstance(message, ChatResponseMessage):
        message = message.as_request_message()
    if isinstance(message, ChatMessage | TaskMessage):
        return message.to_wire()
    if not isinstance(message, Mapping):
        raise MiniMaxValidationError(
            f"{parameter} must be a message dict with 'role' and 'content' (or a ChatMessage), "
            f"got {type(message).__name__}",
            parameter=parameter,
        )
    return dict(message)


def split_system(
    messages: list[dict[str, Any]], system_prompt: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Move ``system`` messages into the task API's ``systemPrompt`` (it has no system role).

    :param messages: message dicts.
    :param system_prompt: an explicit system prompt, which comes first.
    """
    system_parts = [checked_text(system_prompt, "system_prompt")]
    turns = []
    for index, message in enumerate(messages):
        if message.get("role") == "system":
            # systemPrompt is plain text: content parts or numbers are refused, never str()-ed.
            system_parts.append(
                checked_text(message.get("content"), f"messages[{index}].content", required=True)
            )
        else:
            turns.append({"role": message.get("role"), "content": message.get("content")})
    texts = [part for part in system_parts if part is not None]
    return turns, "\n\n".join(texts) if texts else None
