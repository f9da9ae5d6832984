"""End-to-end DAG for ``@task.minimax`` and a chat-API batch: structured output, streaming, rows.

Run by tests/e2e/test_dags_test_decorator.py with ``airflow dags test`` against the emulator; the
``check`` task fails the run when an answer or its XComs are not what the provider promises.
"""

from __future__ import annotations

import datetime

from airflow.sdk import dag, task
from pydantic import BaseModel, Field

from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator

# Enough rows that checkpoint saves overlap rows finishing (one save per 10 % of the rows).
BATCH_ROWS = 30


class Ticket(BaseModel):
    """A support ticket extracted from free text."""

    title: str
    priority: int = Field(ge=1, le=5)


@dag(schedule=None, start_date=datetime.datetime(2025, 1, 1), catchup=False, tags=["minimax", "e2e"])
def minimax_decorator_e2e() -> None:
    """Triage a message with structured output, then stream a reply over the task API."""

    @task.minimax(conn_id="minimax_chat", output_type=Ticket, system_prompt="You triage support mail.")
    def triage(message: str) -> str:
        return f"Extract a ticket from: {message}"

    @task.minimax(conn_id="minimax_default", stream=True, include_reasoning=True)
    def reply(ticket: dict) -> list[dict]:
        return [{"role": "user", "content": f"Write a short reply about: {ticket['title']}"}]

    slogans = MiniMaxBatchOperator(
        task_id="slogans",
        conn_id="minimax_chat",
        rows=[{"product": f"lamp {n}"} for n in range(BATCH_ROWS)],
        prompt_template="Write a slogan for {{ product }}",
        max_concurrency=8,
    )

    @task
    def check(ticket: dict, answer: str, rows: list[dict], ti=None) -> None:
        assert [row["row"] for row in rows] == list(range(BATCH_ROWS)), rows
        assert all(row["status"] == "success" and row["text"] for row in rows), rows
        Ticket.model_validate(ticket)
        assert answer.startswith("[minimax-emulator]"), answer
        assert "<think>" not in answer
        usage = ti.xcom_pull(task_ids="reply", key="usage")
        assert usage["total_tokens"] > 0, usage
        assert ti.xcom_pull(task_ids="reply", key="cost") > 0
        assert ti.xcom_pull(task_ids="reply", key="reasoning")
        assert ti.xcom_pull(task_ids="triage", key="cost") is None
        print(f"E2E-OK ticket={ticket} usage={usage}")

    ticket = triage("The export button crashes the app for every customer since this morning.")
    check(ticket, reply(ticket), slogans.output)


minimax_decorator_e2e()
