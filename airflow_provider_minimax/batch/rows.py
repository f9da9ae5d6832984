"""One result per row, in input order, and the manifest that summarises them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from airflow_provider_minimax.models import ApiError
from airflow_provider_minimax.results import GenerateResult, Usage

#: The manifest lists at most this many failed rows; the JSONL output has all of them.
MAX_FAILED_IN_MANIFEST = 100
#: The error code of a row whose answer does not match ``output_type``.
OUTPUT_MISMATCH = "outputMismatch"


class RowResult(BaseModel):
    """What happened to one input row.

    :param row: the row's index in the input (0-based).
    :param status: ``success`` or ``failed``.
    :param text: the answer (think block removed), also for a row whose output did not parse.
    :param output: the answer parsed as ``output_type``, as JSON, when one was asked for.
    :param usage: tokens spent on the row, re-asks included.
    :param cost: the price in USD, when the API reports it (task API).
    :param error_code: the API's error code, or ``outputMismatch``/``timeout``/``rateLimitExceeded``.
    :param error_message: what went wrong.
    :param task_uuid: the taskUUID (task API).
    """

    row: int
    status: Literal["success", "failed"]
    text: str | None = None
    output: Any = None
    usage: Usage = Field(default_factory=Usage)
    cost: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    task_uuid: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the row succeeded."""
        return self.status == "success"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for XCom and JSONL."""
        return self.model_dump(mode="json")


def failed_row(row: int, code: str, message: str, **fields: Any) -> RowResult:
    """A failed row.

    :param row: the row index.
    :param code: the error code.
    :param message: the error message.
    :param fields: more :class:`RowResult` fields (``text``, ``usage``, ``task_uuid``...).
    """
    return RowResult(row=row, status="failed", error_code=code, error_message=message, **fields)


def row_from_error(row: int, error: ApiError, task_uuid: str | None = None) -> RowResult:
    """A row whose task the API refused or failed.

    :param row: the row index.
    :param error: the API's error.
    :param task_uuid: the row's taskUUID.
    """
    return failed_row(row, error.code, error.message or "task failed", task_uuid=task_uuid or error.task_uuid)


def row_from_answer(row: int, answer: GenerateResult, output: Any = None) -> RowResult:
    """A successful row.

    :param row: the row index.
    :param answer: the answer, with usage (and cost) summed over every call the row took.
    :param output: the parsed structured output, as JSON.
    """
    return RowResult(
        row=row,
        status="success",
        text=answer.text,
        output=output,
        usage=answer.usage,
        cost=answer.cost,
        task_uuid=answer.task_uuid,
    )


class Manifest(BaseModel):
    """What goes to XCom when the rows themselves go to storage.

    :param rows: rows in the input.
    :param succeeded: rows that succeeded.
    :param failed: rows that failed.
    :param path: where the JSONL output was written (one :class:`RowResult` per line, input order).
    :param usage: tokens spent over every row.
    :param cost: USD over the rows that reported a cost (None when none did).
    :param failed_rows: the first failed rows, with their error codes.
    :param failed_rows_truncated: whether ``failed_rows`` was cut (the JSONL has them all).
    """

    rows: int
    succeeded: int
    failed: int
    path: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost: float | None = None
    failed_rows: list[dict[str, Any]] = Field(default_factory=list)
    failed_rows_truncated: bool = False

    @classmethod
    def of(cls, results: Iterable[RowResult], path: str | None = None) -> Manifest:
        """Summarise the rows.

        :param results: every row's result.
        :param path: where they were written.
        """
        manifest = cls(rows=0, succeeded=0, failed=0, path=path)
        for result in results:
            manifest.add(result)
        return manifest

    def add(self, result: RowResult) -> None:
        """Count one more row (rows streamed to storage are summarised as they go).

        :param result: the row's result.
        """
        self.rows += 1
        self.usage = self.usage + result.usage
        if result.cost is not None:
            self.cost = round((self.cost or 0.0) + result.cost, 10)
        if result.ok:
            self.succeeded += 1
            return
        self.failed += 1
        if len(self.failed_rows) < MAX_FAILED_IN_MANIFEST:
            self.failed_rows.append(
                {"row": result.row, "code": result.error_code, "message": result.error_message}
            )
        else:
            self.failed_rows_truncated = True

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for XCom."""
        return self.model_dump(mode="json")
