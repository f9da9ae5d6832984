"""Bad input, as a new user writes it: each is refused with our error naming the field, before any HTTP call.

Every case runs under a respx mock whose only route records calls: a refused input must leave it
untouched. Cases cover the connection, the hook (task and chat API), every operator and the sensor.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from campaign_figures import FIGURES
from campaign_paths import make_context

from airflow_provider_minimax.exceptions import MiniMaxConfigurationError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.sensors.minimax import MiniMaxTaskSensor

BASE_URL = "http://127.0.0.1:9/v1"
CONN = MiniMaxConfigurationError
BAD = MiniMaxValidationError  # also a ValueError, as DAG-parse-time checks raise
UUID = "8c1f6a4e-2b0d-4f5a-9c3e-1d2b3c4d5e6f"


def conn_json(
    api: str = "task", password: str | None = "campaign-key", host: str = BASE_URL, **extra: Any
) -> str:
    return json.dumps(
        {"conn_type": "minimax", "host": host, "password": password, "extra": {"api": api, **extra}}
    )


@pytest.fixture
def no_http() -> Iterator[respx.Route]:
    """Every HTTP request lands on this route; a case passes only if it was never called."""
    with respx.mock(assert_all_called=False) as router:
        yield router.route().mock(
            return_value=httpx.Response(400, json={"errors": [{"code": "campaignRouteHit"}]})
        )


@pytest.fixture(autouse=True)
def _connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MINIMAX_DEFAULT", conn_json("task"))
    monkeypatch.setenv("AIRFLOW_CONN_MINIMAX_CHAT", conn_json("chat"))


INPUT_CSV = str(Path(tempfile.mkdtemp(prefix="campaign-bad-input-")) / "rows.csv")
Path(INPUT_CSV).write_text("q\nhello\n")


def lookup(city: str) -> str:
    """Look a city up.

    :param city: the city.
    """
    return city


def task_hook() -> MiniMaxHook:
    return MiniMaxHook("minimax_default")


def chat_hook() -> MiniMaxHook:
    return MiniMaxHook("minimax_chat")


def run(operator_factory: Callable[[], Any]) -> Callable[[], Any]:
    """Build an operator and execute it: a check may fire at DAG parse time or at execute."""
    return lambda: operator_factory().execute(make_context("bad", "run-bad"))


def text_op(**params: Any) -> Callable[[], Any]:
    params.setdefault("prompt", "hi")
    return run(lambda: MiniMaxTextInferenceOperator(task_id="bad", deferrable=True, **params))


def chat_op(**params: Any) -> Callable[[], Any]:
    params.setdefault("prompt", "hi")
    params.setdefault("conn_id", "minimax_chat")
    return run(lambda: MiniMaxChatOperator(task_id="bad", **params))


def batch_op(**params: Any) -> Callable[[], Any]:
    params.setdefault("prompt_template", "{{ row.q }}")
    if "input_path" not in params:
        params.setdefault("rows", [{"q": "a"}])
    return run(lambda: MiniMaxBatchOperator(task_id="bad", **params))


def sensor(**params: Any) -> Callable[[], Any]:
    params.setdefault("task_uuids", [UUID])
    return run(lambda: MiniMaxTaskSensor(task_id="bad", deferrable=True, **params))


def ask_task(**params: Any) -> Callable[[], Any]:
    messages = params.pop("messages", "hi")
    return lambda: task_hook().text_inference(messages, **params)


def ask_chat(**params: Any) -> Callable[[], Any]:
    messages = params.pop("messages", "hi")
    return lambda: chat_hook().chat_completion(messages, **params)


def on_conn(env: str, call: Callable[[], Any] | None = None) -> tuple[str, Callable[[], Any] | None]:
    return env, call


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# (id, connection JSON or None, the call, the error type, names the message must contain one of)
Case = tuple[str, str | None, Callable[[], Any], type[Exception], tuple[str, ...]]

CONNECTION_CASES: list[Case] = [
    (f"conn {name}", env, ask_task(), CONN, fields)
    for name, env, fields in [
        ("empty password", conn_json(password=""), ("password",)),
        ("no password", conn_json(password=None), ("password",)),
        ("password inner space", conn_json(password="ab cd"), ("password",)),
        ("password inner newline", conn_json(password="ab\ncd"), ("password",)),
        ("password non-ascii", conn_json(password="clé-secrète"), ("password",)),
        ("password control char", conn_json(password="ab\x00cd"), ("password",)),
        ("api unknown", conn_json(api="vision"), ("api",)),
        ("extra not JSON", json.dumps({"conn_type": "minimax", "password": "k", "extra": "{"}), ("extra",)),
        ("extra a list", json.dumps({"conn_type": "minimax", "password": "k", "extra": "[1]"}), ("extra",)),
        ("extra typo tiemout", conn_json(tiemout=5), ("tiemout",)),
        ("timeout true", conn_json(timeout=True), ("timeout",)),
        ("timeout negative", conn_json(timeout=-1), ("timeout",)),
        ("timeout zero", conn_json(timeout=0), ("timeout",)),
        ("timeout text", conn_json(timeout="soon"), ("timeout",)),
        ("total_timeout zero", conn_json(total_timeout=0), ("total_timeout",)),
        ("stream_idle_timeout negative", conn_json(stream_idle_timeout=-1), ("stream_idle_timeout",)),
        ("max_response_bytes tiny", conn_json(max_response_bytes=10), ("max_response_bytes",)),
        ("max_response_bytes true", conn_json(max_response_bytes=True), ("max_response_bytes",)),
        ("max_retries negative", conn_json(max_retries=-1), ("max_retries",)),
        ("max_retries 21", conn_json(max_retries=21), ("max_retries",)),
        ("max_retries true", conn_json(max_retries=True), ("max_retries",)),
        ("retry_max_wait zero", conn_json(retry_max_wait=0), ("retry_max_wait",)),
        ("max_tasks_per_request zero", conn_json(max_tasks_per_request=0), ("max_tasks_per_request",)),
        ("max_tasks_per_request 1001", conn_json(max_tasks_per_request=1001), ("max_tasks_per_request",)),
        ("max_connections zero", conn_json(max_connections=0), ("max_connections",)),
        ("chat_retry_on_read_timeout maybe", conn_json(chat_retry_on_read_timeout="maybe"), ("chat_retry",)),
        ("host ftp", conn_json(host="ftp://example.com/v1"), ("host",)),
        ("host scheme only", conn_json(host="http://"), ("host",)),
    ]
]

TASK_HOOK_CASES: list[Case] = [
    (f"hook task {name}", None, call, BAD, fields)
    for name, call, fields in [
        ("empty prompt", ask_task(messages=""), ("content", "messages")),
        ("blank prompt", ask_task(messages="   \n"), ("content", "messages")),
        ("prompt not a string", ask_task(messages=42), ("messages",)),
        ("no messages", ask_task(messages=[]), ("messages",)),
        ("last message not user", ask_task(messages=[{"role": "assistant", "content": "x"}]), ("messages",)),
        ("unknown role", ask_task(messages=[{"role": "robot", "content": "x"}]), ("role",)),
        ("blank message content", ask_task(messages=[user("  ")]), ("content",)),
        ("temperature below 0", ask_task(temperature=-0.1), ("temperature",)),
        ("temperature above 1", ask_task(temperature=1.5), ("temperature",)),
        ("temperature bool", ask_task(temperature=True), ("temperature",)),
        ("temperature text", ask_task(temperature="hot"), ("temperature",)),
        ("temperature off step", ask_task(temperature=0.005), ("temperature",)),
        ("top_p negative", ask_task(top_p=-1), ("top_p", "topP")),
        ("top_p above 1", ask_task(top_p=2), ("top_p", "topP")),
        ("max_tokens zero", ask_task(max_tokens=0), ("max_tokens", "maxTokens")),
        ("max_tokens too many", ask_task(max_tokens=196609), ("max_tokens", "maxTokens")),
        ("max_tokens bool", ask_task(max_tokens=True), ("max_tokens", "maxTokens")),
        ("max_tokens fraction", ask_task(max_tokens=1.5), ("max_tokens", "maxTokens")),
        ("number_results zero", ask_task(number_results=0), ("number_results", "numberResults")),
        ("number_results five", ask_task(number_results=5), ("number_results", "numberResults")),
        ("seed negative", ask_task(seed=-1), ("seed",)),
        ("seed too big", ask_task(seed=2**32), ("seed",)),
        ("seed bool", ask_task(seed=True), ("seed",)),
        ("system_prompt empty", ask_task(system_prompt=""), ("system_prompt", "systemPrompt")),
        ("system_prompt too long", ask_task(system_prompt="x" * 200_001), ("system_prompt", "systemPrompt")),
        ("task_uuid not a uuid", ask_task(task_uuid="not-a-uuid"), ("task_uuid", "taskUUID")),
        ("task_uuid version 1", ask_task(task_uuid=str(uuid.uuid1())), ("task_uuid", "taskUUID")),
        ("model empty", ask_task(model=" "), ("model",)),
        ("webhook_url not a url", ask_task(webhook_url="not a url"), ("webhook_url", "webhookURL")),
        (
            "submit raw dicts",
            lambda: task_hook().submit_tasks([{"taskType": "textInference", "taskUUID": UUID}]),  # type: ignore[list-item]
            ("tasks",),
        ),
        (
            "submit one uuid twice",
            lambda: task_hook().submit_tasks(
                [
                    task_hook().new_text_inference("a", task_uuid=UUID, delivery_method="async"),
                    task_hook().new_text_inference("b", task_uuid=UUID, delivery_method="async"),
                ]
            ),
            ("taskUUID", "task_uuid"),
        ),
        (
            "get_responses not a uuid",
            lambda: task_hook().get_responses("not-a-uuid"),
            ("taskUUID", "task_uuid"),
        ),
        ("get_responses number", lambda: task_hook().get_responses([42]), ("taskUUID", "task_uuid")),  # type: ignore[list-item]
        (
            "stream with number_results",
            lambda: list(task_hook().stream_text_inference("hi", number_results=2)),
            ("number_results", "numberResults"),
        ),
    ]
] + [
    ("hook chat API on a task connection", None, lambda: task_hook().chat_completion("hi"), CONN, ("api",)),
    ("hook task API on a chat connection", None, lambda: chat_hook().text_inference("hi"), CONN, ("api",)),
]

CHAT_HOOK_CASES: list[Case] = [
    (f"hook chat {name}", None, call, BAD, fields)
    for name, call, fields in [
        ("empty prompt", ask_chat(messages=""), ("content", "messages")),
        ("blank prompt", ask_chat(messages="  "), ("content", "messages")),
        ("no messages", ask_chat(messages=[]), ("messages",)),
        ("unknown role", ask_chat(messages=[{"role": "wizard", "content": "x"}]), ("role",)),
        ("message without content", ask_chat(messages=[{"role": "user"}]), ("content",)),
        ("messages a dict", ask_chat(messages={"role": "user", "content": "x"}), ("messages",)),
        ("max_tokens too many", ask_chat(max_tokens=16385), ("max_tokens",)),
        ("max_tokens zero", ask_chat(max_tokens=0), ("max_tokens",)),
        ("max_tokens bool", ask_chat(max_tokens=True), ("max_tokens",)),
        ("temperature 3", ask_chat(temperature=3), ("temperature",)),
        ("temperature negative", ask_chat(temperature=-1), ("temperature",)),
        ("top_p 2", ask_chat(top_p=2), ("top_p",)),
        ("unknown key max_token", ask_chat(max_token=5), ("max_token",)),
        ("response_format xml", ask_chat(response_format={"type": "xml"}), ("response_format",)),
        (
            "response_format schema missing",
            ask_chat(response_format={"type": "json_schema"}),
            ("response_format", "json_schema"),
        ),
        ("tool without name", ask_chat(tools=[{"type": "function", "function": {}}]), ("tools", "name")),
        (
            "image part bad url",
            ask_chat(messages=[user([{"type": "image_url", "image_url": {"url": "not a url"}}])]),
            ("image_url", "url"),
        ),
        (
            "tool message without call",
            ask_chat(messages=[user("x"), {"role": "tool", "tool_call_id": "c1", "content": "42"}]),
            ("tool",),
        ),
        (
            "stream empty prompt",
            lambda: list(chat_hook().stream_chat_completion("")),
            ("content", "messages"),
        ),
    ]
]

OPERATOR_CASES: list[Case] = (
    [
        (f"text operator {name}", None, call, kind, fields)
        for name, call, kind, fields in [
            ("prompt and messages", text_op(messages=[user("x")]), ValueError, ("prompt",)),
            ("neither prompt nor messages", text_op(prompt=None), ValueError, ("prompt",)),
            ("output_type a dict", text_op(output_type=dict), TypeError, ("output_type",)),
            ("blank prompt", text_op(prompt="   "), BAD, ("prompt",)),
            ("blank message", text_op(prompt=None, messages=[user(" ")]), BAD, ("content", "messages")),
            ("temperature 5", text_op(temperature=5), BAD, ("temperature",)),
            ("max_tokens zero", text_op(max_tokens=0), BAD, ("max_tokens", "maxTokens")),
            ("number_results nine", text_op(number_results=9), BAD, ("number_results", "numberResults")),
            ("poll_interval zero", text_op(poll_interval=0), ValueError, ("poll_interval",)),
            (
                "max_poll below poll",
                text_op(poll_interval=5, max_poll_interval=1),
                ValueError,
                ("max_poll_interval",),
            ),
            ("wait_timeout negative", text_op(wait_timeout=-1), ValueError, ("wait_timeout",)),
            ("delivery unknown", text_op(delivery="carrier"), ValueError, ("delivery",)),
            ("chat connection", text_op(conn_id="minimax_chat"), CONN, ("api", "task")),
            ("not_found_grace negative", text_op(not_found_grace=-1), ValueError, ("not_found_grace",)),
        ]
    ]
    + [
        (f"chat operator {name}", None, call, kind, fields)
        for name, call, kind, fields in [
            ("neither prompt nor messages", chat_op(prompt=None), ValueError, ("prompt",)),
            (
                "max_output_retries negative",
                chat_op(max_output_retries=-1),
                ValueError,
                ("max_output_retries",),
            ),
            ("max_tool_rounds zero", chat_op(max_tool_rounds=0), ValueError, ("max_tool_rounds",)),
            ("tools and stream", chat_op(tools=[lookup], stream=True), ValueError, ("stream",)),
            ("seed on chat", chat_op(seed=1), BAD, ("seed",)),
            ("tools on task", chat_op(tools=[lookup], conn_id="minimax_default"), BAD, ("tools",)),
            ("temperature 9", chat_op(temperature=9), BAD, ("temperature",)),
            ("max_tokens 99999", chat_op(max_tokens=99_999), BAD, ("max_tokens",)),
            ("blank prompt", chat_op(prompt="   "), BAD, ("content", "prompt", "messages")),
            ("output_type not a model", chat_op(output_type=str), TypeError, ("output_type",)),
        ]
    ]
    + [
        (f"batch {name}", None, call, kind, fields)
        for name, call, kind, fields in [
            (
                "rows and input_path",
                batch_op(rows=[{"q": "a"}], input_path=INPUT_CSV),
                ValueError,
                ("rows", "input_path"),
            ),
            ("empty prompt_template", batch_op(prompt_template=""), ValueError, ("prompt_template",)),
            ("on_row_error unknown", batch_op(on_row_error="explode"), ValueError, ("on_row_error",)),
            ("max_concurrency zero", batch_op(max_concurrency=0), ValueError, ("max_concurrency",)),
            (
                "requests_per_minute zero",
                batch_op(requests_per_minute=0),
                ValueError,
                ("requests_per_minute",),
            ),
            ("wait_timeout negative", batch_op(wait_timeout=-1), ValueError, ("wait_timeout",)),
            ("poll_interval zero", batch_op(poll_interval=0), ValueError, ("poll_interval",)),
            (
                "max_poll below poll",
                batch_op(poll_interval=5, max_poll_interval=1),
                ValueError,
                ("max_poll_interval",),
            ),
            ("max_xcom_bytes negative", batch_op(max_xcom_bytes=-1), ValueError, ("max_xcom_bytes",)),
            ("row renders blank", batch_op(rows=[{"q": "   "}]), ValueError, ("rows[0]", "row 0")),
            (
                "template syntax error",
                batch_op(prompt_template="{{ row.q "),
                ValueError,
                ("prompt_template",),
            ),
            (
                "template undefined",
                batch_op(prompt_template="{{ row.missing }}"),
                ValueError,
                ("missing", "row"),
            ),
            ("rows not JSON", batch_op(rows="not json"), ValueError, ("rows",)),
            ("max_tokens zero", batch_op(max_tokens=0), ValueError, ("max_tokens", "maxTokens")),
            ("temperature 3", batch_op(temperature=3), ValueError, ("temperature",)),
            (
                "chat temperature 3",
                batch_op(temperature=3, conn_id="minimax_chat"),
                ValueError,
                ("temperature",),
            ),
            (
                "input_format unknown",
                batch_op(input_path=INPUT_CSV, input_format="xls"),
                ValueError,
                ("input_format",),
            ),
        ]
    ]
    + [
        (f"sensor {name}", None, call, kind, fields)
        for name, call, kind, fields in [
            ("empty task_uuids", sensor(task_uuids=""), ValueError, ("task_uuids",)),
            ("empty list", sensor(task_uuids=[]), ValueError, ("task_uuids",)),
            ("not a uuid", sensor(task_uuids="not-a-uuid"), ValueError, ("taskUUID", "task_uuid")),
            ("number_results zero", sensor(number_results=0), ValueError, ("number_results",)),
            ("poll_interval zero", sensor(poll_interval=0), ValueError, ("poll_interval",)),
            ("chat connection", sensor(conn_id="minimax_chat"), CONN, ("api", "task")),
        ]
    ]
)

CASES = CONNECTION_CASES + TASK_HOOK_CASES + CHAT_HOOK_CASES + OPERATOR_CASES


def test_the_table_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize(("env", "call", "kind", "fields"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_is_refused_before_any_http_call(
    no_http: respx.Route,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    call: Callable[[], Any],
    kind: type[Exception],
    fields: tuple[str, ...],
) -> None:
    if env is not None:
        monkeypatch.setenv("AIRFLOW_CONN_MINIMAX_DEFAULT", env)
    section = FIGURES.sections["Bad input"]
    section["cases"] = str(int(section.get("cases", "0")) + 1)
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert any(field in message for field in fields), f"the message names none of {fields}: {message}"
    assert no_http.call_count == 0, "an HTTP call was made before the input was refused"
    if kind is CONN:
        assert "campaign-key" not in message
