"""Wire-level tests of MiniMaxChatOperator over both APIs (respx)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import httpx
import pytest
import respx
from chat_testlib import BrokenStream, TaskReplies, context, tool_call, tool_calls_body
from hook_testlib import (
    CHAT_COMPLETIONS_URL,
    CONN_ID,
    TASK_URL,
    chat_body,
    sent_json,
    set_connection,
    sse_response,
)
from pydantic import BaseModel

from airflow_provider_minimax.exceptions import (
    MiniMaxConnectionError,
    MiniMaxError,
    MiniMaxOutputValidationError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.models import ChatCompletion
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator

#: The usage counters the fake API does not send: null, never 0.
NO_DETAILS = {"thinking_tokens": None, "cached_tokens": None, "reasoning_tokens": None}


class City(BaseModel):
    name: str
    population: int


VALID_CITY = '{"name": "Lyon", "population": 522000}'


def weather(city: str, unit: str = "C") -> dict[str, Any]:
    """Current weather of a city.

    :param city: the city name.
    :param unit: C or F.
    """
    return {"city": city, "temperature": 21, "unit": unit}


def broken(city: str) -> str:
    """Always fails."""
    raise RuntimeError(f"no data for {city}")


@pytest.fixture
def chat_api(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0)


@pytest.fixture
def task_api(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="task", max_retries=0)


def operator(**kwargs: Any) -> MiniMaxChatOperator:
    kwargs.setdefault("prompt", "Name a city")
    return MiniMaxChatOperator(task_id="ask", conn_id=CONN_ID, **kwargs)


def chat_chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "minimax-m2.7",
        "choices": choices,
        **extra,
    }


# ------------------------------------------------------------------------------ plain answers


@respx.mock
def test_chat_answer_has_think_block_stripped_and_usage_pushed(chat_api: None) -> None:
    respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body("<think>plan</think>\n\nLyon"))
    ctx = context()

    assert operator().execute(ctx) == "Lyon"
    assert ctx["ti"].xcom == {
        "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16, **NO_DETAILS}
    }


@respx.mock
def test_task_answer_pushes_usage_and_cost(task_api: None) -> None:
    respx.post(TASK_URL).mock(side_effect=TaskReplies("Lyon"))
    ctx = context()

    assert operator().execute(ctx) == "Lyon"
    assert ctx["ti"].xcom == {
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, **NO_DETAILS},
        "cost": 0.0012,
    }


@respx.mock
def test_a_retried_try_reuses_the_task_api_answers_already_paid_for(task_api: None) -> None:
    replies = TaskReplies("not json", VALID_CITY)
    respx.post(TASK_URL).mock(side_effect=replies)
    first_try, second_try, other_run = context(), context(), context(run_id="run-2")

    assert operator(output_type=City).execute(first_try) == {"name": "Lyon", "population": 522000}
    assert operator(output_type=City).execute(second_try) == {"name": "Lyon", "population": 522000}
    assert replies.calls == 2  # the answer and its re-ask, each paid once
    assert second_try["ti"].xcom == first_try["ti"].xcom

    operator(output_type=City).execute(other_run)
    assert replies.calls == 3


@pytest.mark.parametrize(
    ("api", "reply", "expected"),
    [
        ("chat", chat_body("<think>I should say Lyon</think>Lyon"), "I should say Lyon"),
        ("task", None, "thought about it"),
    ],
)
@respx.mock
def test_reasoning_is_pushed_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, api: str, reply: dict[str, Any] | None, expected: str
) -> None:
    set_connection(monkeypatch, api=api, max_retries=0)
    if api == "chat":
        respx.post(CHAT_COMPLETIONS_URL).respond(json=reply)
    else:
        respx.post(TASK_URL).mock(side_effect=TaskReplies("Lyon", reasoningContent=["thought about it"]))
    quiet, asked = context(), context()

    operator().execute(quiet)
    operator(include_reasoning=True).execute(asked)

    assert "reasoning" not in quiet["ti"].xcom
    assert asked["ti"].xcom["reasoning"] == expected


@pytest.mark.parametrize(
    ("api", "kwargs", "expected"),
    [
        (
            "chat",
            {"temperature": 0.7, "top_p": 0.95, "max_tokens": 300, "model": "minimax-m2.7-x"},
            {"temperature": 0.7, "top_p": 0.95, "max_tokens": 300, "model": "minimax-m2.7-x"},
        ),
        ("chat", {"system_prompt": "Be terse"}, {"messages": [{"role": "system", "content": "Be terse"}]}),
        (
            "task",
            {"temperature": 0.7, "top_p": 0.95, "max_tokens": 300, "seed": 42, "system_prompt": "Be terse"},
            {
                "seed": 42,
                "settings": {"temperature": 0.7, "topP": 0.95, "maxTokens": 300, "systemPrompt": "Be terse"},
            },
        ),
        ("task", {"model": "minimax:m2.7@custom"}, {"model": "minimax:m2.7@custom"}),
    ],
)
@respx.mock
def test_model_settings_reach_the_wire(
    monkeypatch: pytest.MonkeyPatch, api: str, kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    set_connection(monkeypatch, api=api, max_retries=0)
    if api == "chat":
        route = respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body())
    else:
        route = respx.post(TASK_URL).mock(side_effect=TaskReplies("ok"))

    operator(**kwargs).execute(context())

    body = sent_json(route.calls.last.request)
    body = body if api == "chat" else body[0]
    for key, value in expected.items():
        if key == "messages":
            assert body["messages"][: len(value)] == value
        else:
            assert body[key] == value


@pytest.mark.parametrize(
    ("api", "kwargs", "parameter"),
    [
        ("chat", {"seed": 1}, "seed"),
        ("task", {"tools": [weather]}, "tools"),
        ("chat", {"temperature": 1.5}, "temperature"),
        ("task", {"top_p": 0.123}, "top_p"),
        ("chat", {"max_tokens": 20_000}, "max_tokens"),
        ("chat", {"prompt": None, "messages": "[{'role': 'user'}]"}, "messages"),
        ("chat", {"prompt": None, "messages": [{"content": "no role"}]}, "messages.0"),
    ],
)
@respx.mock(assert_all_called=False)
def test_bad_input_fails_before_any_http_call(
    monkeypatch: pytest.MonkeyPatch, api: str, kwargs: dict[str, Any], parameter: str
) -> None:
    set_connection(monkeypatch, api=api, max_retries=0)
    routes = [respx.post(CHAT_COMPLETIONS_URL), respx.post(TASK_URL)]

    with pytest.raises(MiniMaxValidationError) as err:
        operator(**kwargs).execute(context())

    assert err.value.parameter == parameter
    assert all(not route.called for route in routes)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prompt": None}, ValueError, "give 'prompt' or 'messages'"),
        ({"output_type": dict}, TypeError, "'output_type' must be a pydantic model"),
        ({"max_output_retries": -1}, ValueError, r"max_output_retries: .*greater than or equal to 0"),
        ({"max_tool_rounds": 0}, ValueError, "'max_tool_rounds' must be >= 1, got 0"),
        ({"tools": [lambda x: x]}, TypeError, "Tool name '<lambda>' is invalid"),
        ({"tools": [str.upper], "stream": True}, ValueError, "'stream' cannot be combined with 'tools'"),
    ],
)
def test_bad_arguments_fail_at_dag_parse_time(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        operator(**kwargs)


# ------------------------------------------------------------------------------ multi-turn


EARLIER = "<think>The user wants a city.</think>\n\nLyon"


@pytest.mark.parametrize("api", ["chat", "task"])
@pytest.mark.parametrize(
    "earlier_turn",
    [
        pytest.param({"role": "assistant", "content": EARLIER}, id="dict"),
        pytest.param(
            ChatCompletion.model_validate(chat_body(EARLIER)).message.as_request_message(),
            id="as_request_message",
        ),
    ],
)
@respx.mock
def test_earlier_assistant_turns_go_back_unchanged(
    monkeypatch: pytest.MonkeyPatch, api: str, earlier_turn: Any
) -> None:
    set_connection(monkeypatch, api=api, max_retries=0)
    if api == "chat":
        route = respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body())
    else:
        route = respx.post(TASK_URL).mock(side_effect=TaskReplies("ok"))
    history = [{"role": "user", "content": "Name a city"}, earlier_turn]

    operator(messages=history, prompt="And its population?").execute(context())

    body = sent_json(route.calls.last.request)
    sent = body["messages"] if api == "chat" else body[0]["messages"]
    assert sent == [
        {"role": "user", "content": "Name a city"},
        {"role": "assistant", "content": EARLIER},
        {"role": "user", "content": "And its population?"},
    ]


# ------------------------------------------------------------------------------ structured output


@respx.mock
def test_chat_structured_output_sends_response_format_and_returns_model_dump(chat_api: None) -> None:
    route = respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body(f"<think>ok</think>{VALID_CITY}"))

    result = operator(output_type=City).execute(context())

    assert result == {"name": "Lyon", "population": 522000}
    fmt = sent_json(route.calls.last.request)["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == City.model_json_schema()


@respx.mock
def test_task_structured_output_puts_schema_in_system_prompt(task_api: None) -> None:
    route = respx.post(TASK_URL).mock(side_effect=TaskReplies(VALID_CITY))

    result = operator(output_type=City, system_prompt="Be exact").execute(context())

    assert result == {"name": "Lyon", "population": 522000}
    system = sent_json(route.calls.last.request)[0]["settings"]["systemPrompt"]
    assert system.startswith("Be exact\n\n")
    assert json.dumps(City.model_json_schema()) in system


@respx.mock
def test_invalid_json_is_reasked_with_feedback_and_previous_content_unchanged(chat_api: None) -> None:
    first = '<think>hmm</think>Sure! {"name": "Lyon"}'
    route = respx.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[
            httpx.Response(200, json=chat_body(first)),
            httpx.Response(200, json=chat_body(VALID_CITY)),
        ]
    )
    ctx = context()

    result = operator(output_type=City).execute(ctx)

    assert result == {"name": "Lyon", "population": 522000}
    messages = sent_json(route.calls.last.request)["messages"]
    assert messages[-2] == {"role": "assistant", "content": first}
    assert messages[-1]["role"] == "user"
    assert "population: Field required" in messages[-1]["content"]
    assert ctx["ti"].xcom["usage"] == {
        "prompt_tokens": 14,
        "completion_tokens": 18,
        "total_tokens": 32,
        **NO_DETAILS,
    }


@pytest.mark.parametrize("retries", [0, 2])
@respx.mock
def test_output_never_valid_fails_after_the_last_retry_showing_the_raw_answer(
    task_api: None, retries: int
) -> None:
    replies = TaskReplies("not json " + "x" * 1000)
    respx.post(TASK_URL).mock(side_effect=replies)

    with pytest.raises(MiniMaxOutputValidationError) as err:
        operator(output_type=City, max_output_retries=retries).execute(context())

    assert replies.calls == retries + 1
    assert f"after {retries} re-ask(s)" in str(err.value)
    assert "not json xxx" in str(err.value)
    assert "more characters" in str(err.value)


# ------------------------------------------------------------------------------ tools


@respx.mock
def test_tool_loop_runs_parallel_calls_and_answers_each_call_id(chat_api: None) -> None:
    asking = tool_calls_body(
        tool_call("call_1", "weather", {"city": "Lyon"}),
        tool_call("call_2", "broken", {"city": "Lyon"}),
        tool_call("call_3", "weather", {"town": "Lyon"}),
        tool_call("call_4", "nope", {}),
    )
    route = respx.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[
            httpx.Response(200, json=asking),
            httpx.Response(200, json=chat_body("<think>t</think>21C")),
        ]
    )
    ctx = context()

    assert operator(tools=[weather, broken]).execute(ctx) == "21C"

    first, second = (sent_json(call.request) for call in route.calls)
    assert [t["function"]["name"] for t in first["tools"]] == ["weather", "broken"]
    assistant, *results = second["messages"][-5:]
    assert assistant["content"] == "<think>need tools</think>"
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_1", "call_2", "call_3", "call_4"]
    assert [r["tool_call_id"] for r in results] == ["call_1", "call_2", "call_3", "call_4"]
    assert json.loads(results[0]["content"]) == {"city": "Lyon", "temperature": 21, "unit": "C"}
    assert results[1]["content"] == "error: RuntimeError: no data for Lyon"
    assert results[2]["content"].startswith("error: invalid arguments: city: Missing required argument")
    assert results[3]["content"].startswith("error: unknown tool 'nope'")
    assert ctx["ti"].xcom["usage"]["total_tokens"] == 32


@respx.mock
def test_tool_loop_beyond_max_tool_rounds_fails_clearly(chat_api: None) -> None:
    asking = tool_calls_body(tool_call("call_1", "weather", {"city": "Lyon"}))
    route = respx.post(CHAT_COMPLETIONS_URL).respond(json=asking)

    with pytest.raises(MiniMaxError, match=r"still asked for tools \(weather\) after max_tool_rounds=2"):
        operator(tools=[weather], max_tool_rounds=2).execute(context())

    assert route.call_count == 3


# ------------------------------------------------------------------------------ streaming


@respx.mock
def test_chat_stream_returns_the_answer_and_usage_from_the_last_chunk(chat_api: None) -> None:
    route = respx.post(CHAT_COMPLETIONS_URL).mock(
        return_value=sse_response(
            chat_chunk({"role": "assistant", "content": "<think>pla"}),
            chat_chunk({"content": "n</think>\n\nLine one\nLi"}),
            chat_chunk({"content": "ne two"}),
            chat_chunk({}, finish="stop"),
            chat_chunk(usage={"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}),
            "[DONE]",
        )
    )
    ctx = context()

    assert operator(stream=True, include_reasoning=True).execute(ctx) == "Line one\nLine two"
    body = sent_json(route.calls.last.request)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert ctx["ti"].xcom == {
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11, **NO_DETAILS},
        "reasoning": "plan",
    }


class LineRecorder:
    """Stands in for the task logger: keeps every info line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args if args else message)

    def warning(self, message: str, *args: Any) -> None:
        self.info(message, *args)


