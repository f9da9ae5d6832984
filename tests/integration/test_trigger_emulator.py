"""MiniMaxTaskTrigger really running against the emulator: results, coalescing, restarts, faults.

The emulator counts submit attempts per taskUUID: the trigger only polls, so every count stays 1.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.results import TasksOutcome
from airflow_provider_minimax.testing.emulator import FAIL_MARKER, EmulatorConfig, EmulatorHandle
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

FAST = {"poll_interval": 0.02, "max_poll_interval": 0.05}


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(async_latency=0.15)


def submit(prompts: list[str], number_results: int = 1) -> list[str]:
    hook = MiniMaxHook()
    tasks = [
        hook.new_text_inference(p, delivery_method="async", number_results=number_results) for p in prompts
    ]
    assert not hook.submit_tasks(tasks).errors
    hook.close()
    return [task.task_uuid for task in tasks]


def trigger(uuids: list[str], seconds: float = 30, **kwargs: object) -> MiniMaxTaskTrigger:
    return MiniMaxTaskTrigger(uuids, end_time=time.time() + seconds, **{**FAST, **kwargs})  # type: ignore[arg-type]


async def run(t: MiniMaxTaskTrigger) -> TasksOutcome:
    events = [TasksOutcome.model_validate(event.payload) async for event in t.run()]
    assert len(events) == 1
    return events[0]


async def test_many_triggers_in_one_loop_finish_with_few_shared_requests(minimax_connection: EmulatorHandle):
    uuids = submit([f"prompt {i}" for i in range(30)])
    outcomes = await asyncio.gather(*(run(trigger([u])) for u in uuids))
    assert [o.status for o in outcomes] == ["success"] * 30
    assert all(o.results[u][0].text for o, u in zip(outcomes, uuids, strict=True))
    stats = minimax_connection.stats()
    assert stats["poll_requests"] < len(uuids)  # one trigger alone would poll at least once each
    assert set(stats["submissions"].values()) == {1}


async def test_a_failed_task_and_several_results_come_back_in_one_event(minimax_connection):
    ok, bad = submit(["fine", f"please {FAIL_MARKER}"])
    (many,) = submit(["three answers"], number_results=3)
    outcome = await run(trigger([ok, bad]))
    assert outcome.status == "success" and list(outcome.results) == [ok] and bad in outcome.errors
    outcome = await run(trigger([many], number_results=3))
    assert [r.result_index for r in outcome.results[many]] == [0, 1, 2]


async def test_a_triggerer_restart_mid_poll_rebuilds_from_serialize_and_never_resubmits(minimax_connection):
    minimax_connection.config.async_latency = 0.4
    uuids = submit(["survive a restart", "and another"])
    first = trigger(uuids)
    running = asyncio.create_task(run(first))
    while minimax_connection.stats()["poll_requests"] == 0:
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    _, kwargs = first.serialize()
    outcome = await run(MiniMaxTaskTrigger(**kwargs))  # type: ignore[arg-type]
    assert outcome.status == "success" and set(outcome.results) == set(uuids)
    assert minimax_connection.stats()["submissions"] == dict.fromkeys(uuids, 1)


async def test_two_copies_at_once_are_harmless(minimax_connection):
    uuids = submit(["redistributed"])
    first, second = await asyncio.gather(run(trigger(uuids)), run(trigger(uuids)))
    assert first.status == second.status == "success"
    assert first.results == second.results
    assert minimax_connection.stats()["submissions"] == dict.fromkeys(uuids, 1)


async def test_a_burst_of_503s_on_polls_is_survived(minimax_connection, fake_sleep):
    uuids = submit(["flaky"])
    minimax_connection.faults.http_error(503, count=3, task_type="getResponse")
    outcome = await run(trigger(uuids))
    assert outcome.status == "success"


async def test_the_deadline_gives_a_timeout_event_with_the_pending_task(minimax_connection):
    minimax_connection.config.async_latency = 30
    uuids = submit(["slow"])
    outcome = await run(trigger(uuids, seconds=0.2))
    assert outcome.status == "timeout" and outcome.pending == uuids
