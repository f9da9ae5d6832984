"""Bad input to the connection and the hook: a clear error naming the field, before any HTTP call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx
from hook_testlib import (
    CHAT_COMPLETIONS_URL,
    CONN_ID,
    SECRET_KEY,
    TASK_URL,
    chat_body,
    make_hook,
    sent_json,
    v4,
)
from pydantic import BaseModel

from airflow_provider_minimax.exceptions import (
    MiniMaxConfigurationError,
    MiniMaxError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.models import ChatCompletion, ChatMessage, TaskMessage, TextInferenceTask


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(TASK_URL).respond(200, json={"data": []})
        mock.post(CHAT_COMPLETIONS_URL).respond(200, json={})
        yield mock


def _set(monkeypatch: pytest.MonkeyPatch, **conn: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "minimax", **conn}))


# ------------------------------------------------------------------------ the connection (§4, §6)

BAD_CONNECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("key-inner-space", {"password": "sk-abc def"}, "password"),
    ("key-inner-newline", {"password": "sk-abc\ndef"}, "password"),
    ("key-control-char", {"password": "sk-abc\x00def"}, "password"),
    ("key-non-ascii", {"password": "sk-abcé"}, "password"),
    ("key-only-whitespace", {"password": "  \n"}, "password"),
    ("extra-typo", {"password": "k", "extra": {"tiemout": 5}}, "tiemout"),
    ("extra-unknown", {"password": "k", "extra": {"colour": "blue"}}, "colour"),
    ("timeout-true", {"password": "k", "extra": {"timeout": True}}, "timeout"),
    ("max-retries-false", {"password": "k", "extra": {"max_retries": False}}, "max_retries"),
    ("total-timeout-zero", {"password": "k", "extra": {"total_timeout": 0}}, "total_timeout"),
    ("idle-negative", {"password": "k", "extra": {"stream_idle_timeout": -1}}, "stream_idle_timeout"),
    ("body-cap-tiny", {"password": "k", "extra": {"max_response_bytes": 10}}, "max_response_bytes"),
    ("body-cap-true", {"password": "k", "extra": {"max_response_bytes": True}}, "max_response_bytes"),
    ("resend-not-bool", {"password": "k", "extra": {"chat_retry_on_read_timeout": "maybe"}}, "chat_retry"),
]


@pytest.mark.parametrize(("conn", "field"), [pytest.param(c[1], c[2], id=c[0]) for c in BAD_CONNECTIONS])
def test_bad_connection_is_refused_naming_the_connection_and_the_field(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, conn: dict[str, Any], field: str
) -> None:
    _set(monkeypatch, host=TASK_URL, **conn)
    hook = MiniMaxHook(CONN_ID)
    with pytest.raises(MiniMaxConfigurationError) as caught:
        hook.text_inference("hi")
    assert CONN_ID in str(caught.value) and field in str(caught.value)
    assert conn["password"] not in str(caught.value) or conn["password"] == "k"
    ok, message = hook.test_connection()
    assert not ok and field in message
    assert not router.calls


def test_unknown_extra_names_the_nearest_known_field(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, password="k", extra={"tiemout": 5})
    with pytest.raises(MiniMaxConfigurationError, match="did you mean 'timeout'"):
        MiniMaxHook(CONN_ID).settings  # noqa: B018


@pytest.mark.parametrize("key", [f"{SECRET_KEY}\n", f"  {SECRET_KEY} ", f"\t{SECRET_KEY}\r\n"])
def test_surrounding_whitespace_of_the_key_is_stripped(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, key: str
) -> None:
    _set(monkeypatch, host=TASK_URL, password=key)
    router.post(TASK_URL).respond(
        200, json={"data": [{"taskType": "textInference", "taskUUID": v4(1), "text": "x"}]}
    )
    MiniMaxHook(CONN_ID).text_inference("hi", task_uuid=v4(1))
    assert router.calls.last.request.headers["authorization"] == f"Bearer {SECRET_KEY}"


def test_json_form_host_with_port_and_path_follows_the_uri_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, host="127.0.0.1:8123/v1", password="k")
    assert MiniMaxHook(CONN_ID).settings.base_url == "http://127.0.0.1:8123/v1"


def test_json_form_remote_host_with_path_gets_https(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, host="api.example.com:8443/v1", password="k")
    assert MiniMaxHook(CONN_ID).settings.base_url == "https://api.example.com:8443/v1"


def test_test_connection_never_raises_on_an_unknown_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = MiniMaxHook("no_such_connection").test_connection()
    assert not ok and "no_such_connection" in message


# ------------------------------------------------------------------------ hook calls (§6)

Call = Callable[[MiniMaxHook], Any]
IMAGE = {"type": "image_url", "image_url": {"url": "not a url"}}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

# (id, api, the call, the parameter the error must name)
BAD_CALLS: list[tuple[str, str, Call, str]] = [
    ("task-max-tokens-bool", "task", lambda h: h.text_inference("hi", max_tokens=True), "max_tokens"),
    ("task-temperature-bool", "task", lambda h: h.text_inference("hi", temperature=True), "temperature"),
    ("task-seed-bool", "task", lambda h: h.text_inference("hi", seed=False), "seed"),
    (
        "task-number-results-bool",
        "task",
        lambda h: h.text_inference("hi", number_results=True),
        "number_results",
    ),
    ("task-blank-prompt", "task", lambda h: h.text_inference("   \n"), "content"),
    ("task-blank-message", "task", lambda h: h.text_inference([{"role": "user", "content": " "}]), "content"),
    ("task-blank-system", "task", lambda h: h.text_inference("hi", system_prompt="  "), "system_prompt"),
    ("task-system-int", "task", lambda h: h.text_inference("hi", system_prompt=1), "system_prompt"),
    ("task-system-list", "task", lambda h: h.text_inference("hi", system_prompt=["a"]), "system_prompt"),
    (
        "task-system-message-parts",
        "task",
        lambda h: h.text_inference(
            [
                {"role": "system", "content": [{"type": "text", "text": "a"}]},
                {"role": "user", "content": "hi"},
            ]
        ),
        "messages[0].content",
    ),
    (
        "task-system-message-none",
        "task",
        lambda h: h.text_inference([{"role": "system"}, {"role": "user", "content": "hi"}]),
        "messages[0].content",
    ),
    ("task-model-blank", "task", lambda h: h.text_inference("hi", model=" "), "model"),
    ("task-model-empty", "task", lambda h: h.text_inference("hi", model=""), "model"),
    ("task-model-int", "task", lambda h: h.text_inference("hi", model=0), "model"),
    ("task-uuid-empty", "task", lambda h: h.text_inference("hi", task_uuid=""), "task_uuid"),
    ("task-uuid-zero", "task", lambda h: h.text_inference("hi", task_uuid=0), "task_uuid"),
    ("task-prompt-int", "task", lambda h: h.text_inference(123), "messages"),
    ("task-prompt-none", "task", lambda h: h.text_inference(None), "messages"),
    ("task-messages-of-strings", "task", lambda h: h.text_inference(["hi", "there"]), "messages"),
    (
        "task-messages-a-dict",
        "task",
        lambda h: h.text_inference({"role": "user", "content": "hi"}),
        "messages",
    ),
    ("task-content-int", "task", lambda h: h.text_inference([{"role": "user", "content": 5}]), "content"),
    ("task-raw-dict-task", "task", lambda h: h.submit_tasks([{"taskType": "getResponse"}]), "tasks"),
    (
        "task-same-uuid-two-requests",
        "task",
        lambda h: h.submit_tasks(
            [h.new_text_inference("a", task_uuid=v4(1)), h.new_text_inference("b", task_uuid=v4(1))]
        ),
        "tasks",
    ),
    ("task-get-responses-bad-uuid", "task", lambda h: h.get_responses("nope"), "task_uuid"),
    ("task-get-responses-int", "task", lambda h: h.get_responses(5), "task_uuids"),
    ("task-call-on-chat-conn", "chat", lambda h: h.text_inference("hi"), "api"),
    ("task-poll-on-chat-conn", "chat", lambda h: h.get_responses([v4(1)]), "api"),
    ("task-stream-on-chat-conn", "chat", lambda h: list(h.stream_text_inference("hi")), "api"),
    ("chat-call-on-task-conn", "task", lambda h: h.chat_completion("hi"), "api"),
    ("chat-stream-on-task-conn", "task", lambda h: list(h.stream_chat_completion("hi")), "api"),
    ("chat-max-tokens-bool", "chat", lambda h: h.chat_completion("hi", max_tokens=True), "max_tokens"),
    ("chat-top-p-bool", "chat", lambda h: h.chat_completion("hi", top_p=True), "top_p"),
    ("chat-unknown-kwarg", "chat", lambda h: h.chat_completion("hi", max_token=5), "max_token"),
    ("chat-blank-prompt", "chat", lambda h: h.chat_completion(" \t"), "content"),
    ("chat-blank-system", "chat", lambda h: h.chat_completion("hi", system_prompt=" "), "system_prompt"),
    (
        "chat-blank-text-part",
        "chat",
        lambda h: h.chat_completion([{"role": "user", "content": [{"type": "text", "text": " "}]}]),
        "content",
    ),
    ("chat-system-int", "chat", lambda h: h.chat_completion("hi", system_prompt=1), "system_prompt"),
    ("chat-model-blank", "chat", lambda h: h.chat_completion("hi", model=" "), "model"),
    ("chat-model-empty", "chat", lambda h: h.chat_completion("hi", model=""), "model"),
    ("chat-model-false", "chat", lambda h: h.chat_completion("hi", model=False), "model"),
    ("chat-prompt-int", "chat", lambda h: h.chat_completion(3.5), "messages"),
    ("chat-messages-of-strings", "chat", lambda h: h.chat_completion(["hi"]), "messages"),
    (
        "chat-format-unknown-type",
        "chat",
        lambda h: h.chat_completion("hi", response_format={"type": "xml"}),
        "response_format",
    ),
    (
        "chat-format-schema-missing",
        "chat",
        lambda h: h.chat_completion("hi", response_format={"type": "json_schema"}),
        "response_format",
    ),
    (
        "chat-format-schema-without-schema",
        "chat",
        lambda h: h.chat_completion(
            "hi", response_format={"type": "json_schema", "json_schema": {"name": "x"}}
        ),
        "response_format",
    ),
    (
        "chat-format-schema-nameless",
        "chat",
        lambda h: h.chat_completion(
            "hi", response_format={"type": "json_schema", "json_schema": {"schema": {}}}
        ),
        "response_format",
    ),
    (
        "chat-format-a-string",
        "chat",
        lambda h: h.chat_completion("hi", response_format="json"),
        "response_format",
    ),
    (
        "chat-tool-no-function",
        "chat",
        lambda h: h.chat_completion("hi", tools=[{"type": "function"}]),
        "tools",
    ),
    (
        "chat-tool-no-name",
        "chat",
        lambda h: h.chat_completion("hi", tools=[{"type": "function", "function": {}}]),
        "tools",
    ),
    (
        "chat-tool-blank-name",
        "chat",
        lambda h: h.chat_completion("hi", tools=[{"type": "function", "function": {"name": ""}}]),
        "tools",
    ),
    (
        "chat-image-bad-url",
        "chat",
        lambda h: h.chat_completion([{"role": "user", "content": [IMAGE]}]),
        "url",
    ),
    (
        "chat-image-no-url",
        "chat",
        lambda h: h.chat_completion([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "url",
    ),
    (
        "chat-image-ftp-url",
        "chat",
        lambda h: h.chat_completion(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}]
        ),
        "url",
    ),
    (
        "chat-tool-message-without-call",
        "chat",
        lambda h: h.chat_completion(
            [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "42"}]
        ),
        "tool_call_id",
    ),
    (
        "chat-tool-message-other-call",
        "chat",
        lambda h: h.chat_completion(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                {"role": "tool", "tool_call_id": "call_2", "content": "42"},
            ]
        ),
        "tool_call_id",
    ),
    # Free-form fields are sent as given, so they must be JSON (NaN would go out as a bare NaN).
    (
        "chat-extra-body-nan",
        "chat",
        lambda h: h.chat_completion("hi", extra_body={"x": [float("nan")]}),
        "x[0]",
    ),
    ("chat-extra-body-set", "chat", lambda h: h.chat_completion("hi", extra_body={"x": {1}}), "extra_body"),
    (
        "chat-penalty-inf",
        "chat",
        lambda h: h.chat_completion("hi", presence_penalty=float("inf")),
        "presence",
    ),
    (
        "chat-logit-bias-nan",
        "chat",
        lambda h: h.chat_completion("hi", logit_bias={"7": float("nan")}),
        "logit",
    ),
    (
        "chat-tool-schema-inf",
        "chat",
        lambda h: h.chat_completion(
            "hi",
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"maximum": float("inf")}}}],
        ),
        "function.parameters.maximum",
    ),
    (
        "chat-response-format-key",
        "chat",
        lambda h: h.chat_completion("hi", response_format={"type": "json_schema", "json_schema": {1: "x"}}),
        "response_format",
    ),
    (
        "task-routing-nan",
        "task",
        lambda h: h.text_inference("hi", routing={"weight": float("nan")}),
        "weight",
    ),
    (
        "task-tool-object",
        "task",
        lambda h: h.text_inference(
            "hi", tools=[{"type": "function", "function": {"name": "f", "x": object()}}]
        ),
        "tools",
    ),
]


@pytest.mark.parametrize(("api", "call", "field"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CALLS])
def test_bad_call_is_refused_before_any_http_call(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, api: str, call: Call, field: str
) -> None:
    hook, _ = make_hook(monkeypatch, api=api)
    with pytest.raises(MiniMaxError) as caught:
        call(hook)
    assert isinstance(caught.value, MiniMaxValidationError | MiniMaxConfigurationError)
    assert field in str(caught.value)
    assert not router.calls


def test_api_mismatch_says_which_api_is_needed(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    with pytest.raises(MiniMaxConfigurationError, match="need a connection with api 'task'"):
        hook.text_inference("hi")


def test_unknown_chat_keys_pass_through_in_extra_body(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    from hook_testlib import chat_body

    hook, _ = make_hook(monkeypatch, api="chat")
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body())
    hook.chat_completion("hi", extra_body={"mask_sensitive_info": True}, stop="END")
    assert sent_json(route.calls.last.request)["mask_sensitive_info"] is True
    assert sent_json(route.calls.last.request)["stop"] == "END"


def test_tool_message_answering_the_previous_call_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    request = hook.new_chat_request(
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ]
    )
    assert request.messages[-1].tool_call_id == "call_1"


@pytest.mark.parametrize(
    "url", ["https://example.com/a.png", "http://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="]
)
def test_image_parts_with_a_valid_url_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    part = {"type": "image_url", "image_url": {"url": url}}
    assert hook.new_chat_request([{"role": "user", "content": [part]}]).messages[0].content == [part]


@pytest.mark.parametrize(
    ("task_uuids", "expected"),
    [(v4(1), [v4(1)]), (f"{v4(1)},{v4(2)}", [v4(1), v4(2)]), (f" {v4(1)} , {v4(2)} ", [v4(1), v4(2)])],
    ids=["one", "comma-list", "comma-list-spaces"],
)
def test_get_responses_reads_a_bare_string_as_uuids(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, task_uuids: str, expected: list[str]
) -> None:
    hook, _ = make_hook(monkeypatch)
    route = router.post(TASK_URL).respond(200, json={"data": []})
    hook.get_responses(task_uuids)
    assert [task["taskUUID"] for task in sent_json(route.calls.last.request)] == expected


def test_same_task_twice_in_one_submit_is_sent_once(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch)
    route = router.post(TASK_URL).respond(200, json={"data": []})
    task: TextInferenceTask = hook.new_text_inference("a", task_uuid=v4(1))
    hook.submit_tasks([task, task.model_copy()])
    assert len(sent_json(route.calls.last.request)) == 1


# ------------------------------------------------------------------------ the hook's message models

THINK = "<think>plan</think>Oslo."
ANSWER = ChatCompletion.model_validate(
    chat_body(THINK)
    | {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": THINK,
                    "tool_calls": [TOOL_CALL],
                    "reasoning_details": [{"text": "plan"}],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
)
SENT_BACK = {
    "role": "assistant",
    "content": THINK,
    "tool_calls": [TOOL_CALL],
    "reasoning_details": [{"text": "plan"}],
}


@pytest.mark.parametrize(
    "turn",
    [
        pytest.param(ANSWER.message.as_request_message(), id="as_request_message"),
        pytest.param(ANSWER.message, id="completion.message"),
        pytest.param(ChatMessage(**SENT_BACK), id="ChatMessage"),
    ],
)
def test_an_answer_goes_back_into_the_chat_conversation_as_it_is(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, turn: Any
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=chat_body())
    tool_answer = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    hook.chat_completion([{"role": "user", "content": "City?"}, turn, tool_answer])
    assert sent_json(route.calls.last.request)["messages"][1] == SENT_BACK


def test_a_task_message_is_a_turn_of_a_text_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch)
    earlier = [TaskMessage(role="user", content="City?"), TaskMessage(role="assistant", content=THINK)]
    task = hook.new_text_inference([*earlier, {"role": "user", "content": "More"}])
    assert task.to_wire()["messages"][:2] == [
        {"role": "user", "content": "City?"},
        {"role": "assistant", "content": THINK},
    ]


class NotAMessage(BaseModel):
    role: str = "user"
    content: str = "hi"


@pytest.mark.parametrize("api", ["task", "chat"])
@pytest.mark.parametrize(
    ("wrong", "type_name"),
    [(42, "int"), ("hi", "str"), (b"hi", "bytes"), (None, "NoneType"), (NotAMessage(), "NotAMessage")],
)
def test_a_turn_of_another_type_is_refused_naming_its_index(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, api: str, wrong: Any, type_name: str
) -> None:
    hook, _ = make_hook(monkeypatch, api=api)
    ask = hook.new_text_inference if api == "task" else hook.new_chat_request
    with pytest.raises(
        MiniMaxValidationError, match=rf"messages\[1\] must be a message dict.*got {type_name}"
    ) as err:
        ask([{"role": "user", "content": "hi"}, wrong, {"role": "user", "content": "hi"}])
    assert err.value.parameter == "messages[1]"