@respx.mock
def test_chat_stream_writes_each_answer_line_to_the_task_log(
    chat_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    respx.post(CHAT_COMPLETIONS_URL).mock(
        return_value=sse_response(
            chat_chunk({"content": "<think>secret plan\nstep 2</think>\n\nLine"}),
            chat_chunk({"content": " one\nLine two\nTail"}),
            chat_chunk({}, finish="stop"),
            "[DONE]",
        )
    )
    recorder = LineRecorder()
    monkeypatch.setattr(MiniMaxChatOperator, "log", property(lambda self: recorder))

    operator(stream=True).execute(context())

    start = recorder.lines.index("Line one")
    assert recorder.lines[start : start + 3] == ["Line one", "Line two", "Tail"]
    assert not any("secret plan" in line for line in recorder.lines)
    assert "(18 characters of reasoning not logged)" in recorder.lines


@respx.mock
def test_task_stream_returns_the_answer_usage_and_cost(task_api: None) -> None:
    head = {"taskType": "textInference", "taskUUID": "u"}
    respx.post(TASK_URL).mock(
        return_value=sse_response(
            {**head, "delta": {"reasoningContent": "thinking"}},
            {**head, "delta": {"text": "Hello "}},
            {**head, "delta": {"text": "world"}},
            {
                **head,
                "delta": {},
                "finishReason": "stop",
                "usage": {"promptTokens": 2, "completionTokens": 3, "totalTokens": 5},
                "cost": 0.5,
            },
            "[DONE]",
        )
    )
    ctx = context()

    assert operator(stream=True).execute(ctx) == "Hello world"
    assert ctx["ti"].xcom == {
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5, **NO_DETAILS},
        "cost": 0.5,
    }


