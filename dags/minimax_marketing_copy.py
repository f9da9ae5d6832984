"""Nightly marketing copy (title, body, hashtags) for every product and channel, 小红书 included."""

# ruff: noqa: RUF001  (the 小红书 brief is Chinese text: its full-width punctuation is intended)
from __future__ import annotations

import json
import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, dag, task
from pydantic import BaseModel, Field

from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator

log = logging.getLogger(__name__)

COPY = Asset(name="minimax_marketing_copy", group="minimax")
PRODUCTS_FILE = Path(__file__).parent / "data" / "products.json"
#: Param, then Airflow Variable ``minimax_output_dir``, then a temp dir.
OUTPUT_ROOT = (
    "{{ params.output_dir or var.value.get('minimax_output_dir', '"
    + (Path(tempfile.gettempdir()) / "minimax-output").as_posix()
    + "') }}"
)
#: One folder per run date (``run_after``: manual runs in Airflow 3 have no logical date).
RUN_DIR = OUTPUT_ROOT + "/marketing/{{ dag_run.run_after | ds }}"

#: One brief per channel: the system prompt that sets language, tone and length.
CHANNEL_BRIEFS: dict[str, str] = {
    "instagram": (
        "You write Instagram captions in English for a premium tea brand: warm, sensory, at most "
        "60 words, one call to action, 5 to 8 hashtags without spaces."
    ),
    "email": (
        "You write one product spotlight for the brand's English newsletter: the title is the "
        "email subject (at most 60 characters), the body 80 to 120 words, 0 to 3 hashtags."
    ),
    "xiaohongshu": (
        "你是小红书种草博主。用简体中文写一篇种草笔记：标题不超过 20 个字，可以带 1 到 2 个 emoji；"
        "正文用第一人称分享真实体验，口语化，分 3 到 4 段，适当使用 emoji；"
        "给出 5 到 8 个话题标签，例如 #好物分享 #茶生活。不要夸大功效。"
    ),
}


class SocialCopy(BaseModel):
    """The copy for one product on one channel."""

    title: str = Field(description="Headline, email subject or note title")
    body: str = Field(description="The post or email body")
    hashtags: list[str] = Field(description="Hashtags, each starting with #", max_length=10)


def operator_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """The per-item arguments of the mapped MiniMax task (the rest of the job is for the writer).

    :param job: one product x channel job
    """
    return {"prompt": job["prompt"], "system_prompt": job["system_prompt"]}


@dag(
    dag_id="minimax_marketing_copy",
    schedule="0 2 * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["minimax", "example", "llm", "marketing"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True},
    params={
        "products_file": Param(str(PRODUCTS_FILE), type="string", description="JSON list of products"),
        "channels": Param(
            list(CHANNEL_BRIEFS),
            type="array",
            items={"type": "string", "enum": list(CHANNEL_BRIEFS)},
            description="Channels to write for",
        ),
        "max_products": Param(0, type="integer", minimum=0, description="Only the first N products; 0: all"),
        "output_dir": Param("", type="string", description="Where to write; empty: Variable or temp dir"),
    },
    doc_md=__doc__
    + """

Every night at 02:00 UTC, reads `products_file` (sample: `dags/data/products.json`) and writes
copy for each product on each channel (Instagram, newsletter email, and 小红书 notes in
Chinese). Each answer is validated against the `SocialCopy` pydantic model (title, body,
hashtags) and re-asked when it does not match. Results land in
`<output>/marketing/<date>/<channel>/<sku>.md` plus `copy.json`, and the `minimax_marketing_copy`
Asset is updated for downstream publishing DAGs.

**Why one deferrable `MiniMaxTextInferenceOperator` per product x channel, not the batch
operator:** there are tens to hundreds of items, each a different creative brief, and
marketing reviews them one by one. One mapped task instance per item means per-item retries,
per-item logs and "clear" to redo one product's 小红书 note without paying for the rest.
`deferrable=True` hands the wait to the triggerer, so no worker slot is held while the model
writes, and the triggerer's shared poller checks every deferred item of a connection in one
`getResponse` request per tick: mapping costs no extra polling. For thousands of homogeneous
rows, use `MiniMaxBatchOperator` instead (see `minimax_enrichment`).

* Connection `minimax_default` (task API); pool `minimax` caps concurrent submissions.
* Retries never pay twice: taskUUIDs are derived from the task instance, a retry re-attaches.
* Trigger with `{"max_products": 1, "channels": ["xiaohongshu"]}` for a quick run.
""",
)
def minimax_marketing_copy() -> None:
    """Plan product x channel jobs, write each with MiniMax in the triggerer, publish the files."""

    @task
    def plan_jobs(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One job per product and channel, with its prompt and channel brief."""
        assert params is not None  # Airflow passes the run's params.
        channels = params["channels"]
        products = json.loads(Path(params["products_file"]).read_text(encoding="utf-8"))
        if params["max_products"]:
            products = products[: params["max_products"]]
        jobs = [
            {
                "sku": product["sku"],
                "channel": channel,
                "system_prompt": CHANNEL_BRIEFS[channel],
                # The first line doubles as the map index label in the UI.
                "prompt": f"{product['sku']} on {channel}\n\n"
                + "\n".join(f"{key}: {value}" for key, value in product.items()),
            }
            for product in products
            for channel in channels
        ]
        log.info("%d products x %d channels = %d jobs", len(products), len(channels), len(jobs))
        return jobs

    jobs = plan_jobs()

    copy = MiniMaxTextInferenceOperator.partial(
        task_id="write_copy",
        conn_id="minimax_default",
        output_type=SocialCopy,
        temperature=0.9,
        max_tokens=2048,
        deferrable=True,
        wait_timeout=timedelta(minutes=30),
        pool="minimax",
        map_index_template="{{ task.prompt.splitlines()[0] }}",
    ).expand_kwargs(jobs.map(operator_kwargs))

    @task(outlets=[COPY])
    def publish(jobs: list[dict[str, Any]], results: list[dict[str, Any]], out_dir: str) -> dict[str, Any]:
        """Write one Markdown file per product and channel, plus copy.json with every item."""
        folder = Path(out_dir)
        items = []
        for job, result in zip(jobs, results, strict=True):
            post = SocialCopy.model_validate(result["output"])
            path = folder / job["channel"] / f"{job['sku']}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {post.title}\n\n{post.body}\n\n{' '.join(post.hashtags)}\n", encoding="utf-8")
            items.append({"sku": job["sku"], "channel": job["channel"], **post.model_dump()})
        (folder / "copy.json").write_text(json.dumps(items, ensure_ascii=False, indent=2), encoding="utf-8")
        log.info("Wrote %d pieces of copy to %s", len(items), folder)
        return {"folder": str(folder), "items": len(items)}

    publish(jobs, copy.output, out_dir=RUN_DIR)


minimax_marketing_copy()
