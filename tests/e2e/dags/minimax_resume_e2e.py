"""A DAG for the e2e test of resuming under ``airflow dags test``, which drops the deferral's kwargs.

``enrich`` defers a batch over the task API; ``fjord`` asks for a ``Fjord`` the emulator misses
twice (it ignores ``multipleOf``: for this prompt its first two answers give an odd length), so
the task resumes three times and must count its re-asks and sum their usage across resumes.
The emulator derives its answers from the whole request, schema (docstring) included: editing
``Fjord`` or the prompt changes how many answers it takes, which the test checks exactly.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from pydantic import BaseModel, Field

from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator


class Fjord(BaseModel):
    """A fjord, with its length rounded to an even number of kilometres."""

    name: str
    length_km: int = Field(ge=1, le=300, multiple_of=2)


WAIT = {"poll_interval": 0.2, "max_poll_interval": 0.5, "wait_timeout": 60, "deferrable": True}

with DAG(
    dag_id="minimax_resume_e2e",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # A resume that loses its state must fail the run, not hide behind a retry.
    default_args={"retries": 0},
    tags=["e2e"],
):
    MiniMaxBatchOperator(
        task_id="enrich",
        rows=[{"city": city} for city in ("Oslo", "Bergen", "Tromsø")],
        prompt_template="Describe {{ city }} in one line.",
        **WAIT,
    )
    MiniMaxTextInferenceOperator(
        task_id="fjord",
        prompt="Name one fjord in Scotland.",
        output_type=Fjord,
        max_output_retries=2,
        **WAIT,
    )
