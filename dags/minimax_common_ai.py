"""Label reviews with common.ai's ``@task.llm_batch`` on MiniMax, then summarise them with ``@task.llm``."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import ObjectStoragePath, Param, dag, task
from pydantic import BaseModel, Field

#: Param, then Airflow Variable ``minimax_output_dir``, then a temp dir; one folder per run, so a
#: retry of a run re-attaches to its own batch (``{{ ts }}`` would break that).
RESULT_PATH = (
    "{{ params.output_dir or var.value.get('minimax_output_dir', '"
    + (Path(tempfile.gettempdir()) / "minimax-output").as_posix()
    + "') }}/common_ai/{{ run_id }}"
)
REVIEWS = [
    "Absolutely loved it, would buy again.",
    "Broke after one use, very disappointed.",
    "Does what it says on the box. Nothing special.",
    "Shipping took three weeks but the product itself is great.",
    "质量很好, 物流也快, 推荐购买。",
    "The battery barely lasts an afternoon.",
]


class ReviewLabel(BaseModel):
    """What the batch extracts from one review."""

    sentiment: Literal["positive", "negative", "neutral"]
    topic: Literal["quality", "delivery", "price", "battery", "other"]
    summary: str = Field(description="One short sentence in English")


@dag(
    dag_id="minimax_common_ai",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["minimax", "example", "llm", "batch", "common-ai"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "output_dir": Param("", type="string", description="Where to write; empty: Variable or temp dir")
    },
    doc_md=__doc__
    + """

Uses only `apache-airflow-providers-common-ai`'s decorators, on MiniMax through this provider's
`pydanticai_minimax` connection type (install `airflow-provider-minimax[common-ai]`):

* `label_reviews`: `@task.llm_batch` with `model_id="minimax:m2.7@highspeed"` on the
  `pydanticai_minimax_default` connection (`api: task`). Each review is one async
  `textInference` task with a taskUUID derived from the task instance, the input and the
  position: a retry, or a worker lost between submit and bookkeeping, never pays twice.
  Rows land as JSONL under `result_path`; XCom gets the manifest.
* `count_labels` reads the rows back.
* `write_digest`: `@task.llm` on the `pydanticai_minimax_chat` connection (`api: chat`,
  model `minimax-m2.7`) writes a two-sentence digest; MiniMax's think block stays out of it.
""",
)
def minimax_common_ai() -> None:
    @task
    def reviews() -> list[str]:
        return REVIEWS

    @task.llm_batch(
        llm_conn_id="pydanticai_minimax_default",
        model_id="minimax:m2.7@highspeed",
        result_path=RESULT_PATH,
        output_type=ReviewLabel,
        system_prompt="You label customer reviews of consumer electronics.",
        max_tokens=2048,
        deferrable=True,
        poll_interval=30,
        pool="minimax",
    )
    def label_reviews(texts: list[str]) -> list[str]:
        return [f"Label this review:\n{text}" for text in texts]

    @task
    def count_labels(manifest: dict[str, Any]) -> dict[str, int]:
        rows = [
            json.loads(line) for line in ObjectStoragePath(manifest["result_uri"]).read_text().splitlines()
        ]
        counts: dict[str, int] = {}
        for row in rows:
            key = row["output"]["sentiment"] if row["status"] == "success" else row["status"]
            counts[key] = counts.get(key, 0) + 1
        return counts

    @task.llm(
        llm_conn_id="pydanticai_minimax_chat",
        system_prompt="You write two-sentence digests for a product team.",
        pool="minimax",
    )
    def write_digest(counts: dict[str, int]) -> str:
        return f"Review labels of this run: {json.dumps(counts)}. Write the digest."

    write_digest(count_labels(label_reviews(reviews())))


minimax_common_ai()
