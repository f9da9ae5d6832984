"""A batch streamed from ``input_path`` to ``output_path`` in two passes over the file.

The first pass renders and checks every row without keeping it (bad input fails before any
HTTP call, and the row count is known for the progress line); the second runs the rows window
after window and appends each window's results to the output in input order. Memory holds one
window's prompts and results (plus the checkpoint of a retried try), whatever the file's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.batch.io import JsonlWriter

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_minimax.batch.progress import Progress
    from airflow_provider_minimax.batch.prompts import RowPrompts
    from airflow_provider_minimax.batch.rows import Manifest, RowResult


def checked_count(
    record_windows: Iterable[tuple[int, list[dict[str, Any]]]],
    prompts: RowPrompts,
    check: Callable[[dict[int, str], dict[int, Any]], object],
) -> int:
    """The first pass: render and check every row, keeping none; how many rows there are.

    :param record_windows: the input's windows, each with the index of its first row.
    :param prompts: renders each row's prompt and checks its image.
    :param check: builds (validates) a window's requests from its prompts and images.
    """
    count = 0
    for offset, records in record_windows:
        window = prompts.window(offset, records)
        check(window, prompts.images(records, offset))
        count += len(window)
    return count


def write_windows(
    results_windows: Iterable[list[RowResult]],
    output_path: str | ObjectStoragePath,
    manifest: Manifest,
    progress: Progress | None,
) -> list[str]:
    """The second pass's output: each window's results written in input order and summarised.

    :param results_windows: each window's results, as the rows finish.
    :param output_path: where the JSONL goes.
    :param manifest: the summary, updated as each row is written (its ``path`` set at the end).
    :param progress: the progress line to update after each window, if this pass keeps it.
    :return: the rows' taskUUIDs (task API), the one per-row value kept (~90 bytes a row), for
        lineage's run facet.
    """
    task_uuids: list[str] = []
    with JsonlWriter(output_path) as output:
        for results in results_windows:
            for result in sorted(results, key=lambda r: r.row):
                output.write(result.to_json())
                manifest.add(result)
                if result.task_uuid:
                    task_uuids.append(result.task_uuid)
            if progress is not None:
                progress.update(manifest.rows, manifest.failed)
    manifest.path = output.uri
    if progress is not None:
        progress.finish(manifest.rows, manifest.failed)
    return task_uuids
