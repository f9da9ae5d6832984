"""MiniMaxBatchOperator without a server: input, per-row rendering and validation, output shapes."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred
from chat_testlib import FakeTI
from fake_sleep import FakeSleep
from hook_testlib import (
    CHAT_COMPLETIONS_URL,
    CONN_ID,
    SECRET_KEY,
    TASK_URL,
    chat_body,
    set_connection,
    task_result,
)
from task_api_fake import FakeTaskApi, MemoryStore

from airflow_provider_minimax.batch.chat_mode import _Recorder
from airflow_provider_minimax.batch.checkpoint import RowCheckpoint
from airflow_provider_minimax.batch.io import read_rows
from airflow_provider_minimax.batch.progress import Progress, progress_line
from airflow_provider_minimax.batch.rows import MAX_FAILED_IN_MANIFEST, Manifest, RowResult, failed_row
from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.results import TasksOutcome


class BatchTI(FakeTI):
    dag_id, task_id, run_id, map_index = "dag", "enrich", "run", -1


def context() -> dict[str, Any]:
    return {"ti": BatchTI(), "task_state_store": MemoryStore()}


def operator(**kwargs: Any) -> MiniMaxBatchOperator:
    options: dict[str, Any] = {
        "task_id": "enrich",
        "prompt_template": "Describe {{ name }}",
        "conn_id": CONN_ID,
    }
    return MiniMaxBatchOperator(**(options | kwargs))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTaskApi]:
    set_connection(monkeypatch)
    fake = FakeTaskApi()
    with respx.mock(assert_all_called=False) as router:
        router.post(TASK_URL).mock(side_effect=fake)
        yield fake


def deferral(op: MiniMaxBatchOperator, ctx: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx)
    return info.value


def answered(task_uuids: list[str]) -> dict[str, Any]:
    """The trigger's event once every waited task has its answer."""
    results = {u: [{**task_result(u, f"about {u[:4]}"), "status": "success"}] for u in task_uuids}
    return TasksOutcome(status="success", task_uuids=task_uuids, results=results).to_event()


# ---------------------------------------------------------------- bad input, before any HTTP call


@pytest.mark.parametrize("api", ["task", "chat"])
@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([{"name": "a"}, "oops"], {}, r"rows\[1\] must be a record \(dict\), got str"),
        ([{"name": "a"}, {"title": "b"}], {}, r"row 1: prompt_template uses a field the row does not have"),
        (
            [{"name": "a"}, {"name": " "}],
            {"prompt_template": "{{ name }}"},
            r"row 1: prompt_template rendered an empty",
        ),
        ([{"name": "a"}], {"temperature": 3}, r"row 0: .*temperature"),
        ([{"name": "a"}], {"on_row_error": "ignore"}, r"on_row_error: Input should be 'fail' or 'skip'"),
        ([{"name": "a"}], {"max_concurrency": 0}, r"max_concurrency: .*greater than or equal to 1"),
        ([{"name": "a"}], {"max_concurrency": True}, r"max_concurrency: .*not a boolean"),
        ([{"name": "a"}], {"requests_per_minute": 0}, r"requests_per_minute: .*greater than 0"),
        ([{"name": "a"}], {"wait_timeout": -5}, r"wait_timeout: .*greater than 0"),
        ([{"name": "a"}], {"wait_timeout": 0}, r"wait_timeout: .*greater than 0"),
        ([{"name": "a"}], {"poll_interval": 0}, r"poll_interval: .*greater than 0"),
        ([{"name": "a"}], {"max_poll_interval": -1}, r"max_poll_interval: .*greater than 0"),
        (
            [{"name": "a"}],
            {"poll_interval": 5, "max_poll_interval": 2},
            r"max_poll_interval: .*must be >= poll_interval \(5.0\) \(got 2\)",
        ),
        ([{"name": "a"}], {"not_found_grace": -1}, r"not_found_grace: .*greater than or equal to 0"),
        ([{"name": "a"}], {"max_xcom_bytes": -1}, r"max_xcom_bytes: .*greater than or equal to 0"),
        ([{"name": "a"}], {"max_output_retries": -1}, r"max_output_retries: .*greater than or equal to 0"),
        ("not json", {}, r"rows rendered to text that is not a JSON list"),
    ],
)
def test_bad_input_is_refused_before_any_http_call(
    monkeypatch: pytest.MonkeyPatch, api: str, rows: Any, extra: dict[str, Any], message: str
) -> None:
    set_connection(monkeypatch, api=api)
    with respx.mock(assert_all_called=False) as router, pytest.raises(MiniMaxValidationError, match=message):
        operator(rows=rows, **extra).execute(context())
    assert router.calls.call_count == 0


