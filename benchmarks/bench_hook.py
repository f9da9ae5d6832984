"""Benchmark: what MiniMaxHook adds per call, next to the same requests sent by a bare httpx client.

Runs the emulator with zero latency in its own process and sends N sync-delivery
``textInference`` calls four ways, in alternating rounds so that machine noise hits every way
alike: ``MiniMaxHook.text_inference`` against a bare ``httpx.Client`` posting the same JSON and
reading the text out of the answer, and ``MiniMaxHook.atext_inference`` against a bare
``httpx.AsyncClient``. The hook's extra is its validation (building the task), its retry wrapper
and its parsing of the answer into models::

    python benchmarks/bench_hook.py [--calls 2000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    """Wall and CPU seconds one way of calling spent, over all its rounds."""

    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0
    texts: set[str] = field(default_factory=set)

    def per_call_us(self) -> tuple[float, float]:
        return self.wall / self.calls * 1e6, self.cpu / self.calls * 1e6


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
    way.wall += time.perf_counter() - wall
    way.cpu += time.thread_time() - cpu
    way.calls += calls


async def atimed(way: Way, calls: int, call: Callable[[], Awaitable[str]]) -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        way.texts.add((await call())[:8])
    way.wall += time.perf_counter() - wall
    way.cpu += time.thread_time() - cpu
    way.calls += calls


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
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
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
        f"{ways['hook sync'].calls} sync-delivery textInference calls per way, one after another, against "
        f"the emulator (latency 0, own process), in {args.rounds} alternating rounds; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'way':<20}{'µs/call':>10}{'CPU µs/call':>13}")
    for name, way in ways.items():
        wall, cpu = way.per_call_us()
        print(f"{name:<20}{wall:>10.0f}{cpu:>13.0f}")
    print()
    print(f"{'hook vs bare':<20}{'ratio':>8}{'target':>8}{'µs added':>10}{'CPU µs added':>14}")
    for hook_name, bare_name in (("hook sync", "httpx.Client"), ("hook async", "httpx.AsyncClient")):
        (hook_wall, hook_cpu), (bare_wall, bare_cpu) = (
            ways[hook_name].per_call_us(),
            ways[bare_name].per_call_us(),
        )
        ratio = hook_wall / bare_wall
        added, cpu_added = hook_wall - bare_wall, hook_cpu - bare_cpu
        verdict = "OK" if ratio <= 1.10 else "MISSED"
        print(f"{hook_name:<20}{ratio:>7.2f}x{'<=1.10x':>8}{added:>10.0f}{cpu_added:>14.0f}  {verdict}")
    if any(len(way.texts) != 1 for way in ways.values()):
        raise SystemExit(f"the four ways got different answers: {[sorted(w.texts) for w in ways.values()]}")


if __name__ == "__main__":
    main()
