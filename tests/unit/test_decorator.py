"""``@task.minimax``: registration, the function's prompt or messages on the wire, XCom (respx)."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import pytest
import respx
from airflow.sdk import DAG, task
from chat_testlib import context
from hook_testlib import CHAT_COMPLETIONS_URL, CONN_ID, chat_body, sent_json, set_connection
from pydantic import BaseModel

from airflow_provider_minimax.decorators.minimax import MiniMaxDecoratedOperator, minimax_task


class Verdict(BaseModel):
    label: str
    score: float


@pytest.fixture(autouse=True)
def chat_api(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0)


def build(function: Any, *args: Any, **decorator_kwargs: Any) -> MiniMaxDecoratedOperator:
    """Decorate ``function`` in a DAG, call it with ``args`` and return the operator."""
    with DAG("d", schedule=None, start_date=datetime.datetime(2025, 1, 1)):
        output = task.minimax(conn_id=CONN_ID, **decorator_kwargs)(function)(*args)
    op = output.operator
    assert isinstance(op, MiniMaxDecoratedOperator)
    return op


def test_task_minimax_is_registered_through_provider_info() -> None:
    assert task.minimax is minimax_task


@respx.mock
def test_the_returned_string_is_the_prompt() -> None:
    route = respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body("<think>x</think>Bonjour"))

    def translate(text: str) -> str:
        return f"Translate to French: {text}"

    op = build(translate, "Hello", system_prompt="You translate.")
    ctx = context()

    assert op.execute(ctx) == "Bonjour"
    assert sent_json(route.calls.last.request)["messages"] == [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": "Translate to French: Hello"},
    ]
    assert ctx["ti"].xcom["usage"]["total_tokens"] == 16
    assert op.prompt == "Translate to French: Hello"


@respx.mock
def test_returned_messages_go_out_unchanged() -> None:
    route = respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body())
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>greet back</think>\n\nHello!"},
        {"role": "user", "content": "How are you?"},
    ]

    build(lambda: history, task_id="chat").execute(context())

    assert sent_json(route.calls.last.request)["messages"] == history


@respx.mock
def test_the_returned_prompt_is_not_rendered_as_a_template() -> None:
    route = respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body())

    build(lambda: "Explain {{ ds }} in Jinja", task_id="jinja").execute(context())

    assert sent_json(route.calls.last.request)["messages"][-1]["content"] == "Explain {{ ds }} in Jinja"


@respx.mock
def test_output_type_returns_the_model_dump() -> None:
    respx.post(CHAT_COMPLETIONS_URL).mock(
        return_value=httpx.Response(200, json=chat_body('<think>x</think>{"label": "spam", "score": 0.9}'))
    )

    def classify(text: str) -> str:
        return f"Classify: {text}"

    op = build(classify, "Buy now", output_type=Verdict, multiple_outputs=True)

    assert op.execute(context()) == {"label": "spam", "score": 0.9}
    assert op.multiple_outputs is True


@pytest.mark.parametrize("value", ["", "   ", [], [1, 2], None, 42])
@respx.mock(assert_all_called=False)
def test_a_function_returning_no_prompt_fails_clearly(value: Any) -> None:
    route = respx.post(CHAT_COMPLETIONS_URL)

    with pytest.raises(
        TypeError, match=r"must return a non-empty string .* or a non-empty list of message dicts"
    ):
        build(lambda: value, task_id="empty").execute(context())

    assert not route.called


@pytest.mark.parametrize("name", ["prompt", "messages"])
def test_prompt_and_messages_cannot_be_given_to_the_decorator(name: str) -> None:
    with pytest.raises(TypeError, match=f"@task.minimax takes no '{name}'"):
        build(lambda: "x", task_id="bad", **{name: "x"})


def test_function_arguments_are_data_not_template_files() -> None:
    op = build(lambda path: f"Summarise {path}", "notes.md", task_id="files")

    op.render_template_fields({"ds": "2025-01-01"})

    assert list(op.op_args) == ["notes.md"]