def test_the_template_error_names_the_row_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)
    with pytest.raises(MiniMaxValidationError, match=r"the row's fields are \['title'\]"):
        operator(rows=[{"title": "x"}]).execute(context())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of 'rows' or 'input_path'"),
        ({"rows": [], "input_path": "x.csv"}, "exactly one of 'rows' or 'input_path'"),
        ({"rows": [], "prompt_template": ""}, "'prompt_template' must be a non-empty string"),
        ({"rows": [], "output_type": dict}, "'output_type' must be a pydantic BaseModel subclass"),
    ],
)
def test_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    options = {"task_id": "t", "prompt_template": "{{ x }}"} | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        MiniMaxBatchOperator(**options)


def test_prompt_template_is_not_rendered_with_the_task_fields() -> None:
    # Rendering it at task level would fail on the row variables before any row exists.
    assert "prompt_template" not in MiniMaxBatchOperator.template_fields
    assert "rows" in MiniMaxBatchOperator.template_fields


# ---------------------------------------------------------------- input files


def test_jsonl_and_csv_inputs_read_the_same_rows(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"name": "a", "n": "1"}\n\n{"name": "b", "n": "2"}\n')
    (tmp_path / "in.csv").write_text("name,n\na,1\nb,2\n")
    assert read_rows(tmp_path / "in.jsonl") == read_rows(f"file://{tmp_path}/in.csv")


@pytest.mark.parametrize("name", ["in.csv", "in.jsonl"])
def test_inputs_saved_with_a_utf8_bom_are_read(tmp_path: Path, name: str) -> None:
    # What spreadsheet tools export as "CSV UTF-8": the first field must not become "\ufeffname".
    content = "name,n\na,1\n" if name.endswith(".csv") else '{"name": "a", "n": "1"}\n'
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + content.encode())
    assert read_rows(tmp_path / name) == [{"name": "a", "n": "1"}]


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("in.jsonl", '{"a": 1}\n{broken\n', None, r"line 2: not valid JSON"),
        ("in.jsonl", '{"a": 1}\n[1, 2]\n', None, r"line 2: expected a JSON object, got list"),
        ("in.txt", "a\n", None, r"cannot tell the format from the suffix '.txt'"),
    ],
)
def test_bad_input_files_name_the_line(
    tmp_path: Path, name: str, content: str, fmt: Any, message: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(MiniMaxValidationError, match=message):
        read_rows(str(tmp_path / name), fmt)


def test_a_declared_format_overrides_the_suffix(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("name\nx\n")
    assert read_rows(str(tmp_path / "in.txt"), "csv") == [{"name": "x"}]


# ---------------------------------------------------------------- output, progress, checkpoint


def test_the_manifest_sums_rows_and_caps_the_failed_list() -> None:
    rows = [failed_row(i, "inferenceError", "boom") for i in range(MAX_FAILED_IN_MANIFEST + 5)]
    rows.append(RowResult(row=len(rows), status="success", text="ok", cost=0.5))
    manifest = Manifest.of(rows, path="s3://b/out.jsonl")
    assert (manifest.rows, manifest.succeeded, manifest.failed) == (106, 1, 105)
    assert len(manifest.failed_rows) == MAX_FAILED_IN_MANIFEST
    assert manifest.failed_rows_truncated
    assert manifest.cost == 0.5


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((340, 1000, 3, 8.0), "340/1000 done, 3 failed, 42 rows/s, ETA 16 s"),
        ((1000, 1000, 0, 20.0), "1000/1000 done, 0 failed, 50 rows/s"),
        ((0, 1000, 0, 0.0), "0/1000 done, 0 failed"),
        ((600, 1000, 0, 10.0, 500), "600/1000 done, 0 failed, 10 rows/s, ETA 40 s"),
    ],
)
def test_progress_line(args: tuple[Any, ...], line: str) -> None:
    assert progress_line(*args) == line


