"""MiniMaxTextInferenceOperator end to end against the emulator, with the real trigger running.

Each test proves the never-pay-twice guarantee by the emulator's own count of submit attempts
per taskUUID (``state.submissions``, refused attempts included).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.triggers.base import BaseTrigger

from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.testing.emulator import EmulatorConfig, EmulatorHandle
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

DEFAULTS = {
    "prompt": "Name a fjord",
    "deferrable": True,
    "seed": 7,
    "poll_interval": 0.05,
    "max_poll_interval": 0.2,
}


class StateStore:
    """Airflow 3.3's ``task_state_store`` as the worker sees it: JSON values per task instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = json.dumps(value)


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(async_latency=0.3)


@pytest.fixture
def emulator(minimax_connection: EmulatorHandle) -> EmulatorHandle:
    return minimax_connection


def make_context(store: StateStore | None) -> dict[str, Any]:
    ti = type("TI", (), {"dag_id": "it", "task_id": "ask", "run_id": "run-1", "map_index": -1})()
    return {"ti": ti} if store is None else {"ti": ti, "task_state_store": store}


def make_operator(**kwargs: Any) -> MiniMaxTextInferenceOperator:
    return MiniMaxTextInferenceOperator(task_id="ask", **{**DEFAULTS, **kwargs})


def rebuilt(trigger: BaseTrigger) -> MiniMaxTaskTrigger:
    """The trigger as a triggerer builds it: from its serialized form only."""
    path, kwargs = trigger.serialize()
    assert path.endswith("MiniMaxTaskTrigger")
    return MiniMaxTaskTrigger(**json.loads(json.dumps(kwargs)))


async def first_event(trigger: BaseTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


async def run_to_result(context: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Execute, and while it defers run the trigger and resume, as worker + triggerer would.

    Each resume gets a fresh operator, as a worker process builds it from the DAG file.
    """
    try:
        return make_operator(**kwargs).execute(context)
    except TaskDeferred as deferred:
        pending = deferred
    while True:
        event = await first_event(rebuilt(pending.trigger))
        try:
            return make_operator(**kwargs).execute_complete(context, event, **(pending.kwargs or {}))
        except TaskDeferred as again:
            pending = again


def assert_paid_once(emulator: EmulatorHandle) -> None:
    assert emulator.state.submissions and max(emulator.state.submissions.values()) == 1


async def test_deferred_run_returns_the_emulators_answer(emulator: EmulatorHandle) -> None:
    result = await run_to_result(make_context(StateStore()))
    stored = emulator.state.tasks[result["task_uuid"]].results[0]
    assert result["text"] == stored["text"] and result["usage"]["total_tokens"] > 0
    assert_paid_once(emulator)


async def test_number_results_arrive_together(emulator: EmulatorHandle) -> None:
    result = await run_to_result(make_context(StateStore()), number_results=3)
    assert isinstance(result["text"], list) and len(result["text"]) == 3
    assert_paid_once(emulator)


def test_not_deferrable_waits_in_the_worker(emulator: EmulatorHandle) -> None:
    result = make_operator(deferrable=False).execute(make_context(StateStore()))
    assert result["text"] == emulator.state.tasks[result["task_uuid"]].results[0]["text"]
    assert_paid_once(emulator)


@pytest.mark.parametrize("store", [StateStore(), None], ids=["task-state-store", "no-store"])
async def test_crash_between_submit_and_defer_then_retry_submits_nothing(
    emulator: EmulatorHandle, store: StateStore | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(store)
    with monkeypatch.context() as patch:
        patch.setattr(MiniMaxTextInferenceOperator, "_defer", _worker_dies)
        with pytest.raises(SystemExit):
            make_operator().execute(context)  # try 1: submitted, then the worker died
    assert len(emulator.state.submissions) == 1
    result = await run_to_result(context)  # try 2
    assert result["task_uuid"] in emulator.state.submissions
    assert_paid_once(emulator)


def _worker_dies(*_: Any, **__: Any) -> None:
    raise SystemExit("worker killed between submit and defer")


async def test_retry_after_success_reuses_the_answer(emulator: EmulatorHandle) -> None:
    context = make_context(StateStore())
    first = await run_to_result(context)
    second = await run_to_result(context)  # e.g. a downstream-forced retry
    assert second == first
    assert_paid_once(emulator)


async def test_triggerer_restart_mid_poll_rebuilds_and_pays_once(emulator: EmulatorHandle) -> None:
    emulator.state.config.async_latency = 2.0
    context = make_context(StateStore())
    op = make_operator()
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    polls_before = emulator.state.task_type_requests["getResponse"]
    running = asyncio.ensure_future(first_event(rebuilt(info.value.trigger)))
    while emulator.state.task_type_requests["getResponse"] < polls_before + 2:  # it is polling
        assert not running.done()
        await asyncio.sleep(0.02)
    running.cancel()  # the triggerer restarts
    with pytest.raises(asyncio.CancelledError):
        await running
    event = await first_event(rebuilt(info.value.trigger))  # rebuilt from serialize() on another one
    result = make_operator().execute_complete(context, event, **(info.value.kwargs or {}))
    assert result["task_uuid"] == op.task_uuids[0]
    assert_paid_once(emulator)


async def test_two_trigger_copies_at_once_are_harmless(emulator: EmulatorHandle) -> None:
    context = make_context(StateStore())
    with pytest.raises(TaskDeferred) as info:
        make_operator().execute(context)
    events = await asyncio.gather(*(first_event(rebuilt(info.value.trigger)) for _ in range(2)))
    assert events[0] == events[1] and events[0]["status"] == "success"
    assert_paid_once(emulator)


async def test_failed_task_is_resubmitted_under_a_new_uuid_on_retry(emulator: EmulatorHandle) -> None:
    from airflow_provider_minimax.exceptions import MiniMaxTaskFailedError
    from airflow_provider_minimax.testing.emulator import FAIL_MARKER

    context = make_context(StateStore())
    with pytest.raises(MiniMaxTaskFailedError, match="inferenceError"):
        await run_to_result(context, prompt=f"Fail please {FAIL_MARKER}")
    with pytest.raises(MiniMaxTaskFailedError):
        await run_to_result(context, prompt=f"Fail please {FAIL_MARKER}")  # try 2
    assert len(emulator.state.submissions) == 2  # one new UUID per failed try, each paid once
    assert_paid_once(emulator)
