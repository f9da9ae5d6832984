"""Structured output: ask for JSON matching a pydantic model, read it back, and say what was wrong."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from airflow_provider_minimax.exceptions import MiniMaxOutputValidationError
from airflow_provider_minimax.hooks.request_building import build
from airflow_provider_minimax.models import refuse_bool

M = TypeVar("M", bound=BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
MAX_RAW_IN_ERROR = 500
#: The most re-asks after a mismatching answer, on every API: each re-ask is a paid answer.
MAX_OUTPUT_RETRIES = 10
#: ``max_output_retries``: 0..:data:`MAX_OUTPUT_RETRIES`, a number (never ``True``).
OutputRetries = Annotated[int, BeforeValidator(refuse_bool), Field(ge=0, le=MAX_OUTPUT_RETRIES)]


class _OutputRetriesOption(BaseModel):
    """``max_output_retries`` alone, for :func:`check_output_retries`."""

    max_output_retries: OutputRetries


def check_output_retries(value: Any, what: str) -> None:
    """Refuse a ``max_output_retries`` outside 0..10 when the DAG is parsed (a template once rendered).

    :param value: the operator's ``max_output_retries``.
    :param what: the operator, for the message.
    :raises MiniMaxValidationError: naming the field and the bound (also a ``ValueError``).
    """
    if not isinstance(value, str):  # a template is checked with the other knobs once rendered
        build(_OutputRetriesOption, f"{what} parameters", max_output_retries=value)


class OutputMismatch(ValueError):
    """The answer was not JSON matching the model; ``feedback`` is what to tell the model.

    :param feedback: the parse or validation problem, phrased for the model.
    :param raw: the answer as received.
    """

    def __init__(self, feedback: str, raw: str) -> None:
        self.feedback = feedback
        self.raw = raw
        super().__init__(feedback)


def json_schema(output_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a pydantic model.

    :param output_type: the model.
    """
    return output_type.model_json_schema()


def response_format(output_type: type[BaseModel]) -> dict[str, Any]:
    """The chat API's ``response_format`` asking for the model's schema.

    :param output_type: the model.
    """
    return {
        "type": "json_schema",
        "json_schema": {"name": output_type.__name__, "schema": json_schema(output_type), "strict": True},
    }


def schema_instructions(output_type: type[BaseModel]) -> str:
    """System-prompt instructions for an API without ``response_format`` (the task API).

    :param output_type: the model.
    """
    schema = json.dumps(json_schema(output_type), ensure_ascii=False)
    return (
        "Answer with one JSON object only, no prose and no code fence. "
        f"It must validate against this JSON schema:\n```json\n{schema}\n```"
    )


def _json_text(answer: str) -> str:
    """The JSON part of an answer: a fenced block if any, else from the first brace to the last."""
    fenced = _FENCE.search(answer)
    if fenced:
        return fenced.group(1).strip()
    start, end = answer.find("{"), answer.rfind("}")
    return answer[start : end + 1] if 0 <= start < end else answer.strip()


def parse_output(answer: str, output_type: type[M]) -> M:
    """Read an answer as an instance of ``output_type``.

    :param answer: the model's answer (think block already removed).
    :param output_type: the model to validate against.
    :raises OutputMismatch: with feedback that can be sent back to the model.
    """
    try:
        return output_type.model_validate_json(_json_text(answer))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise OutputMismatch(f"The JSON did not match the schema: {problems}", answer) from None


def reask_prompt(mismatch: OutputMismatch) -> str:
    """The follow-up user message that asks the model to fix its previous answer.

    :param mismatch: what was wrong.
    """
    return f"{mismatch.feedback}. Answer again with one corrected JSON object only."


def truncated(raw: str, limit: int = MAX_RAW_IN_ERROR) -> str:
    """An answer cut to fit in an error message.

    :param raw: the answer.
    :param limit: the most characters kept.
    """
    return raw if len(raw) <= limit else f"{raw[:limit]}… ({len(raw) - limit} more characters)"


@dataclass
class OutputReasks:
    """The one structured-output re-ask rule of the operators and the batch runner.

    Each answer is read as ``output_type``; on a mismatch the model is asked again, shown its
    wrong answer and what was wrong, until ``max_reasks`` re-asks are spent.

    :param output_type: the pydantic model answers must match.
    :param max_reasks: re-asks allowed after the first answer.
    :param reasks: re-asks already made (a try resumed after a deferral carries its count over).
    """

    output_type: type[BaseModel]
    max_reasks: int
    reasks: int = 0

    def read(self, answer: str) -> BaseModel:
        """The answer as ``output_type``.

        :param answer: the answer, think block removed.
        :raises OutputMismatch: when it does not match.
        """
        return parse_output(answer, self.output_type)

    def follow_up(
        self, mismatch: OutputMismatch, content: str | None = None, **error: Any
    ) -> list[dict[str, str]]:
        """Count one re-ask and return its two turns: the wrong answer, then what was wrong.

        :param mismatch: what was wrong with the last answer.
        :param content: that answer as received, think block included (MiniMax requires it back
            unchanged); ``mismatch.raw`` when not given.
        :param error: extra fields of the error raised when the re-asks are spent (``task_uuid``).
        :raises MiniMaxOutputValidationError: when no re-ask is left.
        """
        if self.reasks >= self.max_reasks:
            raise MiniMaxOutputValidationError(
                f"The answer never matched {self.output_type.__name__} after {self.reasks + 1} answer(s), "
                f"that is after {self.reasks} re-ask(s): {mismatch.feedback}. "
                f"Last answer: {truncated(mismatch.raw)!r}",
                parameter="output_type",
                **error,
            )
        self.reasks += 1
        return [
            {"role": "assistant", "content": content or mismatch.raw or "(empty answer)"},
            {"role": "user", "content": reask_prompt(mismatch)},
        ]
