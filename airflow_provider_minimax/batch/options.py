"""The batch's own knobs after templating (checked before any file is read or any HTTP call), and
what every row's request shares whichever API asks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from airflow_provider_minimax.batch.io import InputFormat, storage_path
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.models import refuse_bool
from airflow_provider_minimax.poll_cadence import WaitOptions
from airflow_provider_minimax.structured import OutputRetries

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_minimax.hooks.minimax import MiniMaxHook

#: What a failed row does: ``fail`` the task once every row is done, or ``skip`` it (marked).
OnRowError = Literal["fail", "skip"]


class BatchOptions(WaitOptions):
    """``MiniMaxBatchOperator``'s knobs (each named like the operator's parameter), checked.

    :param on_row_error: ``fail`` or ``skip``.
    :param input_format: ``jsonl`` or ``csv`` when the file's suffix does not say it.
    :param max_concurrency: chat API: requests in flight at most.
    :param requests_per_minute: chat API: request starts per minute at most.
    :param max_output_retries: chat API: re-asks per row for a mismatching answer (0..10).
    :param max_xcom_bytes: results above this size still go to XCom, with a warning.
    """

    on_row_error: OnRowError
    input_format: InputFormat | None = None
    max_concurrency: int = Field(ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    max_output_retries: OutputRetries
    max_xcom_bytes: int = Field(ge=0)

    _counts = field_validator("max_concurrency", "requests_per_minute", "max_xcom_bytes", mode="before")(
        refuse_bool
    )


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


@dataclass
class RowRequests:
    """What every row's request shares: the base of the task-API and chat-API sides of a batch.

    :param hook: the hook of the batch's connection.
    :param options: the batch's checked knobs.
    :param system_prompt: every row's system prompt.
    :param output_type: the pydantic model each answer must match, if any.
    :param sampling: the model and sampling parameters of every row's request.
    :param log: where the lines go (the operator's log).
    """

    hook: MiniMaxHook
    options: BatchOptions
    system_prompt: str | None
    output_type: type[BaseModel] | None
    sampling: dict[str, Any]
    log: Any
