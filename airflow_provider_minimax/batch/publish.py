"""The end of a batch: rows priced, the spend summed, results pushed to XCom or written to storage,
the summary logged, and failed rows applied per ``on_row_error``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.batch.io import write_jsonl
from airflow_provider_minimax.exceptions import MiniMaxTaskFailedError
from airflow_provider_minimax.results import Spend

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from airflow_provider_minimax.batch.options import OnRowError
    from airflow_provider_minimax.batch.rows import Manifest, RowResult
    from airflow_provider_minimax.connection import MiniMaxConnectionSettings

#: Failed rows named in the task's error message (the output and the manifest list them all).
ROWS_IN_ERROR = 20


def priced(results: list[RowResult], settings: MiniMaxConnectionSettings) -> list[RowResult]:
    """The rows with their cost: the chat gateway reports none, so each row's is estimated.

    :param results: the rows.
    :param settings: the connection's settings (its API and chat prices).
    """
    if settings.api != "chat":
        return results
    prices = settings.prices
    return [r.model_copy(update={"cost": prices.estimate(r.usage)}) for r in results]


def batch_spend(start: Spend, manifest: Manifest, task_uuids: list[str], resends: int) -> Spend:
    """What the batch spent, for the summary line and lineage (``minimax_spend``).

    :param start: the spend of nothing yet, for the batch's connection, model and prompt.
    :param manifest: the rows' summary.
    :param task_uuids: the task API's taskUUIDs.
    :param resends: chat requests sent again after a lost answer.
    """
    return start.model_copy(
        update={
            "calls": manifest.rows,
            "usage": manifest.usage,
            "cost": manifest.cost,
            "cost_estimated": start.api == "chat" and manifest.cost is not None,
            "task_uuids": task_uuids,
            "resends": resends,
        }
    )


def publish(
    results: list[RowResult],
    manifest: Manifest,
    output_path: str | ObjectStoragePath | None,
    max_xcom_bytes: int,
    logger: Any,
) -> Any:
    """The XCom value: the rows, or with ``output_path`` the manifest of the rows written there.

    :param results: the rows, in input order.
    :param manifest: their summary (gets the output's URI).
    :param output_path: where to write the rows as JSONL, if anywhere.
    :param max_xcom_bytes: above this size the rows still go to XCom, with a warning.
    :param logger: where the lines go.
    """
    rows = [result.to_json() for result in results]
    if output_path is not None:
        manifest.path = write_jsonl(output_path, rows)
        logger.info("Wrote %d row(s) to %s", len(rows), manifest.path)
        return manifest.to_json()
    size = sum(len(json.dumps(row)) for row in rows)
    if size > max_xcom_bytes:
        # Failing here would throw away rows already paid for; push and ask for output_path.
        logger.warning(
            "The batch's results are %d bytes (> max_xcom_bytes=%d) and go to XCom whole; set "
            "output_path to write them to object storage and push only a manifest",
            size,
            max_xcom_bytes,
        )
    return rows


def conclude(
    context: Context, manifest: Manifest, value: Any, spend: Spend, on_row_error: OnRowError, logger: Any
) -> Any:
    """Log the summary and return ``value`` (the XCom), or fail after pushing it per ``on_row_error``.

    :param context: the task context.
    :param manifest: the rows' summary.
    :param value: the XCom value.
    :param spend: what the batch spent.
    :param on_row_error: ``fail`` or ``skip``.
    :param logger: where the lines go.
    """
    logger.info(
        "MiniMax batch done: %d succeeded, %d failed. %s",
        manifest.succeeded,
        manifest.failed,
        spend.summary(),
    )
    if manifest.failed and on_row_error == "fail":
        context["ti"].xcom_push(key="return_value", value=value)
        listed = ", ".join(
            f"row {item['row']} ({item['code']})" for item in manifest.failed_rows[:ROWS_IN_ERROR]
        )
        more = manifest.failed - min(manifest.failed, ROWS_IN_ERROR)
        raise MiniMaxTaskFailedError(
            f"{manifest.failed} of {manifest.rows} row(s) failed: {listed}"
            f"{f' and {more} more' if more else ''}. Every row's result was "
            f"{'written to ' + str(manifest.path) if manifest.path else 'pushed to XCom'}; a retry "
            "redoes only the failed rows. Set on_row_error='skip' to succeed with them marked.",
            code="rowsFailed",
        )
    return value