@pytest.mark.parametrize("api", ["chat", "task"])
@pytest.mark.parametrize("how", ["connection dropped", "ended without final chunk"])
@respx.mock
def test_stream_cut_midway_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch, api: str, how: str) -> None:
    set_connection(monkeypatch, api=api, max_retries=0)
    if api == "chat":
        url, first = CHAT_COMPLETIONS_URL, chat_chunk({"content": "Hello"})
    else:
        url, first = TASK_URL, {"taskType": "textInference", "taskUUID": "u", "delta": {"text": "Hello"}}
    head = f"data: {json.dumps(first)}\n\n".encode()
    headers = {"content-type": "text/event-stream"}
    if how == "connection dropped":
        respx.post(url).mock(return_value=httpx.Response(200, headers=headers, stream=BrokenStream(head)))
    else:
        respx.post(url).mock(return_value=httpx.Response(200, headers=headers, content=head))

    with pytest.raises(MiniMaxConnectionError, match="stream was cut after 5 characters"):
        operator(stream=True).execute(context())


# ------------------------------------------------------------------------------ templating


def test_prompt_files_render_through_template_ext(tmp_path: Any) -> None:
    from airflow.sdk import DAG

    (tmp_path / "ask.j2").write_text("Describe {{ params.city }}")
    (tmp_path / "system.md").write_text("You are a {{ params.role }}.")
    with DAG("d", schedule=None, start_date=datetime.datetime(2025, 1, 1), template_searchpath=str(tmp_path)):
        op = operator(prompt="ask.j2", system_prompt="system.md")
    op.resolve_template_files()

    op.render_template_fields({"params": {"city": "Lyon", "role": "guide"}})

    assert (op.prompt, op.system_prompt) == ("Describe Lyon", "You are a guide.")


def test_text_that_merely_ends_in_a_template_extension_is_a_prompt(tmp_path: Any) -> None:
    from airflow.sdk import DAG

    with DAG("d", schedule=None, start_date=datetime.datetime(2025, 1, 1), template_searchpath=str(tmp_path)):
        op = operator(prompt="Summarise {{ params.name }}.md")

    op.render_template_fields({"params": {"name": "README"}})

    assert op.prompt == "Summarise README.md"
