"""MiniMaxBatchOperator against the emulator: order, partial failure, retry-only-failed, 429s, storage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from fake_sleep import FakeSleep
from pydantic import BaseModel

from airflow_provider_minimax.exceptions import MiniMaxTaskFailedError, MiniMaxValidationError
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.testing.emulator import FAIL_MARKER, EmulatorConfig, EmulatorHandle

TASK_CONN, CHAT_CONN = "minimax_default", "minimax_chat"


class FakeTI:
    """The task-instance fields the operator reads, and the XComs it pushes."""

    dag_id, task_id, run_id, map_index = "enrich_dag", "enrich", "manual__1", -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class MemoryStore:
    """Airflow 3.3's task-state store, kept across the tries of one test (JSON values)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(latency=0.0, async_latency=0.0)


@pytest.fixture(autouse=True)
def _no_backoff(fake_sleep: FakeSleep) -> None:
    """Retry and back-off waits are recorded, not waited."""


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger fired no event")


def context(store: MemoryStore | None = None) -> dict[str, Any]:
    return {"ti": FakeTI(), "task_state_store": store if store is not None else MemoryStore()}


def batch(conn_id: str, rows: list[dict[str, Any]], **kwargs: Any) -> MiniMaxBatchOperator:
    options: dict[str, Any] = {
        "task_id": "enrich",
        "rows": rows,
        "prompt_template": "Describe {{ name }}",
        "conn_id": conn_id,
        "deferrable": False,
        "poll_interval": 0.01,
        "max_poll_interval": 0.02,
        **kwargs,
    }
    return MiniMaxBatchOperator(**options)


NAMES = [{"name": f"item-{i}"} for i in range(7)]


@pytest.mark.parametrize("conn_id", [TASK_CONN, CHAT_CONN])
def test_results_come_back_in_input_order(minimax_connection: EmulatorHandle, conn_id: str) -> None:
    output = batch(conn_id, NAMES, max_concurrency=3).execute(context())
    assert [r["row"] for r in output] == list(range(7))
    assert all(r["status"] == "success" for r in output)
    assert [f"item-{i}" in r["text"] for i, r in enumerate(output)] == [True] * 7


def test_task_rows_are_submitted_as_arrays_once_each(minimax_connection: EmulatorHandle) -> None:
    batch(TASK_CONN, NAMES).execute(context())
    stats = minimax_connection.stats()
    assert stats["task_items"]["textInference"] == 7
    assert stats["task_requests"]["textInference"] == 1  # one array request for all rows
    assert minimax_connection.state.duplicate_submissions() == {}


ROWS_WITH_FAILURE = [{"name": "a"}, {"name": FAIL_MARKER}, {"name": "c"}]


def test_skip_marks_failed_rows_and_succeeds(minimax_connection: EmulatorHandle) -> None:
    output = batch(TASK_CONN, ROWS_WITH_FAILURE, on_row_error="skip").execute(context())
    assert [r["status"] for r in output] == ["success", "failed", "success"]
    assert output[1]["error_code"] == "inferenceError"


def test_fail_raises_after_every_row_and_still_pushes_them(minimax_connection: EmulatorHandle) -> None:
    ctx = context()
    with pytest.raises(MiniMaxTaskFailedError, match=r"1 of 3 row\(s\) failed: row 1 \(inferenceError\)"):
        batch(TASK_CONN, ROWS_WITH_FAILURE).execute(ctx)
    pushed = ctx["ti"].xcom["return_value"]
    assert [r["status"] for r in pushed] == ["success", "failed", "success"]


def test_task_retry_resubmits_only_the_failed_row(minimax_connection: EmulatorHandle) -> None:
    store = MemoryStore()
    with pytest.raises(MiniMaxTaskFailedError):
        batch(TASK_CONN, ROWS_WITH_FAILURE).execute(context(store))
    first = dict(minimax_connection.state.submissions)
    with pytest.raises(MiniMaxTaskFailedError):  # the marker row fails again, under a new UUID
        batch(TASK_CONN, ROWS_WITH_FAILURE).execute(context(store))
    submissions = minimax_connection.state.submissions
    assert len(first) == 3
    assert all(submissions[u] == 1 for u in first)  # no row's UUID was submitted twice
    assert len(submissions) == 4  # only the failed row got a new one


