"""Load: 1,000 deferred tasks' triggers in one event loop while the server refuses 20 % of polls
with 429 and 5 % with 503. Every trigger must end with its own result: none lost, none paid twice.

The largest event-loop lag and the traced memory per trigger are printed in the summary, never
asserted (the machine is shared and noisy).
"""

from __future__ import annotations

import asyncio
import random
import time
import tracemalloc
from collections import Counter

from campaign_figures import FIGURES
from campaign_paths import TASK_CONN, first_event, rebuilt
from hostile_server import Fault, HostileServer

from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.polling import outcome_from_event
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

TASKS = 1000
P429, P503 = 0.20, 0.05


def submit_all(prompts: list[str]) -> list[str]:
    """Submit every task with async delivery, as each deferrable operator does before deferring."""
    with MiniMaxHook(TASK_CONN) as hook:
        tasks = [hook.new_text_inference(prompt, delivery_method="async") for prompt in prompts]
        outcome = hook.submit_tasks(tasks)
    assert not outcome.errors
    return [task.task_uuid for task in tasks]


async def measure_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late the loop wakes a 10 ms sleeper: what every other trigger in the triggerer would feel."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - started - 0.01)


async def test_a_thousand_triggers_under_429_and_503(hostile: HostileServer, short_sleeps: None) -> None:
    prompts = [f"load-{i}" for i in range(TASKS)]
    uuids = await asyncio.to_thread(submit_all, prompts)
    injected: Counter[int] = Counter()
    hostile.fault = Fault(
        "random_errors",
        None,
        on="poll",
        params={"rng": random.Random(7), "p429": P429, "p503": P503, "injected": injected},
    )
    triggers = [
        rebuilt(
            MiniMaxTaskTrigger(
                [task_uuid],
                conn_id=TASK_CONN,
                end_time=time.time() + 120,
                poll_interval=0.05,
                max_poll_interval=0.5,
            )
        )
        for task_uuid in uuids
    ]
    stop, lags = asyncio.Event(), []
    lag_task = asyncio.ensure_future(measure_lag(stop, lags))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    events = await asyncio.gather(*(first_event(trigger) for trigger in triggers))
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    stop.set()
    await lag_task

    statuses = [event["status"] for event in events]
    outcomes = [outcome_from_event(event) for event in events]
    # Delivered means: this trigger's event holds this task's own answer.
    lost = sum(
        1
        for task_uuid, prompt, outcome in zip(uuids, prompts, outcomes, strict=True)
        if [r.text for r in outcome.results.get(task_uuid, [])] != [f"answer to {prompt}"]
    )
    duplicates = sum(n - 1 for n in hostile.paid.values() if n > 1)
    FIGURES.sections["Load (1,000 triggers, 20 % 429 + 5 % 503)"] = {
        "completed": f"{statuses.count('success')}/{TASKS}",
        "lost": str(lost),
        "duplicates": str(duplicates),
        "requests": f"{hostile.requests} ({injected[429]} answered 429, {injected[503]} answered 503)",
        "wall": f"{elapsed:.1f} s",
        "largest loop lag": f"{max(lags) * 1000:.0f} ms",
        "traced memory per trigger (peak)": f"{peak / TASKS / 1024:.1f} KiB",
    }
    assert lost == 0, sorted(set(statuses))
    assert duplicates == 0
    assert injected[429] and injected[503], "the faults must have struck"
