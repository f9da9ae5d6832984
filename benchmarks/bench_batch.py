"""Benchmark MiniMaxBatchOperator against the local emulator, next to the one-call-after-another baseline.

Run: ``python benchmarks/bench_batch.py [--rows 1000] [--latency 0.2] [--concurrency 50]
[--modes chat,task] [--emulator process|thread] [--input-file] [--deferrable]``.

The emulator serves on loopback with a fixed latency per task and a cap of C requests (chat)
or tasks (task API) served at once, so no client can beat ``rows x latency / C``. By default it
runs in its own process, as a real API would: in a thread of this process
(``run_emulator_in_thread``, ``--emulator thread``) its CPU shares our GIL and is counted
against the client. Printed side by side, measured in one run:

- our chat mode (concurrent requests behind the adaptive limiter, ``max_concurrency=C``);
- our task-API mode (async tasks submitted as arrays, waited on in the worker: ``deferrable=False``;
  with ``--deferrable``, in one trigger as the triggerer runs it, then fetched after resuming);
- the floor: the same chat requests sent by bare ``httpx.AsyncClient``s, C in flight (one client
  each, as our runner gives each request in flight its own pool): what httpx, the emulator and
  this machine allow any client, so ours is read against it (``--modes chat,httpx,task``);
- the baseline users write today: ``apache-airflow-providers-openai``'s ``OpenAIHook`` pointed
  at the emulator's chat endpoint, one call after another, over a subset of the rows,
  extrapolated per row to all of them (the script says so when it does).

For each mode it also prints the CPU seconds per 1,000 rows of this process (the client) and
of the emulator's process (read from /proc), how busy each was (its CPU / wall) and how long
each one's event loop waited for a free core (run-queue time from /proc/<pid>/schedstat),
so a reader can tell who was the bottleneck on a shared machine; in task mode, getResponse
requests per row and the tail (seconds from the last task finishing upstream to the operator
returning). ``--input-file`` writes the rows to a JSONL file and runs the operator from
``input_path`` to ``output_path`` (streamed), printing rows per second, the peak RSS of this
process and the memory per row in flight. With ``--deferrable``, task mode also prints where its
getResponse requests went: before submitting, in the trigger, and fetching after resuming.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_minimax.batch import task_mode
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.polling import wait_for_tasks
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    run_emulator_in_process,
    run_emulator_in_thread,
)

CHAT_CONN, TASK_CONN, OPENAI_CONN = "bench_minimax_chat", "bench_minimax_task", "bench_openai"
HEADERS = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}
#: Every client sends this, then the row's review: ours through its template, the others by hand.
PROMPT = "Classify the sentiment of this review: "


class _TaskInstance:
    """The few task-instance fields the operator reads outside Airflow."""

    def __init__(self) -> None:
        self.dag_id, self.task_id, self.map_index = "bench_batch", "enrich", -1
        self.run_id = f"bench__{uuid.uuid4()}"
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class _StateStore:
    """A stand-in for Airflow 3.3's task-state store, which keeps values out of the worker process:
    here in JSON files of a temporary folder, so the worker's memory is measured as in production.
    Each run gets an empty one, as a first try does: its submit marker is absent, so the rows are
    submitted without a getResponse first (see ``GenerationStore.never_submitted``)."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="bench_state_")

    def get(self, key: str, default: Any = None) -> Any:
        path = os.path.join(self._folder.name, key)
        if not os.path.exists(path):
            return default
        with open(path) as handle:
            return json.load(handle)

    def set(self, key: str, value: Any, **_: Any) -> None:
        with open(os.path.join(self._folder.name, key), "w") as handle:
            json.dump(value, handle)


def _row(i: int) -> dict[str, Any]:
    return {"id": i, "review": f"Review number {i}: the product arrived on time and works."}


def _rows(count: int) -> list[dict[str, Any]]:
    return [_row(i) for i in range(count)]


def _write_input(count: int, folder: str) -> str:
    """A JSONL file of ``count`` rows, written as a stream."""
    path = os.path.join(folder, "reviews.jsonl")
    with open(path, "w") as handle:
        for i in range(count):
            handle.write(json.dumps(_row(i)))
            handle.write("\n")
    return path


