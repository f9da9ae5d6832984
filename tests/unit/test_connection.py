"""The ``minimax`` connection: both env-var forms, defaults, errors, provider info, no key leaks."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import httpx
import pytest
import respx
from hook_testlib import CHAT_COMPLETIONS_URL, SECRET_KEY, TASK_URL, make_hook, v4

from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxAuthError, MiniMaxConfigurationError, MiniMaxError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook

ENV = "AIRFLOW_CONN_MINIMAX_DEFAULT"


def _settings(monkeypatch: pytest.MonkeyPatch, value: str | dict[str, Any]) -> MiniMaxConnectionSettings:
    monkeypatch.setenv(ENV, value if isinstance(value, str) else json.dumps(value))
    return MiniMaxHook().settings


# ------------------------------------------------------------------------ both env-var forms


@pytest.mark.parametrize(
    ("value", "api", "base_url", "model"),
    [
        pytest.param(
            {"conn_type": "minimax", "password": "k"},
            "task",
            "https://api.runware.ai/v1",
            "minimax:m2.7@highspeed",
            id="json-task-defaults",
        ),
        pytest.param(
            {"conn_type": "minimax", "password": "k", "extra": {"api": "chat"}},
            "chat",
            "https://llm.bytespike.ai/v1",
            "minimax-m2.7",
            id="json-chat-defaults",
        ),
        pytest.param(
            {
                "conn_type": "minimax",
                "host": "https://proxy.example.com/v1/",
                "password": "k",
                "extra": {"model": "m"},
            },
            "task",
            "https://proxy.example.com/v1",
            "m",
            id="json-full-url-and-model",
        ),
        pytest.param(
            "minimax://:k@", "task", "https://api.runware.ai/v1", "minimax:m2.7@highspeed", id="uri-defaults"
        ),
        pytest.param(
            "minimax://:k@api.example.com:8443/v1?api=chat",
            "chat",
            "https://api.example.com:8443/v1",
            "minimax-m2.7",
            id="uri-host-port-path-chat",
        ),
        pytest.param(
            "minimax://:k@http%3A%2F%2F127.0.0.1%3A8765%2Fv1",
            "task",
            "http://127.0.0.1:8765/v1",
            "minimax:m2.7@highspeed",
            id="uri-percent-encoded-url",
        ),
        pytest.param(
            "minimax://:k@localhost:8765/v1?api=task&model=minimax%3Am2.7%40highspeed",
            "task",
            "http://localhost:8765/v1",
            "minimax:m2.7@highspeed",
            id="uri-localhost-is-http",
        ),
        pytest.param(
            {"conn_type": "minimax", "host": "http://127.0.0.1:8765/v1", "port": 8765, "password": "k"},
            "task",
            "http://127.0.0.1:8765/v1",
            "minimax:m2.7@highspeed",
            id="json-port-of-the-url",
        ),
        pytest.param(
            {"conn_type": "minimax", "host": "https://x.test/v1", "port": 443, "password": "k"},
            "task",
            "https://x.test/v1",
            "minimax:m2.7@highspeed",
            id="json-https-default-port",
        ),
    ],
)
def test_connection_forms(
    monkeypatch: pytest.MonkeyPatch, value: str | dict[str, Any], api: str, base_url: str, model: str
) -> None:
    settings = _settings(monkeypatch, value)
    assert (settings.api, settings.base_url, settings.model) == (api, base_url, model)
    assert settings.api_key.get_secret_value() == "k"
    assert settings.conn_id == "minimax_default"


def test_chat_completions_url_is_under_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, "minimax://:k@api.example.com/v1?api=chat")
    assert settings.chat_completions_url == "https://api.example.com/v1/chat/completions"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(
            {
                "conn_type": "minimax",
                "password": "k",
                "extra": {
                    "timeout": 9.5,
                    "max_retries": 7,
                    "retry_max_wait": 12,
                    "max_tasks_per_request": 50,
                    "max_connections": 8,
                },
            },
            id="json",
        ),
        pytest.param(
            "minimax://:k@?timeout=9.5&max_retries=7&retry_max_wait=12&max_tasks_per_request=50&max_connections=8",
            id="uri-query",
        ),
    ],
)
def test_tuning_fields_are_read_from_extra(
    monkeypatch: pytest.MonkeyPatch, value: str | dict[str, Any]
) -> None:
    settings = _settings(monkeypatch, value)
    assert (
        settings.timeout,
        settings.max_retries,
        settings.retry_max_wait,
        settings.max_tasks_per_request,
        settings.max_connections,
    ) == (9.5, 7, 12.0, 50, 8)


def test_tuning_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, "minimax://:k@")
    assert (
        settings.timeout,
        settings.max_retries,
        settings.retry_max_wait,
        settings.max_tasks_per_request,
    ) == (
        120.0,
        4,
        30.0,
        100,
    )


def test_hook_client_uses_the_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch, timeout=9.5)
    client = hook.client
    assert client.timeout.read == 9.5
    assert client.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert client.headers["user-agent"].startswith("airflow-provider-minimax/")
    hook.close()


def test_hook_timeout_overrides_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch, timeout=9.5, hook_kwargs={"timeout": 3})
    assert hook.settings.timeout == 3


# ------------------------------------------------------------------------ errors


# (id, connection, the field the error names)
BAD_CONNECTIONS: list[tuple[str, str | dict[str, Any], str]] = [
    ("missing-key-json", {"conn_type": "minimax", "host": "https://x.test/v1"}, "password"),
    ("missing-key-uri", "minimax://api.example.com/v1", "password"),
    ("ftp-url", {"conn_type": "minimax", "host": "ftp://x.test/v1", "password": "k"}, "host"),
    ("scheme-only", {"conn_type": "minimax", "host": "https://", "password": "k"}, "host"),
    ("unknown-api", {"conn_type": "minimax", "password": "k", "extra": {"api": "voice"}}, "api"),
    (
        "negative-retries",
        {"conn_type": "minimax", "password": "k", "extra": {"max_retries": -1}},
        "max_retries",
    ),
    ("zero-timeout", {"conn_type": "minimax", "password": "k", "extra": {"timeout": 0}}, "timeout"),
    (
        "port-not-the-urls",
        {"conn_type": "minimax", "host": "https://x.test/v1", "port": 8443, "password": "k"},
        "port",
    ),
    ("text-timeout", "minimax://:k@?timeout=soon", "timeout"),
    (
        "too-many-tasks",
        {"conn_type": "minimax", "password": "k", "extra": {"max_tasks_per_request": 5000}},
        "max_tasks_per_request",
    ),
]


@pytest.mark.parametrize(("value", "field"), [pytest.param(c[1], c[2], id=c[0]) for c in BAD_CONNECTIONS])
def test_bad_connection_errors_name_the_connection_and_the_field(
    monkeypatch: pytest.MonkeyPatch, value: str | dict[str, Any], field: str
) -> None:
    with pytest.raises(MiniMaxConfigurationError) as caught:
        _settings(monkeypatch, value)
    assert "'minimax_default'" in str(caught.value)
    assert f"'{field}'" in str(caught.value)


def test_extra_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = type("Conn", (), {"conn_id": "c1", "extra": "{not json", "password": "k", "host": None})()
    with pytest.raises(MiniMaxConfigurationError, match=r"'c1'.*'extra'"):
        MiniMaxConnectionSettings.from_connection(conn)  # type: ignore[arg-type]


def test_unknown_connection_id_is_an_airflow_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MINIMAX_NOWHERE", raising=False)
    with pytest.raises(Exception, match="minimax_nowhere"):
        MiniMaxHook("minimax_nowhere").settings  # noqa: B018


# ------------------------------------------------------------------------ the key never leaks


def test_key_is_not_in_repr_of_hook_or_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch)
    for text in (
        repr(hook),
        str(hook),
        repr(hook.settings),
        str(hook.settings),
        hook.settings.model_dump_json(),
    ):
        assert SECRET_KEY not in text


@pytest.mark.parametrize(
    ("answer", "retried"),
    [
        pytest.param(
            httpx.Response(401, json={"errors": [{"code": "invalidApiKey", "message": "Invalid key"}]}),
            False,
            id="401",
        ),
        pytest.param(httpx.Response(503, headers={"retry-after": "1"}, text="down"), True, id="503-retried"),
        pytest.param(httpx.ConnectError("refused"), True, id="unreachable"),
    ],
)
def test_key_is_never_in_an_error_or_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, answer: Any, retried: bool
) -> None:
    hook, _ = make_hook(monkeypatch, max_retries=2)
    with respx.mock() as router, caplog.at_level(logging.DEBUG):
        route = router.post(TASK_URL)
        route.mock(side_effect=answer) if isinstance(answer, Exception) else route.mock(return_value=answer)
        with pytest.raises(MiniMaxError) as caught:
            hook.text_inference("hi", task_uuid=v4(1))
        ok, message = hook.test_connection()
    assert not ok
    error = caught.value
    texts = [str(error), repr(error), message, str(pickle.loads(pickle.dumps(error))), caplog.text]
    texts += [str(vars(error))]
    if retried:  # every retry is logged: the log check below then has something to inspect
        assert caplog.records
    for text in texts:
        assert SECRET_KEY not in text


def test_key_is_not_in_a_chat_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    with respx.mock() as router:
        router.post(CHAT_COMPLETIONS_URL).respond(401, json={"error": {"message": "Incorrect API key"}})
        with pytest.raises(MiniMaxAuthError) as caught:
            hook.chat_completion("hi")
    assert SECRET_KEY not in str(caught.value) and SECRET_KEY not in repr(caught.value)


def test_configuration_errors_do_not_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MiniMaxConfigurationError) as caught:
        _settings(
            monkeypatch,
            {"conn_type": "minimax", "host": "ftp://x", "password": SECRET_KEY, "extra": {"timeout": -1}},
        )
    assert SECRET_KEY not in str(caught.value)


def test_errors_survive_pickling_with_their_fields() -> None:
    error = MiniMaxAuthError("bad key", status_code=401, code="invalidApiKey", task_uuid=v4(1))
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.status_code, clone.code, clone.task_uuid, str(clone)) == (
        MiniMaxAuthError,
        401,
        "invalidApiKey",
        v4(1),
        str(error),
    )
