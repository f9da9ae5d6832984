"""Each row's prompt (the template rendered with the row) and image, checked before any HTTP call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.images import check_image

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_minimax.hooks.minimax import MiniMaxHook


class RowPrompts:
    """Render rows' prompts and find their images, refusing a bad row by its index.

    :param env: the DAG's template environment, so its filters and macros work.
    :param prompt_template: the Jinja source; the row's fields are variables, as are ``row`` (the
        record), ``row_index`` and the task context.
    :param context: the task context.
    :param image_field: the row field holding each row's image, if any.
    :param hook: the batch's hook: its connection's API must be ``chat`` for images.
    """

    def __init__(
        self,
        env: jinja2.Environment,
        prompt_template: str,
        context: Mapping[str, Any],
        *,
        image_field: str | None,
        hook: MiniMaxHook,
    ) -> None:
        # A missing field is an error in any case (a DAG's default, and without one a silent ""
        # would send a wrong prompt to every such row).
        if env.undefined is not jinja2.StrictUndefined:
            env = env.overlay(undefined=jinja2.StrictUndefined)
        try:
            self._template = env.from_string(prompt_template)
        except jinja2.TemplateSyntaxError as err:
            raise MiniMaxValidationError(
                f"prompt_template is not valid Jinja (line {err.lineno}): {err.message}",
                parameter="prompt_template",
            ) from None
        self._base = dict(context)
        self.image_field = image_field
        self.hook = hook

    def render(self, index: int, record: dict[str, Any]) -> str:
        """One row's prompt; raises naming the row when a field is missing or the prompt is empty.

        :param index: the row's index in the whole input.
        :param record: the row.
        """
        try:
            prompt = str(self._template.render({**self._base, **record, "row": record, "row_index": index}))
        except jinja2.UndefinedError as err:
            raise MiniMaxValidationError(
                f"row {index}: prompt_template uses a field the row does not have ({err.message}); "
                f"the row's fields are {sorted(record)}",
                parameter=f"rows[{index}]",
            ) from None
        if not prompt.strip():
            raise MiniMaxValidationError(
                f"row {index}: prompt_template rendered an empty prompt", parameter=f"rows[{index}]"
            )
        return prompt

    def window(self, offset: int, records: list[dict[str, Any]]) -> dict[int, str]:
        """The prompts of consecutive rows, by row index.

        :param offset: the index of the first of ``records`` in the whole input.
        :param records: the rows.
        """
        return {offset + i: self.render(offset + i, record) for i, record in enumerate(records)}

    def images(self, records: list[dict[str, Any]], offset: int = 0) -> dict[int, Any]:
        """Each row's image source, every one checked (not read whole).

        :param records: the rows.
        :param offset: the index of the first of ``records`` in the whole input.
        """
        if self.image_field is None:
            return {}
        if self.hook.settings.api != "chat":
            raise MiniMaxValidationError(
                f"image_field needs a chat-API connection (the task API takes text only); "
                f"{self.hook.minimax_conn_id!r} speaks the task API: use a connection with extra.api 'chat'",
                parameter="image_field",
            )
        images = {}
        for index, record in enumerate(records, start=offset):
            where = f"rows[{index}].{self.image_field}"
            source = record.get(self.image_field)
            if source in (None, ""):
                raise MiniMaxValidationError(
                    f"{where}: the row has no image (fields: {sorted(record)})", parameter=where
                )
            check_image(source, where)
            images[index] = source
        return images