def polled_before_submitted(emulator: EmulatorHandle) -> list[str]:
    """The taskUUIDs some getResponse asked about before any submit of them (in the emulator's log)."""
    submitted: set[str] = set()
    early: list[str] = []
    for entry in emulator.state.log:
        for task in entry["body"]:
            if task["taskType"] == "getResponse":
                early += [] if task["taskUUID"] in submitted else [task["taskUUID"]]
            else:
                submitted.add(task["taskUUID"])
    return early


def test_a_deferred_batch_polls_before_submitting_only_on_a_retried_try(
    minimax_connection: EmulatorHandle,
) -> None:
    store = MemoryStore()
    with pytest.raises(TaskDeferred):
        batch(TASK_CONN, NAMES, deferrable=True).execute(context(store))
    assert minimax_connection.state.task_type_requests["getResponse"] == 0  # nothing to poll for yet
    output = batch(TASK_CONN, NAMES, deferrable=True).execute(context(store))  # the retry finds them done
    assert [r["status"] for r in output] == ["success"] * 7
    assert minimax_connection.state.task_type_requests == {"textInference": 1, "getResponse": 1}


def test_chat_retry_redoes_only_rows_not_checkpointed(minimax_connection: EmulatorHandle) -> None:
    store = MemoryStore()
    minimax_connection.faults.http_error(400, api="chat", count=1, code="invalidRequest")
    with pytest.raises(MiniMaxTaskFailedError, match=r"1 of 4 row\(s\) failed: row 0 "):
        batch(CHAT_CONN, NAMES[:4], max_concurrency=1).execute(context(store))
    assert minimax_connection.state.chat_requests == 4
    output = batch(CHAT_CONN, NAMES[:4], max_concurrency=1).execute(context(store))
    assert [r["status"] for r in output] == ["success"] * 4
    assert minimax_connection.state.chat_requests == 5  # only row 0 was asked again


def test_chat_batch_slows_down_on_429_then_recovers(minimax_connection: EmulatorHandle) -> None:
    minimax_connection.faults.rate_limit(retry_after=0, api="chat", count=3)
    operator = batch(CHAT_CONN, [{"name": f"r{i}"} for i in range(40)], max_concurrency=4)
    output = operator.execute(context())
    assert all(r["status"] == "success" for r in output)
    stats = operator._chat_rows.limiter.stats  # type: ignore[union-attr]
    assert stats.rate_limited == 3
    assert stats.lowest_limit < 4  # the whole batch slowed down...
    assert operator._chat_rows.limiter.limit == 4  # type: ignore[union-attr]  # ...and sped up again
    # Every 429 was retried through the limiter, not blindly inside the hook: one request per attempt.
    assert minimax_connection.state.chat_requests == 40 + 3


def test_large_output_goes_to_storage_with_a_manifest(
    minimax_connection: EmulatorHandle, tmp_path: Path
) -> None:
    target = f"file://{tmp_path}/out/enriched.jsonl"
    manifest = batch(TASK_CONN, ROWS_WITH_FAILURE, on_row_error="skip", output_path=target).execute(context())
    lines = [json.loads(line) for line in (tmp_path / "out" / "enriched.jsonl").read_text().splitlines()]
    assert [line["row"] for line in lines] == [0, 1, 2]
    assert manifest["path"] == target
    assert (manifest["rows"], manifest["succeeded"], manifest["failed"]) == (3, 2, 1)
    assert manifest["failed_rows"] == [
        {"row": 1, "code": "inferenceError", "message": lines[1]["error_message"]}
    ]
    assert manifest["usage"]["total_tokens"] == sum(line["usage"]["total_tokens"] for line in lines)
    assert manifest["cost"] == pytest.approx(sum(line["cost"] or 0 for line in lines))


def test_csv_input_is_read_and_rendered_per_row(minimax_connection: EmulatorHandle, tmp_path: Path) -> None:
    source = tmp_path / "products.csv"
    source.write_text("name,colour\nlamp,red\nchair,blue\n")
    operator = batch(TASK_CONN, [], prompt_template="{{ name }} in {{ colour | upper }}")
    operator.rows, operator.input_path = None, str(source)
    output = operator.execute(context())
    assert ["lamp in RED" in output[0]["text"], "chair in BLUE" in output[1]["text"]] == [True, True]


