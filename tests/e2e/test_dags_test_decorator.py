"""``airflow dags test`` of a DAG using ``@task.minimax`` and a chat batch against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_minimax.testing.emulator import EmulatorHandle

DAGS = Path(__file__).parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# Generous: the machine may be loaded; a healthy run takes well under a minute.
TIMEOUT = 240
BATCH_ROWS = 30  # the rows of the DAG's chat batch


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run one ``airflow`` CLI command; fail the test with its output when it fails."""
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    output = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{output}"
    return done


@pytest.mark.e2e
def test_dags_test_runs_the_decorated_tasks_and_a_chat_batch(
    minimax_emulator: EmulatorHandle, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW_CONN_MINIMAX_DEFAULT": minimax_emulator.connection_json("task"),
        "AIRFLOW_CONN_MINIMAX_CHAT": minimax_emulator.connection_json("chat"),
    }
    airflow(env, "db", "migrate")

    done = airflow(env, "dags", "test", "minimax_decorator_e2e")

    output = done.stdout + done.stderr
    assert "E2E-OK" in output  # printed by the DAG's check task once every XCom is as promised
    assert "state=success" in output
    # One chat request per batch row, each sent once, plus the two decorated tasks.
    assert minimax_emulator.stats()["requests"] == {"chat": 1 + BATCH_ROWS, "task": 1}
