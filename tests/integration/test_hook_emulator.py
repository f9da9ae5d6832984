"""MiniMaxHook against the local emulator (a real loopback server) for both APIs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import pytest
from fake_sleep import FakeSleep

from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxConnectionError,
    MiniMaxCreditError,
    MiniMaxDeadlineError,
    MiniMaxRateLimitError,
    MiniMaxTaskFailedError,
)
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.testing.emulator import (
    FAIL_MARKER,
    NO_CREDIT_API_KEY,
    EmulatorConfig,
    EmulatorHandle,
)

PROMPT = "Name one Norwegian fjord."


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(async_latency=0.2)


@pytest.fixture
def waits(fake_sleep: FakeSleep) -> list[float]:
    """The retry waits the hooks ask for, recorded instead of waited."""
    return fake_sleep.waits


@pytest.fixture
def task_hook(minimax_connection: EmulatorHandle) -> MiniMaxHook:
    return MiniMaxHook("minimax_default")


@pytest.fixture
def chat_hook(minimax_connection: EmulatorHandle) -> MiniMaxHook:
    return MiniMaxHook("minimax_chat")


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, key: str, api: str) -> None:
    conn = {"conn_type": "minimax", "host": host, "password": key, "extra": {"api": api}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


# ------------------------------------------------------------------------ task API


def test_task_sync_is_deterministic_with_usage_and_cost(task_hook: MiniMaxHook) -> None:
    first = task_hook.text_inference(PROMPT, seed=7).results[0]
    second = task_hook.text_inference(PROMPT, seed=7).results[0]
    assert first.text and first.text == second.text
    assert first.task_uuid != second.task_uuid
    assert first.usage is not None and first.usage.total_tokens > 0
    assert first.cost is not None and first.cost > 0


def test_task_async_submit_then_poll_until_success(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle
) -> None:
    tasks = [task_hook.new_text_inference(f"{PROMPT} #{i}", delivery_method="async") for i in range(3)]
    uuids = [t.task_uuid for t in tasks]
    acks = task_hook.submit_tasks(tasks)
    assert [r.task_uuid for r in acks.results] == uuids
    first = task_hook.get_responses(uuids)
    assert all(not r.is_terminal for r in first.results)
    outcome = first
    for _ in range(200):
        if all(r.is_terminal for r in outcome.results):
            break
        time.sleep(0.02)
        outcome = task_hook.get_responses(uuids)
    assert all(outcome.results_for(u)[0].status == "success" for u in uuids)
    assert all(outcome.results_for(u)[0].text for u in uuids)
    assert minimax_emulator.stats()["duplicate_submissions"] == {}
    assert minimax_emulator.stats()["poll_requests"] >= 2


async def test_task_async_twins_submit_and_poll(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle
) -> None:
    task = task_hook.new_text_inference(PROMPT, delivery_method="async")
    await task_hook.asubmit_tasks([task])
    outcome = await task_hook.aget_responses([task.task_uuid])
    for _ in range(200):
        if outcome.results and outcome.results[0].is_terminal:
            break
        time.sleep(0.02)
        outcome = await task_hook.aget_responses([task.task_uuid])
    assert outcome.results[0].status == "success"
    assert minimax_emulator.state.submissions[task.task_uuid] == 1
    await task_hook.aclose()


def test_task_poll_of_an_unknown_uuid_is_a_per_task_error(task_hook: MiniMaxHook) -> None:
    unknown = str(uuid.uuid4())
    error = task_hook.get_responses([unknown]).error_for(unknown)
    assert error is not None and error.code == "taskFailedOrNotFound"


def test_task_stream_matches_the_sync_answer(task_hook: MiniMaxHook) -> None:
    sync_text = task_hook.text_inference(PROMPT, seed=3).results[0].text
    chunks = list(task_hook.stream_text_inference(PROMPT, seed=3))
    assert "".join(c.delta.text or "" for c in chunks) == sync_text
    assert chunks[-1].finish_reason == "stop"


async def test_task_async_stream(task_hook: MiniMaxHook) -> None:
    chunks = [c async for c in task_hook.astream_text_inference(PROMPT)]
    assert "".join(c.delta.text or "" for c in chunks)
    assert any(c.usage is not None for c in chunks)
    await task_hook.aclose()


def test_task_number_results(task_hook: MiniMaxHook) -> None:
    outcome = task_hook.text_inference(PROMPT, number_results=3)
    items = outcome.results_for(outcome.results[0].task_uuid)
    assert [r.result_index for r in items] == [0, 1, 2]


def test_task_partial_success_keeps_the_successes(task_hook: MiniMaxHook) -> None:
    good = task_hook.new_text_inference(PROMPT)
    bad = task_hook.new_text_inference(f"{PROMPT} {FAIL_MARKER}")
    outcome = task_hook.submit_tasks([good, bad])
    assert outcome.results_for(good.task_uuid)[0].text
    error = outcome.error_for(bad.task_uuid)
    assert error is not None and error.code == "inferenceError"


def test_task_failure_of_a_single_sync_task_raises(task_hook: MiniMaxHook) -> None:
    with pytest.raises(MiniMaxTaskFailedError) as caught:
        task_hook.text_inference(f"{PROMPT} {FAIL_MARKER}")
    assert caught.value.code == "inferenceError"


def test_task_resubmit_is_a_conflict_not_a_second_payment(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle
) -> None:
    task = task_hook.new_text_inference(PROMPT, delivery_method="async")
    task_hook.submit_tasks([task])
    again = task_hook.submit_tasks([task])
    assert again.already_accepted == [task.task_uuid]
    assert again.errors == []
    assert minimax_emulator.stats()["tasks"] in ({"processing": 1}, {"success": 1})


@pytest.mark.parametrize(
    ("key", "error_cls"), [("wrong-key", MiniMaxAuthError), (NO_CREDIT_API_KEY, MiniMaxCreditError)]
)
@pytest.mark.parametrize("api", ["task", "chat"])
def test_bad_key_and_no_credit(
    minimax_emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    waits: list[float],
    key: str,
    error_cls: type[Exception],
    api: str,
) -> None:
    host = minimax_emulator.base_url if api == "task" else minimax_emulator.chat_base_url
    _connection(monkeypatch, "minimax_it_key", host, key, api)
    hook = MiniMaxHook("minimax_it_key")
    with pytest.raises(error_cls) as caught:
        hook.generate(PROMPT)
    assert caught.value.status_code == (401 if error_cls is MiniMaxAuthError else 402)  # type: ignore[attr-defined]
    assert waits == []


def test_task_retries_through_429_and_503_without_double_submitting(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle, waits: list[float]
) -> None:
    minimax_emulator.faults.rate_limit(retry_after=2, api="task")
    minimax_emulator.faults.http_error(503, api="task", count=2)
    outcome = task_hook.text_inference(PROMPT)
    assert outcome.results[0].text
    assert waits[0] == 2.0 and len(waits) == 3
    assert minimax_emulator.state.submissions[outcome.results[0].task_uuid] == 1


def test_task_retry_after_as_http_date_is_honoured(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle, waits: list[float]
) -> None:
    minimax_emulator.faults.rate_limit(retry_after=5, retry_after_format="http-date", api="task")
    task_hook.text_inference(PROMPT)
    (wait,) = waits
    assert 3.0 <= wait <= 5.0  # an HTTP date has one-second resolution


def test_task_dropped_connection_is_retried(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle, waits: list[float]
) -> None:
    minimax_emulator.faults.drop_connection(api="task")
    assert task_hook.text_inference(PROMPT).results[0].text
    assert len(waits) == 1


def test_task_answer_lost_after_processing_is_fetched_not_paid_again(
    task_hook: MiniMaxHook, minimax_emulator: EmulatorHandle, waits: list[float]
) -> None:
    minimax_emulator.faults.drop_connection(api="task", task_type="textInference", after_processing=True)
    outcome = task_hook.text_inference(PROMPT)
    assert outcome.results[0].text
    stats = minimax_emulator.stats()
    assert stats["tasks"] == {"success": 1}  # one task ran; the retried submit was refused as a conflict
    assert stats["poll_items"] == 1


def _limited_connection(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorHandle, api: str, **extra: object
) -> MiniMaxHook:
    conn = json.loads(emulator.connection_json(api))
    conn["extra"] = {**conn.get("extra", {}), **extra}
    monkeypatch.setenv("AIRFLOW_CONN_MINIMAX_LIMITED", json.dumps(conn))
    return MiniMaxHook("minimax_limited")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("api", ["task", "chat"])
def test_slow_drip_answer_ends_at_the_total_deadline(
    monkeypatch: pytest.MonkeyPatch, minimax_emulator: EmulatorHandle, api: str, is_async: bool
) -> None:
    minimax_emulator.faults.add("slow_drip", api=api, delay=0.05)
    hook = _limited_connection(monkeypatch, minimax_emulator, api, timeout=5, total_timeout=0.5)
    with pytest.raises(MiniMaxDeadlineError, match="total_timeout"):
        asyncio.run(hook.agenerate(PROMPT)) if is_async else hook.generate(PROMPT)


@pytest.mark.parametrize("api", ["task", "chat"])
async def test_stream_of_keep_alive_comments_ends_at_the_idle_limit(
    monkeypatch: pytest.MonkeyPatch, minimax_emulator: EmulatorHandle, api: str
) -> None:
    minimax_emulator.faults.add("slow_drip", api=api, delay=0.05)
    hook = _limited_connection(monkeypatch, minimax_emulator, api, stream_idle_timeout=0.5)
    stream = hook.astream_chat_completion(PROMPT) if api == "chat" else hook.astream_text_inference(PROMPT)
    with pytest.raises(MiniMaxDeadlineError, match="stream_idle_timeout"):
        async for _ in stream:
            pass


def test_task_rate_limit_burst_longer_than_retries_raises(
    minimax_emulator: EmulatorHandle, minimax_connection: EmulatorHandle, waits: list[float]
) -> None:
    minimax_emulator.faults.rate_limit(api="task", count=10)
    hook = MiniMaxHook("minimax_default", max_retries=2)
    with pytest.raises(MiniMaxRateLimitError):
        hook.text_inference(PROMPT)
    assert len(waits) == 2


# ------------------------------------------------------------------------ chat API


def test_chat_completion_splits_reasoning(chat_hook: MiniMaxHook) -> None:
    completion = chat_hook.chat_completion(PROMPT)
    assert completion.answer and "<think>" not in completion.answer
    assert completion.reasoning
    assert completion.message.content is not None and completion.message.content.startswith("<think>")
    assert completion.usage is not None and completion.usage.total_tokens > 0


async def test_chat_async_completion(chat_hook: MiniMaxHook) -> None:
    completion = await chat_hook.achat_completion(PROMPT)
    assert completion.answer == chat_hook.chat_completion(PROMPT).answer
    await chat_hook.aclose()


def test_chat_stream_carries_the_answer_and_usage(chat_hook: MiniMaxHook) -> None:
    chunks = list(chat_hook.stream_chat_completion(PROMPT))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == chat_hook.chat_completion(PROMPT).message.content
    assert chunks[-1].usage is not None


async def test_chat_async_stream(chat_hook: MiniMaxHook) -> None:
    chunks = [c async for c in chat_hook.astream_chat_completion(PROMPT)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    await chat_hook.aclose()


def test_chat_retries_through_429_and_base_resp(
    chat_hook: MiniMaxHook, minimax_emulator: EmulatorHandle, waits: list[float]
) -> None:
    minimax_emulator.faults.rate_limit(retry_after=1, api="chat")
    minimax_emulator.faults.base_resp(1002, "rate limit", api="chat")
    minimax_emulator.faults.http_error(502, api="chat")
    assert chat_hook.chat_completion(PROMPT).answer
    assert waits[0] == 1.0 and len(waits) == 3


# ------------------------------------------------------------------------ both


@pytest.mark.parametrize("conn_id", ["minimax_default", "minimax_chat"])
def test_generate_over_both_apis(minimax_connection: EmulatorHandle, conn_id: str) -> None:
    result = MiniMaxHook(conn_id).generate(
        PROMPT, system_prompt="Be brief.", temperature=0.5, max_tokens=2000
    )
    assert result.text and "<think>" not in result.text
    assert result.reasoning
    assert result.usage.total_tokens > 0
    assert (result.cost is not None) is (conn_id == "minimax_default")


@pytest.mark.parametrize("conn_id", ["minimax_default", "minimax_chat"])
def test_test_connection_ok_and_free(minimax_connection: EmulatorHandle, conn_id: str) -> None:
    ok, message = MiniMaxHook(conn_id).test_connection()
    assert ok, message
    assert minimax_connection.stats()["submissions"] == {}


@pytest.mark.parametrize("api", ["task", "chat"])
def test_test_connection_tells_a_bad_key_from_unreachable(
    minimax_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    host = minimax_emulator.base_url if api == "task" else minimax_emulator.chat_base_url
    _connection(monkeypatch, "minimax_it_bad", host, "wrong-key", api)
    ok, bad_key = MiniMaxHook("minimax_it_bad").test_connection()
    assert not ok and "key was refused" in bad_key

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    _connection(monkeypatch, "minimax_it_down", f"http://127.0.0.1:{port}/v1", "k", api)
    ok, down = MiniMaxHook("minimax_it_down").test_connection()
    assert not ok and "unreachable" in down


def test_unreachable_call_raises_a_connection_error(
    monkeypatch: pytest.MonkeyPatch, minimax_emulator: EmulatorHandle, waits: list[float]
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    _connection(monkeypatch, "minimax_it_down", f"http://127.0.0.1:{port}/v1", "k", "task")
    with pytest.raises(MiniMaxConnectionError):
        MiniMaxHook("minimax_it_down", max_retries=1).text_inference(PROMPT)
    assert len(waits) == 1
