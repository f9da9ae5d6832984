"""Fuzzing (hypothesis): whatever goes in or comes back, the outcome is a valid request, a result,
or one of our typed errors, never anything else.

- request building with arbitrary parameters: a request within the contract's bounds, or
  :class:`MiniMaxValidationError`;
- answers of arbitrary JSON and arbitrary bytes to both APIs: a result or a :class:`MiniMaxError`;
- valid SSE streams cut at every byte, and arbitrary SSE lines: the whole answer, or a MiniMaxError
  (never a part of an answer passed off as the whole).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from campaign_figures import FIGURES
from campaign_paths import connection_json
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_minimax.exceptions import MiniMaxError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook

BASE_URL = "http://fuzz.invalid/v1"
#: Derandomized: CI sees the same examples every run, so a failure is reproducible and never flaky.
EXAMPLES = settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
#: Values a user might pass for any parameter: right and wrong types, edges of the bounds.
any_value = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, 2, 4, 5, 16384, 16385, 196608, 196609, 0.005, 0.01, 1.0, 1.01, "", " ", "1"])
    | st.text(max_size=10)
    | json_values
)
prompt = st.text(min_size=1, max_size=30)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "user", "assistant", "system", "tool", "robot", ""]),
        "content": prompt | any_value,
    }
)
messages = prompt | st.lists(message, max_size=4) | any_value
#: In-bound values half of the time, so valid requests are explored as much as refused ones.
in_bounds = {
    "temperature": st.floats(0, 1).map(lambda v: round(v, 2)),
    "top_p": st.floats(0, 1).map(lambda v: round(v, 2)),
    "max_tokens": st.integers(1, 16384),
    "number_results": st.integers(1, 4),
    "seed": st.integers(0, 4294967295),
    "system_prompt": prompt,
}


def parameters(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), any_value, max_size=3).flatmap(
        lambda wild: st.fixed_dictionaries(
            {}, optional={name: in_bounds[name] for name in names if name in in_bounds}
        ).map(lambda tame: {**tame, **wild})
    )


@pytest.fixture(scope="module", autouse=True)
def _connections() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MINIMAX_DEFAULT", connection_json(BASE_URL, "task", max_retries=0))
        patch.setenv("AIRFLOW_CONN_MINIMAX_CHAT", connection_json(BASE_URL, "chat", max_retries=0))
        yield


def count(kind: str, outcome: str) -> None:
    section = FIGURES.sections["Fuzzing"]
    key = f"{kind} {outcome}"
    section[key] = str(int(section.get(key, "0")) + 1)


def within(value: Any, low: float, high: float) -> bool:
    return value is None or (not isinstance(value, bool) and math.isfinite(value) and low <= value <= high)


# ---------------------------------------------------------------------- requests


@example(messages="hi", params={"system_prompt": 1})  # found by hypothesis: a raw TypeError
@EXAMPLES
@given(
    messages=messages,
    params=st.one_of(
        st.fixed_dictionaries({}, optional=in_bounds),
        parameters(
            [
                "temperature",
                "top_p",
                "max_tokens",
                "number_results",
                "seed",
                "system_prompt",
                "task_uuid",
                "delivery_method",
                "model",
                "webhook_url",
                "include_cost",
            ]
        ),
    ),
)
def test_task_request_is_valid_or_refused(messages: Any, params: dict[str, Any]) -> None:
    hook = MiniMaxHook("minimax_default")
    try:
        task = hook.new_text_inference(messages, **params)
    except MiniMaxValidationError:
        count("task requests", "refused")
        return
    wire = json.loads(json.dumps(task.to_wire()))  # plain JSON, nothing a server could not read
    sampling = wire.get("settings") or {}
    assert within(sampling.get("temperature"), 0, 1) and within(sampling.get("topP"), 0, 1)
    assert within(sampling.get("maxTokens"), 1, 196608)
    assert within(wire.get("numberResults"), 1, 4) and within(wire.get("seed"), 0, 4294967295)
    assert wire["messages"] and wire["messages"][-1]["role"] == "user"
    assert all(isinstance(m["content"], str) and m["content"].strip() for m in wire["messages"])
    count("task requests", "valid")


@EXAMPLES
@given(
    messages=messages,
    params=st.one_of(
        st.fixed_dictionaries({}, optional={k: v for k, v in in_bounds.items() if k != "number_results"}),
        parameters(
            [
                "temperature",
                "top_p",
                "max_tokens",
                "tools",
                "tool_choice",
                "response_format",
                "stream",
                "reasoning_split",
                "system_prompt",
                "max_token",
                "seed",
                "stop",
            ]
        ),
    ),
)
def test_chat_request_is_valid_or_refused(messages: Any, params: dict[str, Any]) -> None:
    hook = MiniMaxHook("minimax_chat")
    try:
        request = hook.new_chat_request(messages, **params)
    except MiniMaxValidationError:
        count("chat requests", "refused")
        return
    wire = json.loads(json.dumps(request.to_wire()))
    assert wire["messages"] and within(wire.get("max_tokens"), 1, 16384)
    assert "max_token" not in wire, "an unknown keyword went to the server"
    count("chat requests", "valid")


# ---------------------------------------------------------------------- answers


ECHO = "ECHO-THE-TASK-UUID"


def answered(body: bytes, call: Callable[[MiniMaxHook], Any], conn_id: str, **headers: str) -> str:
    """Run ``call`` against one answer; return ``result`` or the typed error's name.

    ``ECHO`` in the body becomes the request's taskUUID, so fuzzed results can belong to the task.
    """

    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        task_uuid = sent[0].get("taskUUID", "") if isinstance(sent, list) and sent else ""
        return httpx.Response(200, content=body.replace(ECHO.encode(), task_uuid.encode()), headers=headers)

    with respx.mock(base_url=BASE_URL) as router:
        router.route().mock(side_effect=answer)
        hook = MiniMaxHook(conn_id)
        try:
            call(hook)
        except MiniMaxError as err:
            return type(err).__name__
        finally:
            hook.close()
    return "result"


def task_call(hook: MiniMaxHook) -> Any:
    return hook.text_inference("hi")


def chat_call(hook: MiniMaxHook) -> Any:
    return hook.chat_completion("hi")


def task_shaped() -> st.SearchStrategy[Any]:
    """Bodies near the task API's shape: the envelope with fuzzed items."""
    item = st.fixed_dictionaries(
        {
            "taskUUID": st.sampled_from([ECHO, ECHO, "other"]),
            "taskType": st.sampled_from(["textInference", "x"]),
        },
        optional={
            name: json_values | st.text(max_size=8)
            for name in ("text", "status", "finishReason", "usage", "cost", "error", "resultIndex")
        },
    )
    return st.fixed_dictionaries(
        {}, optional={"data": st.lists(item, max_size=3) | json_values, "errors": json_values}
    )


