"""What Airflow discovers about this provider (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_minimax import __version__

_PACKAGE = "airflow_provider_minimax"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: connection type and form, hooks, operators, triggers, sensors, decorators."""
    return {
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
                "connection-type": "minimax",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.runware.ai/v1 (task) or https://llm.bytespike.ai/v1 (chat)",
                        "password": "MiniMax API key",
                        "extra": '{"api": "task", "timeout": 120, "max_retries": 4}',
                    },
                },
                "conn-fields": {
                    "api": {
                        "label": "API",
                        "description": "task: textInference/getResponse; chat: OpenAI chat completions",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["task", "chat", None],
                            "default": "task",
                        },
                    },
                    "model": {
                        "label": "Model",
                        "description": "Default: minimax:m2.7@highspeed (task) or minimax-m2.7 (chat)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 120, "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries on 408/429/5xx and network errors",
                        "schema": {"type": ["integer", "null"], "default": 4, "minimum": 0, "maximum": 20},
                    },
                    "retry_max_wait": {
                        "label": "Max backoff wait (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                    "max_tasks_per_request": {
                        "label": "Tasks per request",
                        "description": "How many tasks (or getResponse polls) one task-API request carries",
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 100,
                            "minimum": 1,
                            "maximum": 1000,
                        },
                    },
                    "max_connections": {
                        "label": "HTTP connection pool size",
                        "schema": {"type": ["integer", "null"], "default": 64, "minimum": 1, "maximum": 1000},
                    },
                },
            }
        ],
    }
