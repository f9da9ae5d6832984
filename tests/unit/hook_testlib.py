"""Helpers shared by the hook-layer unit tests: connections, hooks with fake sleeps, canned wire bodies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fake_sleep import FakeSleep

from airflow_provider_minimax.hooks.minimax import MiniMaxHook

TASK_URL = "https://task.minimax.test/v1"
CHAT_URL = "https://chat.minimax.test/v1"
CHAT_COMPLETIONS_URL = f"{CHAT_URL}/chat/completions"
SECRET_KEY = "sk-SECRET-123"
CONN_ID = "minimax_unit"


def v4(n: int) -> str:
    """A stable, valid version-4 UUID for test number ``n``.

    :param n: any small integer.
    """
    return str(uuid.UUID(int=n, version=4))


def set_connection(
    monkeypatch: pytest.MonkeyPatch,
    *,
    api: str = "task",
    conn_id: str = CONN_ID,
    host: str | None = None,
    password: str | None = SECRET_KEY,
    **extra: Any,
) -> None:
    """Define a ``minimax`` connection through ``AIRFLOW_CONN_<ID>`` (JSON form).

    :param monkeypatch: restores the environment afterwards.
    :param api: ``task`` or ``chat``.
    :param conn_id: the connection id.
    :param host: the base URL; the API's test URL when omitted.
    :param password: the API key.
    :param extra: further extra fields.
    """
    conn: dict[str, Any] = {
        "conn_type": "minimax",
        "host": host if host is not None else (TASK_URL if api == "task" else CHAT_URL),
        "extra": {"api": api, **extra},
    }
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def make_hook(
    monkeypatch: pytest.MonkeyPatch,
    *,
    api: str = "task",
    hook_kwargs: dict[str, Any] | None = None,
    **extra: Any,
) -> tuple[MiniMaxHook, FakeSleep]:
    """A hook on a fresh connection, with ``time.sleep`` and ``asyncio.sleep`` replaced by a recorder.

    :param monkeypatch: restores the environment afterwards.
    :param api: ``task`` or ``chat``.
    :param hook_kwargs: keyword arguments for the hook.
    :param extra: connection extra fields.
    """
    set_connection(monkeypatch, api=api, **extra)
    return MiniMaxHook(CONN_ID, **(hook_kwargs or {})), FakeSleep.installed(monkeypatch)


def task_result(task_uuid: str, text: str = "hello", **fields: Any) -> dict[str, Any]:
    """A finished textInference result item.

    :param task_uuid: the task.
    :param text: the answer.
    :param fields: further fields.
    """
    return {
        "taskType": "textInference",
        "taskUUID": task_uuid,
        "text": text,
        "finishReason": "stop",
        "usage": {"promptTokens": 3, "completionTokens": 5, "totalTokens": 8},
        "cost": 0.0012,
        **fields,
    }


def chat_body(content: str = "<think>plan</think>Hello!", **fields: Any) -> dict[str, Any]:
    """A chat completion body.

    :param content: the assistant content.
    :param fields: further top-level fields.
    """
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1732000000,
        "model": "minimax-m2.7",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
        **fields,
    }


def sse_response(*events: Any, status: int = 200) -> httpx.Response:
    """An SSE response; each event is a JSON-able object or a raw line (comments, ``[DONE]``).

    :param events: the events in order.
    :param status: the HTTP status.
    """
    lines = []
    for event in events:
        if isinstance(event, str) and (event.startswith(":") or event == "[DONE]"):
            lines.append(event if event.startswith(":") else f"data: {event}")
        else:
            lines.append(f"data: {json.dumps(event)}")
    body = "\n\n".join(lines) + "\n\n"
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body.encode())


def sent_json(request: httpx.Request) -> Any:
    """The JSON body a request carried.

    :param request: a recorded request.
    """
    return json.loads(request.content)
