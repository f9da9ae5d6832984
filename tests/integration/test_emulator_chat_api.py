"""The emulator's chat completions API follows the contract and parses with the official openai client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from airflow_provider_minimax.models import ChatCompletion, split_think
from airflow_provider_minimax.testing.emulator import (
    CONTENT_FILTER_MARKER,
    EMULATOR_API_KEY,
    NO_CREDIT_API_KEY,
    REPLY_PREFIX,
    EmulatorHandle,
    count_tokens,
    instance_for,
)
from airflow_provider_minimax.testing.images import png

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


class Address(BaseModel):
    """Nested model, referenced through $defs."""

    street: str
    zip_code: str = Field(min_length=5, max_length=5)


class Person(BaseModel):
    """A schema exercising what pydantic emits: $ref/$defs, enum, anyOf-null, bounds, arrays."""

    name: str
    age: int = Field(ge=18, le=99)
    score: float = Field(gt=0, lt=1)
    role: Literal["admin", "user"]
    active: bool
    tags: list[str] = Field(min_length=1, max_length=3)
    address: Address
    previous: list[Address]
    nickname: str | None = None
    manager: Address | None


@pytest.fixture
def client(minimax_emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    """An authenticated client for the emulator."""
    with minimax_emulator.client() as c:
        yield c


@pytest.fixture
def oai(minimax_emulator: EmulatorHandle) -> Iterator[openai.OpenAI]:
    """The official openai client pointed at the emulator, no retries."""
    with openai.OpenAI(base_url=minimax_emulator.chat_base_url, api_key=EMULATOR_API_KEY, max_retries=0) as c:
        yield c


def chat(client: httpx.Client, content: str = "Name three primes.", **fields: Any) -> httpx.Response:
    """POST a one-message chat completion request."""
    body = {"model": "minimax-m2.7", "messages": [{"role": "user", "content": content}], **fields}
    return client.post("/v1/chat/completions", json=body)


def content_of(response: httpx.Response) -> str:
    """The first choice's raw content."""
    return str(response.json()["choices"][0]["message"]["content"])


# --- plain completions ------------------------------------------------------------------------


def test_completion_shape_with_think_block(client: httpx.Client) -> None:
    body = chat(client, "What is 2 + 2?").json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "minimax-m2.7"
    choice = body["choices"][0]
    assert (choice["index"], choice["finish_reason"], choice["message"]["role"]) == (0, "stop", "assistant")
    answer, reasoning = split_think(choice["message"]["content"])
    assert answer.startswith(f'{REPLY_PREFIX} You said: "What is 2 + 2?"')
    assert reasoning
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_repeated_system_prompt_is_read_from_the_prompt_cache(client: httpx.Client) -> None:
    system = "You are a terse assistant. " * 8
    ask = {"model": "minimax-m2.7", "messages": [{"role": "system", "content": system}]}

    def usage(question: str) -> dict[str, Any]:
        body = {**ask, "messages": [*ask["messages"], {"role": "user", "content": question}]}
        return dict(client.post("/v1/chat/completions", json=body).json()["usage"])

    first, second = usage("one?"), usage("two?")

    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second["prompt_tokens_details"] == {"cached_tokens": count_tokens(system)}
    assert second["completion_tokens_details"]["reasoning_tokens"] > 0


def test_response_parses_with_the_provider_model(client: httpx.Client) -> None:
    completion = ChatCompletion.model_validate(chat(client, "hello").json())
    assert completion.answer.startswith(REPLY_PREFIX)
    assert completion.reasoning


def test_reasoning_split_moves_reasoning_to_reasoning_details(client: httpx.Client) -> None:
    message = chat(client, "hello", reasoning_split=True).json()["choices"][0]["message"]
    assert "<think>" not in message["content"]
    assert message["content"].startswith(REPLY_PREFIX)
    assert message["reasoning_details"][0]["type"] == "reasoning.text"
    assert message["reasoning_details"][0]["text"]


def test_answers_are_deterministic_and_prompt_dependent(client: httpx.Client) -> None:
    assert content_of(chat(client, "alpha")) == content_of(chat(client, "alpha"))
    assert content_of(chat(client, "alpha")) != content_of(chat(client, "beta"))
    assert content_of(chat(client, "alpha", seed=1)) != content_of(chat(client, "alpha", seed=2))


