"""The pure polling pieces (cadence, classification) and the worker-side waiter, at wire level."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from fake_sleep import FakeSleep
from hook_testlib import TASK_URL, make_hook, task_result, v4

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.models import TaskResult
from airflow_provider_minimax.poll_cadence import check_cadence, progress_delay
from airflow_provider_minimax.polling import wait_for_tasks
from airflow_provider_minimax.results import TaskBatchResult, TasksOutcome
from airflow_provider_minimax.task_progress import (
    TaskProgress,
    classify,
    group_batch,
    normalise_task_uuids,
    sample_of,
    task_state,
)

A, B = v4(1), v4(2)


def processing(task_uuid: str, **fields: Any) -> dict[str, Any]:
    return {"taskType": "textInference", "taskUUID": task_uuid, "status": "processing", **fields}


def success(task_uuid: str, index: int = 0, text: str = "hello") -> dict[str, Any]:
    return task_result(task_uuid, text, status="success", resultIndex=index)


def failed(task_uuid: str, code: str = "inferenceError") -> dict[str, Any]:
    error = {"code": code, "message": "boom"}
    return {"taskType": "textInference", "taskUUID": task_uuid, "status": "error", "error": error}


# ------------------------------------------------------------------------------------ cadence


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "last_wait", "expected"),
    [
        (0, 10, 1.0, 1.0, 1.5),  # nothing finished yet: the x1.5 back-off
        (0, 10, 9.0, 8.0, 10.0),  # ... capped
        (5, 10, 5.0, 1.0, 5.0),  # 1 task/s, 5 left: poll when they should be done
        (2, 10, 2.0, 1.0, 2.0),  # ... and no further ahead than the rate was seen over
        (10, 100, 20.0, 1.0, 10.0),  # ... never later than the cap
        (9, 10, 9.0, 2.0, 1.0),  # due within one poll_interval, tasks still finishing: poll after one
        (9, 10, 9.0, 1.5, 1.0),  # ... however long the last wait was
    ],
)
def test_progress_delay_polls_when_the_observed_rate_says_the_rest_is_done(
    done, total, elapsed, last_wait, expected
):
    uuids = [v4(i) for i in range(total)]
    progress = TaskProgress(uuids)
    progress.pending, progress.progressed = uuids[done:], True
    assert progress_delay(progress, elapsed, last_wait, 1.0, 10.0) == pytest.approx(expected)


def test_progress_delay_backs_off_for_stragglers_once_a_poll_finds_nothing_new():
    uuids = [v4(i) for i in range(10)]
    progress = TaskProgress(uuids)
    progress.pending, progress.progressed = uuids[9:], False
    assert progress_delay(progress, 9.0, 1.0, 1.0, 10.0) == pytest.approx(1.5)
    assert progress_delay(progress, 9.0, 1.5, 1.0, 10.0) == pytest.approx(2.25)


@pytest.mark.parametrize(
    ("poll_interval", "cap", "number_results", "message"),
    [
        (0.0, 10.0, 1, r"poll_interval: .*greater than 0"),
        (-1.0, 10.0, 1, r"poll_interval: .*greater than 0"),
        (5.0, 1.0, 1, r"max_poll_interval: .*must be >= poll_interval \(5.0\) \(got 1.0\)"),
        (1.0, 10.0, 0, r"number_results: .*greater than or equal to 1"),
        (1.0, 10.0, 5, r"number_results: .*less than or equal to 4"),
        (True, 10.0, 1, r"poll_interval: .*not a boolean"),
        ("1", 10.0, 1, r"poll_interval: .*valid number"),
    ],
)
def test_check_cadence_refuses_busy_loops_and_bad_bounds(poll_interval, cap, number_results, message):
    with pytest.raises(MiniMaxValidationError, match=message):
        check_cadence(poll_interval, cap, number_results)


# ------------------------------------------------------------------------------------ classification


def _state(items: list[dict[str, Any]], errors: list[dict[str, Any]] | None = None, number_results: int = 1):
    batch = TaskBatchResult.model_validate({"results": items, "errors": errors or []})
    return task_state(A, group_batch(batch).get(A), number_results)


@pytest.mark.parametrize(
    ("items", "errors", "number_results", "expected"),
    [
        ([success(A)], None, 1, "finished"),
        ([processing(A)], None, 1, "running"),
        ([processing(A, status="pending")], None, 1, "running"),
        ([processing(A, status="queued", progress=40)], None, 1, "running"),
        ([], None, 1, "running"),
        ([success(B)], None, 1, "running"),
        ([success(A, 0)], None, 2, "running"),
        ([success(A, 0), success(A, 0)], None, 2, "running"),
        ([success(A, 1), success(A, 0)], None, 2, "finished"),
        ([failed(A)], None, 1, "failed"),
        ([], [{"code": "taskFailedOrNotFound", "message": "gone", "taskUUID": A}], 1, "failed"),
        ([success(A, 0), failed(A)], None, 2, "failed"),
        ([success(A, 0), success(A, 1)], [{"code": "late", "taskUUID": A}], 2, "finished"),
    ],
)
def test_task_state_table(items, errors, number_results, expected):
    results, error = _state(items, errors, number_results)
    state = "finished" if results is not None else ("failed" if error is not None else "running")
    assert state == expected
    if results is not None:
        assert [r.result_index or 0 for r in results] == list(range(number_results))
    if error is not None:
        assert error.task_uuid == A


def test_classify_splits_finished_failed_and_running():
    batch = TaskBatchResult.model_validate({"results": [success(A), failed(B)]})
    c = v4(3)
    results, errors, pending = classify(batch, [A, B, c])
    assert list(results) == [A] and results[A][0].text == "hello"
    assert errors[B].code == "inferenceError"
    assert pending == [c]


def test_uuids_are_checked_and_spelled_as_the_api_echoes_them():
    assert normalise_task_uuids([A.upper(), A, B]) == [A, B]
    with pytest.raises(MiniMaxValidationError, match="not-a-uuid"):
        normalise_task_uuids(["not-a-uuid"])


# ------------------------------------------------------------------------------------ worker waiter


class Clock:
    """An epoch clock that only moves when the provider sleeps (it stands in for ``time.sleep``).

    :param monkeypatch: restores ``time.sleep`` afterwards.
    :param then: called after each wait, e.g. to finish tasks upstream.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, then: Callable[[], None] | None = None) -> None:
        self.now = 1_000_000.0
        self.waits: list[float] = []
        self._then = then
        FakeSleep(on_wait=self.sleep).install(monkeypatch)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self._then is not None:
            self._then()


