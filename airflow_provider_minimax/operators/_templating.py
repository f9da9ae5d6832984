"""Prompt pieces shared by the operators: templating (a prompt that merely ends in ``.md`` is
text) and the system prompt that carries ``output_type``'s schema on the task API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2
from airflow.providers.common.compat.sdk import BaseOperator

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


class PromptTemplateMixin(BaseOperator):
    """Render like any operator, except text that only ends in a template extension.

    "Summarise the attached README.md" names no template file: a string with whitespace in it
    is rendered as text when no such file exists; a bare path still fails loudly.
    """

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
