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
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_minimax.connection import DEFAULT_BASE_URLS
from airflow_provider_minimax.testing.demo_report import (
    CHAT_CONN_ID,
    TASK_CONN_ID,
    api_table,
    read_run,
    spend_by_api,
    table,
)

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
