"""The ``pydanticai_minimax`` hook's pydantic-ai models against the emulator (and MockTransport)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx
import pytest
import respx
from fake_sleep import FakeSleep
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import TextPart, ThinkingPart

from airflow_provider_minimax.common_ai.chat_model import MiniMaxChatModel, RetryingTransport
from airflow_provider_minimax.common_ai.hook import PydanticAIMiniMaxHook
from airflow_provider_minimax.common_ai.task_model import MiniMaxTaskModel
from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxConfigurationError, MiniMaxValidationError
from airflow_provider_minimax.retry import RetryPolicy
from airflow_provider_minimax.testing.emulator import EMULATOR_API_KEY, EmulatorHandle


class City(BaseModel):
    name: str
    population: int


@pytest.fixture
def connect(minimax_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Define a ``pydanticai_minimax`` connection to the emulator; returns a hook for it."""

    def make(api: str, conn_id: str | None = None, **extra: Any) -> PydanticAIMiniMaxHook:
        conn_id = conn_id or f"mm_{api}"
        conn = json.loads(minimax_emulator.connection_json(api))  # type: ignore[arg-type]
        conn["extra"].update(extra)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**conn, "conn_type": "pydanticai_minimax"})
        )
        return PydanticAIMiniMaxHook(llm_conn_id=conn_id)

    return make


