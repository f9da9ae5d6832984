"""A DAG for the e2e test: one deferrable MiniMax textInference against the emulator."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator

with DAG(
    dag_id="minimax_deferrable_e2e",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"country": "Norway"},
    tags=["e2e"],
):
    MiniMaxTextInferenceOperator(
        task_id="ask",
        prompt="Name one fjord in {{ params.country }}.",
        deferrable=True,
        seed=11,
        poll_interval=0.2,
        max_poll_interval=0.5,
        wait_timeout=60,
    )