def test_progress_logs_every_tenth_or_ten_seconds() -> None:
    now = [0.0]
    progress = Progress(100, clock=lambda: now[0], started=0.0)
    for done in range(1, 101):
        now[0] = done * 0.01
        progress.update(done, 0)
    now[0] += 11
    progress.update(100, 0)  # already logged at 100: only a new interval logs again
    assert [line.split(" ")[0] for line in progress.lines[:3]] == ["10/100", "20/100", "30/100"]
    assert len(progress.lines) == 11


FINGERPRINTS = {0: "f0", 1: "f1", 2: "f2"}


def test_the_checkpoint_reuses_only_rows_whose_request_is_unchanged() -> None:
    store = MemoryStore()
    writer = RowCheckpoint(store)
    writer.load(FINGERPRINTS)
    writer.save([RowResult(row=0, status="success", text="a"), failed_row(1, "x", "y")], FINGERPRINTS)
    writer.save([RowResult(row=2, status="success", text="c")], FINGERPRINTS)
    reader = RowCheckpoint(store)
    assert sorted(reader.load(FINGERPRINTS)) == [0, 2]  # failed rows are not kept
    assert sorted(RowCheckpoint(store).load({0: "f0", 1: "f1", 2: "CHANGED"})) == [0]
    assert json.loads(json.dumps(store.values))  # JSON values only