def _memory_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in KB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _run_operator(
    url: str,
    conn_id: str,
    rows: list[dict[str, Any]] | None,
    concurrency: int,
    files: tuple[str, str] | None = None,
    polls_at: list[int] | None = None,
) -> tuple[float, Any]:
    """Run the batch; with ``polls_at``, deferred (task API), noting the polls at deferral and resume."""
    operator = MiniMaxBatchOperator(
        task_id="enrich",
        rows=rows,
        input_path=files[0] if files else None,
        output_path=files[1] if files else None,
        prompt_template=PROMPT + "{{ review }}",
        conn_id=conn_id,
        deferrable=polls_at is not None,
        max_concurrency=concurrency,
        on_row_error="skip",
        # The operator's default cap: polls follow the observed progress, so the cap no longer
        # sets the tail (it was 2.0 s with the x1.5 back-off alone).
        poll_interval=0.5,
        max_poll_interval=10.0,
    )
    started = time.perf_counter()
    context: Any = {"ti": _TaskInstance(), "task_state_store": _StateStore()}
    try:
        output = operator.execute(context)
    except TaskDeferred as deferred:
        assert polls_at is not None  # it defers only when asked to
        polls_at.append(_poll_requests(url))
        event = asyncio.run(_first_event(deferred.trigger))
        _wait_ended.append(time.monotonic())
        polls_at.append(_poll_requests(url))
        output = getattr(operator, deferred.method_name)(context, event, **(deferred.kwargs or {}))
    return time.perf_counter() - started, output


def _run_bare_chat(base_url: str, rows: list[dict[str, Any]], concurrency: int) -> tuple[float, Any]:
    """The rows' chat requests from bare ``httpx.AsyncClient``s, ``concurrency`` in flight."""
    queue = iter(rows)
    statuses: list[dict[str, str]] = []

    async def send_rows(client: httpx.AsyncClient) -> None:
        async with client:
            for row in queue:
                body = _chat_body(PROMPT + row["review"])
                answer = await client.post(f"{base_url}/chat/completions", json=body, headers=HEADERS)
                text = answer.json()["choices"][0]["message"]["content"]
                statuses.append({"status": "success" if answer.is_success and text else "failed"})

    async def run_all() -> None:
        # One TLS context for all, as our runner shares one: each default one loads the CA bundle.
        tls = httpx.create_ssl_context()
        clients = [httpx.AsyncClient(timeout=60, verify=tls) for _ in range(concurrency)]
        await asyncio.gather(*(send_rows(client) for client in clients))

    started = time.perf_counter()
    asyncio.run(run_all())
    return time.perf_counter() - started, statuses


def _chat_body(content: str) -> dict[str, Any]:
    """A chat completions request with one user message."""
    return {"model": "minimax-m2.7", "messages": [{"role": "user", "content": content}]}


async def _first_event(trigger: Any) -> Any:
    """The trigger's event, run as the triggerer runs it."""
    async for event in trigger.run():
        return event.payload
    raise SystemExit("the trigger ended without an event")


def _poll_requests(url: str) -> int:
    """getResponse requests the emulator served since its last reset."""
    return int(httpx.get(f"{url}/_emulator/stats").json()["poll_requests"])


def _check_output(path: str, count: int) -> None:
    """The output holds one line per row, in input order (read as a stream)."""
    with open(path) as handle:
        for expected, line in enumerate(handle):
            if json.loads(line)["row"] != expected:
                raise SystemExit(f"output line {expected} is not row {expected}")
    if expected + 1 != count:
        raise SystemExit(f"the output has {expected + 1} rows, not {count}")


_wait_ended: list[float] = []


def _timed_wait(*args: Any, **kwargs: Any) -> Any:
    """The batch's worker-side wait, noting when it returned (the poll tail's end)."""
    try:
        return wait_for_tasks(*args, **kwargs)
    finally:
        _wait_ended.append(time.monotonic())


task_mode.wait_for_tasks = _timed_wait


def _cpu_self() -> float:
    """CPU seconds this process (every thread) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _emulator_pid() -> int | None:
    """The emulator child process, found in /proc (None when it runs in a thread here)."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                ppid = stat.read().rsplit(")", 1)[1].split()[1]
                if ppid == me and b"airflow_provider_minimax.testing.emulator" in cmdline.read():
                    return int(entry)
        except OSError:
            continue
    return None


