"""The example DAGs import cleanly and keep the conventions users copy from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

try:  # Airflow >= 3.2 moved the DagBag next to the dag-processor
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

from airflow_provider_minimax.testing.demo import EXAMPLE_DAGS

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    """Every DAG of the dags folder, parsed like the dag-processor does."""
    # Older Airflow adds its own example DAGs unless told not to (newer ones have no such option).
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        return DagBag(dag_folder=DAGS_FOLDER)


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_the_demo_runs_every_example_dag(dagbag: DagBag) -> None:
    assert set(dagbag.dag_ids) == set(EXAMPLE_DAGS)


@pytest.mark.parametrize("dag_id", EXAMPLE_DAGS)
def test_example_dag_conventions(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert "minimax" in dag.tags
    assert dag.doc_md
    minimax_tasks = [
        task
        for task in dag.tasks
        # A mapped task's operator is its operator_class.
        # common.ai's operators reach MiniMax through a pydanticai_minimax connection.
        if getattr(task, "operator_class", type(task)).__module__.startswith(
            ("airflow_provider_minimax", "airflow.providers.common.ai")
        )
    ]
    # Every task that calls MiniMax is rate-limited by the shared pool.
    assert {task.task_id: task.pool for task in minimax_tasks} == {
        t.task_id: "minimax" for t in minimax_tasks
    }
    if dag_id != "minimax_summaries_digest":
        assert minimax_tasks, "an example DAG must call MiniMax"


def test_summarisation_chunks_fit_the_budget_in_order() -> None:
    spec = importlib.util.spec_from_file_location(
        "summarisation", DAGS_FOLDER / "minimax_document_summarisation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    long_text = (DAGS_FOLDER / "data" / "documents" / "incident-review-long.md").read_text(encoding="utf-8")
    for text in (long_text, "字" * 2500, "a" * 9000):
        chunks = module.split_to_budget(text, 1000)
        assert all(module.estimate_tokens(c) <= 1000 for c in chunks)
        assert "".join(chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert len(module.split_to_budget(long_text, 1000)) > 1, "the long sample must need chunking"
