"""Structured output where the API has no ``response_format``: the JSON schema goes in the system prompt."""

from __future__ import annotations

import json
from typing import Any

#: pydantic-ai's prompted-output template (``{schema}`` is filled in by pydantic-ai). The fenced
#: block is what the task API's model follows best, and what the emulator looks for.
PROMPTED_OUTPUT_TEMPLATE = (
    "Answer with one JSON object only, no prose and no code fence. "
    "It must validate against this JSON schema:\n```json\n{schema}\n```"
)


def schema_prompt(schema: dict[str, Any]) -> str:
    """The system-prompt instructions asking for JSON that validates against ``schema``.

    :param schema: a JSON schema.
    """
    return PROMPTED_OUTPUT_TEMPLATE.replace("{schema}", json.dumps(schema, ensure_ascii=False))
