"""MiniMaxHook over the task API, at the wire level (respx)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import BaseHook
from hook_testlib import TASK_URL, FakeSleep, make_hook, sent_json, sse_response, task_result, v4

from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxCreditError,
    MiniMaxError,
    MiniMaxInvalidRequestError,
    MiniMaxRateLimitError,
    MiniMaxServerError,
    MiniMaxTaskFailedError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.hooks.minimax import MiniMaxHook


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> MiniMaxHook:
    return make_hook(monkeypatch, max_tasks_per_request=2, max_retries=2)[0]


@pytest.fixture
def sleeper(fake_sleep: FakeSleep) -> FakeSleep:
    return fake_sleep


def _echo_results(request: httpx.Request) -> httpx.Response:
    """Answer every textInference with a result and every getResponse with ``processing``."""
    items = []
    for task in sent_json(request):
        if task["taskType"] == "getResponse":
            items.append({"taskType": "textInference", "taskUUID": task["taskUUID"], "status": "processing"})
        else:
            items.append(task_result(task["taskUUID"], text=f"echo {task['taskUUID'][-2:]}"))
    return httpx.Response(200, json={"data": items})


# ------------------------------------------------------------------------ request shape


def test_one_task_is_sent_as_an_array_with_a_bearer_key(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(TASK_URL).mock(side_effect=_echo_results)
    hook.text_inference("hi", task_uuid=v4(1))
    request = route.calls.last.request
    body = sent_json(request)
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["taskUUID"] == v4(1) and body[0]["deliveryMethod"] == "sync"
    assert request.headers["authorization"] == "Bearer sk-SECRET-123"
    assert request.headers["content-type"] == "application/json"


def test_a_bare_array_of_results_is_read_as_the_data(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(200, json=[task_result(v4(1), text="bare")])
    assert hook.text_inference("hi", task_uuid=v4(1)).results[0].text == "bare"


def test_several_tasks_share_one_request(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(TASK_URL).mock(side_effect=_echo_results)
    tasks = [hook.new_text_inference("hi", task_uuid=v4(i), delivery_method="async") for i in (1, 2)]
    outcome = hook.submit_tasks(tasks)
    assert route.call_count == 1
    assert [t["taskUUID"] for t in sent_json(route.calls.last.request)] == [v4(1), v4(2)]
    assert [r.task_uuid for r in outcome.results] == [v4(1), v4(2)]


def test_large_lists_are_chunked_by_max_tasks_per_request(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL).mock(side_effect=_echo_results)
    tasks = [hook.new_text_inference("hi", task_uuid=v4(i), delivery_method="async") for i in range(1, 6)]
    outcome = hook.submit_tasks(tasks)
    assert [len(sent_json(call.request)) for call in route.calls] == [2, 2, 1]
    assert [r.task_uuid for r in outcome.results] == [v4(i) for i in range(1, 6)]


async def test_async_submit_chunks_and_keeps_order(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(TASK_URL).mock(side_effect=_echo_results)
    tasks = [hook.new_text_inference("hi", task_uuid=v4(i), delivery_method="async") for i in range(1, 6)]
    outcome = await hook.asubmit_tasks(tasks)
    assert sorted(len(sent_json(call.request)) for call in route.calls) == [1, 2, 2]
    assert [r.task_uuid for r in outcome.results] == [v4(i) for i in range(1, 6)]


def test_get_responses_polls_several_uuids_in_one_request(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch)
    route = router.post(TASK_URL).mock(side_effect=_echo_results)
    outcome = hook.get_responses([v4(1), v4(2), v4(3), v4(1)])
    assert route.call_count == 1
    assert sent_json(route.calls.last.request) == [
        {"taskType": "getResponse", "taskUUID": v4(i)} for i in (1, 2, 3)
    ]
    assert [r.status for r in outcome.results] == ["processing"] * 3
    assert not any(r.is_terminal for r in outcome.results)


async def test_async_get_responses_polls_in_one_request(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch)
    route = router.post(TASK_URL).mock(side_effect=_echo_results)
    outcome = await hook.aget_responses([v4(1), v4(2)])
    assert route.call_count == 1
    assert [r.task_uuid for r in outcome.results] == [v4(1), v4(2)]
    await hook.aclose()


def test_get_responses_refuses_a_non_v4_uuid_before_sending(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL)
    with pytest.raises(MiniMaxValidationError, match="task_uuid"):
        hook.get_responses(["not-a-uuid"])
    assert not route.called


# ------------------------------------------------------------------------ results


def test_text_inference_returns_the_result(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(200, json={"data": [task_result(v4(1), text="Paris")]})
    outcome = hook.text_inference("capital of France?", task_uuid=v4(1))
    (item,) = outcome.results_for(v4(1))
    assert (item.text, item.finish_reason, item.cost) == ("Paris", "stop", 0.0012)
    assert item.usage is not None and item.usage.total_tokens == 8


def test_number_results_items_are_ordered_by_result_index(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    items = [task_result(v4(1), text=f"r{i}", resultIndex=i) for i in (2, 0, 1)]
    router.post(TASK_URL).respond(200, json={"data": items})
    outcome = hook.text_inference("hi", task_uuid=v4(1), number_results=3)
    assert [r.text for r in outcome.results_for(v4(1))] == ["r0", "r1", "r2"]


async def test_async_text_inference_returns_the_result(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(TASK_URL).respond(200, json={"data": [task_result(v4(1), text="Paris")]})
    outcome = await hook.atext_inference("hi", task_uuid=v4(1))
    assert [r.text for r in outcome.results] == ["Paris"]
    assert sent_json(route.calls.last.request)[0]["deliveryMethod"] == "sync"
    await hook.aclose()


def test_partial_success_keeps_every_success_and_the_per_task_errors(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    body = {
        "data": [task_result(v4(1)), task_result(v4(3))],
        "errors": [{"code": "contentPolicyViolation", "message": "no", "taskUUID": v4(2)}],
    }
    router.post(TASK_URL).respond(200, json=body)
    tasks = [hook.new_text_inference("hi", task_uuid=v4(i)) for i in (1, 2)]
    tasks.append(hook.new_text_inference("hi", task_uuid=v4(3)))
    hook.settings  # noqa: B018  (read the settings before replacing them below)
    hook._settings = hook.settings.model_copy(update={"max_tasks_per_request": 10})
    outcome = hook.submit_tasks(tasks)
    assert [r.task_uuid for r in outcome.results] == [v4(1), v4(3)]
    error = outcome.error_for(v4(2))
    assert error is not None and error.code == "contentPolicyViolation"
    assert outcome.error_for(v4(1)) is None


def test_partial_success_across_chunks_keeps_all_successes(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    router.post(TASK_URL).mock(
        side_effect=[
            httpx.Response(200, json={"data": [task_result(v4(1)), task_result(v4(2))]}),
            httpx.Response(
                400, json={"errors": [{"code": "invalidMessages", "message": "bad", "taskUUID": v4(3)}]}
            ),
        ]
    )
    tasks = [hook.new_text_inference("hi", task_uuid=v4(i)) for i in (1, 2, 3)]
    outcome = hook.submit_tasks(tasks)
    assert [r.task_uuid for r in outcome.results] == [v4(1), v4(2)]
    assert [e.code for e in outcome.errors] == ["invalidMessages"]


def test_poll_item_with_status_error_is_the_tasks_error(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(
        200,
        json={
            "data": [
                {
                    "taskType": "textInference",
                    "taskUUID": v4(1),
                    "status": "error",
                    "error": {"code": "inferenceError"},
                },
                {**task_result(v4(2)), "status": "success"},
            ]
        },
    )
    outcome = hook.get_responses([v4(1), v4(2)])
    error = outcome.error_for(v4(1))
    assert error is not None and error.code == "inferenceError"
    assert outcome.results_for(v4(2))[0].is_success


def test_conflict_task_uuid_lands_in_already_accepted(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(
        400,
        json={
            "errors": [
                {
                    "code": "conflictTaskUUID",
                    "message": "exists",
                    "taskUUID": v4(1),
                    "context": {"taskType": "textInference", "taskUUID": v4(1), "deliveryMethod": "async"},
                }
            ]
        },
    )
    outcome = hook.submit_tasks([hook.new_text_inference("hi", task_uuid=v4(1), delivery_method="async")])
    assert outcome.already_accepted == [v4(1)]
    assert outcome.errors == []


def test_conflict_next_to_a_success_keeps_both(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(
        200,
        json={
            "data": [{"taskType": "textInference", "taskUUID": v4(2)}],
            "errors": [{"code": "conflictTaskUUID", "taskUUID": v4(1)}],
        },
    )
    tasks = [hook.new_text_inference("hi", task_uuid=v4(i), delivery_method="async") for i in (1, 2)]
    outcome = hook.submit_tasks(tasks)
    assert (outcome.already_accepted, [r.task_uuid for r in outcome.results]) == ([v4(1)], [v4(2)])


@pytest.mark.parametrize(
    ("code", "error_cls"),
    [
        ("invalidApiKey", MiniMaxAuthError),
        ("insufficientCredits", MiniMaxCreditError),
        ("invalidModel", MiniMaxInvalidRequestError),
        ("providerUnavailable", MiniMaxServerError),
        ("rateLimitExceeded", MiniMaxRateLimitError),
    ],
)
def test_http_200_carrying_errors_is_raised_as_the_error_it_names(
    hook: MiniMaxHook, router: respx.MockRouter, code: str, error_cls: type[MiniMaxError]
) -> None:
    router.post(TASK_URL).respond(200, json={"errors": [{"code": code, "message": "m"}]})
    with pytest.raises(error_cls) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("code", "error_cls"),
    [
        ("contentPolicyViolation", MiniMaxTaskFailedError),
        ("invalidSeed", MiniMaxInvalidRequestError),
        ("insufficientCredits", MiniMaxCreditError),
    ],
)
def test_single_task_error_in_a_200_is_raised_with_its_uuid(
    hook: MiniMaxHook, router: respx.MockRouter, code: str, error_cls: type[MiniMaxError]
) -> None:
    router.post(TASK_URL).respond(200, json={"errors": [{"code": code, "message": "m", "taskUUID": v4(1)}]})
    with pytest.raises(error_cls) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert (caught.value.code, caught.value.task_uuid) == (code, v4(1))


def test_sync_conflict_fetches_the_result_of_the_earlier_submit(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL).mock(
        side_effect=[
            httpx.Response(400, json={"errors": [{"code": "conflictTaskUUID", "taskUUID": v4(1)}]}),
            httpx.Response(
                200, json={"data": [{**task_result(v4(1), text="paid once"), "status": "success"}]}
            ),
        ]
    )
    outcome = hook.text_inference("hi", task_uuid=v4(1))
    assert [r.text for r in outcome.results] == ["paid once"]
    assert sent_json(route.calls[1].request) == [{"taskType": "getResponse", "taskUUID": v4(1)}]


async def test_async_sync_conflict_fetches_the_result(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).mock(
        side_effect=[
            httpx.Response(400, json={"errors": [{"code": "conflictTaskUUID", "taskUUID": v4(1)}]}),
            httpx.Response(
                200, json={"data": [{**task_result(v4(1), text="paid once"), "status": "success"}]}
            ),
        ]
    )
    outcome = await hook.atext_inference("hi", task_uuid=v4(1))
    assert [r.text for r in outcome.results] == ["paid once"]
    await hook.aclose()


# ------------------------------------------------------------------------ one case per status

# (status, API code in the body, error type, retried)
STATUS_TABLE: list[tuple[int, str, type[MiniMaxError], bool]] = [
    (400, "invalidModel", MiniMaxInvalidRequestError, False),
    (401, "invalidApiKey", MiniMaxAuthError, False),
    (402, "insufficientCredits", MiniMaxCreditError, False),
    (403, "forbidden", MiniMaxAuthError, False),
    (404, "notFound", MiniMaxInvalidRequestError, False),
    (408, "requestTimeout", MiniMaxServerError, True),
    (422, "unprocessableEntity", MiniMaxInvalidRequestError, False),
    (429, "rateLimitExceeded", MiniMaxRateLimitError, True),
    (500, "internalServerError", MiniMaxServerError, True),
    (502, "badGateway", MiniMaxServerError, True),
    (503, "providerUnavailable", MiniMaxServerError, True),
    (504, "timeoutProvider", MiniMaxServerError, True),
]


@pytest.mark.parametrize(
    ("status", "code", "error_cls", "retried"), STATUS_TABLE, ids=[str(r[0]) for r in STATUS_TABLE]
)
def test_each_error_status_raises_its_type(
    hook: MiniMaxHook,
    sleeper: FakeSleep,
    router: respx.MockRouter,
    status: int,
    code: str,
    error_cls: type[MiniMaxError],
    retried: bool,
) -> None:
    route = router.post(TASK_URL).respond(status, json={"errors": [{"code": code, "message": "nope"}]})
    with pytest.raises(error_cls) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert type(caught.value) is error_cls
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert route.call_count == (3 if retried else 1)
    assert len(sleeper.waits) == (2 if retried else 0)


@pytest.mark.parametrize(
    ("status", "code", "error_cls", "retried"), STATUS_TABLE, ids=[str(r[0]) for r in STATUS_TABLE]
)
def test_each_error_status_without_a_json_body_raises_its_type(
    hook: MiniMaxHook,
    router: respx.MockRouter,
    status: int,
    code: str,
    error_cls: type[MiniMaxError],
    retried: bool,
) -> None:
    route = router.post(TASK_URL).respond(status, text="<html>upstream says no</html>")
    with pytest.raises(error_cls) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert caught.value.status_code == status
    assert route.call_count == (3 if retried else 1)


async def test_async_error_status_is_retried_then_raised(
    hook: MiniMaxHook, sleeper: FakeSleep, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL).respond(503, json={"errors": [{"code": "providerUnavailable"}]})
    with pytest.raises(MiniMaxServerError):
        await hook.atext_inference("hi", task_uuid=v4(1))
    assert route.call_count == 3
    assert len(sleeper.waits) == 2
    await hook.aclose()


# ------------------------------------------------------------------------ streaming

STREAM_EVENTS: list[Any] = [
    ": keep-alive comment",
    {"taskUUID": v4(1), "taskType": "textInference", "delta": {"reasoningContent": "hmm"}},
    {"taskUUID": v4(1), "taskType": "textInference", "delta": {"text": "Hel"}, "finishReason": None},
    {"data": {"taskUUID": v4(1), "taskType": "textInference", "delta": {"text": "lo"}}},
    {
        "taskUUID": v4(1),
        "taskType": "textInference",
        "delta": {},
        "finishReason": "stop",
        "usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3},
        "cost": 0.001,
    },
    "[DONE]",
]


def test_stream_yields_chunks_until_done(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(TASK_URL).mock(
        return_value=sse_response(*STREAM_EVENTS, {"delta": {"text": "after"}})
    )
    chunks = list(hook.stream_text_inference("hi", task_uuid=v4(1)))
    assert "".join(c.delta.text or "" for c in chunks) == "Hello"
    assert chunks[0].delta.reasoning_content == "hmm"
    assert (chunks[-1].finish_reason, chunks[-1].cost) == ("stop", 0.001)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 3
    request = route.calls.last.request
    assert request.headers["accept"] == "text/event-stream"
    assert sent_json(request)[0]["deliveryMethod"] == "stream"


async def test_async_stream_yields_chunks_until_done(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).mock(return_value=sse_response(*STREAM_EVENTS))
    chunks = [c async for c in hook.astream_text_inference("hi", task_uuid=v4(1))]
    assert "".join(c.delta.text or "" for c in chunks) == "Hello"
    await hook.aclose()


@pytest.mark.parametrize(
    "error_event",
    [
        pytest.param(
            {"errors": [{"code": "providerError", "message": "cut", "taskUUID": v4(1)}]}, id="errors"
        ),
        pytest.param({"error": {"code": "providerError", "message": "cut"}}, id="error"),
    ],
)
def test_error_chunk_mid_stream_raises_after_the_earlier_chunks(
    hook: MiniMaxHook, router: respx.MockRouter, error_event: dict[str, Any]
) -> None:
    router.post(TASK_URL).mock(return_value=sse_response(STREAM_EVENTS[2], error_event, "[DONE]"))
    received = []
    with pytest.raises(MiniMaxServerError) as caught:
        for chunk in hook.stream_text_inference("hi", task_uuid=v4(1)):
            received.append(chunk.delta.text)
    assert received == ["Hel"]
    assert caught.value.code == "providerError"


async def test_async_error_chunk_mid_stream_raises(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).mock(
        return_value=sse_response(STREAM_EVENTS[2], {"errors": [{"code": "inferenceError"}]}, "[DONE]")
    )
    with pytest.raises(MiniMaxTaskFailedError):
        async for _ in hook.astream_text_inference("hi", task_uuid=v4(1)):
            pass
    await hook.aclose()


def test_stream_refused_before_the_first_event_raises_typed(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL).respond(401, json={"errors": [{"code": "invalidApiKey", "message": "bad"}]})
    with pytest.raises(MiniMaxAuthError):
        list(hook.stream_text_inference("hi", task_uuid=v4(1)))
    assert route.call_count == 1


def test_stream_open_is_retried_on_503(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    route = router.post(TASK_URL).mock(
        side_effect=[httpx.Response(503, text="busy"), sse_response(*STREAM_EVENTS)]
    )
    chunks = list(hook.stream_text_inference("hi", task_uuid=v4(1)))
    assert route.call_count == 2
    assert "".join(c.delta.text or "" for c in chunks) == "Hello"


def test_stream_answered_with_a_json_validation_error_raises_it(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    router.post(TASK_URL).respond(
        400, json={"errors": [{"code": "invalidMaxTokens", "parameter": "maxTokens", "taskUUID": v4(1)}]}
    )
    with pytest.raises(MiniMaxInvalidRequestError) as caught:
        list(hook.stream_text_inference("hi", task_uuid=v4(1)))
    assert (caught.value.status_code, caught.value.parameter) == (400, "maxTokens")


# ------------------------------------------------------------------------ generate


def _answer(text: str, **fields: Any) -> Callable[[httpx.Request], httpx.Response]:
    """Answer the one task sent, under its own taskUUID."""

    def respond(request: httpx.Request) -> httpx.Response:
        (task,) = sent_json(request)
        return httpx.Response(200, json={"data": [task_result(task["taskUUID"], text=text, **fields)]})

    return respond


def test_generate_over_the_task_api_returns_text_usage_and_cost(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL).mock(side_effect=_answer("Paris", reasoningContent=["think", "more"]))
    result = hook.generate("capital?", system_prompt="be brief", temperature=0.5)
    assert (result.text, result.reasoning, result.cost) == ("Paris", "think\nmore", 0.0012)
    assert result.usage.total_tokens == 8
    sent = sent_json(route.calls.last.request)[0]
    assert sent["settings"] == {"systemPrompt": "be brief", "temperature": 0.5}


def test_generate_strips_an_inline_think_block_from_task_text(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    router.post(TASK_URL).mock(side_effect=_answer("<think>plan</think>\nParis"))
    result = hook.generate("capital?")
    assert (result.text, result.reasoning, result.raw_content) == (
        "Paris",
        "plan",
        "<think>plan</think>\nParis",
    )


async def test_async_generate_over_the_task_api(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).mock(side_effect=_answer("Paris"))
    result = await hook.agenerate("capital?")
    assert (result.text, result.usage.total_tokens, result.cost) == ("Paris", 8, 0.0012)
    await hook.aclose()


# ------------------------------------------------------------------------ test_connection


def test_test_connection_polls_an_unknown_uuid_and_spends_nothing(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    def not_found(request: httpx.Request) -> httpx.Response:
        (task,) = sent_json(request)
        return httpx.Response(
            400, json={"errors": [{"code": "taskFailedOrNotFound", "taskUUID": task["taskUUID"]}]}
        )

    route = router.post(TASK_URL).mock(side_effect=not_found)
    ok, message = hook.test_connection()
    assert ok, message
    (task,) = sent_json(route.calls.last.request)
    assert set(task) == {"taskType", "taskUUID"} and task["taskType"] == "getResponse"
    assert route.call_count == 1


def test_test_connection_reports_a_bad_key(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(401, json={"errors": [{"code": "invalidApiKey", "message": "Invalid key"}]})
    ok, message = hook.test_connection()
    assert not ok
    assert "key was refused" in message


def test_test_connection_reports_unreachable_without_retrying(
    hook: MiniMaxHook, router: respx.MockRouter
) -> None:
    route = router.post(TASK_URL).mock(side_effect=httpx.ConnectError("Connection refused"))
    ok, message = hook.test_connection()
    assert not ok
    assert "unreachable" in message
    assert route.call_count == 1


def test_test_connection_reports_a_wrong_url(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(404, text="<html>Not Found</html>")
    ok, message = hook.test_connection()
    assert not ok
    assert "404" in message


def test_scoped_validation_error_keeps_its_http_status(hook: MiniMaxHook, router: respx.MockRouter) -> None:
    router.post(TASK_URL).respond(
        400,
        json={
            "errors": [{"code": "invalidSeed", "message": "bad seed", "parameter": "seed", "taskUUID": v4(1)}]
        },
    )
    with pytest.raises(MiniMaxInvalidRequestError) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert (caught.value.status_code, caught.value.code, caught.value.parameter) == (
        400,
        "invalidSeed",
        "seed",
    )
    assert caught.value.task_uuid == v4(1)


def _not_found(request: httpx.Request) -> httpx.Response:
    """What the task API answers a getResponse for a taskUUID it does not know."""
    probe = sent_json(request)[0]["taskUUID"]
    return httpx.Response(200, json={"errors": [{"code": "taskFailedOrNotFound", "taskUUID": probe}]})


@pytest.mark.parametrize(
    ("answer", "ok", "says"),
    [
        pytest.param(httpx.Response(503, text="busy"), False, "failing", id="503"),
        pytest.param(
            httpx.Response(402, json={"errors": [{"code": "insufficientCredits"}]}),
            False,
            "refused",
            id="402",
        ),
        pytest.param(_not_found, True, "valid", id="200-not-found"),
        pytest.param(httpx.Response(200, json={"data": []}), False, "did not answer", id="200-empty"),
        pytest.param(httpx.Response(200, json=[]), False, "did not answer", id="200-bare-array"),
    ],
)
def test_test_connection_outcomes(
    hook: MiniMaxHook, router: respx.MockRouter, answer: Any, ok: bool, says: str
) -> None:
    route = router.post(TASK_URL)
    route.mock(side_effect=answer) if callable(answer) else route.mock(return_value=answer)
    result, message = hook.test_connection()
    assert (result, says in message) == (ok, True)
    assert route.call_count == 1


def test_test_connection_reports_a_broken_connection_without_any_call(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, password=None)
    ok, message = hook.test_connection()
    assert not ok
    assert "password" in message and "minimax_unit" in message
    assert not router.calls


async def test_concurrent_first_calls_read_the_connection_once(
    hook: MiniMaxHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    original = MiniMaxHook.get_connection

    async def counted(conn_id: str) -> Any:
        reads.append(conn_id)
        await asyncio.sleep(0)  # let every caller arrive while the read is in flight
        return original(conn_id)

    # raising=False: Airflow 3.0 has no async getter, and the hook then uses this one if set.
    monkeypatch.setattr(BaseHook, "aget_connection", staticmethod(counted), raising=False)

    settings = await asyncio.gather(*(hook.aget_settings() for _ in range(20)))

    assert len(reads) == 1
    assert {s.base_url for s in settings} == {TASK_URL}
