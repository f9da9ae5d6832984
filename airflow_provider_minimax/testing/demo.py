"""``make demo``: run the example DAGs end to end with ``airflow dags test`` on a throwaway SQLite home.

Against the local emulator by default (started on a free loopback port and stopped at the end),
or against the real MiniMax API when ``MINIMAX_API_KEY`` is set (``MINIMAX_BASE_URL`` and
``MINIMAX_CHAT_BASE_URL`` override the base URLs). Prints where the outputs and logs are and a
table of tasks, tokens, cost and time per DAG; exits non-zero when a DAG run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_snake

from airflow_provider_minimax.connection import DEFAULT_BASE_URLS
from airflow_provider_minimax.results import Usage

#: The example DAGs in the order the demo runs them (the digest reads the summaries' asset event).
EXAMPLE_DAGS = (
    "minimax_document_summarisation",
    "minimax_summaries_digest",
    "minimax_marketing_copy",
    "minimax_enrichment",
    "minimax_common_ai",
)
#: The pool the example DAGs use to cap concurrent MiniMax requests.
POOL = ("minimax", 4, "Concurrent MiniMax requests (rate limit)")
TASK_CONN_ID = "minimax_default"
CHAT_CONN_ID = "minimax_chat"
#: Which API each demo connection speaks, to total the spend per API.
CONN_APIS = {TASK_CONN_ID: "task", CHAT_CONN_ID: "chat"}
#: USD per million tokens on the demo's chat connection, so its cost is estimated (the gateway
#: reports none); MiniMax M2 list prices, the emulator's task-API prices too.
CHAT_PRICES = {
    "price_per_million_input_tokens": 0.30,
    "price_per_million_cached_input_tokens": 0.03,
    "price_per_million_output_tokens": 1.20,
}
#: The same two endpoints as ``pydanticai_minimax`` connections, for common.ai's operators.
COMMON_AI_CONN_IDS = {"task": "pydanticai_minimax_default", "chat": "pydanticai_minimax_chat"}
OUTPUT_VARIABLE = "minimax_output_dir"


@dataclass(frozen=True)
class Endpoints:
    """Where the DAGs send requests: base URLs and the key (never printed).

    :param task_base_url: task API base URL
    :param chat_base_url: chat API base URL
    :param api_key: the API key
    :param label: what to print about the target
    """

    task_base_url: str
    chat_base_url: str
    api_key: str = field(repr=False)
    label: str

    def connections(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables: the task and chat APIs as ``minimax`` and ``pydanticai_minimax``."""
        hosts = {"task": self.task_base_url, "chat": self.chat_base_url}
        extras = {"task": {"api": "task"}, "chat": {"api": "chat", **CHAT_PRICES}}
        return {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(
                {"conn_type": conn_type, "host": hosts[api], "password": self.api_key, "extra": extras[api]}
            )
            for conn_type, conn_ids in (
                ("minimax", {"task": TASK_CONN_ID, "chat": CHAT_CONN_ID}),
                ("pydanticai_minimax", COMMON_AI_CONN_IDS),
            )
            for api, conn_id in conn_ids.items()
        }


