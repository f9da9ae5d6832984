"""Benchmark: what MiniMaxHook adds per call, next to the same requests sent by a bare httpx client.

Runs the emulator with zero latency in its own process and sends N sync-delivery
``textInference`` calls four ways, in alternating rounds so that machine noise hits every way
alike: ``MiniMaxHook.text_inference`` against a bare ``httpx.Client`` posting the same JSON and
reading the text out of the answer, and ``MiniMaxHook.atext_inference`` against a bare
``httpx.AsyncClient``. The hook's extra is its validation (building the task), its retry wrapper
and its parsing of the answer into models. The ratio compares each way's best round, as
``timeit`` does: on a shared machine noise only ever adds time, so the best round is the
steadiest figure; the mean over all rounds is printed next to it::

    python benchmarks/bench_hook.py [--calls 2000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    run_emulator_in_process,
)

CONN_ID = "bench_hook"
PROMPT = "Classify the sentiment of this review: the product arrived on time and works."
HEADERS = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}


@dataclass
class Way:
    """Wall and CPU microseconds per call of one way of calling, round by round."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    texts: set[str] = field(default_factory=set)

    def add_round(self, wall: float, cpu: float, calls: int) -> None:
        self.walls.append(wall / calls * 1e6)
        self.cpus.append(cpu / calls * 1e6)

    def best(self) -> tuple[float, float]:
        """Wall and CPU µs per call in the round with the least wall time."""
        return min(zip(self.walls, self.cpus, strict=True))

    def mean(self) -> tuple[float, float]:
        return statistics.fmean(self.walls), statistics.fmean(self.cpus)


def body() -> list[dict[str, object]]:
    """The request the hook sends for ``text_inference(PROMPT)``, written by hand."""
    return [
        {
            "taskType": "textInference",
            "taskUUID": str(uuid.uuid4()),
            "model": "minimax:m2.7@highspeed",
            "deliveryMethod": "sync",
            "includeCost": True,
            "includeUsage": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    ]


def bare_text(response: httpx.Response) -> str:
    response.raise_for_status()
    return str(response.json()["data"][0]["text"])


def timed(way: Way, calls: int, call: Callable[[], str]) -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        way.texts.add(call()[:8])
    way.add_round(time.perf_counter() - wall, time.thread_time() - cpu, calls)


async def atimed(way: Way, calls: int, call: Callable[[], Awaitable[str]]) -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        way.texts.add((await call())[:8])
    way.add_round(time.perf_counter() - wall, time.thread_time() - cpu, calls)


async def run_async(url: str, hook_way: Way, bare_way: Way, calls: int, rounds: int) -> None:
    hook = MiniMaxHook(minimax_conn_id=CONN_ID)
    async with httpx.AsyncClient(headers=HEADERS, timeout=30) as client:

        async def bare() -> str:
            return bare_text(await client.post(url, json=body()))

        async def through_hook() -> str:
            return (await hook.atext_inference(PROMPT)).results[0].text

        await bare(), await through_hook()  # warm both connections up
        for _ in range(rounds):
            await atimed(bare_way, calls // rounds, bare)
            await atimed(hook_way, calls // rounds, through_hook)
    await hook.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per way (default 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds (default 20)")
    args = parser.parse_args()

    ways = {name: Way() for name in ("hook sync", "httpx.Client", "hook async", "httpx.AsyncClient")}
    with run_emulator_in_process(EmulatorConfig(latency=0.0, log_size=0)) as root:
        url = f"{root}/v1"
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "minimax", "host": url, "password": EMULATOR_API_KEY}
        )
        hook = MiniMaxHook(minimax_conn_id=CONN_ID)
        with httpx.Client(headers=HEADERS, timeout=30) as client:
            bare_text(client.post(url, json=body())), hook.text_inference(PROMPT)  # warm up
            for _ in range(args.rounds):
                timed(
                    ways["httpx.Client"],
                    args.calls // args.rounds,
                    lambda: bare_text(client.post(url, json=body())),
                )
                timed(
                    ways["hook sync"],
                    args.calls // args.rounds,
                    lambda: hook.text_inference(PROMPT).results[0].text,
                )
        hook.close()
        asyncio.run(run_async(url, ways["hook async"], ways["httpx.AsyncClient"], args.calls, args.rounds))

    print(
        f"{args.calls // args.rounds * args.rounds} sync-delivery textInference calls per way, one after "
        f"another, against the emulator (latency 0, own process), in {args.rounds} alternating rounds; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'way':<20}{'best µs/call':>14}{'CPU µs/call':>13}{'mean µs/call':>14}{'CPU µs/call':>13}")
    for name, way in ways.items():
        (best, best_cpu), (mean, mean_cpu) = way.best(), way.mean()
        print(f"{name:<20}{best:>14.0f}{best_cpu:>13.0f}{mean:>14.0f}{mean_cpu:>13.0f}")
    print()
    header = f"{'ratio':>8}{'target':>8}{'µs added':>10}{'CPU µs added':>14}{'mean ratio':>12}"
    print(f"{'hook vs bare':<20}{header}")
    for hook_name, bare_name in (("hook sync", "httpx.Client"), ("hook async", "httpx.AsyncClient")):
        hook_way, bare_way = ways[hook_name], ways[bare_name]
        (hook_wall, hook_cpu), (bare_wall, bare_cpu) = hook_way.best(), bare_way.best()
        ratio, mean_ratio = hook_wall / bare_wall, hook_way.mean()[0] / bare_way.mean()[0]
        added, cpu_added = hook_wall - bare_wall, hook_cpu - bare_cpu
        verdict = "OK" if ratio <= 1.10 else "MISSED"
        print(
            f"{hook_name:<20}{ratio:>7.2f}x{'<=1.10x':>8}{added:>10.0f}{cpu_added:>14.0f}"
            f"{mean_ratio:>11.2f}x  {verdict}"
        )
    if any(len(way.texts) != 1 for way in ways.values()):
        raise SystemExit(f"the four ways got different answers: {[sorted(w.texts) for w in ways.values()]}")


if __name__ == "__main__":
    main()
