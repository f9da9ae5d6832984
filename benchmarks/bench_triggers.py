"""Benchmark: many MiniMaxTaskTriggers in one event loop, shared poller vs one poller per trigger.

Runs the emulator on a loopback port (in its own process by default, so that its request
handling does not hold this process's GIL and show up as event-loop lag), submits async
textInference tasks through the hook, then runs one ``MiniMaxTaskTrigger.run()`` per task in
ONE event loop the way the triggerer does (each consumed with ``async for``, each awaited), once
with the shared poller and once with a poller per trigger. Prints poll requests per completed
task, the largest event-loop lag and the memory per waiting trigger::

    python benchmarks/bench_triggers.py [--triggers 1000] [--async-latency 3] [--in-thread]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    run_emulator_in_process,
    run_emulator_in_thread,
)
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

LAG_PROBE = 0.010  # the monitor sleeps 10 ms and records how late it wakes
MEMORY_TASK_LATENCY = 600.0  # seconds the tasks of the memory reading run: none finishes meanwhile


@dataclass
class Figures:
    """What one mode measured."""

    completed: int
    poll_requests: int
    wall: float
    lags: Lags
    bytes_per_trigger: float

    @property
    def requests_per_task(self) -> float:
        return self.poll_requests / max(self.completed, 1)


class Emulator:
    """The emulator's control endpoints, whether it runs in a thread or in a child process.

    :param url: its root URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.control = httpx.Client(base_url=f"{url}/_emulator", timeout=30)

    def reset(self, **config: Any) -> None:
        self.control.post("/reset", json=config).raise_for_status()

    def poll_requests(self) -> int:
        return int(self.control.get("/stats").json()["poll_requests"])


@contextlib.contextmanager
def emulator(in_thread: bool) -> Iterator[str]:
    """The emulator's root URL, served in a thread or in a child process."""
    if in_thread:
        with run_emulator_in_thread(EmulatorConfig()) as handle:
            yield handle.url
    else:
        with run_emulator_in_process() as url:
            yield url


@contextlib.contextmanager
def sharing(enabled: bool) -> Iterator[None]:
    """Switch the trigger between the shared poller and a poller per trigger."""
    saved = MiniMaxTaskTrigger.shared_polling
    MiniMaxTaskTrigger.shared_polling = enabled
    try:
        yield
    finally:
        MiniMaxTaskTrigger.shared_polling = saved


def submit(emulator: Emulator, count: int, async_latency: float) -> list[str]:
    """Forget earlier work and submit ``count`` async textInference tasks; return their UUIDs."""
    emulator.reset(async_latency=async_latency, log_size=0)
    hook = MiniMaxHook()
    tasks = [hook.new_text_inference(f"benchmark prompt {i}", delivery_method="async") for i in range(count)]
    outcome = hook.submit_tasks(tasks)
    hook.close()
    if outcome.errors:
        raise SystemExit(f"submission failed: {outcome.errors[0]}")
    return [task.task_uuid for task in tasks]


def triggers_for(task_uuids: list[str], args: argparse.Namespace) -> list[MiniMaxTaskTrigger]:
    end_time = time.time() + 120
    return [
        MiniMaxTaskTrigger(
            [u], end_time=end_time, poll_interval=args.poll_interval, max_poll_interval=args.max_poll_interval
        )
        for u in task_uuids
    ]


async def consume(trigger: MiniMaxTaskTrigger) -> int:
    """Run a trigger as the triggerer does: iterate its events, each handed on and dropped (the
    triggerer sends it to its supervisor; holding 10,000 answers here would add them to the heap
    every collection walks). Return 1 for one success event without task errors, else 0."""
    completed = events = 0
    async for event in trigger.run():
        events += 1
        completed = int(event.payload["status"] == "success" and not event.payload["errors"])
    return completed if events == 1 else 0


