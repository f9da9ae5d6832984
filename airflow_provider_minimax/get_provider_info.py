"""What Airflow discovers about this provider (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_minimax import __version__
from airflow_provider_minimax.connection import CONN_TYPE, conn_fields, ui_field_behaviour

_PACKAGE = "airflow_provider_minimax"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: connection types and forms, hooks, operators, triggers, sensors, decorators."""
    info: dict[str, Any] = {
        "package-name": "airflow-provider-minimax",
        "name": "MiniMax",
        "description": "MiniMax M2.7 through the task API and the chat completions API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "MiniMax",
                "external-doc-url": "https://www.minimax.io/",
                "tags": ["ai"],
            }
        ],
        "hooks": [{"integration-name": "MiniMax", "python-modules": [f"{_PACKAGE}.hooks.minimax"]}],
        "operators": [
            {
                "integration-name": "MiniMax",
                "python-modules": [
                    f"{_PACKAGE}.operators.text_inference",
                    f"{_PACKAGE}.operators.chat",
                    f"{_PACKAGE}.operators.batch",
                ],
            }
        ],
        "triggers": [{"integration-name": "MiniMax", "python-modules": [f"{_PACKAGE}.triggers.minimax"]}],
        "sensors": [{"integration-name": "MiniMax", "python-modules": [f"{_PACKAGE}.sensors.minimax"]}],
        "task-decorators": [{"class-name": f"{_PACKAGE}.decorators.minimax.minimax_task", "name": "minimax"}],
        "connection-types": [
            {
                "hook-class-name": f"{_PACKAGE}.hooks.minimax.MiniMaxHook",
                "hook-name": "MiniMax",
                "connection-type": CONN_TYPE,
                "ui-field-behaviour": ui_field_behaviour(),
                "conn-fields": conn_fields(),
            }
        ],
    }
    info["connection-types"].append(_pydanticai_minimax(info["connection-types"][0]))
    return info


def _pydanticai_minimax(minimax: dict[str, Any]) -> dict[str, Any]:
    """The ``pydanticai_minimax`` type: the ``minimax`` form plus common.ai's fallback chain.

    Declared whether or not the ``common-ai`` extra is installed: Airflow imports a hook class
    only when the type is used, and our module then raises
    ``AirflowOptionalProviderFeatureException``, which Airflow reports as a disabled feature.
    """
    return {
        **minimax,
        "hook-class-name": f"{_PACKAGE}.common_ai.hook.PydanticAIMiniMaxHook",
        "hook-name": "Pydantic AI (MiniMax)",
        "connection-type": "pydanticai_minimax",
        "conn-fields": {
            **minimax["conn-fields"],
            "fallback_conn_ids": {
                "label": "Fallback connections",
                "description": "pydanticai* connection ids to fail over to, in order (common.ai)",
                "schema": {"type": ["array", "null"], "items": {"type": "string"}},
            },
        },
    }
