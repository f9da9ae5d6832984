"""MiniMaxTaskSensor: poke, deferral and resume paths, the XCom shape and soft_fail (respx)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)
from hook_testlib import CONN_ID, TASK_URL, set_connection, task_result, v4

from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxConfigurationError,
    MiniMaxError,
    MiniMaxTaskFailedError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.models import TaskResult
from airflow_provider_minimax.results import TasksOutcome, result_json
from airflow_provider_minimax.sensors.minimax import (
    MiniMaxSensorTasksFailedError,
    MiniMaxTaskSensor,
    parse_task_uuids,
)
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

A, B = v4(1), v4(2)
PROCESSING = {"taskType": "textInference", "status": "processing"}
FAILED = {
    "taskType": "textInference",
    "status": "error",
    "error": {"code": "inferenceError", "message": "boom"},
}

#: The usage counters the fake API does not send: null, never 0.
NO_DETAILS = {"thinking_tokens": None, "cached_tokens": None, "reasoning_tokens": None}


def done(task_uuid: str, index: int = 0, text: str = "hello") -> dict[str, Any]:
    return task_result(task_uuid, text, status="success", resultIndex=index)


def sensor(**kwargs: Any) -> MiniMaxTaskSensor:
    return MiniMaxTaskSensor(**{"task_id": "wait", "task_uuids": [A, B], "conn_id": CONN_ID, **kwargs})


@pytest.fixture
def task_api(monkeypatch: pytest.MonkeyPatch) -> Any:
    set_connection(monkeypatch, max_retries=0)
    with respx.mock(assert_all_called=False) as router:
        yield router.post(TASK_URL)


def answer(*items: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"data": list(items)})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([A, B], [A, B]),
        (A, [A]),
        (f"{A}, {B}", [A, B]),
        (f'["{A}", "{B}"]', [A, B]),
        (f"['{A}', '{B}']", [A, B]),
    ],
)
def test_task_uuids_accept_the_forms_a_template_renders(value, expected):
    assert parse_task_uuids(value) == expected


@pytest.mark.parametrize(
    "rendered", ["[oops", f'["{A}"', "[a, b]", f"['{A}'] + ['{B}']", "[" * 5000, "[]", " "]
)
@pytest.mark.parametrize("deferrable", [True, False])
def test_a_task_uuids_template_rendered_broken_is_refused_before_any_http_call(
    task_api: Any, rendered: str, deferrable: bool
) -> None:
    with pytest.raises(MiniMaxValidationError, match="task_uuids") as err:
        sensor(task_uuids=rendered, deferrable=deferrable).execute({})
    assert err.value.parameter == "task_uuids"
    assert not task_api.called


def test_task_uuids_and_conn_id_are_templated():
    assert set(MiniMaxTaskSensor.template_fields) == {"task_uuids", "conn_id"}


def test_poke_is_false_while_a_task_runs(task_api):
    task_api.mock(return_value=answer(done(A), {"taskUUID": B, **PROCESSING}))
    assert sensor().poke({}) is False


def test_poke_returns_the_results_as_plain_json(task_api):
    task_api.mock(return_value=answer(done(A, text="one"), done(B, text="two")))
    poked = sensor().poke({})
    assert isinstance(poked, PokeReturnValue) and poked.is_done
    assert poked.xcom_value == {
        A: {
            "task_uuid": A,
            "text": "one",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, **NO_DETAILS},
            "cost": 0.0012,
        },
        B: {**poked.xcom_value[A], "task_uuid": B, "text": "two"},
    }


def test_several_results_per_task_give_lists_with_summed_usage_and_cost():
    items = [TaskResult.model_validate(done(A, i, f"<think>hm</think>t{i}")) for i in range(2)]
    shaped = result_json(A, items, number_results=2)
    assert shaped["text"] == ["t0", "t1"] and shaped["finish_reason"] == ["stop", "stop"]
    assert shaped["usage"]["total_tokens"] == 16 and shaped["cost"] == pytest.approx(0.0024)


def test_poke_mode_fails_naming_the_task_and_the_api_code(task_api):
    task_api.mock(return_value=answer(done(A), {"taskUUID": B, **FAILED}))
    with pytest.raises(MiniMaxSensorTasksFailedError, match=f"{B}: inferenceError") as raised:
        sensor().execute({})
    assert isinstance(raised.value, MiniMaxTaskFailedError)
    assert raised.value.task_uuids == [B] and raised.value.code == "inferenceError"


def test_poke_mode_soft_fail_skips_on_a_failed_task(task_api):
    task_api.mock(return_value=answer(done(A), {"taskUUID": B, **FAILED}))
    with pytest.raises(AirflowSkipException):
        sensor(soft_fail=True).execute({})


def test_deferrable_returns_at_once_when_everything_already_finished(task_api):
    task_api.mock(return_value=answer(done(A), done(B)))
    assert set(sensor(deferrable=True).execute({})) == {A, B}


def test_deferrable_defers_to_the_trigger_with_the_sensor_timeout_as_deadline(task_api):
    task_api.mock(return_value=answer(done(A), {"taskUUID": B, **PROCESSING}))
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, timeout=600, poll_interval=2, max_poll_interval=20, number_results=1).execute(
            {}
        )
    trigger = deferred.value.trigger
    assert isinstance(trigger, MiniMaxTaskTrigger) and deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["task_uuids"] == [A, B] and kwargs["conn_id"] == CONN_ID
    assert (kwargs["poll_interval"], kwargs["max_poll_interval"]) == (2, 20)
    assert before + 600 <= kwargs["end_time"] <= time.time() + 600


def test_deferrable_soft_fail_skips_when_the_first_check_finds_a_failure(task_api):
    task_api.mock(return_value=answer(done(A), {"taskUUID": B, **FAILED}))
    with pytest.raises(AirflowSkipException):
        sensor(deferrable=True, soft_fail=True).execute({})


def outcome(status: str, **fields: Any) -> dict[str, Any]:
    return TasksOutcome(status=status, task_uuids=[A, B], **fields).to_event()


def test_execute_complete_returns_the_results():
    results = {u: [TaskResult.model_validate(done(u))] for u in (A, B)}
    assert set(sensor().execute_complete({}, outcome("success", results=results))) == {A, B}


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            outcome("success", errors={B: {"code": "inferenceError", "taskUUID": B}}),
            MiniMaxSensorTasksFailedError,
        ),
        (outcome("timeout", pending=[B], message=f"still running: {B}"), AirflowSensorTimeout),
        (outcome("error", message="key revoked", code="invalidApiKey", status_code=401), MiniMaxAuthError),
        ({"status": "done", "whatever": 1}, MiniMaxError),
    ],
)
def test_execute_complete_raises_what_the_event_says(event, error):
    with pytest.raises(error):
        sensor().execute_complete({}, event)


def test_resume_with_soft_fail_skips_a_timeout():
    event = outcome("timeout", pending=[B], message="late")
    with pytest.raises(AirflowSkipException):
        sensor(soft_fail=True).resume_execution("execute_complete", {"event": event}, {})


def test_a_bare_uuid_string_is_one_uuid_on_the_wire(task_api):
    task_api.mock(return_value=answer(done(A)))
    poked = sensor(task_uuids=A).poke({})
    assert isinstance(poked, PokeReturnValue) and set(poked.xcom_value) == {A}
    assert json.loads(task_api.calls.last.request.content) == [{"taskType": "getResponse", "taskUUID": A}]


@pytest.mark.parametrize("deferrable", [True, False])
def test_a_chat_connection_is_refused_naming_the_api_needed(task_api, monkeypatch, deferrable):
    set_connection(monkeypatch, api="chat")
    with pytest.raises(MiniMaxConfigurationError, match="needs a connection on the task API"):
        sensor(deferrable=deferrable).execute({})
    assert not task_api.calls


def test_not_found_within_the_grace_is_pending(task_api):
    task_api.mock(return_value=not_found(A, B))
    assert sensor().poke({}) is False


def test_not_found_past_the_grace_fails_naming_the_tasks(task_api):
    task_api.mock(return_value=not_found(A, B))
    with pytest.raises(MiniMaxSensorTasksFailedError, match="taskFailedOrNotFound"):
        sensor(not_found_grace=0).poke({})


def test_the_deferral_carries_the_grace_from_the_first_poke(task_api):
    task_api.mock(return_value=not_found(A, B))
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, not_found_grace=timedelta(minutes=1)).execute({})
    until = deferred.value.trigger.serialize()[1]["not_found_until"]
    assert before + 60 <= until <= time.time() + 60


@pytest.mark.parametrize("grace", [-1, True, "soon"])
def test_a_bad_grace_is_refused_naming_the_field(grace):
    with pytest.raises(MiniMaxValidationError, match="not_found_grace"):
        sensor(not_found_grace=grace)


def not_found(*uuids: str) -> httpx.Response:
    errors = [{"code": "taskFailedOrNotFound", "message": "not found", "taskUUID": u} for u in uuids]
    return httpx.Response(400, json={"errors": errors})


def test_the_old_error_name_still_works_with_a_deprecation_warning() -> None:
    from airflow.exceptions import AirflowProviderDeprecationWarning

    from airflow_provider_minimax.sensors import minimax

    with pytest.warns(AirflowProviderDeprecationWarning, match="MiniMaxSensorTasksFailedError"):
        assert minimax.MiniMaxTasksFailedError is MiniMaxSensorTasksFailedError