def _cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used, from /proc/<pid>/stat; 0 without one."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_wait(pid: int | str | None) -> float:
    """Seconds the main thread (the event loop) of a process was ready to run but had no free core,
    from /proc/<pid>/schedstat; 0 without one."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/schedstat") as schedstat:
        return int(schedstat.read().split()[1]) / 1e9


@dataclass
class Run:
    """What one mode measured."""

    wall: float
    succeeded: int
    client_cpu: float
    emulator_cpu: float
    client_wait: float  # seconds the client's event loop waited for a free core
    emulator_wait: float
    poll_requests: int
    tail: float | None  # seconds from the last task turning terminal to the operator returning
    poll_tail: float | None = None  # ... to the worker's wait returning (the rest is building results)
    rss_before_kb: int = 0
    peak_rss_kb: int = 0
    #: Deferred: getResponse requests at the deferral and at the resume (the trigger's in between).
    polls_at: list[int] | None = None


def _measure(
    url: str,
    mode: str,
    rows: list[dict[str, Any]] | None,
    concurrency: int,
    pid: int | None,
    files: tuple[str, str] | None = None,
    deferrable: bool = False,
) -> Run:
    _reset(url)
    _reset_peak_rss()
    rss_before = _memory_kb("VmRSS")
    cpu, emulator_cpu = _cpu_self(), _cpu_of(pid)
    wait, emulator_wait = _cpu_wait("self"), _cpu_wait(pid)
    polls_at: list[int] | None = [] if deferrable else None
    if mode == "httpx":
        assert rows is not None  # a file is read by the operator only
        wall, output = _run_bare_chat(f"{url}/v1", rows, concurrency)
    else:
        conn_id = CHAT_CONN if mode == "chat" else TASK_CONN
        wall, output = _run_operator(url, conn_id, rows, concurrency, files, polls_at)
    returned = time.monotonic()
    waited = _wait_ended[-1] if _wait_ended else None
    _wait_ended.clear()
    cpu, emulator_cpu = _cpu_self() - cpu, _cpu_of(pid) - emulator_cpu
    wait, emulator_wait = _cpu_wait("self") - wait, _cpu_wait(pid) - emulator_wait
    peak_rss = _memory_kb("VmHWM")
    stats = httpx.get(f"{url}/_emulator/stats").json()
    last_done = stats.get("last_done_at")
    succeeded = output["succeeded"] if files else sum(1 for row in output if row["status"] == "success")
    return Run(
        rss_before_kb=rss_before,
        peak_rss_kb=peak_rss,
        wall=wall,
        succeeded=succeeded,
        client_cpu=cpu,
        emulator_cpu=emulator_cpu,
        client_wait=wait,
        emulator_wait=emulator_wait,
        poll_requests=int(stats["poll_requests"]),
        tail=None if last_done is None else returned - last_done,
        poll_tail=None if last_done is None or waited is None else waited - last_done,
        polls_at=polls_at or None,
    )


def _run_baseline(rows: list[dict[str, Any]]) -> float:
    from airflow.providers.openai.hooks.openai import OpenAIHook

    hook = OpenAIHook(conn_id=OPENAI_CONN)
    started = time.perf_counter()
    for row in rows:
        hook.create_chat_completion(
            messages=[{"role": "user", "content": PROMPT + row["review"]}],
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
    chat = _chat_body("warm up")
    httpx.post(f"{base_url}/chat/completions", json=chat, headers=HEADERS, timeout=30).raise_for_status()
    poll = [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}]
    httpx.post(base_url, json=poll, headers=HEADERS, timeout=30)


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
    parser.add_argument(
        "--modes",
        default="chat,httpx,task",
        help="what to run: chat, task (our modes), httpx (bare clients' chat floor); default all three",
    )
    parser.add_argument("--emulator", choices=("process", "thread"), default="process", help="where it runs")
    parser.add_argument(
        "--input-file",
        action="store_true",
        help="read the rows from a JSONL file and write the results to one (streamed); print peak RSS",
    )
    parser.add_argument(
        "--deferrable",
        action="store_true",
        help="task mode waits in a trigger (run here as the triggerer runs it) and fetches after resuming",
    )
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
        pid = _emulator_pid()
        folder = tempfile.TemporaryDirectory(prefix="bench_batch_")
        files = None
        if args.input_file:
            files = (_write_input(args.rows, folder.name), os.path.join(folder.name, "enriched.jsonl"))
            rows = None
        else:
            rows = _rows(args.rows)
        limit = args.rows * args.latency / args.concurrency
        measured: dict[str, Run] = {}
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        if unknown := set(modes) - {"chat", "httpx", "task"}:
            parser.error(f"--modes: unknown {sorted(unknown)}; choose from chat, httpx, task")
        if files:
            modes = [m for m in modes if m != "httpx"]  # the floor sends rows held in memory
        for mode in modes:
            deferrable = args.deferrable and mode == "task"
            measured[mode] = run = _measure(url, mode, rows, args.concurrency, pid, files, deferrable)
            who = "bare httpx floor (chat requests)" if mode == "httpx" else f"ours ({mode} mode)"
            print(f"{who}: {run.wall:7.2f} s for {args.rows} rows ({run.succeeded} succeeded)")
            if files:
                _check_output(files[1], args.rows)
        _reset(url)
        subset = _rows(min(args.baseline_rows, args.rows))
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
        print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        # The targets: >= 20x at 1,000 rows (C=50 caps it at baseline / limit = ~53x), >= 100x from 10,000.
        speedup_target = 100 if args.rows >= 10_000 else 20
        print()
        print(
            f"{'mode':<6} {'wall s':>7} {'vs limit':>9} {'vs baseline':>12} {'verdict':>8}"
            f" {'client CPU':>11} {'client':>7} {'client':>8} {'emulator CPU':>13} {'emulator':>9}"
            f" {'emulator':>9} {'polls/task':>11} {'tail s':>7} {'poll tail':>10}"
        )
        print(
            f"{'':<6} {'':>7} {'<=1.3x':>9} {f'>={speedup_target}x':>12} {'':>8}"
            f" {'s/1k rows':>11} {'busy':>7} {'waited s':>8} {'s/1k rows':>13} {'busy':>9} {'waited s':>9}"
        )

        def verdict(vs_limit: float, speedup: float) -> str:
            return "OK" if vs_limit <= 1.3 and speedup >= speedup_target else "MISSED"

        for mode, run in measured.items():
            vs_limit, speedup = run.wall / limit, baseline / run.wall
            per_k = 1000 / args.rows
            polls = f"{run.poll_requests / args.rows:.4f}" if mode == "task" else "-"
            tail = f"{run.tail:.2f}" if mode == "task" and run.tail is not None else "-"
            poll_tail = f"{run.poll_tail:.2f}" if mode == "task" and run.poll_tail is not None else "-"
            print(
                f"{mode:<6} {run.wall:7.2f} {vs_limit:8.2f}x {speedup:11.1f}x"
                f" {'floor' if mode == 'httpx' else verdict(vs_limit, speedup):>8}"
                f" {run.client_cpu * per_k:11.2f} {run.client_cpu / run.wall:7.0%} {run.client_wait:8.2f}"
                f" {run.emulator_cpu * per_k:13.2f} {run.emulator_cpu / run.wall:9.0%}"
                f" {run.emulator_wait:9.2f} {polls:>11} {tail:>7} {poll_tail:>10}"
            )
        if "chat" in measured and "httpx" in measured:
            chat, floor = measured["chat"], measured["httpx"]
            print(
                f"chat mode vs the bare httpx floor: {chat.wall / floor.wall:.2f}x the wall time, "
                f"{chat.client_cpu / floor.client_cpu:.2f}x the client CPU"
            )
        for mode, run in measured.items():
            if run.polls_at is not None:
                deferred, resumed = run.polls_at
                print(
                    f"{mode} mode deferred: getResponse requests per task {deferred / args.rows:.4f} "
                    "submitting (first try: no poll first), "
                    f"{(resumed - deferred) / args.rows:.4f} in the trigger, "
                    f"{(run.poll_requests - resumed) / args.rows:.4f} fetching after resuming"
                )
        if files:
            print()
            window = MiniMaxBatchOperator.window_rows
            print(
                f"streamed from {files[0]} to {files[1]} ({os.path.getsize(files[0]) / 1e6:.1f} MB in), "
                f"{window} rows per window"
            )
            print(
                f"{'mode':<6} {'rows/s':>8} {'RSS before MB':>14} {'peak RSS MB':>12} {'target':>8}"
                f" {'KB/row in flight':>17}"
            )
            for mode, run in measured.items():
                # Task mode submits the next window before waiting on the last one: two in flight.
                in_flight = window * (2 if mode == "task" else 1)
                added = (run.peak_rss_kb - run.rss_before_kb) / in_flight
                print(
                    f"{mode:<6} {args.rows / run.wall:8.0f} {run.rss_before_kb / 1024:14.0f} "
                    f"{run.peak_rss_kb / 1024:12.0f} {'<300':>8} {added:17.1f}"
                    f"  {'OK' if run.peak_rss_kb < 300 * 1024 else 'MISSED'}"
                )
            print(
                "RSS before = this process with Airflow imported; KB/row in flight = (peak - before) / rows "
                "in flight (two windows in task mode, one in chat mode)"
            )
        folder.cleanup()
        print(
            "tail = from the last task finishing upstream to the operator returning; poll tail = to the "
            "worker's last poll seeing it (the rest is building every row's result; with --input-file, "
            "windows overlap and the last one's tasks may finish before it is waited on)"
        )
        print(
            "busy = CPU seconds / wall seconds: each event loop runs on one core, so near 100 % that side is "
            "the bottleneck; waited = seconds its event loop was ready to run but every core was taken "
            "(/proc/<pid>/schedstat): time the machine, not the code, cost"
        )
        print(
            "an emulator near 100 % busy saturates its one core (a single asyncio process), and the limit "
            "cannot be reached whatever the client does"
            if pid is not None
            else "emulator in a thread: its CPU is counted in the client's"
        )


if __name__ == "__main__":
    main()
