"""Fault injection: HTTP errors, Retry-After, dropped sockets, delays, broken bodies and streams."""

from __future__ import annotations

import email.utils
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import openai
import pytest

from airflow_provider_minimax.models import split_think
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    EmulatorHandle,
    create_app,
)

SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    },
}


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    """Async tasks finish fast so the tests never sleep long."""
    return EmulatorConfig(async_latency=0.05)


@pytest.fixture
def client(minimax_emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    """An authenticated client for the emulator."""
    with minimax_emulator.client() as c:
        yield c


def task(**fields: Any) -> dict[str, Any]:
    """A valid textInference task with a fresh UUID."""
    return {
        "taskType": "textInference",
        "taskUUID": str(uuid.uuid4()),
        "messages": [{"role": "user", "content": "Hello"}],
        **fields,
    }


def send_task(client: httpx.Client, *tasks: dict[str, Any]) -> httpx.Response:
    """POST tasks to the task API (one fresh sync task by default)."""
    return client.post("/v1", json=list(tasks) or [task()])


def send_chat(client: httpx.Client, **fields: Any) -> httpx.Response:
    """POST a one-message chat completion."""
    body = {"model": "minimax-m2.7", "messages": [{"role": "user", "content": "Hello"}], **fields}
    return client.post("/v1/chat/completions", json=body)


SENDERS: dict[str, Callable[[httpx.Client], httpx.Response]] = {"task": send_task, "chat": send_chat}


# --- HTTP errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["task", "chat"])
@pytest.mark.parametrize(
    ("status", "task_code", "chat_type"),
    [
        (429, "rateLimitExceeded", "rate_limit_error"),
        (500, "providerError", "api_error"),
        (502, "providerError", "api_error"),
        (503, "providerUnavailable", "api_error"),
        (504, "timeoutProvider", "api_error"),
    ],
)
def test_http_error_status_and_body(
    minimax_emulator: EmulatorHandle,
    client: httpx.Client,
    api: str,
    status: int,
    task_code: str,
    chat_type: str,
) -> None:
    minimax_emulator.faults.http_error(status)
    response = SENDERS[api](client)
    assert response.status_code == status
    if api == "task":
        assert response.json()["errors"][0]["code"] == task_code
    else:
        assert response.json()["error"]["type"] == chat_type
    assert SENDERS[api](client).status_code == 200


def test_retry_after_in_seconds(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.rate_limit(retry_after=2)
    assert send_task(client).headers["Retry-After"] == "2"


def test_retry_after_as_http_date(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.rate_limit(retry_after=30, retry_after_format="http-date")
    when = email.utils.parsedate_to_datetime(send_chat(client).headers["Retry-After"])
    assert 25 <= (when - datetime.now(timezone.utc)).total_seconds() <= 31


def test_rate_limit_without_retry_after(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.rate_limit()
    response = send_task(client)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_count_fails_that_many_requests(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.http_error(503, count=2)
    assert [send_task(client).status_code for _ in range(3)] == [503, 503, 200]


def test_faults_are_consumed_in_order(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.rate_limit()
    minimax_emulator.faults.http_error(502)
    assert [send_task(client).status_code for _ in range(3)] == [429, 502, 200]


def test_api_filter(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.http_error(500, api="chat")
    assert send_task(client).status_code == 200
    assert send_chat(client).status_code == 500


def test_task_type_filter_fails_only_polls(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.http_error(503, task_type="getResponse", count=2)
    sent = task(deliveryMethod="async")
    assert send_task(client, sent).status_code == 200
    polls = [send_task(client, {"taskType": "getResponse", "taskUUID": sent["taskUUID"]}) for _ in range(3)]
    assert [p.status_code for p in polls] == [503, 503, 200]
    assert minimax_emulator.stats()["poll_requests"] == 3


def test_openai_client_sees_rate_limit_error(minimax_emulator: EmulatorHandle) -> None:
    minimax_emulator.faults.rate_limit(retry_after=1)
    oai = openai.OpenAI(base_url=minimax_emulator.chat_base_url, api_key=EMULATOR_API_KEY, max_retries=0)
    with oai, pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="minimax-m2.7", messages=[{"role": "user", "content": "x"}])


# --- connection faults ------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["task", "chat"])
def test_dropped_connection(minimax_emulator: EmulatorHandle, client: httpx.Client, api: str) -> None:
    minimax_emulator.faults.drop_connection()
    with pytest.raises(httpx.RemoteProtocolError):
        SENDERS[api](client)
    assert SENDERS[api](client).status_code == 200


def test_drop_after_processing_keeps_the_task(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.drop_connection(after_processing=True)
    sent = task()
    with pytest.raises(httpx.RemoteProtocolError):
        send_task(client, sent)
    retry = send_task(client, sent)
    assert retry.json()["errors"][0]["code"] == "conflictTaskUUID"
    assert minimax_emulator.state.submissions[sent["taskUUID"]] == 2


def test_error_after_processing_keeps_the_task(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.faults.http_error(504, after_processing=True)
    sent = task(deliveryMethod="async")
    assert send_task(client, sent).status_code == 504
    assert sent["taskUUID"] in minimax_emulator.state.tasks


async def test_dropped_connection_in_process() -> None:
    app = create_app()
    app.state.emulator.faults.drop_connection()
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator", headers=headers) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/v1", json=[task()])


def test_delay_slows_one_response(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.delay(0.2)
    started = time.monotonic()
    assert send_chat(client).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_delay_beyond_client_timeout_times_out(minimax_emulator: EmulatorHandle) -> None:
    minimax_emulator.faults.delay(0.5, api="task")
    with minimax_emulator.client(timeout=0.1) as c, pytest.raises(httpx.ReadTimeout):
        send_task(c)


@pytest.mark.parametrize("api", ["task", "chat"])
def test_malformed_json_body(minimax_emulator: EmulatorHandle, client: httpx.Client, api: str) -> None:
    minimax_emulator.faults.malformed_json()
    response = SENDERS[api](client)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


# --- streams ----------------------------------------------------------------------------------


def read_stream(client: httpx.Client, url: str, body: Any) -> list[str]:
    """Collect the SSE data lines of a streamed response."""
    with client.stream("POST", url, json=body) as response:
        return [line for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1", [task(deliveryMethod="stream")]),
        (
            "/v1/chat/completions",
            {"model": "minimax-m2.7", "messages": [{"role": "user", "content": "x"}], "stream": True},
        ),
    ],
)
def test_stream_cut_mid_way(
    minimax_emulator: EmulatorHandle, client: httpx.Client, url: str, body: Any
) -> None:
    minimax_emulator.faults.stream_cut(after_chunks=2)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", url, json=body) as response:
        received.extend(line for line in response.iter_lines() if line.startswith("data: "))
    assert len(received) == 2


def test_stream_cut_waits_for_a_streaming_request(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.faults.stream_cut(after_chunks=1)
    assert send_chat(client).status_code == 200
    assert [f.kind for f in minimax_emulator.faults.pending] == ["stream_cut"]


def test_malformed_stream_chunk(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.malformed_json()
    lines = read_stream(client, "/v1", [task(deliveryMethod="stream")])
    assert lines[-1] == "data: [DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0].removeprefix("data: "))


# --- content faults ---------------------------------------------------------------------------


def structured_answer(client: httpx.Client) -> str:
    """The answer (think block removed) of a json_schema chat call."""
    response = send_chat(client, response_format=SCHEMA_FORMAT)
    return split_think(response.json()["choices"][0]["message"]["content"])[0]


def test_invalid_json_content_for_the_next_calls(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.faults.invalid_json_content(count=2)
    for _ in range(2):
        with pytest.raises(json.JSONDecodeError):
            json.loads(structured_answer(client))
    assert "answer" in json.loads(structured_answer(client))


def test_wrong_shape_json_content(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.invalid_json_content(variant="wrong_shape")
    assert not isinstance(json.loads(structured_answer(client)), dict)


def test_invalid_json_content_skips_plain_calls(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.faults.invalid_json_content()
    send_chat(client)
    send_task(client)
    assert [f.kind for f in minimax_emulator.faults.pending] == ["invalid_json_content"]


def test_base_resp_error_in_http_200(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.base_resp()
    response = send_chat(client)
    assert response.status_code == 200
    assert response.json()["base_resp"] == {"status_code": 1002, "status_msg": "rate limit"}
    assert response.json()["choices"] == []


def test_base_resp_in_a_stream(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.base_resp(status_code=1008, status_msg="insufficient balance")
    body = {"model": "minimax-m2.7", "messages": [{"role": "user", "content": "x"}], "stream": True}
    lines = read_stream(client, "/v1/chat/completions", body)
    assert json.loads(lines[0].removeprefix("data: "))["base_resp"]["status_code"] == 1008
    assert lines[-1] == "data: [DONE]"


def test_base_resp_never_hits_the_task_api(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.base_resp()
    assert "base_resp" not in send_task(client).json()


# --- control over HTTP ------------------------------------------------------------------------


def test_faults_over_http(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    added = client.post(
        "/_emulator/faults",
        json=[
            {"kind": "http_error", "status": 503, "api": "task", "retry_after": 1},
            {"kind": "drop_connection", "api": "chat"},
        ],
    )
    assert [f["kind"] for f in added.json()] == ["http_error", "drop_connection"]
    assert len(client.get("/_emulator/faults").json()) == 2
    assert send_task(client).status_code == 503
    assert client.delete("/_emulator/faults").json() == {"ok": True}
    assert send_chat(client).status_code == 200


def test_bad_fault_over_http_is_400(client: httpx.Client) -> None:
    assert client.post("/_emulator/faults", json={"kind": "meteor_strike"}).status_code == 400


def test_stats_report_fired_and_pending_faults(
    minimax_emulator: EmulatorHandle, client: httpx.Client
) -> None:
    minimax_emulator.faults.http_error(500, count=3)
    send_task(client)
    stats = client.get("/_emulator/stats").json()
    assert stats["faults_fired"] == {"http_error": 1}
    assert stats["faults_pending"][0]["count"] == 2


def test_reset_clears_faults(minimax_emulator: EmulatorHandle, client: httpx.Client) -> None:
    minimax_emulator.faults.http_error(500)
    minimax_emulator.reset()
    assert send_task(client).status_code == 200


# --- the pytest plugin ------------------------------------------------------------------------


def test_minimax_connection_sets_airflow_connections(minimax_connection: EmulatorHandle) -> None:
    task_conn = json.loads(os.environ["AIRFLOW_CONN_MINIMAX_DEFAULT"])
    chat_conn = json.loads(os.environ["AIRFLOW_CONN_MINIMAX_CHAT"])
    assert task_conn == {
        "conn_type": "minimax",
        "host": minimax_connection.base_url,
        "password": EMULATOR_API_KEY,
        "extra": {"api": "task"},
    }
    assert (chat_conn["host"], chat_conn["extra"]) == (minimax_connection.chat_base_url, {"api": "chat"})


def test_fixture_config_is_per_test(minimax_emulator: EmulatorHandle) -> None:
    assert minimax_emulator.config.async_latency == 0.05
    minimax_emulator.config.latency = 0.5  # must not leak into later tests


def test_fixture_config_did_not_leak(minimax_emulator: EmulatorHandle) -> None:
    assert minimax_emulator.config.latency == 0.0
