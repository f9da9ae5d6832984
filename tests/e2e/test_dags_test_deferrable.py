"""``airflow dags test`` of a DAG with the deferrable operator, against the emulator on loopback.

Airflow runs in a subprocess on a throwaway AIRFLOW_HOME (SQLite); ``dags test`` runs the
trigger in line, so this drives the real task runner, deferral, trigger and resume.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_minimax.testing.emulator import EmulatorHandle

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).parent / "dags"
DAG_ID = "minimax_deferrable_e2e"
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


def test_dags_test_runs_the_deferrable_operator(
    airflow_env: dict[str, str], minimax_emulator: EmulatorHandle
) -> None:
    env = {**airflow_env, "AIRFLOW_CONN_MINIMAX_DEFAULT": minimax_emulator.connection_json("task")}
    run = subprocess.run(
        [AIRFLOW, "dags", "test", DAG_ID], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "running trigger in line" in run.stdout + run.stderr  # it really deferred
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    (raw,) = db.execute(
        "select value from xcom where dag_id = ? and task_id = 'ask' and key = 'return_value'", (DAG_ID,)
    ).fetchone()
    result = json.loads(raw)
    stored = minimax_emulator.state.tasks[result["task_uuid"]].results[0]
    assert result["text"] == stored["text"] and "Norway" in result["text"]
    assert minimax_emulator.state.submissions == {result["task_uuid"]: 1}
    assert "emulator-key" not in raw
