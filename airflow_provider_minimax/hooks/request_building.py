"""Building requests: pydantic validation into errors that name the field, prompts into messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from airflow_provider_minimax.exceptions import MiniMaxValidationError

if TYPE_CHECKING:
    from pydantic import BaseModel

Messages = str | Sequence[Mapping[str, Any]]


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
            f"{parameter} must be a non-blank string, got {_short_repr(value)}", parameter=parameter
        )
    return value


def normalise_messages(messages: Messages) -> list[dict[str, Any]]:
    """Accept a prompt string or a list of message mappings.

    :param messages: a prompt, or OpenAI-style message dicts.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, bytes | Mapping) or not isinstance(messages, Sequence):
        raise MiniMaxValidationError(
            f"messages must be a prompt string or a list of message dicts, got {type(messages).__name__}",
            parameter="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise MiniMaxValidationError(
                f"messages[{index}] must be a message dict with 'role' and 'content', "
                f"got {type(message).__name__}",
                parameter=f"messages[{index}]",
            )
    return [dict(message) for message in messages if isinstance(message, Mapping)]


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