def chat_bodies(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    return [entry["body"] for entry in emulator.stats()["log"] if entry["route"] == "chat"]


@pytest.mark.parametrize("api", ["task", "chat"])
def test_think_block_becomes_a_thinking_part_and_the_text_has_no_leading_whitespace(
    connect: Any, api: str
) -> None:
    result = connect(api).create_agent(instructions="Be brief.").run_sync("Hello there")

    parts = result.all_messages()[-1].parts
    assert [type(p) for p in parts] == [ThinkingPart, TextPart]
    assert parts[0].content.startswith("The user wrote")
    assert result.output.startswith("[minimax-emulator]")


@pytest.mark.parametrize("api", ["task", "chat"])
def test_usage_counts_thinking_tokens(connect: Any, api: str) -> None:
    result = connect(api).create_agent(instructions="Be brief.").run_sync("Hello there")

    usage = result.usage
    assert usage.output_reasoning_tokens > 0
    assert usage.output_tokens > usage.output_reasoning_tokens
    assert usage.input_tokens > 0


def test_task_api_cost_and_task_uuid_are_on_the_response(connect: Any) -> None:
    result = connect("task").create_agent(instructions="Be brief.").run_sync("Hello there")

    details = result.all_messages()[-1].provider_details
    assert details is not None and details["cost_usd"] > 0 and details["task_uuid"]


@pytest.mark.parametrize("api", ["task", "chat"])
def test_streaming_splits_thinking_from_text(
    connect: Any, minimax_emulator: EmulatorHandle, api: str
) -> None:
    agent = connect(api).create_agent(instructions="Be brief.")

    async def run() -> tuple[str, Any, Any]:
        async with agent.run_stream("Stream me") as stream:
            output = await stream.get_output()
        return output, stream.usage, stream.all_messages()[-1].parts

    output, usage, parts = asyncio.run(run())
    assert output.startswith('[minimax-emulator] You said: "Stream me"')
    assert [type(p) for p in parts] == [ThinkingPart, TextPart]
    if api == "task":  # the chat stream reports usage only when asked to include it
        assert usage.output_reasoning_tokens > 0
    assert minimax_emulator.stats()["requests"] == {api: 1}


@pytest.mark.parametrize("api", ["task", "chat"])
def test_structured_output(connect: Any, minimax_emulator: EmulatorHandle, api: str) -> None:
    city = connect(api).create_agent(City, instructions="Be brief.").run_sync("Largest city?").output

    assert isinstance(city, City)


def test_task_api_structured_output_puts_the_schema_in_the_system_prompt(
    connect: Any, minimax_emulator: EmulatorHandle
) -> None:
    connect("task").create_agent(City, instructions="Be brief.").run_sync("Largest city?")

    task = minimax_emulator.stats()["log"][-1]["body"][0]
    system = task["settings"]["systemPrompt"]
    assert system.startswith("Be brief.") and '"population"' in system and "```json" in system


def test_task_api_refuses_tools_before_any_request(connect: Any, minimax_emulator: EmulatorHandle) -> None:
    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    agent = connect("task").create_agent(instructions="Use tools.", tools=[lookup])

    with pytest.raises(Exception, match=r"use a 'pydanticai_minimax' connection with .*chat"):
        agent.run_sync("How big is Oslo?")
    assert minimax_emulator.stats()["requests"].get("task", 0) == 0


@pytest.mark.parametrize(("api", "cap"), [("chat", 16384), ("task", 196608)])
def test_max_tokens_above_the_cap_fails_before_any_request(
    connect: Any, minimax_emulator: EmulatorHandle, api: str, cap: int
) -> None:
    agent = connect(api).create_agent(instructions="Be brief.")

    with pytest.raises(
        MiniMaxValidationError, match=rf"'max_tokens' must be between 1 and {cap}.*got {cap + 1}"
    ):
        agent.run_sync("Hello", model_settings={"max_tokens": cap + 1})
    assert sum(minimax_emulator.stats()["requests"].values()) == 0


def test_chat_agent_calls_tools_and_replays_think_blocks_exactly(
    connect: Any, minimax_emulator: EmulatorHandle
) -> None:
    def population(city: str) -> str:
        """How many people live in a city."""
        return f"{city}: 1234"

    agent = connect("chat").create_agent(instructions="Use the tool.", tools=[population])
    first = agent.run_sync("How big is Oslo?")
    received = [m for m in first.all_messages() if m.kind == "response"]

    agent.run_sync("And Bergen?", message_history=first.all_messages())

    sent = [m for m in chat_bodies(minimax_emulator)[-2]["messages"] if m["role"] == "assistant"]
    expected = [
        "\n\n".join(
            f"<think>{p.content}</think>" if isinstance(p, ThinkingPart) else p.content
            for p in response.parts
            if isinstance(p, ThinkingPart | TextPart)
        )
        for response in received
    ]
    assert [m["content"] for m in sent] == expected
    assert sent[0]["tool_calls"] and all(c.startswith("<think>The user wrote") for c in expected)


def test_fallback_conn_ids_moves_from_a_failing_task_connection_to_chat(
    connect: Any, minimax_emulator: EmulatorHandle
) -> None:
    connect("chat", conn_id="mm_backup")
    hook = connect("task", max_retries=0, fallback_conn_ids=["mm_backup"])
    minimax_emulator.faults.http_error(503, api="task")

    result = hook.create_agent(instructions="Be brief.").run_sync("Hello there")

    assert result.output.startswith("[minimax-emulator]")
    assert minimax_emulator.stats()["requests"] == {"task": 1, "chat": 1}


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"extra": {"api": "voice"}}, "field 'api' must be 'task' or 'chat'"),
        ({"password": ""}, "field 'password'"),
        ({"extra": {"timeout": -1}}, "field 'timeout'"),
        ({"extra": {"max_retries": 99}}, "field 'max_retries'"),
        ({"host": "ftp://example.com"}, "field 'host'"),
        ({"extra": {"tiemout": 5}}, "field 'extra.tiemout' is not a known setting; did you mean 'timeout'"),
    ],
)
def test_connection_is_validated_like_a_minimax_connection(
    monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], message: str
) -> None:
    base = {"conn_type": "pydanticai_minimax", "host": "http://127.0.0.1:1/v1", "password": EMULATOR_API_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_MM_BAD", json.dumps({**base, "extra": {}, **conn}))

    with pytest.raises(MiniMaxConfigurationError, match=message) as raised:
        PydanticAIMiniMaxHook(llm_conn_id="mm_bad").get_conn()
    assert EMULATOR_API_KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("api", "model_id", "expected"),
    [("task", None, "minimax:m2.7@highspeed"), ("chat", None, "minimax-m2.7"), ("chat", "other", "other")],
)
def test_model_names(connect: Any, api: str, model_id: str | None, expected: str) -> None:
    hook = connect(api)
    hook.model_id = model_id

    assert hook.get_conn().model_name == expected
    assert isinstance(hook.get_conn(), MiniMaxTaskModel) == (api == "task")