def test_system_prompt_and_history_change_the_answer(client: httpx.Client) -> None:
    base = {"model": "minimax-m2.7"}
    alone = [{"role": "user", "content": "q"}]
    with_system = [{"role": "system", "content": "Be terse."}, *alone]
    a = client.post("/v1/chat/completions", json={**base, "messages": alone})
    b = client.post("/v1/chat/completions", json={**base, "messages": with_system})
    assert content_of(a) != content_of(b)


def test_multi_turn_accepts_the_think_block_back(client: httpx.Client) -> None:
    first = chat(client, "first").json()["choices"][0]["message"]
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "second"},
    ]
    response = client.post("/v1/chat/completions", json={"model": "minimax-m2.7", "messages": messages})
    assert split_think(content_of(response))[0].startswith(f'{REPLY_PREFIX} You said: "second"')


def test_content_parts_with_images_are_accepted(client: httpx.Client) -> None:
    image = "data:image/png;base64," + base64.b64encode(png()).decode()
    parts = [
        {"type": "text", "text": "Describe this"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    response = client.post(
        "/v1/chat/completions",
        json={"model": "minimax-m2.7", "messages": [{"role": "user", "content": parts}]},
    )
    assert 'You said: "Describe this [image ' in content_of(response)
    assert f"I see a PNG image of {len(png())} bytes" in content_of(response)


def test_max_tokens_small_finishes_with_length(client: httpx.Client) -> None:
    assert chat(client, max_tokens=25).json()["choices"][0]["finish_reason"] == "length"


def test_content_filter_marker(client: httpx.Client) -> None:
    assert chat(client, CONTENT_FILTER_MARKER).json()["choices"][0]["finish_reason"] == "content_filter"


def test_standard_openai_keys_are_tolerated(client: httpx.Client) -> None:
    assert chat(client, n=1, stop=["\n\n"], user="me", parallel_tool_calls=True).status_code == 200


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"max_tokens": 16385}, 400, "max_tokens"),
        ({"temperature": 2}, 400, "temperature"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0]"),
        ({"model": "gpt-4o"}, 400, "model"),
        ({"response_format": {"type": "yaml"}}, 422, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 422, "response_format"),
    ],
)
def test_invalid_requests(client: httpx.Client, fields: dict[str, Any], status: int, param: str) -> None:
    response = chat(client, **fields)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"] and error["code"]


def test_non_json_body_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("key", "status", "kind"),
    [
        (None, 401, "authentication_error"),
        ("nope", 401, "authentication_error"),
        (NO_CREDIT_API_KEY, 402, "insufficient_quota"),
    ],
)
def test_auth_errors(minimax_emulator: EmulatorHandle, key: str | None, status: int, kind: str) -> None:
    with minimax_emulator.client(api_key=key) as c:
        response = chat(c)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind


# --- structured output ------------------------------------------------------------------------


def test_json_object_answer_is_a_json_object(client: httpx.Client) -> None:
    answer, _ = split_think(content_of(chat(client, response_format={"type": "json_object"})))
    assert isinstance(json.loads(answer), dict)


def test_json_schema_answer_satisfies_a_pydantic_schema(client: httpx.Client) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": Person.model_json_schema()}}
    answer, _ = split_think(content_of(chat(client, "Invent a person", response_format=fmt)))
    person = Person.model_validate_json(answer)
    assert person.nickname is not None and person.manager is not None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 30},
        {"type": "string", "maxLength": 3},
        {"type": "string", "format": "date-time"},
        {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 12},
        {"type": "integer", "maximum": -50},
        {"type": "number", "minimum": 1000},
        {"type": "boolean"},
        {"enum": ["a", "b", 3]},
        {"const": "fixed"},
        {"type": ["null", "integer"]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 4},
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "additionalProperties": {"type": "number"}},
        {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]},
        {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"type": "boolean"}}}]},
        {
            "$defs": {
                "Node": {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"}]}}}
            },
            "$ref": "#/$defs/Node",
        },
        Person.model_json_schema(),
    ],
)
def test_schema_instance_generator_satisfies_the_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(instance_for(schema, hint="some prompt"), schema)


# --- tools ------------------------------------------------------------------------------------


def test_tools_offered_give_one_parallel_call_per_tool(client: httpx.Client) -> None:
    body = chat(client, "Weather and time in Paris?", tools=[WEATHER_TOOL, TIME_TOOL]).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert len({c["id"] for c in calls}) == 2
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), WEATHER_TOOL["function"]["parameters"])


