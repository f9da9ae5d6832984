"""Prompt pieces shared by the operators: templating (a prompt that merely ends in ``.md`` is
text), refusing a blank prompt, and the system prompt that carries ``output_type``'s schema on
the task API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jinja2
from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.structured import schema_instructions

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from pydantic import BaseModel


def system_with_schema(system_prompt: str | None, output_type: type[BaseModel] | None) -> str | None:
    """The system prompt followed by ``output_type``'s schema instructions (the task API has no
    ``response_format``); None when both are absent.

    :param system_prompt: the operator's system prompt.
    :param output_type: the pydantic model the answer must match, if any.
    """
    parts = (system_prompt, schema_instructions(output_type) if output_type is not None else None)
    return "\n\n".join(part for part in parts if part) or None


def check_prompt(prompt: Any, messages: Sequence[Mapping[str, Any]] | None) -> None:
    """Refuse a blank prompt or message: the API would bill it, and it is never what was meant.

    :param prompt: the operator's ``prompt``, after templating.
    :param messages: the operator's ``messages``, after templating.
    """
    if prompt is not None:
        if isinstance(prompt, str) and not prompt.strip():
            raise MiniMaxValidationError("prompt is empty or only whitespace", parameter="prompt")
        return
    for index, message in enumerate(messages or []):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str) and not content.strip():
            raise MiniMaxValidationError(
                f"messages[{index}].content is empty or only whitespace",
                parameter=f"messages[{index}].content",
            )


class PromptTemplateMixin(BaseOperator):
    """Render like any operator, except text that only ends in a template extension.

    "Summarise the attached README.md" names no template file: a string with whitespace in it
    is rendered as text when no such file exists; a bare path still fails loudly.
    """

    template_ext: Sequence[str] = (".txt", ".md", ".j2")
    template_fields_renderers = {"prompt": "md", "system_prompt": "md", "messages": "json"}

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Render ``content``; fall back to rendering it as text when it is a sentence, not a file.

        :param content: the value to render.
        :param context: the task context.
        :param jinja_env: the Jinja environment.
        :param seen_oids: objects already rendered (cycle guard).
        """
        try:
            return super().render_template(content, context, jinja_env, seen_oids)
        except jinja2.TemplateNotFound:
            if not isinstance(content, str) or not any(ch.isspace() for ch in content.strip()):
                raise
            env = jinja_env or self.get_template_env()
            return self._render(env.from_string(content), context)
