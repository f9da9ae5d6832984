"""The demo's accounting: tokens and cost read from XCom values, and the table it prints."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

from airflow_provider_minimax.results import Usage
from airflow_provider_minimax.testing.demo import CHAT_PRICES, Endpoints
from airflow_provider_minimax.testing.demo_report import (
    RunReport,
    api_table,
    spend_by_api,
    table,
    usage_of,
)


def test_usage_of_counts_each_reported_figure_once() -> None:
    text_inference = {"text": "hi", "usage": {"total_tokens": 30}, "cost": 0.002, "task_uuid": "u"}
    batch_rows = [
        {"row": 0, "usage": {"total_tokens": 10}, "cost": 0.001},
        {"row": 1, "usage": {"total_tokens": 5}, "cost": None},
    ]
    # A manifest's totals stand for its rows: the rows inside it are not added again.
    manifest = {"usage": {"total_tokens": 15}, "cost": 0.001, "failed_rows": [{"usage": {"total_tokens": 9}}]}
    assert usage_of(text_inference) == (30, 0.002)
    assert usage_of(batch_rows) == (15, 0.001)
    assert usage_of(manifest) == (15, 0.001)
    assert usage_of({"usage": {"totalTokens": 7}}) == (7, 0.0)
    assert usage_of("plain answer") == (0, 0.0)


def test_table_totals_and_labels_failed_tasks() -> None:
    reports = [
        RunReport("dag_a", "success", Counter(success=3), 1200, 0.5, 10.0),
        RunReport("dag_b", "failed", Counter(success=1, failed=1), 0, 0.0, 2.5),
    ]
    lines = table(reports).splitlines()
    assert lines[0].split() == ["DAG", "state", "tasks", "tokens", "cost", "(USD)", "time", "(s)"]
    assert lines[2].split() == ["dag_a", "success", "3", "1,200", "0.5000", "10.0"]
    assert "2 (1 success, 1 failed)" in lines[3]
    assert lines[-1].split() == ["total", "5", "1,200", "0.5000", "12.5"]


def test_connections_carry_the_key_but_repr_does_not() -> None:
    target = Endpoints("http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1", "secret-key", "emulator")
    conns = {name: json.loads(value) for name, value in target.connections().items()}
    assert conns["AIRFLOW_CONN_MINIMAX_DEFAULT"]["extra"] == {"api": "task"}
    assert conns["AIRFLOW_CONN_MINIMAX_CHAT"]["extra"] == {"api": "chat", **CHAT_PRICES}
    assert {c["password"] for c in conns.values()} == {"secret-key"}
    assert "secret-key" not in repr(target)


def test_api_table_shows_tokens_by_kind_and_marks_the_estimated_cost() -> None:
    totals = {
        "task": (Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, thinking_tokens=2), 0.25),
        "chat": (Usage(prompt_tokens=20, completion_tokens=6, total_tokens=26, cached_tokens=8), 0.5),
    }
    lines = api_table(totals).splitlines()

    assert lines[0].split() == [
        "API",
        "prompt",
        "cached",
        "completion",
        "thinking",
        "reasoning",
        "total",
        "cost",
        "(USD)",
    ]
    assert lines[2].split() == ["chat", "20", "8", "6", "-", "-", "26", "~0.5000"]
    assert lines[3].split() == ["task", "10", "-", "5", "2", "-", "15", "0.2500"]


def test_spend_by_api_follows_each_tasks_connection(tmp_path: Path) -> None:
    db = tmp_path / "airflow.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE xcom (dag_id, run_id, task_id, map_index, key, value JSON)")
        conn.execute(
            "CREATE TABLE rendered_task_instance_fields (dag_id, run_id, task_id, map_index, rendered_fields)"
        )
        for task_id, conn_id in (("chat", "minimax_chat"), ("task", "minimax_default"), ("other", "x")):
            fields = json.dumps({"conn_id": conn_id})
            conn.execute(
                "INSERT INTO rendered_task_instance_fields VALUES ('d', 'r', ?, -1, ?)", (task_id, fields)
            )
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cached_tokens": 4}
        rows = [
            ("chat", "usage", json.dumps(usage)),
            ("chat", "cost", 0.5),  # SQLite hands a bare JSON number back as a float
            ("task", "return_value", json.dumps({"text": "t", "usage": {"total_tokens": 7}, "cost": 0.25})),
            ("other", "cost", 9.0),
        ]
        conn.executemany("INSERT INTO xcom VALUES ('d', 'r', ?, -1, ?, ?)", rows)
        conn.commit()

    totals = spend_by_api(db)

    assert totals["chat"] == (Usage(**usage), 0.5)
    assert totals["task"] == (Usage(total_tokens=7), 0.25)
    assert set(totals) == {"chat", "task"}
