"""The ``pydanticai_minimax`` connection type: common.ai's ``PydanticAIHook`` resolving MiniMax models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook

from airflow_provider_minimax.common_ai.chat_model import MiniMaxChatModel
from airflow_provider_minimax.common_ai.task_model import MiniMaxTaskModel
from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.hooks.minimax import MiniMaxHook

if TYPE_CHECKING:
    from pydantic_ai.models import Model

CONN_TYPE = "pydanticai_minimax"
#: The model_id prefix of MiniMax in common.ai (``minimax:m2.7@highspeed``); also the batch adapter's name.
MODEL_PROVIDER = "minimax"


class PydanticAIMiniMaxHook(PydanticAIHook):
    """MiniMax M2.7 for common.ai's operators (``LLMOperator``, ``AgentOperator``, ``LLMBatchOperator``...).

    The connection has the same fields and validation as a ``minimax`` connection (``api``,
    ``model``, ``timeout``, ``max_retries``...), plus common.ai's ``fallback_conn_ids``.
    ``get_conn()`` returns a pydantic-ai model: with ``api: chat`` the OpenAI chat-completions
    model with MiniMax's profile, with ``api: task`` a model speaking ``textInference``.

    :param llm_conn_id: the ``pydanticai_minimax`` connection.
    :param model_id: the model; ``minimax:m2.7@highspeed`` (task API) or ``minimax-m2.7`` (chat
        API). Overrides the connection's ``model``; the API's model when neither names one.
    :param fallback_conn_ids: connections (any ``pydanticai*`` type) to fail over to, in order.
    """

    conn_type = CONN_TYPE
    default_conn_name = "pydanticai_minimax_default"
    hook_name = "Pydantic AI (MiniMax)"
    model_provider = MODEL_PROVIDER

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and the URL without spending money, with the ``minimax`` connection's answers."""
        with MiniMaxHook(self.llm_conn_id) as hook:
            return hook.test_connection()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Deprecated form hook, kept for Airflow < 3.2; provider info declares the form."""
        return MiniMaxHook.get_ui_field_behaviour()

    def settings(self) -> MiniMaxConnectionSettings:
        """The connection validated as a ``minimax`` connection is (errors name the field and the bound)."""
        conn, _ = self._get_conn_and_extra()
        return MiniMaxConnectionSettings.from_connection(conn)

    def _resolve_own_model(
        self,
        *,
        forwarded_model_id: str | None = None,
        forwarded_from_conn_id: str | None = None,
        forwarded_model_provider: str | None = None,
    ) -> Model:
        """This connection's model, ignoring the fallback chain (common.ai wraps that around it)."""
        settings = self.settings()
        model_name = self.model_id or self._get_conn_and_extra()[1].get("model")
        if not model_name and forwarded_model_provider == MODEL_PROVIDER:
            # A MiniMax primary's model name means the same thing on a MiniMax fallback.
            model_name = forwarded_model_id
        model_name = str(model_name or settings.model)
        self.log.info("MiniMax %s API model %r at %s", settings.api, model_name, settings.base_url)
        if settings.api == "chat":
            return MiniMaxChatModel(model_name, settings)
        return MiniMaxTaskModel(model_name, MiniMaxHook(self.llm_conn_id), settings.base_url)
