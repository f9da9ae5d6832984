"""The marketing DAG through a real scheduler, triggerer, dag-processor and api-server on SQLite.

Run 1: the mapped MiniMax tasks are seen ``deferred`` and then resumed by the triggerer.
Run 2: the triggerer is SIGKILLed while they are deferred and a new one is started; the run still
succeeds and the emulator saw every taskUUID submitted exactly once.

Airflow 3.3 runs LocalExecutor on SQLite (SequentialExecutor is gone); the workers reach the
api-server's Execution API over loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airflow_provider_minimax.testing.demo import POOL, Endpoints, airflow, airflow_env
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    EmulatorHandle,
    run_emulator_in_thread,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "minimax_marketing_copy"
MAPPED_TASK = "write_copy"
#: One product on every channel: three mapped, deferrable MiniMax tasks per run.
RUN_CONF = {"max_products": 1, "products_file": str(ROOT / "dags" / "data" / "products.json")}
#: How long every wait may take before the test gives up (a deadline, not an assertion).
PATIENCE = 150.0
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = PATIENCE) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Stack:
    """The Airflow components of one test, on one throwaway home."""

    home: Path
    env: dict[str, str]
    logs: Path
    emulator: EmulatorHandle
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        """Start ``airflow ARGS`` in its own process group (so its children die with it)."""
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group of ``name`` and reap it."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def stop_all(self) -> None:
        """Terminate every process this test started, by PID and process group."""
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the metadata database (the components write it concurrently: wait out locks)."""
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db", timeout=30)) as db:
            return db.execute(sql, args).fetchall()

    def assert_alive(self) -> None:
        """Fail early, naming the log, when a component died."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(
                    f"airflow {name} exited ({process.returncode}); see {self.logs / name}.log"
                )

    def mapped_states(self, run_id: str) -> list[str]:
        """The states of the run's mapped MiniMax tasks."""
        self.assert_alive()
        rows = self.query(
            "SELECT state FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index >= 0 ORDER BY map_index",
            DAG_ID,
            run_id,
            MAPPED_TASK,
        )
        return [state or "none" for (state,) in rows]

    def run_state(self, run_id: str) -> str | None:
        """The DAG run's state once finished, else None."""
        self.assert_alive()
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, run_id)
        return rows[0][0] if rows and rows[0][0] in {"success", "failed"} else None

    def running_triggers(self, run_id: str) -> int:
        """How many of the run's triggers a triggerer has picked up."""
        rows = self.query(
            "SELECT COUNT(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = ? AND ti.run_id = ? AND t.triggerer_id IS NOT NULL",
            DAG_ID,
            run_id,
        )
        return int(rows[0][0])

    def trigger(self, run_id: str) -> None:
        """Trigger the DAG with the small product list through the CLI."""
        code = airflow(
            ["dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(RUN_CONF)],
            self.env,
            self.logs / f"trigger-{run_id}.log",
            timeout=PATIENCE,
        )
        assert code == 0, f"airflow dags trigger failed; see {self.logs}/trigger-{run_id}.log"

    def task_uuids(self, run_id: str) -> list[str]:
        """The taskUUID each mapped task reported in XCom."""
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
            DAG_ID,
            run_id,
            MAPPED_TASK,
        )
        return [json.loads(value)["task_uuid"] for (value,) in rows]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Emulator, a fresh SQLite home, then api-server, scheduler, dag-processor and triggerer."""
    home, logs, dags = tmp_path / "home", tmp_path / "logs", tmp_path / "dags"
    for folder in (home, logs, dags):
        folder.mkdir()
    # Only the DAG under test, so the dag-processor has one file to parse.
    shutil.copy(ROOT / "dags" / f"{DAG_ID}.py", dags)
    api_port = _free_port()
    with run_emulator_in_thread(EmulatorConfig(async_latency=2.0)) as emulator:
        target = Endpoints(emulator.base_url, emulator.chat_base_url, EMULATOR_API_KEY, "emulator")
        env = airflow_env(
            home,
            dags,
            {
                **target.connections(),
                "AIRFLOW_VAR_MINIMAX_OUTPUT_DIR": str(tmp_path / "output"),
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-only-secret-not-for-production",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                # A killed triggerer's triggers move to a live one once its heartbeat is this old.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                # Only the runs the test triggers: no nightly run competing under max_active_runs=1.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                # The log servers of the worker and triggerer default to fixed ports: take free ones.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            },
        )
        stack = Stack(home, env, logs, emulator)
        try:
            assert airflow(["db", "migrate"], env, logs / "db-migrate.log") == 0
            assert airflow(["pools", "set", *map(str, POOL)], env, logs / "pools.log") == 0
            stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
            stack.start("dag-processor", "dag-processor")
            stack.start("scheduler", "scheduler")
            stack.start("triggerer", "triggerer")
            _wait_for(
                "the dag-processor to serialize the DAG",
                lambda: (
                    stack.assert_alive()
                    or stack.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID)
                ),
            )
            yield stack
        finally:
            stack.stop_all()


def test_deferred_tasks_resume_and_survive_a_triggerer_kill(stack: Stack) -> None:
    # Run 1: deferred in the triggerer, then resumed to success.
    stack.trigger("e2e-deferred")
    _wait_for("a deferred MiniMax task", lambda: "deferred" in stack.mapped_states("e2e-deferred"))
    assert _wait_for("run 1 to finish", lambda: stack.run_state("e2e-deferred")) == "success"
    assert stack.mapped_states("e2e-deferred") == ["success"] * 3

    # Run 2: long enough upstream that the tasks are still running when the triggerer dies.
    stack.emulator.config.async_latency = 20.0
    stack.trigger("e2e-killed")
    _wait_for(
        "every MiniMax task deferred, its trigger running in the triggerer",
        lambda: (
            stack.mapped_states("e2e-killed") == ["deferred"] * 3
            and stack.running_triggers("e2e-killed") == 3
        ),
    )
    stack.kill("triggerer")  # SIGKILL: no clean shutdown, no chance to hand anything over.
    assert stack.mapped_states("e2e-killed") == ["deferred"] * 3
    stack.start("triggerer", "triggerer")
    assert _wait_for("run 2 to finish", lambda: stack.run_state("e2e-killed")) == "success"
    assert stack.mapped_states("e2e-killed") == ["success"] * 3

    stats = stack.emulator.stats()
    uuids = stack.task_uuids("e2e-deferred") + stack.task_uuids("e2e-killed")
    assert len(set(uuids)) == 6
    assert {uuid: stats["submissions"].get(uuid) for uuid in uuids} == dict.fromkeys(uuids, 1)
    assert stats["duplicate_submissions"] == {}
    triggerers = stack.query("SELECT COUNT(*) FROM job WHERE job_type = 'TriggererJob'")[0][0]
    assert triggerers == 2, "the second run must have been finished by a new triggerer"