def test_deferrable_task_mode_waits_on_every_row_in_one_trigger(minimax_connection: EmulatorHandle) -> None:
    ctx = context()
    operator = batch(TASK_CONN, ROWS_WITH_FAILURE, deferrable=True, on_row_error="skip")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    trigger = deferred.value.trigger
    assert len(trigger.task_uuids) == 3
    event = asyncio.run(_first_event(trigger))  # as the triggerer would run it
    output = operator.execute_complete(ctx, event, **deferred.value.kwargs)
    assert [r["status"] for r in output] == ["success", "failed", "success"]
    assert [r["task_uuid"] for r in output] == trigger.task_uuids


def test_transient_errors_are_retried_through_the_limiter_without_slowing_down(
    minimax_connection: EmulatorHandle,
) -> None:
    minimax_connection.faults.http_error(503, api="chat", count=2)
    operator = batch(CHAT_CONN, NAMES, max_concurrency=2)
    output = operator.execute(context())
    assert all(r["status"] == "success" for r in output)
    assert minimax_connection.state.chat_requests == 7 + 2
    assert operator._chat_rows.limiter.stats.decreases == 0  # type: ignore[union-attr]


def test_an_auth_error_stops_the_batch_and_keeps_the_answered_rows(
    minimax_connection: EmulatorHandle,
) -> None:
    from airflow_provider_minimax.exceptions import MiniMaxAuthError

    store = MemoryStore()
    minimax_connection.faults.delay(0, api="chat", count=2)  # two normal answers first
    minimax_connection.faults.http_error(401, api="chat", count=1)
    with pytest.raises(MiniMaxAuthError):
        batch(CHAT_CONN, NAMES, max_concurrency=1).execute(context(store))
    assert minimax_connection.state.chat_requests == 3  # no row asked after the 401
    output = batch(CHAT_CONN, NAMES, max_concurrency=1).execute(context(store))
    assert [r["status"] for r in output] == ["success"] * 7
    assert minimax_connection.state.chat_requests == 3 + 5  # rows 0 and 1 came from the checkpoint


class Product(BaseModel):
    name: str
    price: float


def test_chat_structured_output_is_re_asked_then_parsed(minimax_connection: EmulatorHandle) -> None:
    minimax_connection.faults.invalid_json_content(count=1)
    output = batch(CHAT_CONN, NAMES[:3], max_concurrency=1, output_type=Product).execute(context())
    assert all(r["status"] == "success" and set(r["output"]) == {"name", "price"} for r in output)
    assert minimax_connection.state.chat_requests == 3 + 1  # one re-ask


def test_chat_structured_output_mismatch_beyond_the_re_asks_is_a_failed_row(
    minimax_connection: EmulatorHandle,
) -> None:
    minimax_connection.faults.invalid_json_content(count=2)
    output = batch(CHAT_CONN, NAMES[:2], max_concurrency=1, output_type=Product, on_row_error="skip").execute(
        context()
    )
    assert [(r["status"], r["error_code"]) for r in output] == [
        ("failed", "outputMismatch"),
        ("success", None),
    ]


def test_task_structured_output_asks_with_the_schema_and_parses_each_row(
    minimax_connection: EmulatorHandle,
) -> None:
    output = batch(TASK_CONN, NAMES[:2], output_type=Product).execute(context())
    assert all(r["status"] == "success" and set(r["output"]) == {"name", "price"} for r in output)
    sent = [
        entry["body"][0]
        for entry in minimax_connection.state.log
        if entry["body"][0]["taskType"] == "textInference"
    ]
    assert all("JSON schema" in task["settings"]["systemPrompt"] for task in sent)


