"""Rows through the task API: one async textInference per row, submitted in arrays, waited on together.

Every row's taskUUID is derived from the task instance, the row, its request and its generation
(see :mod:`~airflow_provider_minimax.idempotency`), so a retry re-attaches to rows still running
and pays only for rows that failed or never ran. The deferral itself is the operator's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from airflow_provider_minimax.batch.options import RowRequests
from airflow_provider_minimax.batch.progress import Progress
from airflow_provider_minimax.batch.rows import (
    OUTPUT_MISMATCH,
    RowResult,
    failed_row,
    row_from_answer,
    row_from_error,
)
from airflow_provider_minimax.exceptions import MiniMaxError, MiniMaxValidationError
from airflow_provider_minimax.hooks.responses import error_type
from airflow_provider_minimax.idempotency import (
    GenerationStore,
    Resolution,
    TaskIdentity,
    request_fingerprints,
    resolve_and_submit,
)
from airflow_provider_minimax.models import ApiError, TaskResult, TextInferenceTask, split_think
from airflow_provider_minimax.polling import wait_for_tasks
from airflow_provider_minimax.results import GenerateResult, TasksOutcome, task_usage
from airflow_provider_minimax.structured import OutputMismatch, parse_output
from airflow_provider_minimax.task_progress import TaskProgress, group_batch

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

#: A taskUUID to build a row's task with when only checking that it builds.
NIL_UUID = "00000000-0000-4000-8000-000000000000"


class BatchDeferralState(BaseModel):
    """What gathering the rows needs besides the wait's outcome; the deferral's kwargs, also stored.

    :param row_count: rows in the batch.
    :param rejected: rows the API refused at submit (index as text, for JSON), with the error.
    :param started: epoch time the try started, for the rate in the progress line.
    :param generations: rows whose taskUUID is past generation 0 (index as text), to derive every
        row's taskUUID again after the deferral: the trigger's event carries no per-row data.
    """

    row_count: int = Field(ge=0)
    rejected: dict[str, ApiError] = Field(default_factory=dict)
    started: float
    generations: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, row_count: int, resolution: Resolution, started: float) -> BatchDeferralState:
        """The state of a batch just submitted.

        :param row_count: rows in the batch.
        :param resolution: what the submit found and did.
        :param started: epoch time the try started.
        """
        return cls(
            row_count=row_count,
            rejected={str(row): error for row, error in resolution.rejected.items()},
            started=started,
            generations={str(row): gen for row, gen in resolution.generations.items() if gen},
        )


@dataclass
class TaskRows(RowRequests):
    """Build, submit, wait on and read back a batch's rows as task-API tasks."""

    def builder(self, prompts: Mapping[int, str]) -> Callable[[int, str], TextInferenceTask]:
        """Builds (validates) the async textInference task of a row for a given taskUUID.

        :param prompts: the rows' prompts by row index.
        """

        def build_task(row: int, task_uuid: str) -> TextInferenceTask:
            try:
                return self.hook.new_text_inference(
                    prompts[row],
                    system_prompt=self.system_prompt,
                    task_uuid=task_uuid,
                    delivery_method="async",
                    **self.sampling,
                )
            except MiniMaxValidationError as err:
                raise MiniMaxValidationError(f"row {row}: {err.message}", parameter=f"rows[{row}]") from None

        return build_task

    def check(self, prompts: Mapping[int, str]) -> None:
        """Build every row's task once, so a bad row fails before any HTTP call.

        :param prompts: the rows' prompts by row index.
        """
        build = self.builder(prompts)
        for row in prompts:
            build(row, NIL_UUID)

    def submit(self, context: Context, prompts: Mapping[int, str], store: GenerationStore) -> Resolution:
        """Submit the rows (reusing what earlier tries paid for) and log what was found.

        :param context: the task context (the rows' taskUUIDs derive from its task instance).
        :param prompts: the rows' prompts by row index.
        :param store: the task-state store, one object per execution (it reads the submit marker once).
        """
        resolution = resolve_and_submit(
            self.hook,
            TaskIdentity.from_context(context),
            self.builder(prompts),
            list(prompts),
            store,
            not_found_grace=self.options.not_found_grace,
            poll_interval=self.options.poll_interval,
            max_poll_interval=self.options.max_poll_interval,
        )
        self.log.info(
            "Submitted rows: %d already finished by earlier tries, %d running, %d refused by the API",
            len(resolution.finished),
            len(resolution.waiting),
            len(resolution.rejected),
        )
        return resolution

    def wait(self, uuids: list[str], end_time: float) -> TasksOutcome:
        """Wait on tasks in the worker, at the batch's cadence (submitted just before).

        :param uuids: the tasks' taskUUIDs.
        :param end_time: the batch's deadline, epoch seconds.
        """
        return wait_for_tasks(
            self.hook,
            uuids,
            end_time=end_time,
            poll_interval=self.options.poll_interval,
            max_poll_interval=self.options.max_poll_interval,
            not_found_until=time.time() + self.options.not_found_grace,
        )

    def trigger(self, uuids: list[str], end_time: float, not_found_until: float) -> MiniMaxTaskTrigger:
        """One trigger waiting on every row; its event says only how the wait ended (see :meth:`fetch`).

        :param uuids: the submitted rows' taskUUIDs.
        :param end_time: the batch's deadline, epoch seconds.
        :param not_found_until: until when the API's "not found" reads as "not visible yet".
        """
        from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

        return MiniMaxTaskTrigger(
            uuids,
            conn_id=self.hook.minimax_conn_id,
            end_time=end_time,
            poll_interval=self.options.poll_interval,
            max_poll_interval=self.options.max_poll_interval,
            results_in_event=False,
            not_found_until=not_found_until,
        )

    def windows(
        self, context: Context, prompt_windows: Iterable[dict[int, str]], end_time: float
    ) -> Iterator[list[RowResult]]:
        """The results of a streamed batch, window after window, waited on in the worker.

        Each window is submitted before the previous one is waited on, so the API always has the
        next rows queued while the worker polls (two windows in flight at most).

        :param context: the task context.
        :param prompt_windows: each window's prompts by row index (in order).
        :param end_time: the batch's deadline, epoch seconds.
        """
        in_flight: tuple[dict[int, str], Resolution] | None = None
        # One store for every window: a first try polls before none of them (see GenerationStore).
        store = GenerationStore(context)
        for prompts in prompt_windows:
            submitted = (prompts, self.submit(context, prompts, store))
            if in_flight is not None:
                yield self.wait_window(*in_flight, end_time)
            in_flight = submitted
        if in_flight is not None:
            yield self.wait_window(*in_flight, end_time)

    def wait_window(
        self, prompts: dict[int, str], resolution: Resolution, end_time: float
    ) -> list[RowResult]:
        """Wait on one submitted window's tasks; its rows' results in input order.

        :param prompts: the window's prompts by row index.
        :param resolution: what submitting the window found and did.
        :param end_time: the batch's deadline, epoch seconds.
        """
        rows = [row for row in prompts if row not in resolution.rejected]
        uuids = [resolution.uuids[row] for row in rows]
        if resolution.waiting:
            outcome = self.wait(uuids, end_time)
        else:
            outcome = TasksOutcome(status="success", task_uuids=uuids)
        for row, found in resolution.finished.items():
            outcome.results[resolution.uuids[row]] = found
        return self.gather(outcome, list(prompts), resolution.rejected)

    def derived_uuids(
        self, context: Context, prompts: Mapping[int, str], state: BatchDeferralState
    ) -> list[str]:
        """The submitted rows' taskUUIDs, derived again after a deferral.

        The event of a batch stays small whatever its size (no UUIDs, no results): a taskUUID is
        a function of the task instance, the row, its request and its generation.

        :param context: the task context.
        :param prompts: every row's prompt by row index, rendered again.
        :param state: the deferral's state.
        """
        rows = [row for row in prompts if str(row) not in state.rejected]
        identity = TaskIdentity.from_context(context)
        fingerprints = request_fingerprints(identity, self.builder(prompts), rows)
        return [
            identity.task_uuid(row, state.generations.get(str(row), 0), fingerprints[row]) for row in rows
        ]

    def fetch(self, ended: TasksOutcome, uuids: list[str]) -> TasksOutcome:
        """The rows' results after a deferral whose event said only how the wait ended (getResponse is free).

        :param ended: the trigger's event: ``success`` or ``timeout``.
        :param uuids: the submitted rows' taskUUIDs, in input order.
        """
        progress = TaskProgress(uuids)
        progress.update(group_batch(self.hook.get_responses(uuids)))
        # What each row got is what getResponse says now; how the wait ended is the event's.
        return progress.succeeded().model_copy(update={"status": ended.status, "message": ended.message})

    def results(self, outcome: TasksOutcome, state: BatchDeferralState) -> list[RowResult]:
        """Every row's result in input order from the wait's outcome; logs the final progress line.

        :param outcome: what the wait (trigger or worker) found.
        :param state: the batch's shape and start, from this try or its deferral.
        """
        refused = {int(row): error for row, error in state.rejected.items()}
        results = self.gather(outcome, list(range(state.row_count)), refused)
        progress = Progress(state.row_count, started=state.started, clock=time.time, logger=self.log)
        progress.finish(state.row_count, sum(not result.ok for result in results))
        return results

    def gather(
        self, outcome: TasksOutcome, rows: list[int], rejected: dict[int, ApiError]
    ) -> list[RowResult]:
        """The rows' results in input order, from the wait's outcome and the rows refused at submit.

        :param outcome: the wait's outcome.
        :param rows: the rows' indexes, in input order.
        :param rejected: the rows the API refused at submit, with the error.
        """
        row_count = len(rows)
        if outcome.status == "error":
            raise error_type(outcome.status_code, outcome.code)(
                f"Polling the batch's MiniMax tasks failed: {outcome.message or 'no message'}; nothing "
                "is lost: a retry re-attaches to every row without paying again",
                status_code=outcome.status_code,
                code=outcome.code,
            )
        if len(outcome.task_uuids) != row_count - len(rejected):
            raise MiniMaxError(
                f"The trigger event names {len(outcome.task_uuids)} task(s) for {row_count - len(rejected)} "
                "submitted row(s); it does not belong to this batch"
            )
        waited = iter(outcome.task_uuids)
        results = []
        for row in rows:
            if row in rejected:
                results.append(row_from_error(row, rejected[row]))
                continue
            task_uuid = next(waited)
            results.append(self._row(row, task_uuid, outcome))
        return results

    def _row(self, row: int, task_uuid: str, outcome: TasksOutcome) -> RowResult:
        error = outcome.errors.get(task_uuid)
        if error is not None:
            return row_from_error(row, error, task_uuid)
        found = outcome.results.get(task_uuid)
        if not found:
            return failed_row(
                row,
                "timeout",
                "still running at the deadline; a retry re-attaches to it",
                task_uuid=task_uuid,
            )
        return self._accept(row, found[0], task_uuid)

    def _accept(self, row: int, item: TaskResult, task_uuid: str) -> RowResult:
        answer = GenerateResult(
            text=split_think(item.text)[0], usage=task_usage(item), cost=item.cost, task_uuid=task_uuid
        )
        if self.output_type is None:
            return row_from_answer(row, answer)
        try:
            output = parse_output(answer.text, self.output_type).model_dump(mode="json")
        except OutputMismatch as mismatch:
            return failed_row(
                row,
                OUTPUT_MISMATCH,
                mismatch.feedback,
                text=answer.text,
                usage=answer.usage,
                cost=answer.cost,
                task_uuid=task_uuid,
            )
        return row_from_answer(row, answer, output)