class SlowStore(MemoryStore):
    """A slow store that, like Airflow's task-state client, serves one caller at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = threading.Lock()

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        if not self.busy.acquire(blocking=False):
            raise AssertionError("two checkpoint writes at once")
        try:
            time.sleep(0.01)
            super().set(key, value, **kwargs)
        finally:
            self.busy.release()


def test_rows_finishing_during_a_checkpoint_save_are_all_kept() -> None:
    store = SlowStore()
    fingerprints = {row: f"f{row}" for row in range(40)}
    checkpoint = RowCheckpoint(store)
    checkpoint.load(fingerprints)
    recorder = _Recorder({}, len(fingerprints), checkpoint, fingerprints, logging.getLogger("test"))

    async def finish(row: int) -> None:
        await asyncio.sleep(row % 5 * 0.002)
        await recorder.record(RowResult(row=row, status="success", text=str(row)))

    async def batch() -> None:
        await asyncio.gather(*(finish(row) for row in fingerprints))
        await recorder.flush()

    asyncio.run(batch())
    assert sorted(RowCheckpoint(store).load(fingerprints)) == list(fingerprints)


def test_without_a_store_nothing_is_kept() -> None:
    checkpoint = RowCheckpoint(None)
    checkpoint.save([RowResult(row=0, status="success")], {0: "f"})
    assert (checkpoint.enabled, checkpoint.load({0: "f"})) == (False, {})


def test_prompts_render_with_the_dags_filters_and_the_task_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DAG

    set_connection(monkeypatch)
    with DAG("d", user_defined_filters={"shout": lambda v: f"{v.upper()}!"}, schedule=None):
        op = operator(rows=[], prompt_template="{{ row_index }} {{ name | shout }} {{ row.name }} {{ ds }}")
    prompts = op._row_prompts({"ds": "2026-01-01"}).window(0, [{"name": "a"}, {"name": "b"}])  # type: ignore[arg-type]
    assert prompts == {0: "0 A! a 2026-01-01", 1: "1 B! b 2026-01-01"}


def test_gather_keeps_input_order_with_refused_failed_timed_out_and_mismatching_rows() -> None:
    from pydantic import BaseModel

    from airflow_provider_minimax.models import ApiError, TaskResult
    from airflow_provider_minimax.results import TasksOutcome

    class Out(BaseModel):
        n: int

    def done(uuid: str, text: str) -> list[TaskResult]:
        return [
            TaskResult.model_validate(
                {"taskType": "textInference", "taskUUID": uuid, "status": "success", "text": text}
            )
        ]

    outcome = TasksOutcome(
        status="timeout",
        task_uuids=["u0", "u2", "u3", "u4"],
        results={"u0": done("u0", '{"n": 1}'), "u3": done("u3", "not json")},
        errors={"u2": ApiError(code="inferenceError", message="boom")},
        pending=["u4"],
    )
    refused = {1: ApiError(code="invalidSeed", message="bad seed")}
    rows = operator(rows=[], output_type=Out)._task_rows.gather(outcome, list(range(5)), refused)
    assert [(r.row, r.status, r.error_code) for r in rows] == [
        (0, "success", None),
        (1, "failed", "invalidSeed"),
        (2, "failed", "inferenceError"),
        (3, "failed", "outputMismatch"),
        (4, "failed", "timeout"),
    ]
    assert rows[0].output == {"n": 1}
    assert rows[3].text == "not json"


def test_an_event_from_another_batch_is_refused() -> None:
    from airflow_provider_minimax.exceptions import MiniMaxError
    from airflow_provider_minimax.results import TasksOutcome

    with pytest.raises(MiniMaxError, match="does not belong to this batch"):
        operator(rows=[])._task_rows.gather(TasksOutcome(status="success", task_uuids=["u0"]), [0, 1, 2], {})


def test_a_polling_failure_raises_its_typed_error() -> None:
    from airflow_provider_minimax.exceptions import MiniMaxAuthError
    from airflow_provider_minimax.results import TasksOutcome

    outcome = TasksOutcome(status="error", task_uuids=["u0"], message="key revoked", status_code=401)
    with pytest.raises(MiniMaxAuthError, match="a retry re-attaches to every row"):
        operator(rows=[])._task_rows.gather(outcome, [0], {})


# ---------------------------------------------------------------- deferral and resume (task API)


@pytest.mark.parametrize("kwargs_back", [True, False], ids=["triggerer", "dags-test"])
def test_a_resume_gathers_every_row_with_or_without_the_deferral_kwargs(
    api: FakeTaskApi, kwargs_back: bool
) -> None:
    # airflow dags test resumes with {"event": ...} only: row count and refused rows come from the store.
    ctx, rows = context(), [{"name": name} for name in "abc"]
    uuids = deferral(operator(rows=rows, deferrable=True), ctx).trigger.serialize()[1]["task_uuids"]
    api.tasks.clear()  # forgotten upstream: the next try submits every row again, and row 1 is refused
    api.refuse[uuids[1]] = {"code": "invalidSeed", "message": "bad seed"}
    op = operator(rows=rows, deferrable=True, on_row_error="skip")
    deferred = deferral(op, ctx)
    waited = deferred.trigger.serialize()[1]["task_uuids"]
    assert waited == [uuids[0], uuids[2]]
    result = op.execute_complete(ctx, answered(waited), **(deferred.kwargs if kwargs_back else {}))
    assert [(row["row"], row["status"], row["error_code"]) for row in result] == [
        (0, "success", None),
        (1, "failed", "invalidSeed"),
        (2, "success", None),
    ]


def test_the_batch_deferral_carries_the_not_found_grace(api: FakeTaskApi) -> None:
    before = time.time()
    op = operator(rows=[{"name": "a"}], deferrable=True, not_found_grace=45)
    until = deferral(op, context()).trigger.serialize()[1]["not_found_until"]
    assert before + 45 <= until <= time.time() + 45


@pytest.mark.parametrize(("grace", "status"), [(120, "success"), (0, "failed")])
def test_rows_not_found_right_after_their_submit_are_pending_within_the_grace(
    api: FakeTaskApi, fake_sleep: FakeSleep, grace: float, status: str
) -> None:
    api.invisible_for, api.finish_after_polls = 2, 3
    op = operator(rows=[{"name": "a"}, {"name": "b"}], on_row_error="skip", not_found_grace=grace)
    rows = op.execute(context())
    assert [row["status"] for row in rows] == [status, status]
    assert sum(api.submissions.values()) == 2  # never paid twice


# ---------------------------------------------------------------- chat mode: one row's failure stays its own


@pytest.mark.parametrize(
    "raised",
    [
        httpx.DecodingError("bad gzip"),
        httpx.LocalProtocolError("illegal header"),
        ValueError("a library bug"),
    ],
)
def test_a_raw_library_error_fails_only_its_row(monkeypatch: pytest.MonkeyPatch, raised: Exception) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0)

    def answer(request: httpx.Request) -> httpx.Response:
        if b"boom" in request.content:
            raise raised
        return httpx.Response(200, json=chat_body("fine"))

    with respx.mock(assert_all_called=False) as router:
        router.post(CHAT_COMPLETIONS_URL).mock(side_effect=answer)
        rows = operator(rows=[{"name": "a"}, {"name": "boom"}, {"name": "c"}], on_row_error="skip").execute(
            context()
        )
    assert [row["status"] for row in rows] == ["success", "failed", "success"]
    # The hook types transport errors itself; anything it lets through becomes ``clientError``.
    assert rows[1]["error_code"] and type(raised).__name__ in rows[1]["error_message"]
    assert isinstance(raised, httpx.HTTPError) or rows[1]["error_code"] == "clientError"


def test_the_key_never_reaches_a_failed_rows_message(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0)

    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value b'{request.headers['authorization']}'")

    with respx.mock(assert_all_called=False) as router:
        router.post(CHAT_COMPLETIONS_URL).mock(side_effect=answer)
        rows = operator(rows=[{"name": "a"}], on_row_error="skip").execute(context())
    assert rows[0]["status"] == "failed" and SECRET_KEY not in json.dumps(rows)


def test_each_chat_request_in_flight_has_a_connection_pool_of_its_own_and_the_connection_is_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_connection(monkeypatch, api="chat")
    reads: list[str] = []
    read = MiniMaxConnectionSettings.from_connection
    monkeypatch.setattr(
        MiniMaxConnectionSettings,
        "from_connection",
        classmethod(lambda cls, c: reads.append(c.conn_id) or read(c)),
    )
    clients: set[int] = set()
    aclient = MiniMaxHook.aclient

    async def spied(self: MiniMaxHook) -> httpx.AsyncClient:
        client = await aclient(self)
        clients.add(id(client))
        return client

    monkeypatch.setattr(MiniMaxHook, "aclient", spied)
    with respx.mock(assert_all_called=False) as router:
        router.post(CHAT_COMPLETIONS_URL).mock(return_value=httpx.Response(200, json=chat_body("fine")))
        rows = operator(rows=[{"name": str(i)} for i in range(7)], max_concurrency=3).execute(context())
    assert [row["status"] for row in rows] == ["success"] * 7
    assert (len(clients), reads) == (3, [CONN_ID])


@pytest.mark.parametrize(("resend", "status", "requests"), [(True, "success", 2), (False, "failed", 1)])
def test_a_chat_request_received_but_unanswered_is_resent_only_when_allowed_and_counted(
    monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep, resend: bool, status: str, requests: int
) -> None:
    set_connection(monkeypatch, api="chat", max_retries=2, chat_retry_on_read_timeout=resend)
    answers = [httpx.ReadTimeout("no answer"), httpx.Response(200, json=chat_body("fine"))]
    with respx.mock(assert_all_called=False) as router:
        route = router.post(CHAT_COMPLETIONS_URL).mock(side_effect=answers)
        op = operator(rows=[{"name": "a"}], on_row_error="skip")
        rows = op.execute(context())
    assert ([row["status"] for row in rows], route.call_count) == ([status], requests)
    assert op.minimax_spend.resends == (1 if resend else 0)
    assert ("1 chat request(s) resent after a lost answer" in op.minimax_spend.summary()) is resend
