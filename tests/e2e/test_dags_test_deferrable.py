"""``airflow dags test`` of DAGs with the deferrable operators, against the emulator on loopback.

Airflow runs in a subprocess on a throwaway AIRFLOW_HOME (SQLite); ``dags test`` runs the
trigger in line, so this drives the real task runner, deferral, trigger and resume. It resumes
with the trigger's event only (the triggerer also passes the deferral's kwargs back), so the
operators must find their resume state in the task-state store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_minimax.testing.emulator import EmulatorHandle

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).parent / "dags"
DAG_ID = "minimax_deferrable_e2e"
RESUME_DAG_ID = "minimax_resume_e2e"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An AIRFLOW_HOME with a migrated SQLite database, shared by this module's tests."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    return env


def dags_test(env: dict[str, str], dag_id: str) -> sqlite3.Connection:
    """Run ``airflow dags test`` of a DAG, check it succeeded, and open the database it wrote.

    :param env: the Airflow environment, with the connections the DAG uses.
    :param dag_id: the DAG.
    """
    run = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "running trigger in line" in run.stdout + run.stderr  # it really deferred
    return sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")


def xcom(db: sqlite3.Connection, dag_id: str, task_id: str) -> tuple[str, Any]:
    """A task's return value: as stored, and decoded.

    :param db: the Airflow database.
    :param dag_id: the DAG.
    :param task_id: the task.
    """
    (raw,) = db.execute(
        "select value from xcom where dag_id = ? and task_id = ? and key = 'return_value'", (dag_id, task_id)
    ).fetchone()
    return raw, json.loads(raw)


def test_dags_test_runs_the_deferrable_operator(
    airflow_env: dict[str, str], minimax_emulator: EmulatorHandle
) -> None:
    env = {**airflow_env, "AIRFLOW_CONN_MINIMAX_DEFAULT": minimax_emulator.connection_json("task")}
    raw, result = xcom(dags_test(env, DAG_ID), DAG_ID, "ask")
    stored = minimax_emulator.state.tasks[result["task_uuid"]].results[0]
    assert result["text"] == stored["text"] and "Norway" in result["text"]
    assert minimax_emulator.state.submissions == {result["task_uuid"]: 1}
    assert "emulator-key" not in raw


def test_dags_test_resumes_batch_and_re_asks_in_one_try(
    airflow_env: dict[str, str], minimax_emulator: EmulatorHandle
) -> None:
    env = {**airflow_env, "AIRFLOW_CONN_MINIMAX_DEFAULT": minimax_emulator.connection_json("task")}
    db = dags_test(env, RESUME_DAG_ID)
    tries = db.execute(
        "select task_id, state, try_number from task_instance where dag_id = ?", (RESUME_DAG_ID,)
    ).fetchall()
    assert sorted(tries) == [("enrich", "success", 1), ("fjord", "success", 1)]
    rows = xcom(db, RESUME_DAG_ID, "enrich")[1]
    assert [(row["row"], row["status"]) for row in rows] == [(0, "success"), (1, "success"), (2, "success")]
    state = minimax_emulator.state
    answers = set(state.submissions) - {row["task_uuid"] for row in rows}
    assert len(answers) == 3 and set(state.submissions.values()) == {1}  # two re-asks, each paid once
    fjord = xcom(db, RESUME_DAG_ID, "fjord")[1]
    assert fjord["output"]["length_km"] % 2 == 0
    paid = sum(state.tasks[uuid].results[0]["usage"]["totalTokens"] for uuid in answers)
    assert fjord["usage"]["total_tokens"] == paid  # every answer's usage, not only the last one's
