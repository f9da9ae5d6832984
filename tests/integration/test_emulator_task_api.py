"""The emulator's task API follows the wire contract (sync, async, stream, webhook, errors)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_minimax.testing.emulator import (
    CONTENT_FILTER_MARKER,
    EMULATOR_API_KEY,
    FAIL_MARKER,
    NO_CREDIT_API_KEY,
    REPLY_PREFIX,
    EmulatorConfig,
    EmulatorHandle,
    create_app,
)

ASYNC_LATENCY = 0.05


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    """Async tasks finish fast so the tests never sleep long."""
    return EmulatorConfig(async_latency=ASYNC_LATENCY)


@pytest.fixture
def client(minimax_emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    """An authenticated client for the emulator."""
    with minimax_emulator.client() as c:
        yield c


def task(content: str = "Summarise the plot of Hamlet.", **fields: Any) -> dict[str, Any]:
    """A valid textInference task with a fresh UUID."""
    return {
        "taskType": "textInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "minimax:m2.7@highspeed",
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


def poll(*uuids: str) -> list[dict[str, Any]]:
    """getResponse tasks for the UUIDs."""
    return [{"taskType": "getResponse", "taskUUID": u} for u in uuids]


def post(client: httpx.Client, *tasks: dict[str, Any]) -> httpx.Response:
    """POST tasks to the task API."""
    return client.post("/v1", json=list(tasks))


def wait_done(client: httpx.Client, task_uuid: str) -> list[dict[str, Any]]:
    """Poll until the task is terminal (bounded) and return its items."""
    for _ in range(100):
        items = post(client, *poll(task_uuid)).json()["data"]
        if items[0]["status"] != "processing":
            return items
        time.sleep(ASYNC_LATENCY / 2)
    raise AssertionError("task never finished")


# --- sync -------------------------------------------------------------------------------------


def test_sync_result_quotes_the_prompt_and_echoes_the_task(client: httpx.Client) -> None:
    sent = task("What is the capital of France?")
    data = post(client, sent).json()["data"]
    assert len(data) == 1
    item = data[0]
    assert item["taskType"] == "textInference"
    assert item["taskUUID"] == sent["taskUUID"]
    assert item["resultIndex"] == 0
    assert item["finishReason"] == "stop"
    assert item["text"].startswith(f'{REPLY_PREFIX} You said: "What is the capital of France?"')
    assert "status" not in item


@pytest.mark.parametrize(
    ("fields", "has_usage", "has_cost"),
    [
        ({}, False, False),
        ({"includeUsage": True}, True, False),
        ({"includeCost": True}, False, True),
        ({"includeUsage": True, "includeCost": True}, True, True),
    ],
)
def test_usage_and_cost_only_when_asked(
    client: httpx.Client, fields: dict[str, Any], has_usage: bool, has_cost: bool
) -> None:
    item = post(client, task(**fields)).json()["data"][0]
    assert ("usage" in item) is has_usage
    assert ("cost" in item) is has_cost


def test_usage_is_consistent_and_cost_follows_tokens(client: httpx.Client) -> None:
    short, long = (
        post(client, task(text, includeUsage=True, includeCost=True)).json()["data"][0]
        for text in ("hi", "hi " * 400)
    )
    usage = short["usage"]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]
    assert 0 < usage["thinkingTokens"] < usage["completionTokens"]
    assert long["usage"]["promptTokens"] > usage["promptTokens"]
    assert long["cost"] > short["cost"] > 0


def test_number_results_gives_distinct_indexed_results(client: httpx.Client) -> None:
    sent = task(numberResults=3)
    data = post(client, sent).json()["data"]
    assert [d["resultIndex"] for d in data] == [0, 1, 2]
    assert {d["taskUUID"] for d in data} == {sent["taskUUID"]}
    assert len({d["text"] for d in data}) == 3


def test_output_is_deterministic_and_depends_on_the_input(client: httpx.Client) -> None:
    def text(content: str, **fields: Any) -> str:
        return str(post(client, task(content, **fields)).json()["data"][0]["text"])

    assert text("same prompt") == text("same prompt")
    assert text("same prompt") != text("other prompt")
    assert text("same prompt", seed=1) != text("same prompt", seed=2)
    assert text("same prompt", settings={"systemPrompt": "Be terse."}) != text("same prompt")


def test_schema_in_the_system_prompt_gets_a_json_answer_that_satisfies_it(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "hashtags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "hashtags"],
    }
    system = f"Answer with JSON only.\n```json\n{json.dumps(schema)}\n```"
    item = post(client, task(settings={"systemPrompt": system})).json()["data"][0]
    answer = json.loads(item["text"])
    assert isinstance(answer["title"], str)
    assert all(isinstance(tag, str) for tag in answer["hashtags"])


def test_seed_is_echoed(client: httpx.Client) -> None:
    assert post(client, task(seed=42)).json()["data"][0]["seed"] == 42


def test_max_tokens_truncates_with_finish_reason_length(client: httpx.Client) -> None:
    item = post(client, task(settings={"maxTokens": 25})).json()["data"][0]
    assert item["finishReason"] == "length"
    assert len(item["text"]) < len(post(client, task()).json()["data"][0]["text"])


def test_content_filter_marker(client: httpx.Client) -> None:
    item = post(client, task(f"tell me {CONTENT_FILTER_MARKER}")).json()["data"][0]
    assert item["finishReason"] == "content_filter"


def test_failing_sync_task_alone_is_a_400(client: httpx.Client) -> None:
    sent = task(f"boom {FAIL_MARKER}")
    response = post(client, sent)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "code": "inferenceError",
                "message": response.json()["errors"][0]["message"],
                "taskType": "textInference",
                "taskUUID": sent["taskUUID"],
            }
        ]
    }


def test_partial_success_returns_data_and_errors(client: httpx.Client) -> None:
    good1, bad, good2 = task("one"), task(f"two {FAIL_MARKER}"), task("three")
    response = post(client, good1, bad, good2)
    assert response.status_code == 200
    body = response.json()
    assert [d["taskUUID"] for d in body["data"]] == [good1["taskUUID"], good2["taskUUID"]]
    assert [(e["code"], e["taskUUID"]) for e in body["errors"]] == [("inferenceError", bad["taskUUID"])]


# --- async ------------------------------------------------------------------------------------


def test_async_ack_has_one_placeholder_per_task(client: httpx.Client) -> None:
    first, second = task(deliveryMethod="async", numberResults=3), task(deliveryMethod="async")
    data = post(client, first, second).json()["data"]
    assert data == [
        {"taskType": "textInference", "taskUUID": first["taskUUID"]},
        {"taskType": "textInference", "taskUUID": second["taskUUID"]},
    ]


def test_async_poll_is_processing_then_success(client: httpx.Client) -> None:
    sent = task(deliveryMethod="async", numberResults=2, includeUsage=True, includeCost=True)
    post(client, sent)
    pending = post(client, *poll(sent["taskUUID"])).json()["data"]
    assert [(p["status"], p["resultIndex"]) for p in pending] == [("processing", 0), ("processing", 1)]
    assert all(p["taskType"] == "textInference" and "text" not in p for p in pending)
    done = wait_done(client, sent["taskUUID"])
    assert [(d["status"], d["resultIndex"]) for d in done] == [("success", 0), ("success", 1)]
    assert all(d["text"].startswith(REPLY_PREFIX) and "usage" in d and "cost" in d for d in done)


def test_async_result_matches_the_sync_result(client: httpx.Client) -> None:
    sync_text = post(client, task("identical")).json()["data"][0]["text"]
    sent = task("identical", deliveryMethod="async")
    post(client, sent)
    assert wait_done(client, sent["taskUUID"])[0]["text"] == sync_text


def test_async_failure_polls_as_status_error(client: httpx.Client) -> None:
    sent = task(f"x {FAIL_MARKER}", deliveryMethod="async")
    assert post(client, sent).status_code == 200
    item = wait_done(client, sent["taskUUID"])[0]
    assert item["status"] == "error"
    assert item["error"]["code"] == "inferenceError"


def test_poll_unknown_uuid_is_task_failed_or_not_found(client: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    response = post(client, *poll(unknown))
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["code"], error["taskUUID"], error["taskType"]) == (
        "taskFailedOrNotFound",
        unknown,
        "getResponse",
    )


def test_one_poll_request_answers_several_tasks(client: httpx.Client) -> None:
    a, b = task("a", deliveryMethod="async"), task("b", deliveryMethod="async", numberResults=2)
    post(client, a, b)
    unknown = str(uuid.uuid4())
    body = post(client, *poll(a["taskUUID"], b["taskUUID"], unknown)).json()
    assert [d["taskUUID"] for d in body["data"]] == [a["taskUUID"], b["taskUUID"], b["taskUUID"]]
    assert [e["taskUUID"] for e in body["errors"]] == [unknown]


def test_mixed_task_types_in_one_request(client: httpx.Client) -> None:
    earlier = task("earlier", deliveryMethod="async")
    post(client, earlier)
    sync, async_ = task("sync"), task("async", deliveryMethod="async")
    data = post(client, sync, async_, *poll(earlier["taskUUID"])).json()["data"]
    assert data[0]["text"].startswith(REPLY_PREFIX)
    assert data[1] == {"taskType": "textInference", "taskUUID": async_["taskUUID"]}
    assert data[2]["taskUUID"] == earlier["taskUUID"] and "status" in data[2]


def test_async_tasks_queue_on_concurrency_lanes(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.config.concurrency = 2
    sent = [task(str(i), deliveryMethod="async") for i in range(5)]
    post(client, *sent)
    tasks = minimax_emulator.state.tasks
    offsets = [tasks[s["taskUUID"]].done_at - tasks[s["taskUUID"]].submitted_at for s in sent]
    lanes = [round(o / ASYNC_LATENCY) for o in offsets]
    assert lanes == [1, 1, 2, 2, 3]


def test_sync_latency_is_served_under_the_concurrency_cap(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.config.latency = 0.04
    minimax_emulator.config.concurrency = 1
    started = time.monotonic()
    post(client, task("a"), task("b"), task("c"))
    assert time.monotonic() - started >= 0.12


# --- stream -----------------------------------------------------------------------------------


def sse_events(client: httpx.Client, sent: dict[str, Any]) -> list[Any]:
    """The decoded SSE data of a stream task; ``[DONE]`` kept as a string."""
    events: list[Any] = []
    with client.stream("POST", "/v1", json=[sent], headers={"Accept": "text/event-stream"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line.removeprefix("data: ")
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_stream_sends_reasoning_then_text_then_final_chunk(client: httpx.Client) -> None:
    sent = task("stream this please", deliveryMethod="stream", includeUsage=True, includeCost=True)
    events = sse_events(client, sent)
    assert events[-1] == "[DONE]"
    assert "reasoningContent" in events[0]["delta"]
    texts = [e["delta"]["text"] for e in events[1:-2]]
    final = events[-2]
    assert (final["delta"], final["finishReason"]) == ({}, "stop")
    assert final["usage"]["totalTokens"] > 0 and final["cost"] > 0
    assert all(e["taskUUID"] == sent["taskUUID"] and e["taskType"] == "textInference" for e in events[:-1])
    sync = post(client, task("stream this please")).json()["data"][0]["text"]
    assert "".join(texts) == sync


def test_stream_failure_arrives_as_an_errors_chunk(client: httpx.Client) -> None:
    events = sse_events(client, task(f"x {FAIL_MARKER}", deliveryMethod="stream"))
    assert events[-2]["errors"][0]["code"] == "inferenceError"
    assert events[-1] == "[DONE]"


def test_stream_with_number_results_above_one_is_refused(client: httpx.Client) -> None:
    response = post(client, task(deliveryMethod="stream", numberResults=2))
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("invalidNumberResults", "numberResults")


def test_stream_task_must_be_alone(client: httpx.Client) -> None:
    response = post(client, task(deliveryMethod="stream"), task())
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "incompatibleParameters"


# --- webhook ----------------------------------------------------------------------------------


def sink(handle: EmulatorHandle, name: str, timeout: float = 2.0, want: int = 1) -> dict[str, Any]:
    """Wait (bounded) until the emulator's webhook sink ``name`` holds ``want`` payloads."""
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{handle.url}/_emulator/webhook-sink/{name}").json()
        if len(got["received"]) >= want or time.monotonic() > deadline:
            return dict(got)
        time.sleep(0.01)