async def start(triggers: list[MiniMaxTaskTrigger]) -> list[asyncio.Task[int]]:
    """Start one task per trigger the way Airflow's ``TriggerRunner.create_triggers`` does: it
    yields to the loop (``await asyncio.sleep(0)``) before each one, so a burst of new triggers
    takes turns with the running ones instead of being created in one loop step."""
    tasks = []
    for trigger in triggers:
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(consume(trigger)))
    return tasks


class GcClock:
    """Time this process spends in garbage collection, on the wall clock and on its own CPU: a full
    collection stalls any event loop, whatever the triggers do, so lags are given with and without it."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._started = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
        else:
            self.wall += time.perf_counter() - self._started[0]
            self.cpu += time.thread_time() - self._started[1]


@dataclass
class Lags:
    """The largest oversleeps of the probe, in seconds.

    On a shared machine the wall-clock lag also counts the time the OS ran other processes
    instead of this one; the CPU lag counts only what this thread itself computed meanwhile
    (``min(oversleep, thread CPU during the sleep)``), i.e. what the loop would lag on an idle core.
    """

    wall: float = 0.0
    wall_outside_gc: float = 0.0
    cpu: float = 0.0
    cpu_outside_gc: float = 0.0


async def lag_monitor(stop: asyncio.Event, worst: Lags) -> None:
    """Sleep 10 ms again and again; record the largest oversleeps, with and without GC pauses."""
    clock = GcClock()
    gc.callbacks.append(clock)
    try:
        while not stop.is_set():
            started, cpu_started, gc_wall, gc_cpu = (
                time.perf_counter(),
                time.thread_time(),
                clock.wall,
                clock.cpu,
            )
            await asyncio.sleep(LAG_PROBE)
            lag = time.perf_counter() - started - LAG_PROBE
            cpu_lag = min(lag, time.thread_time() - cpu_started)
            worst.wall = max(worst.wall, lag)
            worst.wall_outside_gc = max(worst.wall_outside_gc, lag - (clock.wall - gc_wall))
            worst.cpu = max(worst.cpu, cpu_lag)
            worst.cpu_outside_gc = max(worst.cpu_outside_gc, cpu_lag - (clock.cpu - gc_cpu))
    finally:
        gc.callbacks.remove(clock)


async def run_to_completion(
    triggers: list[MiniMaxTaskTrigger],
) -> tuple[list[int], float, Lags]:
    """Gather every trigger with a lag monitor alongside; return their completions, wall time and lags."""
    stop, worst = asyncio.Event(), Lags()
    monitor = asyncio.create_task(lag_monitor(stop, worst))
    await asyncio.sleep(LAG_PROBE * 2)
    started = time.perf_counter()
    # Awaited one by one, as the triggerer checks its tasks: a gather would give each task a done
    # callback and a copied context, 10,000 objects that exist only here.
    completions = [await task for task in await start(triggers)]
    wall = time.perf_counter() - started
    stop.set()
    await monitor
    return completions, wall, worst


async def live_memory(samples: int = 5, spacing: float = 0.1) -> int:
    """Bytes traced, the least of a few readings each after a collection: live objects only, not
    garbage nor a poll's answer being read at that moment."""
    readings = []
    for _ in range(samples):
        await asyncio.sleep(spacing)
        gc.collect()
        readings.append(tracemalloc.get_traced_memory()[0])
    return min(readings)


async def memory_while_waiting(task_uuids: list[str], args: argparse.Namespace) -> float:
    """Bytes each waiting trigger holds (trigger, task, registration, its share of the poller).

    Measured at the margin: the second half of the triggers is started once the first half has
    polled, so one-off costs (imports, the shared client) are not spread over the triggers; each
    reading is the least of five, each after a collection, so garbage and answers being read
    are left out. The tasks run for :data:`MEMORY_TASK_LATENCY`, so every trigger is still
    waiting at the readings (none holds results or builds its event). All are then cancelled,
    as a triggerer restart does: they just unregister.
    """
    half = len(task_uuids) // 2
    settle = args.poll_interval * 1.2  # past the first poll, before the tasks finish
    tracemalloc.start()
    tasks = await start(triggers_for(task_uuids[:half], args))
    await asyncio.sleep(settle)
    before = await live_memory()
    tasks += await start(triggers_for(task_uuids[half:], args))
    await asyncio.sleep(settle)
    used = await live_memory() - before
    tracemalloc.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return used / (len(task_uuids) - half)


