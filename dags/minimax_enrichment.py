"""Classify and extract facts from customer notes with MiniMax M2.7, then write the table back."""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
import tempfile
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import Asset, ObjectStoragePath, Param, dag, task
from pydantic import BaseModel, Field

from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator

log = logging.getLogger(__name__)

INSIGHTS = Asset(name="minimax_customer_insights", group="minimax")
CUSTOMERS_CSV = Path(__file__).parent / "data" / "customers.csv"
#: Param, then Airflow Variable ``minimax_output_dir``, then a temp dir.
OUTPUT_ROOT = (
    "{{ params.output_dir or var.value.get('minimax_output_dir', '"
    + (Path(tempfile.gettempdir()) / "minimax-output").as_posix()
    + "') }}"
)
#: One folder per run date (``run_after``: manual runs in Airflow 3 have no logical date).
RUN_DIR = OUTPUT_ROOT + "/enrichment/{{ dag_run.run_after | ds }}"


class CustomerInsight(BaseModel):
    """What one customer note says: classification and extracted facts."""

    segment: Literal["enterprise", "mid_market", "small_business", "unknown"]
    intent: Literal["purchase", "support", "complaint", "feedback", "question"]
    sentiment: Literal["positive", "neutral", "negative"]
    urgency: Literal["low", "medium", "high"]
    products: list[str] = Field(description="Products or features the customer mentions")
    budget: str | None = Field(description="Budget with its currency, as written; null if none")
    deadline: str | None = Field(description="Any deadline or timeframe, as written; null if none")
    language: str = Field(description="ISO 639-1 code of the note's language")
    summary: str = Field(description="One sentence in English")


@dag(
    dag_id="minimax_enrichment",
    schedule="30 1 * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["minimax", "example", "llm", "batch"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True},
    params={
        "input_csv": Param(str(CUSTOMERS_CSV), type="string", description="CSV with a customer_id column"),
        "output_dir": Param("", type="string", description="Where to write; empty: Variable or temp dir"),
        "max_failed_ratio": Param(
            0.1,
            type="number",
            minimum=0,
            maximum=1,
            description="Fail the run above this share of failed rows",
        ),
    },
    doc_md=__doc__
    + """

Reads `input_csv` (sample: `dags/data/customers.csv`, English and Chinese notes) and sends
every row through **one** `MiniMaxBatchOperator` task: one prompt per row, classification
(segment, intent, sentiment, urgency) and extraction (products, budget, deadline, language)
validated against the `CustomerInsight` pydantic model. The rows go to the task API as async
tasks with taskUUIDs derived from the task instance and the row, and the task waits for all of
them in one deferral (`deferrable=True`): a retry pays only for rows that failed or never ran.
Results are written as JSONL (only a small manifest goes to XCom, so this scales to large
tables), then `write_back` joins them to the input and writes:

* `<output>/enrichment/<date>/customers_enriched.csv`, one line per input row;
* the `customer_insights` table of `<output>/enrichment/customers.db` (SQLite), upserted on
  `customer_id`, so reruns replace rather than duplicate.

Rows the model could not answer are kept with `enrichment_status = failed` and their error,
and the run fails when more than `max_failed_ratio` of the rows failed.
Connection `minimax_default` (task API); pool `minimax`.
""",
)
def minimax_enrichment() -> None:
    """Batch-enrich the customer notes, then write the enriched table back."""
    enrich = MiniMaxBatchOperator(
        task_id="enrich_customers",
        conn_id="minimax_default",
        input_path="{{ params.input_csv }}",
        prompt_template=(
            "Customer {{ name }} of {{ company }} ({{ country }}) wrote:\n\n{{ note }}\n\n"
            "Classify the note and extract the facts it states. Do not guess missing facts."
        ),
        system_prompt="You are a careful CRM analyst. Answer in English except for quoted values.",
        output_type=CustomerInsight,
        temperature=0.1,
        on_row_error="skip",
        output_path=RUN_DIR + "/insights.jsonl",
        deferrable=True,
        pool="minimax",
    )

    @task(outlets=[INSIGHTS])
    def write_back(manifest: dict[str, Any], out_dir: str, params: dict[str, Any] | None = None) -> str:
        """Join the results to the input rows; write the CSV and upsert the SQLite table."""
        assert params is not None  # Airflow passes the run's params.
        with open(params["input_csv"], newline="", encoding="utf-8") as source:
            customers = list(csv.DictReader(source))
        # The manifest's path is a URI (file:, s3:, gs:...): read it through Airflow's object storage.
        with ObjectStoragePath(manifest["path"]).open("r", encoding="utf-8") as lines:
            results = {item["row"]: item for item in map(json.loads, lines)}
        columns = list(CustomerInsight.model_fields)
        enriched = []
        for index, customer in enumerate(customers):
            result = results[index]
            insight = result["output"] if result["status"] == "success" else {}
            values = {
                name: json.dumps(v, ensure_ascii=False) if isinstance(v := insight.get(name), list) else v
                for name in columns
            }
            enriched.append(
                {
                    **customer,
                    **values,
                    "enrichment_status": result["status"],
                    "enrichment_error": result.get("error_message"),
                }
            )
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "customers_enriched.csv", "w", newline="", encoding="utf-8") as target:
            writer = csv.DictWriter(target, fieldnames=list(enriched[0]))
            writer.writeheader()
            writer.writerows(enriched)
        table = [*enriched[0], "enriched_for"]
        names, marks = ", ".join(f'"{c}"' for c in table), ", ".join("?" * len(table))
        with closing(sqlite3.connect(folder.parent / "customers.db")) as db, db:
            db.execute(f"CREATE TABLE IF NOT EXISTS customer_insights ({names}, PRIMARY KEY (customer_id))")
            # Upsert on customer_id: a rerun or a retry replaces rows instead of duplicating them.
            db.executemany(
                f"INSERT OR REPLACE INTO customer_insights ({names}) VALUES ({marks})",
                [[*row.values(), folder.name] for row in enriched],
            )
        failed = sum(row["enrichment_status"] != "success" for row in enriched)
        log.info("Enriched %d rows (%d failed) into %s", len(enriched), failed, folder)
        if failed > params["max_failed_ratio"] * len(enriched):
            raise ValueError(f"{failed} of {len(enriched)} rows failed enrichment; see {folder}")
        return str(folder / "customers_enriched.csv")

    write_back(enrich.output, out_dir=RUN_DIR)


minimax_enrichment()
