"""The installed provider as the Airflow CLI sees it: listed, its hook known, its connection testable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_minimax.testing.emulator import EMULATOR_API_KEY, EmulatorHandle


def _airflow(
    home: Path, *args: str, conn: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the Airflow CLI on a throwaway AIRFLOW_HOME (no database needed for these commands).

    :param home: the AIRFLOW_HOME.
    :param args: the CLI arguments.
    :param conn: the ``minimax_default`` connection, set through ``AIRFLOW_CONN_MINIMAX_DEFAULT``.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        # Airflow 3.0 logs to stdout, ahead of the JSON the tests read.
        AIRFLOW__LOGGING__LOGGING_LEVEL="ERROR",
    )
    if conn is not None:
        env["AIRFLOW_CONN_MINIMAX_DEFAULT"] = json.dumps(conn)
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _json_output(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    """The JSON array the CLI printed (log lines before it are skipped)."""
    assert result.returncode == 0, result.stderr
    start = result.stdout.index("[")
    return json.loads(result.stdout[start:])


def test_providers_list_shows_the_package(tmp_path: Path) -> None:
    rows = _json_output(_airflow(tmp_path, "providers", "list", "-o", "json"))
    assert "airflow-provider-minimax" in {row["package_name"] for row in rows}


def test_providers_hooks_shows_the_minimax_connection_type(tmp_path: Path) -> None:
    rows = _json_output(_airflow(tmp_path, "providers", "hooks", "-o", "json"))
    (row,) = [row for row in rows if row["connection_type"] == "minimax"]
    assert row["class"] == "airflow_provider_minimax.hooks.minimax.MiniMaxHook"
    assert row["package_name"] == "airflow-provider-minimax"


@pytest.mark.parametrize("api", ["task", "chat"])
def test_connections_test_succeeds_against_a_loopback_server(
    tmp_path: Path, minimax_emulator: EmulatorHandle, api: str
) -> None:
    host = minimax_emulator.base_url if api == "task" else minimax_emulator.chat_base_url
    conn = {"conn_type": "minimax", "host": host, "password": EMULATOR_API_KEY, "extra": {"api": api}}
    result = _airflow(tmp_path, "connections", "test", "minimax_default", conn=conn)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connection success!" in result.stdout
    # test_connection spends nothing: no textInference reached the task API, the chat API got one call
    stats = minimax_emulator.stats()
    assert stats["submissions"] == {}
    assert stats["task_items"].get("textInference", 0) == 0
    assert stats["poll_items"] == (1 if api == "task" else 0)
    assert stats["chat_requests"] == (1 if api == "chat" else 0)


def test_connections_test_reports_a_bad_key_without_echoing_it(
    tmp_path: Path, minimax_emulator: EmulatorHandle
) -> None:
    conn = {"conn_type": "minimax", "host": minimax_emulator.base_url, "password": "sk-SECRET-123"}
    result = _airflow(tmp_path, "connections", "test", "minimax_default", conn=conn)
    # No exit status check: the CLI of Airflow 3.0 and 3.1 exits 0 on a failed test.
    assert "Connection failed!" in result.stdout
    assert "key was refused" in result.stdout
    assert "sk-SECRET-123" not in result.stdout + result.stderr
