"""MiniMaxTaskTrigger: what it serializes, the one event it fires, restarts and duplicates (respx)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hook_testlib import CONN_ID, SECRET_KEY, v4
from poll_testlib import FAST, PollApi, mocked_poll_api

from airflow_provider_minimax.results import TasksOutcome
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger
from airflow_provider_minimax.triggers.poller import TaskPoller

CLASSPATH = "airflow_provider_minimax.triggers.minimax.MiniMaxTaskTrigger"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[PollApi]:
    yield from mocked_poll_api(monkeypatch)


def make(uuids: list[str] | None = None, *, seconds: float = 30, **kwargs: Any) -> MiniMaxTaskTrigger:
    return MiniMaxTaskTrigger(
        uuids or [v4(1)], conn_id=CONN_ID, end_time=time.time() + seconds, **{**FAST, **kwargs}
    )


async def events_of(trigger: MiniMaxTaskTrigger) -> list[TasksOutcome]:
    """Consume the trigger as the triggerer does and read its events."""
    return [TasksOutcome.model_validate(event.payload) async for event in trigger.run()]


def test_serialize_holds_only_ids_and_timing_and_round_trips():
    trigger = MiniMaxTaskTrigger([v4(1), v4(2)], conn_id=CONN_ID, end_time=1_900_000_000.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "task_uuids": [v4(1), v4(2)],
        "conn_id": CONN_ID,
        "end_time": 1_900_000_000.5,
        "poll_interval": 1.0,
        "max_poll_interval": 10.0,
        "number_results": 1,
        "max_consecutive_failures": 5,
        "results_in_event": True,
        "not_found_until": None,
    }
    assert MiniMaxTaskTrigger(**kwargs).serialize() == (classpath, kwargs)
    json.dumps(kwargs)  # plain JSON, nothing secret to leak


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_uuids": []},
        {"task_uuids": v4(1)},
        {"poll_interval": 0},
        {"poll_interval": 5, "max_poll_interval": 1},
        {"number_results": 5},
        {"max_consecutive_failures": 0},
    ],
)
def test_bad_arguments_fail_in_the_worker_before_deferring(kwargs):
    with pytest.raises(ValueError):
        MiniMaxTaskTrigger(**{"task_uuids": [v4(1)], "end_time": time.time() + 5, **kwargs})


async def test_one_success_event_carries_every_result(api):
    events = await events_of(make([v4(1), v4(2)]))
    assert len(events) == 1
    outcome = events[0]
    assert outcome.status == "success" and outcome.task_uuids == [v4(1), v4(2)]
    assert {u: r[0].text for u, r in outcome.results.items()} == {v4(1): "hello", v4(2): "hello"}


async def test_a_task_failure_is_inside_a_success_event(api):
    api.task_errors[v4(2)] = "contentPolicyViolation"
    (outcome,) = await events_of(make([v4(1), v4(2)]))
    assert outcome.status == "success" and list(outcome.results) == [v4(1)]
    assert outcome.errors[v4(2)].code == "contentPolicyViolation"


async def test_the_deadline_fires_a_timeout_event_naming_pending_tasks(api):
    api.finish_after = 1000
    (outcome,) = await events_of(make([v4(1)], seconds=0.1))
    assert outcome.status == "timeout" and outcome.pending == [v4(1)]
    assert v4(1) in (outcome.message or "")


async def test_a_deadline_already_past_times_out_without_polling(api):
    (outcome,) = await events_of(make([v4(1)], seconds=-5))
    assert outcome.status == "timeout" and api.requests == []


async def test_an_auth_error_fires_an_error_event_at_once_without_the_key(api):
    api.fail_next = [
        httpx.Response(401, json={"errors": [{"code": "invalidApiKey", "message": "bad key"}]})
    ] * 2
    (outcome,) = await events_of(make())
    assert outcome.status == "error" and outcome.code == "invalidApiKey" and outcome.status_code == 401
    assert SECRET_KEY not in json.dumps(outcome.to_event())


async def test_a_transient_burst_within_budget_is_survived(api):
    api.fail_next = [httpx.Response(503)] * 2
    (outcome,) = await events_of(make(max_consecutive_failures=3))
    assert outcome.status == "success"


async def test_a_restart_mid_poll_just_unregisters_and_the_rebuilt_trigger_finishes(api):
    api.finish_after = 3
    trigger = make([v4(1)])
    first = asyncio.create_task(events_of(trigger))
    while not api.requests:
        await asyncio.sleep(0.005)
    first.cancel()  # the triggerer stops: the trigger is cancelled mid-poll
    with pytest.raises(asyncio.CancelledError):
        await first
    assert TaskPoller._shared == {}  # unregistered; the poller stopped with its last waiter
    classpath, kwargs = trigger.serialize()
    (outcome,) = await events_of(MiniMaxTaskTrigger(**kwargs))
    assert classpath == CLASSPATH and outcome.status == "success"


async def test_two_copies_at_once_both_succeed(api):
    first, second = await asyncio.gather(events_of(make([v4(1)])), events_of(make([v4(1)])))
    assert first[0].status == second[0].status == "success"
    assert all(r == [v4(1)] for r in api.requests)  # a shared UUID is polled once per request


async def test_without_sharing_each_trigger_polls_on_its_own(api, monkeypatch):
    monkeypatch.setattr(MiniMaxTaskTrigger, "shared_polling", False)
    await asyncio.gather(*(events_of(make([v4(i)])) for i in range(3)))
    assert sorted(len(r) for r in api.requests) == [1] * len(api.requests)
    assert TaskPoller._shared == {}


async def test_on_kill_names_the_tasks_left_running(capsys):
    await make([v4(1)]).on_kill()
    logged = capsys.readouterr().out
    assert v4(1) in logged and "no cancel" in logged


@pytest.mark.parametrize("finish", [True, False])
async def test_without_results_in_event_the_event_stays_small_whatever_the_tasks(api, finish):
    api.finish_after = 1 if finish else 10_000
    uuids = [v4(i) for i in range(300)]
    (outcome,) = await events_of(make(uuids, seconds=30 if finish else 0.05, results_in_event=False))
    assert outcome.status == ("success" if finish else "timeout")
    assert (outcome.task_uuids, outcome.results, outcome.errors, outcome.pending) == ([], {}, {}, [])
    assert len(json.dumps(outcome.to_event())) < 2000  # 300 UUIDs alone would be 12 KB


async def test_not_found_within_the_grace_is_pending(api):
    api.not_found_polls = 2  # accepted, but not visible to getResponse for two polls
    (outcome,) = await events_of(make(not_found_until=time.time() + 60))
    assert outcome.status == "success" and not outcome.errors


async def test_not_found_past_the_grace_is_the_tasks_failure(api):
    api.not_found_polls = 2
    (outcome,) = await events_of(make(not_found_until=time.time() - 1))
    assert outcome.errors[v4(1)].code == "taskFailedOrNotFound"


async def test_the_grace_survives_a_restart_as_an_epoch(api):
    api.not_found_polls = 2
    _, kwargs = make(not_found_until=time.time() + 60).serialize()
    (outcome,) = await events_of(MiniMaxTaskTrigger(**kwargs))  # rebuilt by another triggerer
    assert outcome.status == "success"


async def test_an_omitted_uuid_stays_pending_until_the_deadline(api):
    api.omit = {v4(1)}
    (outcome,) = await events_of(make(seconds=0.1))
    assert outcome.status == "timeout" and outcome.pending == [v4(1)]