def test_retrying_transport_honours_retry_after_then_returns_the_answer(fake_sleep: FakeSleep) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={})])
    transport = RetryingTransport(RetryPolicy(max_retries=2), httpx.MockTransport(lambda _: next(answers)))

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post("http://minimax.test/v1/chat/completions", json={})

    assert asyncio.run(send()).status_code == 200
    assert fake_sleep.waits == [3.0]


def test_retrying_transport_returns_the_last_failure_for_the_sdk_to_report() -> None:
    calls: list[int] = []

    def answer(_: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    transport = RetryingTransport(RetryPolicy(max_retries=1, base_wait=0.0), httpx.MockTransport(answer))

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post("http://minimax.test/v1/chat/completions", json={})

    assert asyncio.run(send()).status_code == 503
    assert len(calls) == 2


def test_the_chat_model_speaks_to_the_connection_with_our_retries_only() -> None:
    settings = MiniMaxConnectionSettings(
        conn_id="c", api="chat", base_url="http://127.0.0.1:1/v1", api_key="k-123", model="minimax-m2.7"
    )

    model = MiniMaxChatModel("minimax-m2.7", settings)

    assert (model.client.api_key, model.client.max_retries) == ("k-123", 0)
    assert model.base_url == "http://127.0.0.1:1/v1/"


ANSWER = "<think>Weigh it up.</think>\n\nHello world"


def sse_chunks(content: str, size: int) -> bytes:
    """A chat completions stream sending ``content`` in pieces of ``size`` characters."""
    pieces = [content[i : i + size] for i in range(0, len(content), size)]
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "minimax-m2.7",
            "choices": [choice],
        }
        for choice in [
            *({"index": 0, "delta": {"content": p}, "finish_reason": None} for p in pieces),
            {"index": 0, "delta": {}, "finish_reason": "stop"},
        ]
    ]
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


@pytest.mark.parametrize("size", [1, 3, 6, 7, 8, 20, len(ANSWER)])
@respx.mock
def test_chat_stream_splits_a_think_block_cut_anywhere(size: int) -> None:
    respx.post("http://minimax.test/v1/chat/completions").respond(
        200, content=sse_chunks(ANSWER, size), headers={"content-type": "text/event-stream"}
    )
    settings = MiniMaxConnectionSettings(
        conn_id="c", api="chat", base_url="http://minimax.test/v1", api_key="k", model="minimax-m2.7"
    )
    agent = Agent(MiniMaxChatModel("minimax-m2.7", settings))

    async def run() -> list[Any]:
        async with agent.run_stream("Hi") as stream:
            await stream.get_output()
        return list(stream.all_messages()[-1].parts)

    parts = asyncio.run(run())
    assert [(type(p), p.content) for p in parts] == [
        (ThinkingPart, "Weigh it up."),
        (TextPart, "Hello world"),
    ]


@pytest.mark.parametrize("api", ["task", "chat"])
@pytest.mark.parametrize(
    ("password", "expected"),
    [(EMULATOR_API_KEY, "the key is valid"), ("sk-wrong", "the key was refused")],
)
def test_the_test_button_gives_the_minimax_connections_answers(
    connect: Any, monkeypatch: pytest.MonkeyPatch, api: str, password: str, expected: str
) -> None:
    hook = connect(api, conn_id=f"mm_test_{api}")
    stored = json.loads(str(os.environ[f"AIRFLOW_CONN_MM_TEST_{api.upper()}"]))
    monkeypatch.setenv(f"AIRFLOW_CONN_MM_TEST_{api.upper()}", json.dumps({**stored, "password": password}))

    ok, message = hook.test_connection()

    assert (ok, expected in message) == (password == EMULATOR_API_KEY, True), message
    assert "sk-wrong" not in message