def measure(emulator: Emulator, args: argparse.Namespace, shared: bool) -> Figures:
    with sharing(shared):
        # Tasks that outlast the reading: a trigger whose task finished meanwhile is not waiting.
        uuids = submit(emulator, args.triggers, MEMORY_TASK_LATENCY)
        bytes_per_trigger = asyncio.run(memory_while_waiting(uuids, args))
        triggers = triggers_for(submit(emulator, args.triggers, args.async_latency), args)
        completions, wall, lags = asyncio.run(run_to_completion(triggers))
    return Figures(sum(completions), emulator.poll_requests(), wall, lags, bytes_per_trigger)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1000, help="triggers (and tasks) in flight")
    parser.add_argument("--async-latency", type=float, default=3.0, help="seconds an emulated task runs")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the trigger's first wait")
    parser.add_argument("--max-poll-interval", type=float, default=10.0, help="the trigger's wait cap")
    parser.add_argument("--in-thread", action="store_true", help="serve the emulator from a thread here")
    parser.add_argument(
        "--shared-only",
        action="store_true",
        help="skip the poller-per-trigger side (at 10,000 it opens 10,000 HTTP clients)",
    )
    args = parser.parse_args()

    with emulator(args.in_thread) as url:
        os.environ["AIRFLOW_CONN_MINIMAX_DEFAULT"] = (
            f'{{"conn_type": "minimax", "host": "{url}/v1", "password": "{EMULATOR_API_KEY}"}}'
        )
        control = Emulator(url)
        shared = measure(control, args, shared=True)
        single = None if args.shared_only else measure(control, args, shared=False)

    print(
        f"{args.triggers} MiniMaxTaskTrigger.run() in one event loop against the emulator "
        f"(async_latency={args.async_latency} s, poll_interval={args.poll_interval} s, "
        f"max_poll_interval={args.max_poll_interval} s, max_tasks_per_request=100, "
        f"emulator {'in a thread' if args.in_thread else 'in a child process'})"
    )
    print(
        f"{'mode':<20}{'completed':>10}{'poll reqs':>11}{'reqs/task':>11}{'wall s':>8}"
        f"{'max lag ms':>12}{'w/o GC':>8}{'CPU lag ms':>12}{'w/o GC':>8}{'B/trigger':>11}"
    )
    for name, f in (("shared poller", shared), ("poller per trigger", single)):
        if f is None:
            continue
        print(
            f"{name:<20}{f.completed:>10}{f.poll_requests:>11}{f.requests_per_task:>11.3f}{f.wall:>8.2f}"
            f"{f.lags.wall * 1000:>12.1f}{f.lags.wall_outside_gc * 1000:>8.1f}"
            f"{f.lags.cpu * 1000:>12.1f}{f.lags.cpu_outside_gc * 1000:>8.1f}{f.bytes_per_trigger:>11.0f}"
        )
    if single is not None:
        ratio = shared.requests_per_task / max(single.requests_per_task, 1e-9)
        print(f"poll requests per task, shared / per trigger: {ratio:.3f} (target <= 0.1)")
    lags = shared.lags
    print(
        f"largest event-loop lag with the shared poller (target < 50 ms): {lags.wall * 1000:.1f} ms on the "
        f"wall clock ({lags.wall_outside_gc * 1000:.1f} ms outside GC); {lags.cpu * 1000:.1f} ms of this "
        f"process's own CPU ({lags.cpu_outside_gc * 1000:.1f} ms outside GC), the rest is other processes "
        f"holding the cores (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"poll requests per task: {shared.requests_per_task:.3f} (target <= 0.03); completed "
        f"{shared.completed} of {args.triggers}; memory per waiting trigger: "
        f"{shared.bytes_per_trigger:.0f} B "
        "(target <= 2500 B)"
    )


if __name__ == "__main__":
    main()
