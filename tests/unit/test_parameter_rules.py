"""Rules every entry point applies alike: the value said once in an error, ``seed`` on the chat API,
the bound of ``max_output_retries``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx
from chat_testlib import context
from hook_testlib import CHAT_COMPLETIONS_URL, CONN_ID, TASK_URL, set_connection, v4
from pydantic import BaseModel

from airflow_provider_minimax.common_ai.chat_model import MiniMaxChatModel
from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.decorators.minimax import MiniMaxDecoratedOperator
from airflow_provider_minimax.exceptions import MiniMaxError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.poll_cadence import check_cadence
from airflow_provider_minimax.sensors.minimax import MiniMaxTaskSensor
from airflow_provider_minimax.task_progress import normalise_task_uuids
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger


class City(BaseModel):
    name: str


@pytest.fixture
def no_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    """Task and chat connections whose API must never be called."""
    set_connection(monkeypatch, api="task")
    set_connection(monkeypatch, api="chat", conn_id="minimax_chat_unit")
    with respx.mock(assert_all_called=False) as router:
        router.post(TASK_URL).respond(500)
        router.post(CHAT_COMPLETIONS_URL).respond(500)
        yield router
    assert router.calls.call_count == 0


def task_hook() -> MiniMaxHook:
    return MiniMaxHook(CONN_ID)


def chat_hook() -> MiniMaxHook:
    return MiniMaxHook("minimax_chat_unit")


def text_op(**kwargs: Any) -> MiniMaxTextInferenceOperator:
    return MiniMaxTextInferenceOperator(task_id="ask", conn_id=CONN_ID, prompt="Hi", **kwargs)


def chat_op(conn_id: str = CONN_ID, **kwargs: Any) -> MiniMaxChatOperator:
    return MiniMaxChatOperator(task_id="ask", conn_id=conn_id, prompt="Hi", **kwargs)


def batch_op(conn_id: str = CONN_ID, **kwargs: Any) -> MiniMaxBatchOperator:
    return MiniMaxBatchOperator(
        task_id="enrich", conn_id=conn_id, rows=[{"name": "a"}], prompt_template="{{ name }}", **kwargs
    )


def decorated(**kwargs: Any) -> MiniMaxDecoratedOperator:
    return MiniMaxDecoratedOperator(task_id="ask", python_callable=lambda: "Hi", conn_id=CONN_ID, **kwargs)


def connection(**extra: Any) -> MiniMaxConnectionSettings:
    conn = type("Conn", (), {"conn_id": "c", "conn_type": "minimax", "host": None, "port": None})()
    conn.schema, conn.password, conn.extra = None, "key", json.dumps(extra)
    return MiniMaxConnectionSettings.from_connection(conn)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the value, said once

#: (bad call, the rejected value as the message shows it): connection extras, hook parameters,
#: operator parameters (at parse and after templating), trigger / sensor / poller cadence.
SAID_ONCE: list[tuple[str, Callable[[], Any], str]] = [
    ("connection timeout", lambda: connection(timeout=True), "True"),
    ("connection max_retries", lambda: connection(max_retries=False), "False"),
    ("connection max_tasks_per_request", lambda: connection(max_tasks_per_request=0), "0"),
    ("hook temperature bool", lambda: task_hook().new_text_inference("Hi", temperature=True), "True"),
    ("hook temperature grid", lambda: task_hook().new_text_inference("Hi", temperature=0.123), "0.123"),
    ("hook seed bool", lambda: task_hook().new_text_inference("Hi", seed=True), "True"),
    ("hook task_uuid", lambda: task_hook().new_text_inference("Hi", task_uuid="nope-nope"), "'nope-nope'"),
    (
        "hook webhook_url",
        lambda: task_hook().new_text_inference("Hi", delivery_method="async", webhook_url="ftp://x.test"),
        "'ftp://x.test'",
    ),
    (
        "hook stream numberResults",
        lambda: task_hook().new_text_inference("Hi", delivery_method="stream", number_results=3),
        "3",
    ),
    ("hook chat max_tokens bool", lambda: chat_hook().new_chat_request("Hi", max_tokens=True), "True"),
    ("hook chat top_p grid", lambda: chat_hook().new_chat_request("Hi", top_p=0.555), "0.555"),
    ("get_responses uuid", lambda: task_hook().get_responses(["nope-nope"]), "'nope-nope'"),
    ("task uuids", lambda: normalise_task_uuids(["nope-nope"]), "'nope-nope'"),
    ("text operator number_results", lambda: text_op(number_results=True).execute(context()), "True"),
    ("text operator poll_interval", lambda: text_op(poll_interval=True).execute(context()), "True"),
    ("text operator max_output_retries", lambda: text_op(max_output_retries=True), "True"),
    ("chat operator max_output_retries", lambda: chat_op(max_output_retries=True), "True"),
    ("batch operator max_concurrency", lambda: batch_op(max_concurrency=True).execute(context()), "True"),
    ("batch operator wait_timeout", lambda: batch_op(wait_timeout=True).execute(context()), "True"),
    ("cadence bool", lambda: check_cadence(True, 10.0), "True"),
    ("cadence max below first", lambda: check_cadence(5.0, 2.5), "2.5"),
    (
        "sensor poll_interval",
        lambda: MiniMaxTaskSensor(task_id="s", task_uuids=[v4(1)], poll_interval=True),
        "True",
    ),
    (
        "trigger max_poll_interval",
        lambda: MiniMaxTaskTrigger([v4(1)], end_time=time.time(), poll_interval=2.0, max_poll_interval=1.25),
        "1.25",
    ),
]


@pytest.mark.parametrize(("call", "shown"), [pytest.param(c, s, id=n) for n, c, s in SAID_ONCE])
@pytest.mark.usefixtures("no_http")
def test_an_error_says_the_rejected_value_once(call: Callable[[], Any], shown: str) -> None:
    with pytest.raises((MiniMaxError, ValueError)) as caught:
        call()
    message = str(caught.value)
    assert f"(got {shown})" in message
    assert message.count(shown) == 1, message


# ------------------------------------------------------------------------ seed on the chat API

SEED_ON_CHAT: list[tuple[str, Callable[[], Any]]] = [
    ("hook request", lambda: chat_hook().new_chat_request("Hi", seed=7)),
    ("hook call", lambda: chat_hook().chat_completion("Hi", seed=7)),
    ("hook stream", lambda: list(chat_hook().stream_chat_completion("Hi", seed=7))),
    ("chat operator", lambda: chat_op(conn_id="minimax_chat_unit", seed=7).execute(context())),
    ("batch operator", lambda: batch_op(conn_id="minimax_chat_unit", seed=7).execute(context())),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=n) for n, c in SEED_ON_CHAT])
@pytest.mark.usefixtures("no_http")
def test_seed_is_refused_on_the_chat_api_before_any_http_call(call: Callable[[], Any]) -> None:
    with pytest.raises(MiniMaxValidationError, match="task API only") as caught:
        call()
    assert caught.value.parameter == "seed"


def test_the_pydantic_ai_chat_model_refuses_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic_ai.models import ModelRequestParameters

    set_connection(monkeypatch, api="chat")
    model = MiniMaxChatModel("minimax-m2.7", MiniMaxHook(CONN_ID).settings)
    with pytest.raises(MiniMaxValidationError) as caught:
        model.prepare_request({"seed": 7}, ModelRequestParameters())
    assert caught.value.parameter == "seed"


# ------------------------------------------------------------------------ max_output_retries

OPERATORS: list[tuple[str, Callable[..., Any]]] = [
    ("text inference", text_op),
    ("chat", chat_op),
    ("batch", batch_op),
    ("@task.minimax", decorated),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=n) for n, m in OPERATORS])
@pytest.mark.parametrize(
    ("value", "bound"), [(11, "less than or equal to 10"), (-1, "greater than or"), (True, "not a boolean")]
)
def test_max_output_retries_is_0_to_10_when_the_dag_is_parsed(
    make: Callable[..., Any], value: Any, bound: str
) -> None:
    with pytest.raises(MiniMaxValidationError, match=rf"max_output_retries: .*{bound}") as caught:
        make(output_type=City, max_output_retries=value)
    assert caught.value.parameter == "max_output_retries"


@pytest.mark.parametrize("make", [pytest.param(m, id=n) for n, m in OPERATORS])
def test_max_output_retries_of_10_is_accepted(make: Callable[..., Any]) -> None:
    assert make(output_type=City, max_output_retries=10).max_output_retries == 10
