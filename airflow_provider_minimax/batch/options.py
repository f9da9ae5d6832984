"""The batch's own knobs after templating, checked before any file is read or any HTTP call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from airflow_provider_minimax.batch.io import InputFormat, storage_path
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.poll_cadence import WaitOptions, refuse_bool

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

#: What a failed row does: ``fail`` the task once every row is done, or ``skip`` it (marked).
OnRowError = Literal["fail", "skip"]


class BatchOptions(WaitOptions):
    """``MiniMaxBatchOperator``'s knobs (each named like the operator's parameter), checked.

    :param on_row_error: ``fail`` or ``skip``.
    :param input_format: ``jsonl`` or ``csv`` when the file's suffix does not say it.
    :param max_concurrency: chat API: requests in flight at most.
    :param requests_per_minute: chat API: request starts per minute at most.
    :param max_output_retries: chat API: re-asks per row for a mismatching answer.
    :param max_xcom_bytes: results above this size still go to XCom, with a warning.
    """

    on_row_error: OnRowError
    input_format: InputFormat | None = None
    max_concurrency: int = Field(ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    max_output_retries: int = Field(ge=0)
    max_xcom_bytes: int = Field(ge=0)

    _counts = field_validator(
        "max_concurrency", "requests_per_minute", "max_output_retries", "max_xcom_bytes", mode="before"
    )(refuse_bool)


def check_output_path(output_path: str | ObjectStoragePath) -> None:
    """Refuse an ``output_path`` the storage layer cannot take.

    :param output_path: the operator's ``output_path``.
    """
    try:
        storage_path(output_path)
    except Exception as err:  # whatever the storage layer raises for a path it cannot take
        raise MiniMaxValidationError(
            f"output_path {str(output_path)!r} is not a usable path: {err}", parameter="output_path"
        ) from None