def airflow_env(home: Path, dags_folder: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an Airflow command on a throwaway SQLite home.

    :param home: the AIRFLOW_HOME (its ``airflow.db`` is the metadata database)
    :param dags_folder: the DAGs folder
    :param extra: more variables (connections, variables, config)
    """
    # The caller's own Airflow settings (home, connections, config) must not leak into the demo.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def airflow(args: Sequence[str], env: Mapping[str, str], log: Path, timeout: float = 900) -> int:
    """Run ``python -m airflow ARGS`` with output to ``log``; return its exit code.

    :param args: the Airflow CLI arguments
    :param env: its environment
    :param log: the file its stdout and stderr go to
    :param timeout: seconds before it is killed
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            return subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\n[demo] killed after {timeout:.0f} s\n")
            return 124


def figures(value: Any) -> Iterator[tuple[dict[str, Any], float | None]]:
    """Each (usage, cost) reported in one XCom value (a result, a list of results or a manifest).

    A dict with ``usage`` is one reported figure and is not looked into further, so a manifest's
    totals are not added to its rows' figures. Usage keys come out in snake_case.

    :param value: the decoded XCom value
    """
    if isinstance(value, dict):
        if isinstance(value.get("usage"), dict):
            yield {to_snake(k): v for k, v in value["usage"].items()}, value.get("cost")
            return
        children: Iterable[Any] = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return
    for child in children:
        yield from figures(child)


def usage_of(value: Any) -> tuple[int, float]:
    """Total tokens and cost reported in one XCom value (see :func:`figures`).

    :param value: the decoded XCom value
    """
    found = list(figures(value))
    return sum(int(u.get("total_tokens") or 0) for u, _ in found), sum(c or 0.0 for _, c in found)


def _decoded(value: Any) -> Any:
    """An XCom value from SQLite: JSON text, except a bare number, which SQLite hands back as one."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _xcom_figure(key: str, value: Any) -> Any:
    """An XCom as :func:`usage_of` reads it: the chat operator pushes ``usage`` and ``cost`` apart."""
    if key == "usage":
        return {"usage": value}
    if key == "cost":
        return {"usage": {}, "cost": value}
    return value


def spend_by_api(db: Path) -> dict[str, tuple[Usage, float | None]]:
    """Tokens by kind and cost over every demo run, per API (the task's rendered ``conn_id`` says which).

    :param db: the SQLite metadata database
    """
    totals: dict[str, tuple[Usage, float | None]] = {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn_ids = {
            (dag_id, run_id, task_id, map_index): json.loads(fields).get("conn_id")
            for dag_id, run_id, task_id, map_index, fields in conn.execute(
                "SELECT dag_id, run_id, task_id, map_index, rendered_fields "
                "FROM rendered_task_instance_fields"
            )
        }
        rows = conn.execute(
            "SELECT dag_id, run_id, task_id, map_index, key, value FROM xcom WHERE key IN (?, ?, ?)",
            ("return_value", "usage", "cost"),
        )
        for dag_id, run_id, task_id, map_index, key, value in rows:
            api = CONN_APIS.get(conn_ids.get((dag_id, run_id, task_id, map_index)) or "")
            if api is None:
                continue
            with contextlib.suppress(TypeError, ValueError):
                for usage, cost in figures(_xcom_figure(key, _decoded(value))):
                    summed, spent = totals.get(api, (Usage(), None))
                    known = [c for c in (spent, cost) if c is not None]
                    totals[api] = summed + Usage.model_validate(usage), sum(known) if known else None
    return totals


def api_table(totals: Mapping[str, tuple[Usage, float | None]]) -> str:
    """Tokens by kind and cost per API; the chat API's cost is estimated from the connection's prices.

    :param totals: from :func:`spend_by_api`
    """

    def count(n: int | None) -> str:
        return "-" if n is None else f"{n:,}"

    rows = [["API", "prompt", "cached", "completion", "thinking", "reasoning", "total", "cost (USD)"]]
    for api, (u, cost) in sorted(totals.items()):
        kinds = (u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.thinking_tokens, u.reasoning_tokens)
        money = "n/a" if cost is None else f"{'~' if api == 'chat' else ''}{cost:.4f}"
        rows.append([api, *map(count, (*kinds, u.total_tokens)), money])
    return (
        aligned(rows, text_columns=1)
        + "\n(~: estimated from the chat connection's price_per_million_* extras)"
    )


@dataclass
class RunReport:
    """What one DAG run did, read back from the metadata database.

    :param dag_id: the DAG
    :param state: the run's final state (``missing`` when no run was recorded)
    :param tasks: task instance states and their counts
    :param tokens: total tokens reported in XCom
    :param cost: total cost in USD reported in XCom
    :param seconds: wall time of ``airflow dags test``
    """

    dag_id: str
    state: str
    tasks: Counter[str]
    tokens: int
    cost: float
    seconds: float

    @property
    def tasks_label(self) -> str:
        """``12`` when all succeeded, else ``12 (10 success, 2 failed)``."""
        total = sum(self.tasks.values())
        if set(self.tasks) <= {"success"}:
            return str(total)
        return f"{total} ({', '.join(f'{n} {s}' for s, n in self.tasks.most_common())})"


def read_run(db: Path, dag_id: str, seconds: float) -> RunReport:
    """Read the latest run of ``dag_id``: its state, task states and the tokens and cost in XCom.

    :param db: the SQLite metadata database
    :param dag_id: the DAG
    :param seconds: the measured wall time
    """
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return RunReport(dag_id, "missing", Counter(), 0, 0.0, seconds)
        run_id, state = row
        states = Counter(
            s or "none"
            for (s,) in conn.execute(
                "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            )
        )
        tokens, cost = 0, 0.0
        for key, value in conn.execute(
            "SELECT key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key IN (?, ?, ?)",
            (dag_id, run_id, "return_value", "usage", "cost"),
        ):
            with contextlib.suppress(TypeError, ValueError):
                t, c = usage_of(_xcom_figure(key, _decoded(value)))
                tokens, cost = tokens + t, cost + c
    return RunReport(dag_id, state or "none", states, tokens, cost, seconds)


def table(reports: Sequence[RunReport]) -> str:
    """The summary table the demo prints.

    :param reports: one per DAG run
    """
    rows = [("DAG", "state", "tasks", "tokens", "cost (USD)", "time (s)")]
    rows += [
        (r.dag_id, r.state, r.tasks_label, f"{r.tokens:,}", f"{r.cost:.4f}", f"{r.seconds:.1f}")
        for r in reports
    ]
    rows.append(
        (
            "total",
            "",
            str(sum(sum(r.tasks.values()) for r in reports)),
            f"{sum(r.tokens for r in reports):,}",
            f"{sum(r.cost for r in reports):.4f}",
            f"{sum(r.seconds for r in reports):.1f}",
        )
    )
    lines = aligned(rows, text_columns=2).splitlines()
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def aligned(rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """Rows as aligned columns under a rule: the first ``text_columns`` left-aligned, figures right.

    :param rows: the header row, then the data rows
    :param text_columns: how many leading columns hold text
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def endpoints() -> Iterator[tuple[Endpoints, Any]]:
    """The real API when ``MINIMAX_API_KEY`` is set, else an emulator on a free loopback port.

    Yields the endpoints and the emulator handle (None for the real API).
    """
    api_key = os.environ.get("MINIMAX_API_KEY", "").strip()
    if api_key:
        task_url = os.environ.get("MINIMAX_BASE_URL") or DEFAULT_BASE_URLS["task"]
        chat_url = os.environ.get("MINIMAX_CHAT_BASE_URL") or DEFAULT_BASE_URLS["chat"]
        yield Endpoints(task_url, chat_url, api_key, f"the real MiniMax API ({task_url}, {chat_url})"), None
        return
    from airflow_provider_minimax.testing.emulator import EMULATOR_API_KEY, run_emulator_in_thread

    with run_emulator_in_thread() as emulator:
        label = f"the local emulator at {emulator.url} (set MINIMAX_API_KEY to use the real API)"
        yield Endpoints(emulator.base_url, emulator.chat_base_url, EMULATOR_API_KEY, label), emulator


def run_demo(dags_folder: Path, workdir: Path, dag_ids: Sequence[str]) -> int:
    """Prepare a fresh Airflow home under ``workdir``, run each DAG, print the report.

    :param dags_folder: the example DAGs
    :param workdir: where the Airflow home, logs and outputs go (wiped first)
    :param dag_ids: the DAGs to run, in order
    """
    home, logs, output = workdir / "airflow-home", workdir / "logs", workdir / "output"
    for path in (home, logs, output):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    with endpoints() as (target, emulator):
        print(f"MiniMax demo: {len(dag_ids)} DAGs against {target.label}")
        env = airflow_env(
            home,
            dags_folder,
            {**target.connections(), f"AIRFLOW_VAR_{OUTPUT_VARIABLE.upper()}": str(output)},
        )
        print(f"  airflow db migrate (Airflow home {home})")
        if airflow(["db", "migrate"], env, logs / "db-migrate.log") != 0:
            print(f"airflow db migrate failed: see {logs / 'db-migrate.log'}", file=sys.stderr)
            return 1
        airflow(["pools", "set", *map(str, POOL)], env, logs / "pools.log")
        reports = []
        for dag_id in dag_ids:
            print(f"  airflow dags test {dag_id} ...", end=" ", flush=True)
            started = time.monotonic()
            code = airflow(["dags", "test", dag_id], env, logs / f"{dag_id}.log")
            report = read_run(home / "airflow.db", dag_id, time.monotonic() - started)
            if code != 0 and report.state == "success":
                report.state = f"exit {code}"
            print(f"{report.state} in {report.seconds:.1f} s")
            reports.append(report)
        stats = emulator.stats() if emulator is not None else None
        by_api = spend_by_api(home / "airflow.db")
    print()
    print(table(reports))
    print()
    print(api_table(by_api))
    print()
    if stats is not None:
        print(
            f"Emulator: {sum(stats['submissions'].values())} textInference tasks submitted "
            f"({len(stats['duplicate_submissions'])} submitted twice), "
            f"{stats['poll_requests']} getResponse requests, {stats['chat_requests']} chat requests."
        )
    print(f"Outputs: {output}")
    for child in sorted(p for p in output.iterdir() if p.is_dir()):
        files = sorted(f for f in child.rglob("*") if f.is_file())
        example = f", e.g. {files[0].relative_to(output)}" if files else ""
        print(f"  {child.name}/  {len(files)} files{example}")
    print(f"Logs:    {logs}")
    failed = [r.dag_id for r in reports if r.state != "success"]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the logs above)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m airflow_provider_minimax.testing.demo``.

    :param argv: arguments (``sys.argv`` when omitted)
    """
    parser = argparse.ArgumentParser(description="Run the MiniMax example DAGs end to end.")
    parser.add_argument("--dags-folder", type=Path, default=Path("dags"), help="the example DAGs folder")
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="Airflow home, logs and outputs")
    parser.add_argument(
        "--dag", action="append", dest="dags", metavar="DAG_ID", help="run only this DAG (repeatable)"
    )
    args = parser.parse_args(argv)
    # On SIGTERM unwind like Ctrl-C: subprocess.run kills the running Airflow command, the
    # emulator thread stops, nothing is left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run_demo(args.dags_folder.resolve(), args.workdir.resolve(), args.dags or list(EXAMPLE_DAGS))


if __name__ == "__main__":
    sys.exit(main())