def answers(*bodies: dict[str, Any] | int) -> list[httpx.Response]:
    return [
        httpx.Response(b, json={"errors": [{"code": "providerUnavailable"}]})
        if isinstance(b, int)
        else httpx.Response(200, json=b)
        for b in bodies
    ]


def polled_uuids(route: respx.Route) -> list[list[str]]:
    return [[t["taskUUID"] for t in json.loads(call.request.content)] for call in route.calls]


@respx.mock
def test_worker_waiter_polls_at_the_cadence_and_returns_the_trigger_shape(monkeypatch):
    hook, _ = make_hook(monkeypatch)
    route = respx.post(TASK_URL).mock(
        side_effect=answers(
            {"data": [processing(A), processing(B)]},
            {"data": [success(A), processing(B)]},
            {"data": [success(B)]},
        )
    )
    clock = Clock(monkeypatch)
    outcome = wait_for_tasks(hook, [A, B], end_time=clock.now + 60, clock=lambda: clock.now)
    assert isinstance(outcome, TasksOutcome) and outcome.status == "success"
    assert clock.waits == [1.0, 1.5, 2.5]  # B should be done 2.5 s after A: one task in 2.5 s
    assert polled_uuids(route) == [[A, B], [A, B], [B]]  # finished tasks are not polled again
    assert TasksOutcome.model_validate(outcome.to_event()).results[B][0].text == "hello"


@respx.mock
def test_worker_waiter_times_out_at_the_deadline_naming_the_pending_tasks(monkeypatch):
    hook, _ = make_hook(monkeypatch)
    respx.post(TASK_URL).mock(return_value=httpx.Response(200, json={"data": [processing(A)]}))
    clock = Clock(monkeypatch)
    outcome = wait_for_tasks(hook, [A], end_time=clock.now + 3, clock=lambda: clock.now)
    assert outcome.status == "timeout" and outcome.pending == [A]
    assert A in (outcome.message or "")
    assert sum(clock.waits) == pytest.approx(3.0)


@respx.mock
def test_worker_waiter_survives_a_transient_burst_within_budget(monkeypatch):
    hook, _ = make_hook(monkeypatch, max_retries=0)
    respx.post(TASK_URL).mock(side_effect=answers(503, 503, {"data": [success(A)]}))
    clock = Clock(monkeypatch)
    outcome = wait_for_tasks(
        hook,
        [A],
        end_time=clock.now + 60,
        max_consecutive_failures=3,
        clock=lambda: clock.now,
    )
    assert outcome.status == "success"


