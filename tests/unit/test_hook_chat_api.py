"""MiniMaxHook over the chat completions API, at the wire level (respx)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from hook_testlib import CHAT_COMPLETIONS_URL, FakeSleep, chat_body, make_hook, sent_json, sse_response

from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxCreditError,
    MiniMaxError,
    MiniMaxInvalidRequestError,
    MiniMaxRateLimitError,
    MiniMaxServerError,
)
from airflow_provider_minimax.hooks.minimax import MiniMaxHook


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> MiniMaxHook:
    return make_hook(monkeypatch, api="chat", max_retries=2)[0]


@pytest.fixture
def sleeper(fake_sleep: FakeSleep) -> FakeSleep:
    return fake_sleep


def test_chat_completion_posts_the_openai_body(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body())
    hook.chat_completion("hi", system_prompt="be brief", max_tokens=16384, temperature=1.0, top_p=0.95)
    request = route.calls.last.request
    assert sent_json(request) == {
        "model": "minimax-m2.7",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 16384,
        "temperature": 1.0,
        "top_p": 0.95,
    }
    assert request.headers["authorization"] == "Bearer sk-SECRET-123"
    assert request.headers["content-type"] == "application/json"


def test_chat_completion_splits_the_think_block(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body("<think>\nplan\n</think>\n\nHello!"))
    completion = hook.chat_completion("hi")
    assert (completion.answer, completion.reasoning) == ("Hello!", "plan")
    assert completion.message.content == "<think>\nplan\n</think>\n\nHello!"


def test_chat_tool_calls_and_extra_fields_are_kept(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    body = chat_body()
    body["choices"] = [{"index": 0, "message": message, "finish_reason": "tool_calls"}]
    router.post(CHAT_COMPLETIONS_URL).respond(200, json={**body, "system_fingerprint": "x"})
    completion = hook.chat_completion("hi", tools=[{"type": "function", "function": {"name": "f"}}])
    assert completion.message.tool_calls is not None
    assert completion.message.tool_calls[0].function.arguments == '{"a":1}'
    assert completion.model_extra == {"system_fingerprint": "x"}


async def test_async_chat_completion(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body())
    completion = await hook.achat_completion("hi")
    assert completion.answer == "Hello!"
    assert route.call_count == 1
    await hook.aclose()


# ------------------------------------------------------------------------ errors

# (status, error type, retried)
STATUS_TABLE: list[tuple[int, type[MiniMaxError], bool]] = [
    (400, MiniMaxInvalidRequestError, False),
    (401, MiniMaxAuthError, False),
    (402, MiniMaxCreditError, False),
    (403, MiniMaxAuthError, False),
    (404, MiniMaxInvalidRequestError, False),
    (408, MiniMaxServerError, True),
    (422, MiniMaxInvalidRequestError, False),
    (429, MiniMaxRateLimitError, True),
    (500, MiniMaxServerError, True),
    (502, MiniMaxServerError, True),
    (503, MiniMaxServerError, True),
    (504, MiniMaxServerError, True),
]


@pytest.mark.parametrize(
    ("status", "error_cls", "retried"), STATUS_TABLE, ids=[str(r[0]) for r in STATUS_TABLE]
)
def test_each_error_status_raises_its_type(
    hook: MiniMaxHook,
    sleeper: FakeSleep,
    router: respx.MockRouter,
    status: int,
    error_cls: type[MiniMaxError],
    retried: bool,
) -> None:
    error = {"message": "nope", "type": "invalid_request_error", "param": "messages", "code": f"e{status}"}
    route = router.post(CHAT_COMPLETIONS_URL).respond(status, json={"error": error})
    with pytest.raises(error_cls) as caught:
        hook.chat_completion("hi")
    assert type(caught.value) is error_cls
    assert (caught.value.status_code, caught.value.code, caught.value.parameter) == (
        status,
        f"e{status}",
        "messages",
    )
    assert "nope" in str(caught.value)
    assert route.call_count == (3 if retried else 1)
    assert len(sleeper.waits) == (2 if retried else 0)


# (base_resp.status_code, error type, the HTTP status it stands for)
BASE_RESP_TABLE: list[tuple[int, type[MiniMaxError], int]] = [
    (1001, MiniMaxServerError, 504),
    (1002, MiniMaxRateLimitError, 429),
    (1004, MiniMaxAuthError, 401),
    (1008, MiniMaxCreditError, 402),
    (1024, MiniMaxServerError, 500),
    (2013, MiniMaxInvalidRequestError, 400),
]


@pytest.mark.parametrize(
    ("code", "error_cls", "status"), BASE_RESP_TABLE, ids=[str(r[0]) for r in BASE_RESP_TABLE]
)
def test_http_200_with_a_non_zero_base_resp_is_raised_as_its_status(
    hook: MiniMaxHook, router: respx.MockRouter, code: int, error_cls: type[MiniMaxError], status: int
) -> None:
    body = {"id": "x", "choices": [], "base_resp": {"status_code": code, "status_msg": "gateway says no"}}
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=body)
    with pytest.raises(error_cls) as caught:
        hook.chat_completion("hi")
    assert (caught.value.status_code, caught.value.code) == (status, str(code))
    assert "gateway says no" in str(caught.value)
    assert route.call_count == (
        3 if issubclass(error_cls, (MiniMaxServerError, MiniMaxRateLimitError)) else 1
    )


def test_zero_base_resp_is_a_success(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(CHAT_COMPLETIONS_URL).respond(
        200, json=chat_body(base_resp={"status_code": 0, "status_msg": ""})
    )
    assert hook.chat_completion("hi").answer == "Hello!"


def test_429_then_success_honours_retry_after(
    hook: MiniMaxHook, sleeper: FakeSleep, router: respx.MockRouter
) -> None:
    router.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}}),
            httpx.Response(200, json=chat_body()),
        ]
    )
    assert hook.chat_completion("hi").answer == "Hello!"
    assert sleeper.waits == [7.0]


# ------------------------------------------------------------------------ streaming

STREAM_EVENTS: list[Any] = [
    ": ping",
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "<think>r</think>"}}],
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9},
    },
    "[DONE]",
]


def test_stream_yields_chunks_until_done_and_asks_for_usage(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).mock(
        return_value=sse_response(*STREAM_EVENTS, {"id": "after-done", "choices": []})
    )
    chunks = list(hook.stream_chat_completion("hi"))
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["<think>r</think>", "Hi", None]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9
    assert all(c.id == "c1" for c in chunks)
    body = sent_json(route.calls.last.request)
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
    assert route.calls.last.request.headers["accept"] == "text/event-stream"


async def test_async_stream_yields_chunks_until_done(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(CHAT_COMPLETIONS_URL).mock(return_value=sse_response(*STREAM_EVENTS))
    chunks = [c async for c in hook.astream_chat_completion("hi")]
    assert len(chunks) == 4
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9
    await hook.aclose()


def test_error_chunk_mid_stream_raises_after_the_earlier_chunks(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    error = {"error": {"message": "upstream died", "type": "server_error", "code": "internal"}}
    router.post(CHAT_COMPLETIONS_URL).mock(return_value=sse_response(STREAM_EVENTS[2], error, "[DONE]"))
    received = []
    with pytest.raises(MiniMaxError, match="upstream died") as caught:
        for chunk in hook.stream_chat_completion("hi"):
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hi"]
    assert caught.value.code == "internal"


async def test_async_error_chunk_mid_stream_raises(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    error = {"error": {"message": "upstream died"}}
    router.post(CHAT_COMPLETIONS_URL).mock(return_value=sse_response(STREAM_EVENTS[2], error, "[DONE]"))
    with pytest.raises(MiniMaxError, match="upstream died"):
        async for _ in hook.astream_chat_completion("hi"):
            pass
    await hook.aclose()


def test_stream_refused_before_the_first_event_raises_typed(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).respond(402, json={"error": {"message": "no credit"}})
    with pytest.raises(MiniMaxCreditError):
        list(hook.stream_chat_completion("hi"))
    assert route.call_count == 1


def test_stream_answered_with_a_json_base_resp_error_raises_it(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    router.post(CHAT_COMPLETIONS_URL).respond(
        200, json={"base_resp": {"status_code": 1004, "status_msg": "auth failed"}}
    )
    with pytest.raises(MiniMaxAuthError, match="auth failed"):
        list(hook.stream_chat_completion("hi"))


async def test_async_stream_open_is_retried_on_429(
    hook: MiniMaxHook, sleeper: FakeSleep, router: respx.MockRouter
) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[httpx.Response(429, headers={"retry-after": "2"}, text=""), sse_response(*STREAM_EVENTS)]
    )
    chunks = [c async for c in hook.astream_chat_completion("hi")]
    assert (route.call_count, len(chunks), sleeper.waits) == (2, 4, [2.0])
    await hook.aclose()


# ------------------------------------------------------------------------ generate


def test_generate_over_the_chat_api_returns_text_and_usage(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body("<think>plan</think>\nParis"))
    result = hook.generate("capital?", system_prompt="be brief", max_tokens=100)
    assert (result.text, result.reasoning, result.finish_reason) == ("Paris", "plan", "stop")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        7,
        9,
        16,
    )
    assert result.raw_content == "<think>plan</think>\nParis"
    assert result.cost is None
    assert sent_json(route.calls.last.request)["messages"][0] == {"role": "system", "content": "be brief"}


async def test_async_generate_over_the_chat_api(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body("<think>plan</think>Paris"))
    result = await hook.agenerate("capital?")
    assert (result.text, result.usage.total_tokens) == ("Paris", 16)
    await hook.aclose()


# ------------------------------------------------------------------------ test_connection


@pytest.mark.parametrize(
    ("answer", "ok", "says"),
    [
        pytest.param(
            httpx.Response(400, json={"error": {"message": "messages empty"}}), True, "valid", id="400"
        ),
        pytest.param(
            httpx.Response(422, json={"error": {"message": "messages empty"}}), True, "valid", id="422"
        ),
        pytest.param(
            httpx.Response(401, json={"error": {"message": "bad key"}}), False, "key was refused", id="401"
        ),
        pytest.param(httpx.Response(404, text="Not Found"), False, "404", id="404"),
        pytest.param(httpx.ConnectError("refused"), False, "unreachable", id="unreachable"),
        pytest.param(httpx.ReadTimeout("slow"), False, "unreachable", id="timeout"),
    ],
)
def test_test_connection_sends_an_empty_conversation(
    hook: MiniMaxHook, router: respx.MockRouter, answer: Any, ok: bool, says: str
) -> None:
    route = router.post(CHAT_COMPLETIONS_URL)
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    result, message = hook.test_connection()
    assert result is ok, message
    assert says in message
    assert route.call_count == 1
    assert sent_json(route.calls.last.request) == {"model": "minimax-m2.7", "messages": []}


async def test_async_stream_answered_with_a_json_error_in_a_200_raises_it(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    router.post(CHAT_COMPLETIONS_URL).respond(
        200, json={"base_resp": {"status_code": 1008, "status_msg": "no money"}}
    )
    with pytest.raises(MiniMaxCreditError, match="no money"):
        async for _ in hook.astream_chat_completion("hi"):
            pass
    await hook.aclose()


def test_stream_answered_with_plain_json_is_not_retried(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body())
    with pytest.raises(MiniMaxError, match="event stream"):
        list(hook.stream_chat_completion("hi"))
    assert route.call_count == 1