def streamed(conn_id: str, tmp_path: Path, names: list[str], **kwargs: Any) -> MiniMaxBatchOperator:
    """A batch from a JSONL file to a JSONL file, three rows per window."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"name": name}) + "\n" for name in names))
    operator = batch(conn_id, [], output_path=str(tmp_path / "out.jsonl"), **kwargs)
    operator.rows, operator.input_path = None, str(source)
    operator.window_rows = 3
    return operator


def written(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("conn_id", [TASK_CONN, CHAT_CONN])
def test_a_file_streams_window_by_window_to_the_output_in_input_order(
    minimax_connection: EmulatorHandle, tmp_path: Path, conn_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"item-{i}" for i in range(8)]
    operator = streamed(conn_id, tmp_path, names, max_concurrency=3)
    window_sizes: list[int] = []
    mode: Any = operator._chat_rows if conn_id == CHAT_CONN else operator._task_rows
    run_window = mode.run if conn_id == CHAT_CONN else mode.wait_window

    def spy(*args: Any, **kwargs: Any) -> Any:
        window_sizes.append(len(args[1] if conn_id == CHAT_CONN else args[0]))  # the window's prompts
        return run_window(*args, **kwargs)

    monkeypatch.setattr(mode, run_window.__name__, spy)
    manifest = operator.execute(context())
    assert window_sizes == [3, 3, 2]  # never more than one window of rows in memory
    lines = written(tmp_path)
    assert [line["row"] for line in lines] == list(range(8))
    assert [names[i] in line["text"] for i, line in enumerate(lines)] == [True] * 8
    assert (manifest["rows"], manifest["succeeded"], manifest["path"]) == (
        8,
        8,
        f"file://{tmp_path}/out.jsonl",
    )


def test_a_first_try_submits_every_window_without_polling_first(
    minimax_connection: EmulatorHandle, tmp_path: Path
) -> None:
    streamed(TASK_CONN, tmp_path, [f"item-{i}" for i in range(8)]).execute(context())
    assert minimax_connection.state.task_type_requests["textInference"] == 3  # one per window
    assert polled_before_submitted(minimax_connection) == []


def test_a_bad_row_late_in_a_streamed_file_fails_before_any_request(
    minimax_connection: EmulatorHandle, tmp_path: Path
) -> None:
    operator = streamed(TASK_CONN, tmp_path, ["a", "b", "c", "d", "e"])
    (tmp_path / "in.jsonl").write_text((tmp_path / "in.jsonl").read_text() + '{"other": 1}\n')
    with pytest.raises(MiniMaxValidationError, match="row 5"):
        operator.execute(context())
    assert minimax_connection.stats()["task_requests"] == {}


def test_streamed_failed_rows_are_written_and_summarised_then_fail_the_task(
    minimax_connection: EmulatorHandle, tmp_path: Path
) -> None:
    operator = streamed(TASK_CONN, tmp_path, ["a", f"b {FAIL_MARKER}", "c", "d", f"e {FAIL_MARKER}"])
    ctx = context()
    with pytest.raises(MiniMaxTaskFailedError, match="2 of 5 row"):
        operator.execute(ctx)
    assert [line["status"] for line in written(tmp_path)] == [
        "success",
        "failed",
        "success",
        "success",
        "failed",
    ]
    manifest = ctx["ti"].xcom["return_value"]
    assert [item["row"] for item in manifest["failed_rows"]] == [1, 4]


def test_streamed_task_windows_submit_the_next_window_before_waiting_on_the_last(
    minimax_connection: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = streamed(TASK_CONN, tmp_path, [f"item-{i}" for i in range(7)])
    calls: list[str] = []
    tasks = operator._task_rows
    submit, wait_window = tasks.submit, tasks.wait_window

    def spy_submit(context: Any, prompts: dict[int, str], *args: Any) -> Any:
        calls.append(f"submit {min(prompts)}")
        return submit(context, prompts, *args)

    def spy_wait(prompts: dict[int, str], *args: Any) -> Any:
        calls.append(f"wait {min(prompts)}")
        return wait_window(prompts, *args)

    monkeypatch.setattr(tasks, "submit", spy_submit)
    monkeypatch.setattr(tasks, "wait_window", spy_wait)
    operator.execute(context())
    assert calls == ["submit 0", "submit 3", "wait 0", "submit 6", "wait 3", "wait 6"]
    assert [line["row"] for line in written(tmp_path)] == list(range(7))


def test_a_deferred_batch_resumes_from_a_small_event_and_fetches_the_rows(
    minimax_connection: EmulatorHandle,
) -> None:
    rows = [{"name": "a"}, {"name": f"b {FAIL_MARKER}"}, {"name": "c"}]
    operator = batch(TASK_CONN, rows, deferrable=True, on_row_error="skip")
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    event = asyncio.run(_first_event(deferred.value.trigger))
    assert event == {"status": "success", "task_uuids": [], "results": {}, "errors": {}, "pending": []}
    output = operator.execute_complete(ctx, event, **deferred.value.kwargs)
    assert [(r["row"], r["status"]) for r in output] == [(0, "success"), (1, "failed"), (2, "success")]
    assert "c" in output[2]["text"]