@pytest.mark.parametrize(
    ("tool_choice", "names"),
    [
        ("auto", ["get_weather", "get_time"]),
        ("required", ["get_weather", "get_time"]),
        ({"type": "function", "function": {"name": "get_time"}}, ["get_time"]),
        ("none", []),
    ],
)
def test_tool_choice_selects_the_calls(client: httpx.Client, tool_choice: Any, names: list[str]) -> None:
    message = chat(client, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=tool_choice).json()["choices"][0][
        "message"
    ]
    assert [c["function"]["name"] for c in message.get("tool_calls") or []] == names


def test_tool_results_lead_to_a_final_answer_quoting_them(client: httpx.Client) -> None:
    first = chat(client, "Weather in Paris?", tools=[WEATHER_TOOL]).json()["choices"][0]["message"]
    call = first["tool_calls"][0]
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        first,
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21, "sky": "clear"}'},
    ]
    body = client.post(
        "/v1/chat/completions", json={"model": "minimax-m2.7", "messages": messages, "tools": [WEATHER_TOOL]}
    ).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    answer, _ = split_think(body["choices"][0]["message"]["content"])
    assert answer.startswith(f"{REPLY_PREFIX} Based on the tool results:")
    assert 'get_weather returned "{"temp": 21, "sky": "clear"}"' in answer


# --- streaming --------------------------------------------------------------------------------


def stream_chunks(client: httpx.Client, **fields: Any) -> list[Any]:
    """Decoded SSE data of a streamed chat call; ``[DONE]`` kept as a string."""
    body = {
        "model": "minimax-m2.7",
        "messages": [{"role": "user", "content": "Stream!"}],
        "stream": True,
        **fields,
    }
    out: list[Any] = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_chunks_end_with_finish_usage_and_done(client: httpx.Client, include_usage: bool) -> None:
    chunks = stream_chunks(client, stream_options={"include_usage": include_usage})
    assert chunks[-1] == "[DONE]"
    events = chunks[:-1]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    if include_usage:
        assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] > 0
        events = events[:-1]
    assert all("usage" not in e for e in events)
    assert events[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert streamed == content_of(chat(client, "Stream!"))


def test_stream_tool_calls(client: httpx.Client) -> None:
    events = stream_chunks(client, tools=[WEATHER_TOOL, TIME_TOOL])[:-1]
    calls = [c for e in events for c in e["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "get_weather"), (1, "get_time")]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


# --- the official openai client ---------------------------------------------------------------


def test_openai_client_plain_call(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="minimax-m2.7", messages=[{"role": "user", "content": "Hello from openai"}]
    )
    assert completion.choices[0].finish_reason == "stop"
    assert split_think(completion.choices[0].message.content)[0].startswith(REPLY_PREFIX)
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_openai_client_streamed_call_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="minimax-m2.7",
        messages=[{"role": "user", "content": "Hello stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert split_think(text)[0].startswith(REPLY_PREFIX)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_openai_client_tool_call(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="minimax-m2.7",
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["unit"] in ("celsius", "fahrenheit")  # type: ignore[union-attr]


def test_openai_client_json_schema_call(oai: openai.OpenAI) -> None:
    fmt: Any = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": Person.model_json_schema()},
    }
    completion = oai.chat.completions.create(
        model="minimax-m2.7", messages=[{"role": "user", "content": "Invent a person"}], response_format=fmt
    )
    Person.model_validate_json(split_think(completion.choices[0].message.content)[0])


def test_openai_client_parse_with_reasoning_split(oai: openai.OpenAI) -> None:
    class Verdict(BaseModel):
        label: Literal["positive", "negative"]
        confidence: float

    completion = oai.chat.completions.parse(
        model="minimax-m2.7",
        messages=[{"role": "user", "content": "I love it"}],
        response_format=Verdict,
        extra_body={"reasoning_split": True},
    )
    parsed = completion.choices[0].message.parsed
    assert parsed is not None and parsed.label in ("positive", "negative")


def test_openai_client_maps_errors(minimax_emulator: EmulatorHandle) -> None:
    bad = openai.OpenAI(base_url=minimax_emulator.chat_base_url, api_key="bad", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="minimax-m2.7", messages=[{"role": "user", "content": "x"}])
