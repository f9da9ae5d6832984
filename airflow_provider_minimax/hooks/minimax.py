"""MiniMaxHook: the task API and the chat completions API, sync and async, behind one retry policy.

The hook is assembled from one module per concept: :mod:`.transport` (connection, clients, the
retried send), :mod:`.task_api`, :mod:`.chat_api`, :mod:`.request_building` (input checks),
:mod:`.responses` (answers into models or typed errors), :mod:`.call_budget` (deadline, idle
limit, body cap), :mod:`.events` (SSE answers) and :mod:`.failures` (transport failures).
"""

from __future__ import annotations

import uuid
from typing import Any

from airflow_provider_minimax.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    connection_form_widgets,
    legacy_ui_field_behaviour,
)
from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxConnectionError,
    MiniMaxCreditError,
    MiniMaxError,
    MiniMaxTransientError,
)
from airflow_provider_minimax.hooks.chat_api import ChatApiMixin
from airflow_provider_minimax.hooks.request_building import Messages
from airflow_provider_minimax.hooks.responses import parse_chat_response
from airflow_provider_minimax.hooks.task_api import TaskApiMixin
from airflow_provider_minimax.results import GenerateResult, result_from_chat, result_from_task

__all__ = ["Messages", "MiniMaxHook"]


class MiniMaxHook(TaskApiMixin, ChatApiMixin):
    """Talk to MiniMax M2.7 through the task API or the chat completions API.

    Both sync and async methods share request building, response classification and the
    retry policy; only the I/O differs. Clients are pooled and reused for the hook's life.

    :param minimax_conn_id: the ``minimax`` connection to use.
    :param max_retries: retries for transient failures; overrides the connection's value.
    :param timeout: seconds per HTTP response; overrides the connection's value.
    """

    conn_name_attr = "minimax_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "MiniMax"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields for Airflow < 3.2; newer versions read provider info ``conn-fields``."""
        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's standard fields for Airflow < 3.2; newer versions read ``ui-field-behaviour``."""
        return legacy_ui_field_behaviour()

    def generate(
        self, messages: Messages, *, system_prompt: str | None = None, **settings: Any
    ) -> GenerateResult:
        """Ask the connection's API for one answer: text, usage and cost, whichever API it speaks.

        :param messages: a prompt, or message dicts.
        :param system_prompt: the system prompt.
        :param settings: ``temperature``, ``top_p``, ``max_tokens``, ``model`` and API-specific fields.
        """
        if self.settings.api == "chat":
            completion = self.chat_completion(messages, system_prompt=system_prompt, **settings)
            return result_from_chat(completion)
        return result_from_task(self.text_inference(messages, system_prompt=system_prompt, **settings))

    async def agenerate(
        self, messages: Messages, *, system_prompt: str | None = None, **settings: Any
    ) -> GenerateResult:
        """Async :meth:`generate`.

        :param messages: a prompt, or message dicts.
        :param system_prompt: the system prompt.
        :param settings: ``temperature``, ``top_p``, ``max_tokens``, ``model`` and API-specific fields.
        """
        if (await self.aget_settings()).api == "chat":
            completion = await self.achat_completion(messages, system_prompt=system_prompt, **settings)
            return result_from_chat(completion)
        return result_from_task(await self.atext_inference(messages, system_prompt=system_prompt, **settings))

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and the URL without spending money.

        The task API is asked for an unknown taskUUID (getResponse is free); the chat API gets
        an empty conversation, which is refused as invalid (not billed) only after the key passed.
        """
        try:
            settings = self.settings
        except Exception as err:  # a missing connection or a bad field: the form shows the reason
            return False, str(err)
        try:
            if settings.api == "task":
                probe = str(uuid.uuid4())
                error = self.get_responses([probe], max_retries=0).error_for(probe)
                if error is None:  # an unknown taskUUID must come back as an error: nothing else answered
                    return False, f"MiniMax at {settings.base_url} did not answer as the task API"
            else:
                body = {"model": settings.model, "messages": []}
                self._send(self._chat_call(settings, body, max_retries=0), parse_chat_response)
        except (MiniMaxAuthError, MiniMaxCreditError) as err:
            return False, f"Reached MiniMax, but the key was refused: {err}"
        except MiniMaxConnectionError as err:
            return False, f"MiniMax is unreachable: {err}"
        except MiniMaxTransientError as err:
            return False, f"MiniMax is reachable but failing right now: {err}"
        except MiniMaxError as err:
            # The chat API refusing the empty conversation, or a task-API error code, proves the
            # key passed; anything else (a bare 404 page) means the base URL points elsewhere.
            passed = err.status_code in (400, 422) if settings.api == "chat" else bool(err.code)
            if passed:
                return True, f"Connected to the MiniMax {settings.api} API; the key is valid."
            return False, f"MiniMax at {settings.base_url} did not answer as the {settings.api} API: {err}"
        except Exception as err:  # never raise into the connection form
            return False, f"Testing the connection failed: {type(err).__name__}: {err}"
        return True, f"Connected to the MiniMax {settings.api} API; the key is valid."
