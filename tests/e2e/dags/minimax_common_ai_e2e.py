"""common.ai's own operators on ``pydanticai_minimax`` connections, for ``airflow dags test`` (emulator).

Connections: ``mm_task`` (``api: task``) and ``mm_chat`` (``api: chat``). ``MINIMAX_E2E_RESULT_PATH``
is the batch's ``result_path``. The batch's first try stops between the submit and the recorded
state (a simulated worker crash); its retry must re-attach without submitting anything again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from airflow.providers.common.ai.batch import state
from airflow.providers.common.ai.operators.agent import AgentOperator
from airflow.providers.common.ai.operators.llm import LLMOperator
from airflow.providers.common.ai.operators.llm_batch import LLMBatchOperator
from airflow.providers.common.ai.operators.llm_branch import LLMBranchOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, ObjectStoragePath, task
from pydantic import BaseModel
from pydantic_ai.toolsets import FunctionToolset

BATCH_SIZE = 200
RESULT_PATH = os.environ.get("MINIMAX_E2E_RESULT_PATH", "file:///tmp/minimax_common_ai_e2e")


class City(BaseModel):
    """What the structured LLMOperator tasks ask for."""

    name: str
    population: int


def city_population(city: str) -> str:
    """Look up how many people live in a city.

    :param city: the city's name.
    """
    return f"{city} has 1234 inhabitants"


class SimulatedCrash(RuntimeError):
    """The worker died between the submit and recording its answer."""


def crash_after_submit_on_first_try(context: Any) -> None:
    """Make the first try die right after the paid submit, before the batch id is recorded."""
    if context["ti"].try_number == 1:
        mock.patch.object(state, "write_submitted", side_effect=SimulatedCrash("after submit")).start()
    else:
        mock.patch.stopall()  # ``dags test`` runs every try in this one process


with DAG("minimax_common_ai_e2e", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    plain = {
        api: LLMOperator(task_id=f"llm_{api}", prompt="Name one river.", llm_conn_id=f"mm_{api}")
        for api in ("task", "chat")
    }
    structured = {
        api: LLMOperator(
            task_id=f"llm_{api}_city",
            prompt="Which is the largest city?",
            llm_conn_id=f"mm_{api}",
            output_type=City,
            serialize_output=True,
        )
        for api in ("task", "chat")
    }
    ask, follow_up = (
        AgentOperator(
            task_id=task_id,
            prompt=prompt,
            llm_conn_id="mm_chat",
            system_prompt="Use the tool.",
            toolsets=[FunctionToolset([city_population])],
            message_history=history,
        )
        for task_id, prompt, history in (
            ("agent_ask", "How many people live in Oslo?", "[]"),
            (
                "agent_follow_up",
                "And in Bergen?",
                "{{ ti.xcom_pull(task_ids='agent_ask', key='message_history') }}",
            ),
        )
    )
    branch = LLMBranchOperator(
        task_id="branch", prompt="Is the river long?", llm_conn_id="mm_chat", system_prompt="Pick one."
    )
    branches = [EmptyOperator(task_id="long_river"), EmptyOperator(task_id="short_river")]
    batch = LLMBatchOperator(
        task_id="batch",
        requests=[f"Describe product {i} in five words." for i in range(BATCH_SIZE)],
        result_path=RESULT_PATH,
        llm_conn_id="mm_task",
        model_id="minimax:m2.7@highspeed",
        deferrable=False,
        poll_interval=30,
        retries=1,
        retry_delay=timedelta(seconds=0),
        pre_execute=crash_after_submit_on_first_try,
    )

    @task
    def check(manifest: dict[str, Any], **context: Any) -> None:
        ti = context["ti"]
        for api in ("task", "chat"):
            answer = ti.xcom_pull(task_ids=f"llm_{api}")
            assert isinstance(answer, str) and answer.startswith("[minimax-emulator]"), answer
            city = ti.xcom_pull(task_ids=f"llm_{api}_city")
            City.model_validate(city)
        follow = ti.xcom_pull(task_ids="agent_follow_up")
        assert "Based on the tool results" in follow, follow
        assert manifest["request_count"] == BATCH_SIZE and manifest["counts"]["succeeded"] == BATCH_SIZE
        rows = [
            json.loads(line) for line in ObjectStoragePath(manifest["result_uri"]).read_text().splitlines()
        ]
        assert [row["index"] for row in rows] == list(range(BATCH_SIZE))
        assert all(row["usage"]["cost_usd"] > 0 and row["usage"]["thinking_tokens"] > 0 for row in rows)
        print(f"BATCH_ID={manifest['batch_id']}")
        print("E2E-OK")

    ask >> follow_up
    branch >> branches
    [*plain.values(), *structured.values(), follow_up] >> check(batch.output)
