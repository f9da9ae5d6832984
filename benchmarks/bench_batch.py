"""Benchmark MiniMaxBatchOperator against the local emulator, next to the one-call-after-another baseline.

Run: ``python benchmarks/bench_batch.py [--rows 1000] [--latency 0.2] [--concurrency 50]
[--emulator process|thread]``.

The emulator serves on loopback with a fixed latency per task and a cap of C requests (chat)
or tasks (task API) served at once, so no client can beat ``rows x latency / C``. By default it
runs in its own process, as a real API would: in a thread of this process
(``run_emulator_in_thread``, ``--emulator thread``) its CPU shares our GIL and is counted
against the client. Printed side by side, measured in one run:

- our chat mode (concurrent requests behind the adaptive limiter, ``max_concurrency=C``);
- our task-API mode (async tasks submitted as arrays, waited on in the worker: ``deferrable=False``);
- the baseline users write today: ``apache-airflow-providers-openai``'s ``OpenAIHook`` pointed
  at the emulator's chat endpoint, one call after another, over a subset of the rows,
  extrapolated per row to all of them (the script says so when it does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    run_emulator_in_process,
    run_emulator_in_thread,
)

CHAT_CONN, TASK_CONN, OPENAI_CONN = "bench_minimax_chat", "bench_minimax_task", "bench_openai"


class _TaskInstance:
    """The few task-instance fields the operator reads outside Airflow."""

    def __init__(self) -> None:
        self.dag_id, self.task_id, self.map_index = "bench_batch", "enrich", -1
        self.run_id = f"bench__{uuid.uuid4()}"
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class _StateStore:
    """An in-memory stand-in for Airflow 3.3's task-state store."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


def _rows(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "review": f"Review number {i}: the product arrived on time and works."}
        for i in range(count)
    ]


def _run_operator(conn_id: str, rows: list[dict[str, Any]], concurrency: int) -> tuple[float, Any]:
    operator = MiniMaxBatchOperator(
        task_id="enrich",
        rows=rows,
        prompt_template="Classify the sentiment of this review: {{ review }}",
        conn_id=conn_id,
        deferrable=False,
        max_concurrency=concurrency,
        on_row_error="skip",
        poll_interval=0.5,
        max_poll_interval=2.0,
    )
    started = time.perf_counter()
    context: Any = {"ti": _TaskInstance(), "task_state_store": _StateStore()}
    output = operator.execute(context)
    return time.perf_counter() - started, output


def _run_baseline(rows: list[dict[str, Any]]) -> float:
    from airflow.providers.openai.hooks.openai import OpenAIHook

    hook = OpenAIHook(conn_id=OPENAI_CONN)
    started = time.perf_counter()
    for row in rows:
        hook.create_chat_completion(
            messages=[{"role": "user", "content": f"Classify the sentiment of this review: {row['review']}"}],
            model="minimax-m2.7",
        )
    return time.perf_counter() - started


@contextlib.contextmanager
def _emulator(where: str, config: EmulatorConfig) -> Iterator[str]:
    """A running emulator's root URL."""
    if where == "thread":
        with run_emulator_in_thread(config) as handle:
            yield handle.url
    else:
        with run_emulator_in_process(config) as url:
            yield url


def _reset(url: str) -> None:
    """Forget the tasks and counters of the previous mode (the config stays)."""
    httpx.post(f"{url}/_emulator/reset").raise_for_status()


def _warm_up(base_url: str) -> None:
    """One call per API first, so the server's own cold start is not counted against any client."""
    headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}
    chat = {"model": "minimax-m2.7", "messages": [{"role": "user", "content": "warm up"}]}
    httpx.post(f"{base_url}/chat/completions", json=chat, headers=headers, timeout=30).raise_for_status()
    poll = [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}]
    httpx.post(base_url, json=poll, headers=headers, timeout=30)


def _connection(base_url: str, api: str) -> str:
    extra = {"api": api, "max_connections": 100}
    return json.dumps(
        {"conn_type": "minimax", "host": base_url, "password": EMULATOR_API_KEY, "extra": extra}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows in the batch (default 1000)")
    parser.add_argument("--latency", type=float, default=0.2, help="emulator seconds per task (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=50, help="emulator concurrency cap C (default 50)")
    parser.add_argument("--baseline-rows", type=int, default=50, help="rows the baseline runs (default 50)")
    parser.add_argument("--modes", default="chat,task", help="our modes to run: chat,task (default both)")
    parser.add_argument("--emulator", choices=("process", "thread"), default="process", help="where it runs")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # Per-request log lines would measure the terminal, not the client.

    config = EmulatorConfig(latency=args.latency, async_latency=args.latency, concurrency=args.concurrency)
    with _emulator(args.emulator, config) as url:
        base_url = f"{url}/v1"
        os.environ[f"AIRFLOW_CONN_{CHAT_CONN.upper()}"] = _connection(base_url, "chat")
        os.environ[f"AIRFLOW_CONN_{TASK_CONN.upper()}"] = _connection(base_url, "task")
        os.environ[f"AIRFLOW_CONN_{OPENAI_CONN.upper()}"] = json.dumps(
            {"conn_type": "openai", "password": EMULATOR_API_KEY, "host": base_url}
        )
        print(
            f"emulator in a {args.emulator}: latency {args.latency} s per task, "
            f"concurrency cap C={args.concurrency}"
        )
        _warm_up(base_url)
        rows = _rows(args.rows)
        limit = args.rows * args.latency / args.concurrency
        measured: dict[str, float] = {}
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            _reset(url)
            wall, output = _run_operator(CHAT_CONN if mode == "chat" else TASK_CONN, rows, args.concurrency)
            ok = sum(1 for row in output if row["status"] == "success")
            measured[mode] = wall
            print(f"ours ({mode} mode): {wall:7.2f} s for {args.rows} rows ({ok} succeeded)")
        _reset(url)
        subset = rows[: min(args.baseline_rows, args.rows)]
        baseline_wall = _run_baseline(subset)
        baseline = baseline_wall / len(subset) * args.rows
        extrapolated = len(subset) < args.rows
        note = (
            f" (ran {len(subset)} rows in {baseline_wall:.2f} s, extrapolated per row)"
            if extrapolated
            else ""
        )
        print(f"baseline OpenAIHook, one call after another: {baseline:7.2f} s for {args.rows} rows{note}")
        print(f"limit N x latency / C = {args.rows} x {args.latency} / {args.concurrency} = {limit:.2f} s")
        print()
        print(f"{'mode':<6} {'wall s':>8} {'vs limit':>9} {'target':>7} {'vs baseline':>12} {'target':>7}")
        for mode, wall in measured.items():
            vs_limit, speedup = wall / limit, baseline / wall
            print(
                f"{mode:<6} {wall:8.2f} {vs_limit:8.2f}x {'<=1.3x':>7} {speedup:11.1f}x {'>=20x':>7}"
                f"  {'OK' if vs_limit <= 1.3 and speedup >= 20 else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