def chat_shaped() -> st.SearchStrategy[Any]:
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["assistant", "user", 3]), "content": st.text(max_size=8) | json_values}
    )
    choice = st.fixed_dictionaries(
        {"index": st.integers(0, 2) | json_values, "message": message | json_values},
        optional={"finish_reason": st.sampled_from(["stop", "length", None, 7]), "delta": json_values},
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "choices": st.lists(choice, max_size=2) | json_values,
            "usage": json_values,
            "base_resp": json_values,
        },
    )


@example(body={"data": [{"taskUUID": ECHO, "taskType": "textInference"}]})  # a placeholder, no result
@EXAMPLES
@given(body=json_values | task_shaped())
def test_task_answer_of_any_json_is_a_result_or_typed_error(body: Any) -> None:
    outcome = answered(json.dumps(body).encode(), task_call, "minimax_default")
    count("task answers (JSON)", outcome)
    # A validation error says "refused before any HTTP call": after an answer it would mislead.
    assert outcome != "MiniMaxValidationError", "an answer was reported as bad input"


@EXAMPLES
@given(body=json_values | chat_shaped())
def test_chat_answer_of_any_json_is_a_result_or_typed_error(body: Any) -> None:
    outcome = answered(json.dumps(body).encode(), chat_call, "minimax_chat")
    count("chat answers (JSON)", outcome)
    if outcome == "result":
        assert isinstance(body, dict) and body.get("choices"), (
            "an answer without choices was taken for a result"
        )


