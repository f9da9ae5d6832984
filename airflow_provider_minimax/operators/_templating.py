"""Prompt templating shared by the operators: a prompt that merely ends in ``.md`` is text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2
from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


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
