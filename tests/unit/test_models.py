"""Wire models: request bounds enforced before any HTTP call, tolerant response parsing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import respx
from hook_testlib import CHAT_COMPLETIONS_URL, TASK_URL, make_hook, v4

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.models import (
    ChatCompletion,
    ChatCompletionChunk,
    GetResponseTask,
    TaskApiResponse,
    TaskResult,
    TextInferenceChunk,
    split_think,
    task_array,
)

USER = [{"role": "user", "content": "hi"}]

# (id, api, call kwargs, field named, value named, bound named)
BAD_INPUTS: list[tuple[str, str, dict[str, Any], str, str, str]] = [
    ("numberResults-0", "task", {"number_results": 0}, "number_results", "0", "1"),
    ("numberResults-5", "task", {"number_results": 5}, "number_results", "5", "4"),
    ("seed-negative", "task", {"seed": -1}, "seed", "-1", "0"),
    ("seed-2^32", "task", {"seed": 4294967296}, "seed", "4294967296", "4294967295"),
    ("temperature-below", "task", {"temperature": -0.01}, "temperature", "-0.01", "0"),
    ("temperature-above", "task", {"temperature": 1.01}, "temperature", "1.01", "1"),
    ("temperature-off-grid", "task", {"temperature": 0.333}, "temperature", "0.333", "0.01"),
    ("topP-below", "task", {"top_p": -0.5}, "top_p", "-0.5", "0"),
    ("topP-above", "task", {"top_p": 1.5}, "top_p", "1.5", "1"),
    ("maxTokens-0", "task", {"max_tokens": 0}, "max_tokens", "0", "1"),
    ("maxTokens-196609", "task", {"max_tokens": 196609}, "max_tokens", "196609", "196608"),
    ("systemPrompt-empty", "task", {"system_prompt": ""}, "system_prompt", "''", "non-blank"),
    ("systemPrompt-too-long", "task", {"system_prompt": "x" * 200_001}, "system_prompt", "xxx", "200000"),
    ("no-messages", "task", {"messages": []}, "messages", "[]", "1 item"),
    (
        "empty-content",
        "task",
        {"messages": [{"role": "user", "content": ""}]},
        "content",
        "''",
        "whitespace",
    ),
    (
        "last-message-assistant",
        "task",
        {"messages": [*USER, {"role": "assistant", "content": "yo"}]},
        "messages",
        "'assistant'",
        "'user'",
    ),
    ("bad-role", "task", {"messages": [{"role": "robot", "content": "x"}]}, "role", "'robot'", "'user'"),
    ("taskUUID-v1", "task", {"task_uuid": str(uuid.UUID(int=7, version=1))}, "task_uuid", "-1", "v4"),
    (
        "taskUUID-v5",
        "task",
        {"task_uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, "x"))},
        "task_uuid",
        str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")),
        "v4",
    ),
    ("taskUUID-garbage", "task", {"task_uuid": "not-a-uuid"}, "task_uuid", "not-a-uuid", "v4"),
    (
        "stream-numberResults-2",
        "stream",
        {"number_results": 2},
        "number_results",
        "2",
        "stream",
    ),
    ("webhook-not-url", "task", {"webhook_url": "not a url"}, "webhook_url", "not a url", "URL"),
    ("chat-max_tokens-16385", "chat", {"max_tokens": 16385}, "max_tokens", "16385", "16384"),
    ("chat-temperature-2", "chat", {"temperature": 2}, "temperature", "2", "1"),
    ("chat-no-messages", "chat", {"messages": []}, "messages", "[]", "1 item"),
    (
        "chat-empty-content",
        "chat",
        {"messages": [{"role": "user", "content": ""}]},
        "messages.0",
        "''",
        "non-empty",
    ),
    (
        "chat-tool-without-id",
        "chat",
        {"messages": [*USER, {"role": "tool", "content": "42"}]},
        "messages.1",
        "'tool'",
        "tool_call_id",
    ),
    ("chat-bad-role", "chat", {"messages": [{"role": "robot", "content": "x"}]}, "role", "'robot'", "'user'"),
    ("chat-systemPrompt-empty", "chat", {"system_prompt": ""}, "system_prompt", "''", "non-blank"),
]


@pytest.mark.parametrize(
    ("api", "kwargs", "field", "value", "bound"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_is_refused_before_any_http_call(
    monkeypatch: pytest.MonkeyPatch, api: str, kwargs: dict[str, Any], field: str, value: str, bound: str
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat" if api == "chat" else "task")
    kwargs = dict(kwargs)
    messages = kwargs.pop("messages", USER)
    with respx.mock(assert_all_called=False) as router:
        task_route = router.post(TASK_URL)
        chat_route = router.post(CHAT_COMPLETIONS_URL)
        with pytest.raises(MiniMaxValidationError) as caught:
            if api == "chat":
                hook.chat_completion(messages, **kwargs)
            elif api == "stream":
                list(hook.stream_text_inference(messages, **kwargs))
            else:
                hook.text_inference(messages, **kwargs)
    message = str(caught.value)
    assert field in message
    assert value in message
    assert bound in message
    assert field in str(caught.value.parameter)
    assert not task_route.called
    assert not chat_route.called


def test_bad_input_message_is_short_even_for_a_huge_value(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch)
    with pytest.raises(MiniMaxValidationError) as caught:
        hook.new_text_inference("hi", system_prompt="x" * 200_001)
    assert len(str(caught.value)) < 1000


@pytest.mark.parametrize(
    ("kwargs", "wire_key", "wire_value"),
    [
        ({"number_results": 4}, "numberResults", 4),
        ({"seed": 4294967295}, "seed", 4294967295),
        ({"seed": 0}, "seed", 0),
        ({"task_uuid": v4(1)}, "taskUUID", v4(1)),
    ],
)
def test_bounds_are_inclusive(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], wire_key: str, wire_value: Any
) -> None:
    hook, _ = make_hook(monkeypatch)
    assert hook.new_text_inference("hi", **kwargs).to_wire()[wire_key] == wire_value


def test_text_inference_task_serialises_camel_case_with_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch)
    task = hook.new_text_inference(
        [{"role": "system", "content": "be brief"}, *USER],
        task_uuid=v4(1),
        temperature=1,
        top_p=0.95,
        max_tokens=196608,
    )
    assert task.to_wire() == {
        "taskType": "textInference",
        "taskUUID": v4(1),
        "model": "minimax:m2.7@highspeed",
        "deliveryMethod": "sync",
        "includeCost": True,
        "includeUsage": True,
        "messages": USER,
        "settings": {"systemPrompt": "be brief", "temperature": 1.0, "topP": 0.95, "maxTokens": 196608},
    }


def test_a_request_body_is_the_wire_form_of_its_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch)
    tasks = [
        hook.new_text_inference(
            [{"role": "system", "content": "soyez bref"}, {"role": "user", "content": "déjà vu ✓"}],
            task_uuid=v4(1),
            temperature=0.7,
            seed=0,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"x": None}}}],
            routing={"region": "eu"},
        ),
        GetResponseTask(task_uuid=v4(2)),
    ]
    assert json.loads(task_array(tasks)) == [task.to_wire() for task in tasks]


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(v4(1), id="canonical"),
        pytest.param(v4(1).upper(), id="upper-case"),
        pytest.param("{" + v4(1) + "}", id="braces"),
        pytest.param("urn:uuid:" + v4(1), id="urn"),
        pytest.param(v4(1).replace("-", ""), id="no-hyphens"),
    ],
)
def test_a_task_uuid_is_sent_in_canonical_form(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    hook, _ = make_hook(monkeypatch)
    assert hook.new_text_inference("hi", task_uuid=given).task_uuid == v4(1)


# ------------------------------------------------------------------------ tolerant responses


def test_unknown_response_fields_are_kept() -> None:
    item = TaskResult.model_validate({**_ok(v4(1)), "brandNew": {"x": 1}})
    assert item.model_extra == {"brandNew": {"x": 1}}
    envelope = TaskApiResponse.model_validate({"data": [_ok(v4(1))], "requestId": "r-1"})
    assert envelope.model_extra == {"requestId": "r-1"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"errors": [{"code": "invalidSeed", "message": "m", "taskUUID": v4(1)}]}, id="errors-list"
        ),
        pytest.param(
            {"error": {"code": "invalidSeed", "message": "m", "taskUUID": v4(1)}}, id="error-object"
        ),
        pytest.param(
            {
                "error": {"code": "invalidSeed", "message": "m"},
                "taskUUID": v4(1),
                "taskType": "textInference",
            },
            id="error-object-with-top-level-uuid",
        ),
    ],
)
@pytest.mark.parametrize("read", ["python", "json"])
def test_every_error_form_is_normalised_to_errors(body: dict[str, Any], read: str) -> None:
    if read == "json":
        envelope = TaskApiResponse.model_validate_json(json.dumps(body))
    else:
        envelope = TaskApiResponse.model_validate(body)
    assert [(e.code, e.message, e.task_uuid) for e in envelope.errors] == [("invalidSeed", "m", v4(1))]
    assert envelope.model_extra == {}  # the older form's keys were folded in, not kept beside


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [("seed", "seed"), (["settings", "temperature"], ["settings", "temperature"]), (None, None)],
)
def test_error_parameter_is_a_string_or_a_list(parameter: Any, expected: Any) -> None:
    envelope = TaskApiResponse.model_validate({"errors": [{"code": "invalidX", "parameter": parameter}]})
    assert envelope.errors[0].parameter == expected


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        ("processing", False),
        ("pending", False),
        ("queued", False),
        ("somethingNew", False),
        (None, False),
        ("success", True),
        ("error", True),
    ],
)
def test_any_status_other_than_success_or_error_is_still_running(status: str | None, terminal: bool) -> None:
    item = TaskResult.model_validate({"taskType": "textInference", "taskUUID": v4(1), "status": status})
    assert item.is_terminal is terminal


def test_poll_error_item_carries_its_error() -> None:
    item = TaskResult.model_validate(
        {
            "taskType": "textInference",
            "taskUUID": v4(1),
            "status": "error",
            "error": {"code": "inferenceError"},
        }
    )
    assert item.error is not None and item.error.code == "inferenceError"
    assert not item.is_success


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"taskUUID": v4(1), "delta": {"text": "Hel"}}, id="plain"),
        pytest.param({"data": {"taskUUID": v4(1), "delta": {"text": "Hel"}}}, id="data-wrapped"),
    ],
)
def test_stream_chunk_wrapped_in_data_is_unwrapped(raw: dict[str, Any]) -> None:
    chunk = TextInferenceChunk.model_validate(raw)
    assert (chunk.task_uuid, chunk.delta.text) == (v4(1), "Hel")


def test_stream_error_object_chunk_becomes_errors() -> None:
    chunk = TextInferenceChunk.model_validate({"error": {"code": "providerError", "message": "boom"}})
    assert [e.code for e in chunk.errors] == ["providerError"]


@pytest.mark.parametrize(
    ("content", "answer", "reasoning"),
    [
        ("<think>plan it</think>\n\nHello!", "Hello!", "plan it"),
        ("  <think>\nmulti\nline\n</think>Hi", "Hi", "multi\nline"),
        ("No thinking here", "No thinking here", None),
        ("Answer <think>late</think>", "Answer <think>late</think>", None),
        ("", "", None),
        (None, "", None),
    ],
)
def test_think_block_is_split_from_the_answer(
    content: str | None, answer: str, reasoning: str | None
) -> None:
    assert split_think(content) == (answer, reasoning)


def test_chat_completion_keeps_full_content_for_replay() -> None:
    completion = ChatCompletion.model_validate(
        {
            "choices": [{"message": {"role": "assistant", "content": "<think>r</think>A"}}],
            "surprise": True,
        }
    )
    assert (completion.answer, completion.reasoning) == ("A", "r")
    assert completion.message.as_request_message().content == "<think>r</think>A"
    assert completion.model_extra == {"surprise": True}


def test_chat_reasoning_details_used_when_split_server_side() -> None:
    completion = ChatCompletion.model_validate(
        {"choices": [{"message": {"content": "A", "reasoning_details": [{"text": "because"}]}}]}
    )
    assert (completion.answer, completion.reasoning) == ("A", "because")


def test_chat_usage_only_chunk_parses() -> None:
    chunk = ChatCompletionChunk.model_validate(
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    )
    assert chunk.usage is not None and chunk.usage.total_tokens == 3


def _ok(task_uuid: str) -> dict[str, Any]:
    return {"taskType": "textInference", "taskUUID": task_uuid, "status": "success", "text": "t"}