def test_webhook_receives_each_finished_result(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    url = f"{minimax_emulator.url}/_emulator/webhook-sink/hook?token=secret"
    sent = task(deliveryMethod="async", numberResults=2, webhookURL=url)
    post(client, sent)
    got = sink(minimax_emulator, "hook", want=2)
    results = [payload["data"][0] for payload in got["received"]]
    assert sorted(r["resultIndex"] for r in results) == [0, 1]
    assert all(r["taskUUID"] == sent["taskUUID"] and r["text"].startswith(REPLY_PREFIX) for r in results)


def test_webhook_retries_non_2xx(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    url = f"{minimax_emulator.url}/_emulator/webhook-sink/flaky?fail_first=2"
    post(client, task(deliveryMethod="async", webhookURL=url))
    got = sink(minimax_emulator, "flaky")
    assert (len(got["received"]), got["attempts"]) == (1, 3)
    statuses = [d["status"] for d in minimax_emulator.stats()["webhook_deliveries"]]
    assert statuses == [500, 500, 200]


# --- idempotency ------------------------------------------------------------------------------


def test_resubmitting_a_uuid_is_a_conflict_with_context(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    sent = task(deliveryMethod="async")
    post(client, sent)
    response = post(client, {**sent, "deliveryMethod": "sync"})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "conflictTaskUUID"
    assert error["context"] == {
        "taskType": "textInference",
        "taskUUID": sent["taskUUID"],
        "deliveryMethod": "async",
    }
    assert minimax_emulator.state.submissions[sent["taskUUID"]] == 2
    assert minimax_emulator.state.duplicate_submissions() == {sent["taskUUID"]: 2}


def test_conflict_in_a_batch_is_partial_success(client: httpx.Client) -> None:
    known = task()
    post(client, known)
    fresh = task()
    body = post(client, known, fresh).json()
    assert [d["taskUUID"] for d in body["data"]] == [fresh["taskUUID"]]
    assert body["errors"][0]["code"] == "conflictTaskUUID"


def test_single_submissions_prove_idempotency(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    post(client, task(), task(deliveryMethod="async"))
    assert max(minimax_emulator.state.submissions.values()) == 1
    assert minimax_emulator.state.duplicate_submissions() == {}


# --- validation and auth ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code", "parameter"),
    [
        ({"settings": {"temperature": 1.5}}, "invalidTemperature", "settings.temperature"),
        ({"settings": {"temperature": 0.555}}, "invalidTemperature", "settings.temperature"),
        ({"settings": {"topP": -0.1}}, "invalidTopP", "settings.topP"),
        ({"settings": {"maxTokens": 0}}, "invalidMaxTokens", "settings.maxTokens"),
        ({"settings": {"systemPrompt": ""}}, "invalidSystemPrompt", "settings.systemPrompt"),
        ({"numberResults": 5}, "invalidNumberResults", "numberResults"),
        ({"seed": -1}, "invalidSeed", "seed"),
        ({"taskUUID": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, "invalidTaskUUID", "taskUUID"),
        ({"deliveryMethod": "carrier-pigeon"}, "invalidDeliveryMethod", "deliveryMethod"),
        ({"messages": []}, "invalidMessages", "messages"),
        ({"messages": [{"role": "user", "content": ""}]}, "invalidContent", "messages[0].content"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "invalidMessages", "messages"),
        ({"temperature": 0.5}, "unknownParameter", "temperature"),
        ({"model": "someone:else@1"}, "invalidModel", "model"),
    ],
)
def test_validation_errors_name_code_and_parameter(
    client: httpx.Client, change: dict[str, Any], code: str, parameter: str
) -> None:
    sent = {**task(), **change}
    response = post(client, sent)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert error["taskType"] == "textInference"
    assert error["taskUUID"] == sent["taskUUID"]


@pytest.mark.parametrize("missing", ["messages", "taskUUID"])
def test_missing_fields_have_missing_codes(client: httpx.Client, missing: str) -> None:
    sent = task()
    del sent[missing]
    error = post(client, sent).json()["errors"][0]
    assert error["code"] == f"missing{missing[0].upper()}{missing[1:]}"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalidRequestBody"),
        (b'{"taskType": "textInference"}', "invalidRequestBody"),
        (b"[]", "invalidRequestBody"),
        (b'[{"taskType": "imageInference", "taskUUID": "x"}]', "invalidTaskType"),
        (b'[{"taskUUID": "x"}]', "missingTaskType"),
    ],
)
def test_bad_bodies_are_400(client: httpx.Client, body: bytes, code: str) -> None:
    response = client.post("/v1", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == code


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        (None, 401, "missingApiKey"),
        ("wrong-key", 401, "invalidApiKey"),
        (NO_CREDIT_API_KEY, 402, "insufficientCredits"),
    ],
)
def test_auth_errors(minimax_emulator: EmulatorHandle, key: str | None, status: int, code: str) -> None:
    with minimax_emulator.client(api_key=key) as c:
        response = post(c, task())
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code


def test_auth_is_bearer_header_only(minimax_emulator: EmulatorHandle) -> None:
    with minimax_emulator.client(api_key=None) as c:
        response = c.post("/v1", json=[{"taskType": "authentication", "apiKey": EMULATOR_API_KEY}, task()])
    assert response.status_code == 401


# --- inspection and control -------------------------------------------------------------------


def test_stats_count_requests_polls_and_items(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    a, b = task(deliveryMethod="async"), task(deliveryMethod="async")
    post(client, a, b)
    post(client, *poll(a["taskUUID"], b["taskUUID"]))
    post(client, *poll(a["taskUUID"]))
    stats = httpx.get(f"{minimax_emulator.url}/_emulator/stats").json()
    assert stats["requests"] == {"task": 3}
    assert (stats["poll_requests"], stats["poll_items"]) == (2, 3)
    assert stats["task_items"] == {"textInference": 2, "getResponse": 3}
    assert stats["submissions"] == {a["taskUUID"]: 1, b["taskUUID"]: 1}
    assert [entry["status"] for entry in stats["log"]] == [200, 200, 200]


def test_log_never_holds_api_keys(minimax_emulator: EmulatorHandle) -> None:
    with minimax_emulator.client() as c:
        c.post("/v1", json=[{"taskType": "authentication", "apiKey": "top-secret"}])
    assert "top-secret" not in json.dumps(minimax_emulator.stats())
    assert EMULATOR_API_KEY not in json.dumps(minimax_emulator.stats())


def test_reset_over_http_forgets_tasks_and_counts(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    sent = task()
    post(client, sent)
    assert client.post("/_emulator/reset").status_code == 200
    assert minimax_emulator.stats()["requests"] == {}
    assert post(client, sent).status_code == 200  # the UUID is unknown again


def test_config_over_http(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    response = client.post("/_emulator/config", json={"async_latency": 0.2, "concurrency": 3})
    assert response.json()["async_latency"] == 0.2
    assert (minimax_emulator.config.async_latency, minimax_emulator.config.concurrency) == (0.2, 3)
    assert client.post("/_emulator/config", json={"latency": -1}).status_code == 400


async def test_in_process_app_over_asgi_transport() -> None:
    app = create_app(EmulatorConfig(async_latency=0.0))
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator", headers=headers) as c:
        sent = task(deliveryMethod="async")
        await c.post("/v1", json=[sent])
        data = (await c.post("/v1", json=poll(sent["taskUUID"]))).json()["data"]
    assert data[0]["status"] == "success"
    assert app.state.emulator.submissions[sent["taskUUID"]] == 1