@EXAMPLES
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/plain", "text/event-stream"]),
)
def test_answer_of_any_bytes_is_a_result_or_typed_error(body: bytes, content_type: str) -> None:
    for call, conn_id in ((task_call, "minimax_default"), (chat_call, "minimax_chat")):
        count("answers (bytes)", answered(body, call, conn_id, **{"content-type": content_type}))


# ---------------------------------------------------------------------- streams

TASK_UUID = "8c1f6a4e-2b0d-4f5a-9c3e-1d2b3c4d5e6f"
TASK_STREAM = (
    "data: "
    + json.dumps({"taskUUID": TASK_UUID, "taskType": "textInference", "delta": {"text": "Hello "}})
    + "\n\n: keep-alive\n\ndata: "
    + json.dumps(
        {"taskUUID": TASK_UUID, "taskType": "textInference", "delta": {"text": "world"}, "finishReason": None}
    )
    + "\n\ndata: "
    + json.dumps(
        {
            "taskUUID": TASK_UUID,
            "taskType": "textInference",
            "delta": {},
            "finishReason": "stop",
            "usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3},
        }
    )
    + "\n\ndata: [DONE]\n\n"
).encode()
CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "minimax-m2.7"}
CHAT_STREAM = (
    "".join(
        f"data: {json.dumps({**CHUNK, **part})}\n\n"
        for part in (
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello "}}]},
            {"choices": [{"index": 0, "delta": {"content": "world"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
        )
    )
    + "data: [DONE]\n\n"
).encode()


def task_stream_text(hook: MiniMaxHook) -> str:
    return "".join(chunk.delta.text or "" for chunk in hook.stream_text_inference("hi", task_uuid=TASK_UUID))


def chat_stream_text(hook: MiniMaxHook) -> str:
    return "".join(
        c.delta.content or "" for chunk in hook.stream_chat_completion("hi") for c in chunk.choices
    )


def streamed(body: bytes, read: Callable[[MiniMaxHook], str], conn_id: str) -> str:
    """The text read from a stream answer, or the typed error's name."""
    with respx.mock(base_url=BASE_URL) as router:
        router.route().mock(
            return_value=httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        )
        hook = MiniMaxHook(conn_id)
        try:
            return read(hook)
        except MiniMaxError as err:
            return f"error {type(err).__name__}"
        finally:
            hook.close()


@pytest.mark.parametrize(
    ("stream", "read", "conn_id"),
    [(TASK_STREAM, task_stream_text, "minimax_default"), (CHAT_STREAM, chat_stream_text, "minimax_chat")],
    ids=["task", "chat"],
)
def test_a_stream_cut_at_every_byte_gives_the_whole_answer_or_a_typed_error(
    stream: bytes, read: Callable[[MiniMaxHook], str], conn_id: str
) -> None:
    for cut in range(len(stream) + 1):
        outcome = streamed(stream[:cut], read, conn_id)
        count("stream cuts", "whole answer" if outcome == "Hello world" else "typed error")
        assert outcome == "Hello world" or outcome.startswith("error MiniMax"), (cut, outcome)


sse_line = st.one_of(
    st.builds(lambda v: f"data: {json.dumps(v)}", json_values),
    st.builds(lambda v: f"data: {json.dumps({**CHUNK, 'choices': v})}", json_values),
    st.sampled_from(["data: [DONE]", ": ping", "event: error", "data:", "retry: 10", ""]),
    st.text(max_size=20).map(lambda t: t.replace("\r", "").replace("\n", "")),
)


@EXAMPLES
@given(lines=st.lists(sse_line, max_size=6))
def test_any_sse_stream_gives_a_result_or_typed_error(lines: list[str]) -> None:
    body = ("\n\n".join(lines) + "\n\n").encode()
    for read, conn_id in ((task_stream_text, "minimax_default"), (chat_stream_text, "minimax_chat")):
        outcome = streamed(body, read, conn_id)
        count("SSE fuzz", "typed error" if outcome.startswith("error ") else "result")