@pytest.mark.parametrize(
    ("replies", "budget", "polls", "code", "status_code"),
    [
        ([503, 503, 503], 3, 3, "providerUnavailable", 503),
        (
            [httpx.Response(401, json={"errors": [{"code": "invalidApiKey", "message": "no"}]})],
            5,
            1,
            "invalidApiKey",
            401,
        ),
    ],
)
@respx.mock
def test_worker_waiter_gives_up_after_the_budget_or_at_once_on_auth(
    monkeypatch, replies, budget, polls, code, status_code
):
    hook, _ = make_hook(monkeypatch, max_retries=0)
    route = respx.post(TASK_URL).mock(
        side_effect=[r if isinstance(r, httpx.Response) else answers(r)[0] for r in replies]
    )
    clock = Clock(monkeypatch)
    outcome = wait_for_tasks(
        hook,
        [A],
        end_time=clock.now + 60,
        max_consecutive_failures=budget,
        clock=lambda: clock.now,
    )
    assert outcome.status == "error" and route.call_count == polls
    assert outcome.code == code and outcome.status_code == status_code
    assert "sk-SECRET" not in json.dumps(outcome.to_event())


def test_task_result_model_round_trips_through_the_event():
    item = TaskResult.model_validate(success(A))
    event = TasksOutcome(status="success", task_uuids=[A], results={A: [item]}).to_event()
    assert event["results"][A][0]["taskUUID"] == A


def test_normalised_uuids_reuse_the_callers_strings_when_already_canonical():
    canonical = v4(1)
    upper = v4(2).upper()
    normalised = normalise_task_uuids([canonical, upper])
    assert normalised[0] is canonical  # one copy in memory, not two
    assert normalised[1] == v4(2)


def test_progress_delay_predicts_from_an_estimated_pending_count():
    uuids = [v4(i) for i in range(10)]
    progress = TaskProgress(uuids)
    progress.progressed = True  # a sample saw tasks finish; none of them is known finished yet
    assert progress_delay(progress, 5.0, 1.0, 1.0, 10.0, pending=5) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("pending", "size", "expected"),
    [
        (6, 2, [0, 3]),  # every third: spread over the submission order
        (7, 2, [0, 4]),
        (2, 2, [0, 1]),  # they fit: all of them
        (0, 2, []),
    ],
)
def test_sample_of_spreads_at_most_one_request_over_the_pending_tasks(pending, size, expected):
    uuids = [v4(i) for i in range(pending)]
    assert sample_of(uuids, size) == [uuids[i] for i in expected]


def upstream(finished: set[str]) -> Any:
    """A getResponse server: the tasks in ``finished`` succeeded, every other one is processing."""

    def answer(request: httpx.Request) -> httpx.Response:
        asked = [t["taskUUID"] for t in json.loads(request.content)]
        data = [success(u) if u in finished else processing(u) for u in asked]
        return httpx.Response(200, json={"data": data})

    return answer


@respx.mock
def test_worker_waiter_polls_only_a_sample_while_most_tasks_still_run(monkeypatch):
    hook, _ = make_hook(monkeypatch, max_tasks_per_request=2)
    uuids = [v4(i) for i in range(6)]
    route = respx.post(TASK_URL).mock(side_effect=upstream(set()))
    clock = Clock(monkeypatch)
    outcome = wait_for_tasks(hook, uuids, end_time=clock.now + 1.5, clock=lambda: clock.now)
    assert outcome.status == "timeout"
    assert polled_uuids(route) == [[uuids[0], uuids[3]]]  # one request, not three


@respx.mock
def test_worker_waiter_polls_the_rest_in_the_same_tick_once_the_sample_finished(monkeypatch):
    hook, _ = make_hook(monkeypatch, max_tasks_per_request=2)
    uuids = [v4(i) for i in range(6)]
    route = respx.post(TASK_URL).mock(side_effect=upstream(set(uuids)))
    clock = Clock(monkeypatch)
    outcome = wait_for_tasks(hook, uuids, end_time=clock.now + 60, clock=lambda: clock.now)
    assert outcome.status == "success" and sorted(outcome.results) == sorted(uuids)
    assert clock.waits == [1.0]
    assert polled_uuids(route) == [[uuids[0], uuids[3]], [uuids[1], uuids[2]], [uuids[4], uuids[5]]]


@respx.mock
def test_worker_waiter_measures_the_rate_again_before_trusting_a_long_prediction(monkeypatch):
    hook, _ = make_hook(monkeypatch)
    uuids = [v4(i) for i in range(4)]
    finished = {uuids[0]}
    respx.post(TASK_URL).mock(side_effect=upstream(finished))

    def finish_the_rest() -> None:
        if len(clock.waits) == 2:
            finished.update(uuids)

    clock = Clock(monkeypatch, then=finish_the_rest)
    outcome = wait_for_tasks(hook, uuids, end_time=clock.now + 60, clock=lambda: clock.now)
    assert outcome.status == "success"
    # One of four done after 1 s predicts the rest in 3 s; seen over 1 s, it is checked after 1 s.
    assert clock.waits == [1.0, 1.0]
