"""MiniMaxBatchOperator: one prompt per row over thousands of rows, in one task, at the API's pace."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import BaseOperator, conf
from pydantic import BaseModel, Field, field_validator

from airflow_provider_minimax.batch.chat import ChatBatchRunner, ChatRunSettings, shard_count
from airflow_provider_minimax.batch.checkpoint import RowCheckpoint, fingerprint
from airflow_provider_minimax.batch.io import (
    InputFormat,
    JsonlWriter,
    check_records,
    iter_rows,
    read_rows,
    storage_path,
    windows,
    write_jsonl,
)
from airflow_provider_minimax.batch.progress import Progress
from airflow_provider_minimax.batch.rows import (
    OUTPUT_MISMATCH,
    Manifest,
    RowResult,
    failed_row,
    row_from_answer,
    row_from_error,
)
from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import MiniMaxError, MiniMaxTaskFailedError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook, build
from airflow_provider_minimax.hooks.responses import error_type
from airflow_provider_minimax.idempotency import (
    GenerationStore,
    Resolution,
    TaskIdentity,
    request_fingerprints,
    resolve_and_submit,
)
from airflow_provider_minimax.images import check_image
from airflow_provider_minimax.lineage import LineageMixin, prompt_hash
from airflow_provider_minimax.models import ApiError, TaskResult, TextInferenceTask, split_think
from airflow_provider_minimax.operators._templating import system_with_schema
from airflow_provider_minimax.poll_cadence import DEFAULT_NOT_FOUND_GRACE, WaitOptions, refuse_bool, seconds
from airflow_provider_minimax.polling import outcome_from_event, wait_for_tasks
from airflow_provider_minimax.rate_control import AdaptiveLimiter
from airflow_provider_minimax.results import GenerateResult, Spend, TasksOutcome, task_usage
from airflow_provider_minimax.retry import RetryPolicy
from airflow_provider_minimax.structured import OutputMismatch, parse_output, response_format
from airflow_provider_minimax.task_progress import TaskProgress, group_batch

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

OnRowError = Literal["fail", "skip"]
#: Failed rows named in the task's error message (the output and the manifest list them all).
ROWS_IN_ERROR = 20
#: A taskUUID to build a row's task with when only checking that it builds.
NIL_UUID = "00000000-0000-4000-8000-000000000000"


class _BatchOptions(WaitOptions):
    """The operator's own knobs after templating, checked before the first HTTP call."""

    on_row_error: OnRowError
    input_format: InputFormat | None = None
    max_concurrency: int = Field(ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    max_output_retries: int = Field(ge=0)
    max_xcom_bytes: int = Field(ge=0)

    _counts = field_validator(
        "max_concurrency", "requests_per_minute", "max_output_retries", "max_xcom_bytes", mode="before"
    )(refuse_bool)


class _BatchDeferralState(BaseModel):
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


class MiniMaxBatchOperator(LineageMixin, BaseOperator):
    """Enrich every row of a table with one MiniMax M2.7 prompt each, in one task.

    The connection's ``api`` picks the mode. **Task API**: every row becomes an async
    ``textInference`` task with a taskUUID derived from the task instance and the row; they are
    submitted as arrays and waited on together in one deferral (``deferrable=True``) or in the
    worker; a retry pays only for rows that failed or never ran. **Chat API**: the worker keeps
    up to ``max_concurrency`` requests in flight, slowing the whole batch down on 429s; finished
    rows are checkpointed in the task-state store so a retry redoes only the others.

    Returns one result per row, in input order (``row``, ``status``, ``text``, ``output``,
    ``usage``, ``cost``, ``error_code``, ``error_message``, ``task_uuid``); with ``output_path``
    the rows go there as JSONL and XCom gets a manifest (counts, path, usage, cost, failed rows).

    :param rows: the records (dicts), e.g. an upstream task's XCom; give this or ``input_path``.
    :param input_path: a JSONL or CSV file, local or an ``ObjectStoragePath``/URI (``s3://...``).
    :param input_format: ``jsonl`` or ``csv`` when the file's suffix does not say it.
    :param prompt_template: Jinja rendered per row with the task's template environment (the
        DAG's filters and macros); the row's fields are variables, as are ``row`` (the record),
        ``row_index`` and the task context.
    :param system_prompt: the system prompt, the same for every row.
    :param image_field: chat API: the row field holding each row's image (a local path, an
        ``ObjectStoragePath`` URI or an ``http(s)`` URL), sent with the row's prompt. Every row's
        image is checked (exists, PNG/JPEG/WebP/GIF, size) before any call; each is read only
        when its row is sent.
    :param output_type: a pydantic model each answer must match; a row that does not match is a
        failed row (``outputMismatch``). Chat: sent as ``response_format`` and re-asked up to
        ``max_output_retries`` times. Task API: the schema goes into the system prompt, no re-ask.
    :param max_output_retries: re-asks per row for a mismatching answer (chat API).
    :param model: the model; the connection's default when omitted.
    :param temperature: 0..1.
    :param top_p: 0..1.
    :param max_tokens: the answer's token budget per row.
    :param seed: for reproducible answers.
    :param conn_id: the ``minimax`` connection; its ``api`` (``task`` or ``chat``) picks the mode.
    :param deferrable: task API only: wait in the triggerer instead of the worker.
    :param on_row_error: ``fail``: fail the task after every row is done (results are still
        written and pushed); ``skip``: succeed with the failed rows marked.
    :param output_path: where to write the results as JSONL (``ObjectStoragePath`` or URI); XCom
        then gets the manifest only.
    :param max_xcom_bytes: without ``output_path``, results larger than this still go to XCom
        whole (failing would throw paid rows away) with a warning asking for ``output_path``.
    :param max_concurrency: chat API: requests in flight at most (the adaptive cap's ceiling).
    :param requests_per_minute: chat API: request starts per minute at most (None: no cap).
    :param poll_interval: task API: seconds before the first poll; then x1.5 per poll.
    :param max_poll_interval: task API: the cap of the wait between polls.
    :param wait_timeout: task API: how long to wait for all rows (seconds or a timedelta); rows
        still running then are failed rows with code ``timeout`` (a retry re-attaches to them).
    :param not_found_grace: task API: seconds (or a timedelta) after the rows were submitted during
        which the API's ``taskFailedOrNotFound`` reads as "not visible yet" rather than a failed row
        (default 120).
    """

    template_fields: Sequence[str] = (
        "rows",
        "input_path",
        "input_format",
        "system_prompt",
        "model",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "conn_id",
        "on_row_error",
        "output_path",
        "max_concurrency",
        "requests_per_minute",
    )
    template_fields_renderers = {"rows": "json", "system_prompt": "md"}
    ui_color = "#e8d8ff"
    #: Rows read, run and written together when streaming from ``input_path`` to ``output_path``:
    #: memory holds one window's prompts and results (plus the checkpoint of a retried try).
    window_rows: int = 5000

    def __init__(
        self,
        *,
        prompt_template: str,
        rows: Sequence[Mapping[str, Any]] | str | None = None,
        input_path: str | ObjectStoragePath | None = None,
        input_format: InputFormat | None = None,
        system_prompt: str | None = None,
        image_field: str | None = None,
        output_type: type[BaseModel] | None = None,
        max_output_retries: int = 1,
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        on_row_error: OnRowError = "fail",
        output_path: str | ObjectStoragePath | None = None,
        max_xcom_bytes: int = 1_000_000,
        max_concurrency: int = 16,
        requests_per_minute: float | None = None,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        wait_timeout: float | timedelta = timedelta(hours=6),
        not_found_grace: float | timedelta = DEFAULT_NOT_FOUND_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (rows is None) == (input_path is None):
            raise ValueError(f"{self.task_id}: give exactly one of 'rows' or 'input_path'")
        if not prompt_template or not isinstance(prompt_template, str):
            raise ValueError(f"{self.task_id}: 'prompt_template' must be a non-empty string")
        if output_type is not None and not (
            isinstance(output_type, type) and issubclass(output_type, BaseModel)
        ):
            raise TypeError(f"{self.task_id}: 'output_type' must be a pydantic BaseModel subclass")
        self.rows = rows
        self.input_path = input_path
        self.input_format = input_format
        self.prompt_template = prompt_template
        self.system_prompt = system_prompt
        self.image_field = image_field
        self.output_type = output_type
        self.max_output_retries = max_output_retries
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.seed = seed
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.on_row_error = on_row_error
        self.output_path = output_path
        self.max_xcom_bytes = max_xcom_bytes
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.wait_timeout = wait_timeout
        self.not_found_grace = not_found_grace
        #: The chat mode's limiter of the last run, for logs and tests.
        self.limiter: AdaptiveLimiter | None = None

    @cached_property
    def hook(self) -> MiniMaxHook:
        """The hook of ``conn_id``."""
        return MiniMaxHook(minimax_conn_id=self.conn_id)

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> Any:
        """Validate and render every row, then run them through the connection's API."""
        _ = self.options  # every knob checked before any file is read or any HTTP call
        if self._streams():
            return self._run_streaming(context)
        records = self._records()
        prompts = self._render_prompts(records, context)
        images = self._row_images(records)
        self.log.info("MiniMax batch: %d row(s) through the %s API", len(prompts), self.hook.settings.api)
        if self.hook.settings.api == "chat":
            if self.deferrable:
                self.log.info("The chat API has no async delivery: the rows run from the worker")
            return self._run_chat(context, prompts, images)
        return self._run_tasks(context, prompts)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **resume: Any) -> Any:
        """Gather every row's result in input order after the trigger fired.

        :param context: the task context.
        :param event: the trigger's :class:`TasksOutcome` payload.
        :param resume: the deferral's kwargs (see :class:`_BatchDeferralState`); empty when the runner drops
            them (``airflow dags test``), and then read from the task-state store.
        """
        outcome = outcome_from_event(event)
        state = _BatchDeferralState.model_validate(GenerationStore(context).load_resume(resume))
        if not outcome.task_uuids and outcome.status != "error" and state.row_count > len(state.rejected):
            outcome = self._fetch_results(context, outcome, state)
        return self._complete(context, outcome, state)

    def _fetch_results(
        self, context: Context, ended: TasksOutcome, state: _BatchDeferralState
    ) -> TasksOutcome:
        """The rows' results after a deferral whose event said only how the wait ended.

        The event of a batch stays small whatever its size (no UUIDs, no results): the rows'
        taskUUIDs are derived again (they are a function of the task instance, the row, its
        request and its generation) and their results fetched with getResponse, which is free.

        :param context: the task context.
        :param ended: the trigger's event: ``success`` or ``timeout``.
        :param state: the deferral's state.
        """
        prompts = dict(enumerate(self._render_prompts(self._records(), context)))
        rows = [row for row in prompts if str(row) not in state.rejected]
        identity = TaskIdentity.from_context(context)
        fingerprints = request_fingerprints(identity, self._task_builder(prompts), rows)
        uuids = [
            identity.task_uuid(row, state.generations.get(str(row), 0), fingerprints[row]) for row in rows
        ]
        del prompts, fingerprints
        progress = TaskProgress(uuids)
        progress.update(group_batch(self.hook.get_responses(uuids)))
        return TasksOutcome(
            status=ended.status,
            task_uuids=progress.task_uuids,
            results=progress.results,
            errors=progress.errors,
            pending=progress.pending,
            message=ended.message,
        )

    # ------------------------------------------------------------------ input and prompts

    @cached_property
    def options(self) -> _BatchOptions:
        """The operator's knobs, checked (after templating) before the first HTTP call."""
        if self.output_path is not None:
            try:
                storage_path(self.output_path)
            except Exception as err:  # whatever the storage layer raises for a path it cannot take
                raise MiniMaxValidationError(
                    f"output_path {str(self.output_path)!r} is not a usable path: {err}",
                    parameter="output_path",
                ) from None
        return build(
            _BatchOptions,
            f"{type(self).__name__} parameters",
            on_row_error=self.on_row_error,
            input_format=self.input_format,
            max_concurrency=self.max_concurrency,
            requests_per_minute=self.requests_per_minute,
            max_output_retries=self.max_output_retries,
            max_xcom_bytes=self.max_xcom_bytes,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            wait_timeout=seconds(self.wait_timeout),
            not_found_grace=seconds(self.not_found_grace),
        )

    def _records(self) -> list[dict[str, Any]]:
        if self.input_path is not None:
            return read_rows(self.input_path, self.input_format)
        rows = self.rows
        if isinstance(rows, str):  # A template rendered as text: accept JSON.
            try:
                rows = json.loads(rows)
            except json.JSONDecodeError:
                raise MiniMaxValidationError(
                    "rows rendered to text that is not a JSON list of records; pass the list itself "
                    "(e.g. rows=upstream.output) or render_template_as_native_obj=True",
                    parameter="rows",
                ) from None
        return check_records(rows)

    def _render_prompts(self, records: list[dict[str, Any]], context: Context, offset: int = 0) -> list[str]:
        """Each row's prompt; raises naming the row when a field is missing or the prompt is empty.

        :param records: the rows.
        :param context: the task context (template variables).
        :param offset: the index of the first of ``records`` in the whole input.
        """
        render = self._prompt_renderer(context)
        return [render(offset + index, record) for index, record in enumerate(records)]

    def _prompt_renderer(self, context: Context) -> Callable[[int, dict[str, Any]], str]:
        """A function rendering one row's prompt (the template is compiled once)."""
        import jinja2

        # The DAG's environment, so its filters and macros work; a missing field is an error in any case
        # (a DAG's default, and without one a silent "" would send a wrong prompt to every such row).
        env: jinja2.Environment = self.get_template_env(self.dag if self.has_dag() else None)
        if env.undefined is not jinja2.StrictUndefined:
            env = env.overlay(undefined=jinja2.StrictUndefined)
        try:
            template = env.from_string(self.prompt_template)
        except jinja2.TemplateSyntaxError as err:
            raise MiniMaxValidationError(
                f"prompt_template is not valid Jinja (line {err.lineno}): {err.message}",
                parameter="prompt_template",
            ) from None
        base = dict(context)

        def render(index: int, record: dict[str, Any]) -> str:
            try:
                prompt = str(template.render({**base, **record, "row": record, "row_index": index}))
            except jinja2.UndefinedError as err:
                raise MiniMaxValidationError(
                    f"row {index}: prompt_template uses a field the row does not have ({err.message}); "
                    f"the row's fields are {sorted(record)}",
                    parameter=f"rows[{index}]",
                ) from None
            if not prompt.strip():
                raise MiniMaxValidationError(
                    f"row {index}: prompt_template rendered an empty prompt", parameter=f"rows[{index}]"
                )
            return prompt

        return render

    def _row_images(self, records: list[dict[str, Any]], offset: int = 0) -> dict[int, Any]:
        """Each row's image source, every one checked (not read whole) before any HTTP call.

        :param records: the rows.
        :param offset: the index of the first of ``records`` in the whole input.
        """
        if self.image_field is None:
            return {}
        if self.hook.settings.api != "chat":
            raise MiniMaxValidationError(
                f"image_field needs a chat-API connection (the task API takes text only); "
                f"{self.conn_id!r} speaks the task API: use a connection with extra.api 'chat'",
                parameter="image_field",
            )
        images = {}
        for index, record in enumerate(records, start=offset):
            where = f"rows[{index}].{self.image_field}"
            source = record.get(self.image_field)
            if source in (None, ""):
                raise MiniMaxValidationError(
                    f"{where}: the row has no image (fields: {sorted(record)})", parameter=where
                )
            check_image(source, where)
            images[index] = source
        return images

    def lineage_datasets(self) -> tuple[list[Any], list[Any]]:
        """``input_path`` and ``output_path``, as OpenLineage datasets."""
        inputs = [self.input_path] if self.input_path is not None else []
        outputs = [self.output_path] if self.output_path is not None else []
        return inputs, outputs

    def _sampling(self) -> dict[str, Any]:
        """The model and sampling parameters given, for every row's request."""
        sampling = {
            "model": self.model or None,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        return {key: value for key, value in sampling.items() if value is not None}

    # ------------------------------------------------------------------ task API

    def _task_builder(self, prompts: Mapping[int, str]) -> Callable[[int, str], TextInferenceTask]:
        """Builds (validates) the async textInference task of a row for a given taskUUID."""
        system = system_with_schema(self.system_prompt, self.output_type)
        sampling = self._sampling()

        def build_task(row: int, task_uuid: str) -> TextInferenceTask:
            try:
                return self.hook.new_text_inference(
                    prompts[row],
                    system_prompt=system,
                    task_uuid=task_uuid,
                    delivery_method="async",
                    **sampling,
                )
            except MiniMaxValidationError as err:
                raise MiniMaxValidationError(f"row {row}: {err.message}", parameter=f"rows[{row}]") from None

        return build_task

    def _submit_rows(self, context: Context, prompts: Mapping[int, str]) -> Resolution:
        """Submit the rows (reusing what earlier tries paid for) and log what was found."""
        identity, store = TaskIdentity.from_context(context), GenerationStore(context)
        resolution = resolve_and_submit(
            self.hook,
            identity,
            self._task_builder(prompts),
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

    def _run_tasks(self, context: Context, prompts: list[str]) -> Any:
        """Submit every row (reusing what earlier tries paid for), then wait on all in one go."""
        started = time.time()
        resolution = self._submit_rows(context, dict(enumerate(prompts)))
        rows = [row for row in range(len(prompts)) if row not in resolution.rejected]
        uuids = [resolution.uuids[row] for row in rows]
        state = _BatchDeferralState(
            row_count=len(prompts),
            rejected={str(row): error for row, error in resolution.rejected.items()},
            started=started,
            generations={str(row): gen for row, gen in resolution.generations.items() if gen},
        )
        if not resolution.waiting:
            outcome = TasksOutcome(
                status="success",
                task_uuids=uuids,
                results={resolution.uuids[row]: found for row, found in resolution.finished.items()},
            )
            return self._complete(context, outcome, state)
        end_time = started + self.options.wait_timeout
        # Accepted (or found known) just now: not found reads as pending until then.
        not_found_until = time.time() + self.options.not_found_grace
        if self.deferrable:
            from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

            resume = state.model_dump(mode="json", by_alias=True)
            GenerationStore(context).save_resume(resume)
            self.log.info("Deferring on %d MiniMax task(s), one trigger for the whole batch", len(uuids))
            self.defer(
                trigger=MiniMaxTaskTrigger(
                    uuids,
                    conn_id=self.conn_id,
                    end_time=end_time,
                    poll_interval=self.options.poll_interval,
                    max_poll_interval=self.options.max_poll_interval,
                    results_in_event=False,
                    not_found_until=not_found_until,
                ),
                method_name="execute_complete",
                kwargs=resume,
            )

        return self._complete(context, self._wait(uuids, end_time), state)

    def _wait(self, uuids: list[str], end_time: float) -> TasksOutcome:
        """Wait on tasks in the worker, at the operator's cadence (submitted just before)."""
        return wait_for_tasks(
            self.hook,
            uuids,
            end_time=end_time,
            poll_interval=self.options.poll_interval,
            max_poll_interval=self.options.max_poll_interval,
            not_found_until=time.time() + self.options.not_found_grace,
            sleep=self.hook.sleep,
        )

    def _task_windows(
        self, context: Context, prompt_windows: Iterable[dict[int, str]], end_time: float
    ) -> Iterator[list[RowResult]]:
        """The results of a streamed batch through the task API, window after window, in the worker.

        Each window is submitted before the previous one is waited on, so the API always has the
        next rows queued while the worker polls (two windows in flight at most).

        :param context: the task context.
        :param prompt_windows: each window's prompts by row index (in order).
        :param end_time: the batch's deadline, epoch seconds.
        """
        in_flight: tuple[dict[int, str], Resolution] | None = None
        for prompts in prompt_windows:
            submitted = (prompts, self._submit_rows(context, prompts))
            if in_flight is not None:
                yield self._wait_window(*in_flight, end_time)
            in_flight = submitted
        if in_flight is not None:
            yield self._wait_window(*in_flight, end_time)

    def _wait_window(
        self, prompts: dict[int, str], resolution: Resolution, end_time: float
    ) -> list[RowResult]:
        """Wait on one submitted window's tasks; its rows' results in input order."""
        rows = [row for row in prompts if row not in resolution.rejected]
        uuids = [resolution.uuids[row] for row in rows]
        if resolution.waiting:
            outcome = self._wait(uuids, end_time)
        else:
            outcome = TasksOutcome(status="success", task_uuids=uuids)
        for row, found in resolution.finished.items():
            outcome.results[resolution.uuids[row]] = found
        return self._gather(outcome, list(prompts), resolution.rejected)

    def _complete(self, context: Context, outcome: TasksOutcome, state: _BatchDeferralState) -> Any:
        """Every row's result from the wait's outcome, the progress line, then :meth:`_finish`.

        :param context: the task context.
        :param outcome: what the wait (trigger or worker) found.
        :param state: the batch's shape and start, from this try or its deferral.
        """
        refused = {int(row): error for row, error in state.rejected.items()}
        results = self._gather(outcome, list(range(state.row_count)), refused)
        progress = Progress(state.row_count, started=state.started, clock=time.time, logger=self.log)
        progress.finish(state.row_count, sum(not result.ok for result in results))
        return self._finish(context, results)

    def _gather(
        self,
        outcome: TasksOutcome,
        rows: list[int],
        rejected: dict[int, ApiError],
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
            results.append(self._task_row(row, task_uuid, outcome))
        return results

    def _task_row(self, row: int, task_uuid: str, outcome: TasksOutcome) -> RowResult:
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

    # ------------------------------------------------------------------ chat API

    def _run_chat(self, context: Context, prompts: list[str], images: dict[int, Any]) -> Any:
        """Run the rows not checkpointed by earlier tries concurrently, checkpointing as they finish."""
        checkpoint = RowCheckpoint(context.get("task_state_store"))
        results = self._chat_rows(checkpoint, dict(enumerate(prompts)), len(prompts), images=images)
        return self._finish(context, [results[row] for row in range(len(prompts))])

    def _chat_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"system_prompt": self.system_prompt or None, **self._sampling()}
        if self.output_type is not None:
            params["response_format"] = response_format(self.output_type)
        return params

    def _chat_fingerprints(
        self, prompts: Mapping[int, str], params: dict[str, Any], images: Mapping[int, Any]
    ) -> dict[int, str]:
        """Each row's request fingerprint; building the request validates it (before any HTTP call)."""
        fingerprints = {}
        for row, prompt in prompts.items():
            try:
                request = self.hook.new_chat_request(prompt, **params)
            except MiniMaxValidationError as err:
                raise MiniMaxValidationError(f"row {row}: {err.message}", parameter=f"rows[{row}]") from None
            # The image's source, not its bytes: a row is not read whole before its turn.
            image = {"image": str(images[row])} if row in images else {}
            fingerprints[row] = fingerprint({**request.to_wire(), **image})
        return fingerprints

    def _chat_rows(
        self,
        checkpoint: RowCheckpoint,
        prompts: Mapping[int, str],
        total: int,
        before: tuple[int, int] = (0, 0),
        images: Mapping[int, Any] | None = None,
    ) -> dict[int, RowResult]:
        """Every row's result: reused from the checkpoint, or asked concurrently and checkpointed.

        :param checkpoint: earlier tries' rows, and where this try's go.
        :param prompts: the rows' prompts by row index (all of them, or a streamed window).
        :param total: rows in the whole batch, for the progress line.
        :param before: rows of the batch done and failed before these (earlier windows).
        :param images: the rows' image sources (``image_field``), by row index.
        """
        images = images or {}
        params = self._chat_params()
        fingerprints = self._chat_fingerprints(prompts, params, images)
        results: dict[int, RowResult] = checkpoint.load(fingerprints)
        if results:
            self.log.info("Reusing %d row(s) answered by earlier tries", len(results))
        elif not checkpoint.enabled:
            self.log.warning("No task-state store (Airflow < 3.3): a retry of this task redoes every row")
        todo = {row: prompt for row, prompt in prompts.items() if row not in results}
        policy = RetryPolicy.for_connection(self.hook.settings)
        self.limiter = AdaptiveLimiter(
            self.options.max_concurrency,
            self.options.requests_per_minute,
            policy=policy,
        )
        recorder = _Recorder(results, total, checkpoint, fingerprints, self.log, before)
        extra_hooks = [
            MiniMaxHook(minimax_conn_id=self.conn_id)
            for _ in range(shard_count(len(todo) and self.options.max_concurrency) - 1)
        ]
        runner = ChatBatchRunner(
            [self.hook, *extra_hooks],
            self.limiter,
            ChatRunSettings(
                params=params,
                images=images,
                output_type=self.output_type,
                output_retries=self.options.max_output_retries,
                policy=policy,
            ),
            on_row=recorder.record,
        )
        try:
            asyncio.run(self._chat(runner, recorder, todo))
        finally:
            stats = self.limiter.stats
            if stats.rate_limited:
                self.log.warning(
                    "Rate control: %d answer(s) 429; concurrency %d, lowest %d, at the end %d",
                    stats.rate_limited,
                    self.limiter.max_concurrency,
                    stats.lowest_limit,
                    self.limiter.limit,
                )
        return results

    async def _chat(self, runner: ChatBatchRunner, recorder: _Recorder, todo: dict[int, str]) -> None:
        try:
            await runner.run(todo)
        finally:
            await recorder.flush()
            for hook in runner.hooks:
                await hook.aclose()

    # ------------------------------------------------------------------ streamed input and output

    def _streams(self) -> bool:
        """Whether the batch streams from ``input_path`` to ``output_path`` window by window.

        A deferred task-API batch waits in one trigger for all rows instead.
        """
        return (
            self.input_path is not None
            and self.output_path is not None
            and (self.hook.settings.api == "chat" or not self.deferrable)
        )

    def _run_streaming(self, context: Context) -> Any:
        """Read, run and write the rows :attr:`window_rows` at a time, so memory stays bounded.

        A first pass renders and validates every row without keeping it (bad input fails before
        any HTTP call, and the row count is known for the progress line); the second runs the
        rows window after window, appending each window's results to ``output_path`` in input
        order, and summarises them into the manifest as they are written.
        """
        assert self.input_path is not None and self.output_path is not None
        api, started = self.hook.settings.api, time.time()
        if api == "chat" and self.deferrable:
            self.log.info("The chat API has no async delivery: the rows run from the worker")
        total = self._validate_stream(context)
        self.log.info("MiniMax batch: %d row(s) from %s through the %s API", total, self.input_path, api)
        render = self._prompt_renderer(context)
        checkpoint = RowCheckpoint(context.get("task_state_store"))
        end_time = started + self.options.wait_timeout
        # The chat runner logs its own progress lines; task windows are logged here.
        progress = (
            None if api == "chat" else Progress(total, started=started, clock=time.time, logger=self.log)
        )
        manifest = Manifest(rows=0, succeeded=0, failed=0)
        record_windows = windows(iter_rows(self.input_path, self.input_format), self.window_rows)
        results_windows: Iterator[list[RowResult]]
        if api == "chat":
            results_windows = self._chat_windows(checkpoint, record_windows, render, total, manifest)
        else:
            prompt_windows = (
                {offset + i: render(offset + i, record) for i, record in enumerate(records)}
                for offset, records in record_windows
            )
            results_windows = self._task_windows(context, prompt_windows, end_time)
        # Lineage's run facet counts the taskUUIDs (and lists a few): the one per-row value kept,
        # ~90 bytes a row.
        task_uuids: list[str] = []
        with JsonlWriter(self.output_path) as output:
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
        self.log.info("Wrote %d row(s) to %s", manifest.rows, manifest.path)
        spend = self._record_spend(manifest, task_uuids)
        return self._conclude(context, manifest, manifest.to_json(), spend)

    def _chat_windows(
        self,
        checkpoint: RowCheckpoint,
        record_windows: Iterable[tuple[int, list[dict[str, Any]]]],
        render: Callable[[int, dict[str, Any]], str],
        total: int,
        manifest: Manifest,
    ) -> Iterator[list[RowResult]]:
        """The results of a streamed batch through the chat API, window after window, priced.

        :param checkpoint: earlier tries' rows, and where this try's go.
        :param record_windows: the input's windows, each with the index of its first row.
        :param render: renders a row's prompt.
        :param total: rows in the batch.
        :param manifest: the rows written so far (for the progress lines).
        """
        for offset, records in record_windows:
            prompts = {offset + i: render(offset + i, record) for i, record in enumerate(records)}
            images = self._row_images(records, offset)
            del records
            answered = self._chat_rows(checkpoint, prompts, total, (manifest.rows, manifest.failed), images)
            yield self._priced([answered[row] for row in prompts])

    def _validate_stream(self, context: Context) -> int:
        """Render and build every row of ``input_path`` once, keeping none; return how many there are."""
        assert self.input_path is not None
        render, count = self._prompt_renderer(context), 0
        params = self._chat_params() if self.hook.settings.api == "chat" else None
        for offset, records in windows(iter_rows(self.input_path, self.input_format), self.window_rows):
            prompts = {offset + i: render(offset + i, record) for i, record in enumerate(records)}
            images = self._row_images(records, offset)
            if params is not None:
                self._chat_fingerprints(prompts, params, images)
            else:
                build = self._task_builder(prompts)
                for row in prompts:
                    build(row, NIL_UUID)
            count += len(prompts)
        return count

    # ------------------------------------------------------------------ output

    def _finish(self, context: Context, results: list[RowResult]) -> Any:
        """Publish the rows (XCom or storage), log the summary, then apply ``on_row_error``."""
        results = self._priced(results)
        manifest = Manifest.of(results)
        spend = self._record_spend(manifest, [r.task_uuid for r in results if r.task_uuid])
        return self._conclude(context, manifest, self._publish(results, manifest), spend)

    def _priced(self, results: list[RowResult]) -> list[RowResult]:
        """The rows with their cost: the chat gateway reports none, so each row's is estimated."""
        settings = self.hook.settings
        if settings.api != "chat":
            return results
        return [r.model_copy(update={"cost": settings.prices.estimate(r.usage)}) for r in results]

    def _record_spend(self, manifest: Manifest, task_uuids: list[str]) -> Spend:
        """What the batch spent, kept for lineage (``minimax_spend``).

        :param manifest: the rows' summary.
        :param task_uuids: the task API's taskUUIDs.
        """
        settings = self.hook.settings
        spend = self.minimax_spend = Spend.start(
            settings, self.model, prompt_hash(self.system_prompt, self.prompt_template)
        ).model_copy(
            update={
                "calls": manifest.rows,
                "usage": manifest.usage,
                "cost": manifest.cost,
                "cost_estimated": settings.api == "chat" and manifest.cost is not None,
                "task_uuids": task_uuids,
                "resends": self.hook.chat_resends_after_timeout,
            }
        )
        return spend

    def _conclude(self, context: Context, manifest: Manifest, value: Any, spend: Spend) -> Any:
        """Log the summary and return ``value`` (the XCom), or fail after pushing it per ``on_row_error``."""
        self.log.info(
            "MiniMax batch done: %d succeeded, %d failed. %s",
            manifest.succeeded,
            manifest.failed,
            spend.summary(),
        )
        if manifest.failed and self.on_row_error == "fail":
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

    def _publish(self, results: list[RowResult], manifest: Manifest) -> Any:
        rows = [result.to_json() for result in results]
        if self.output_path is not None:
            manifest.path = write_jsonl(self.output_path, rows)
            self.log.info("Wrote %d row(s) to %s", len(rows), manifest.path)
            return manifest.to_json()
        size = sum(len(json.dumps(row)) for row in rows)
        if size > self.max_xcom_bytes:
            # Failing here would throw away rows already paid for; push and ask for output_path.
            self.log.warning(
                "The batch's results are %d bytes (> max_xcom_bytes=%d) and go to XCom whole; set "
                "output_path to write them to object storage and push only a manifest",
                size,
                self.max_xcom_bytes,
            )
        return rows


class _Recorder:
    """Collect finished chat rows: progress lines, and checkpoint parts every 10 % or 10 s."""

    def __init__(
        self,
        results: dict[int, RowResult],
        total: int,
        checkpoint: RowCheckpoint,
        fingerprints: Mapping[int, str],
        logger: Any,
        before: tuple[int, int] = (0, 0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.results = results
        self.checkpoint = checkpoint
        self.fingerprints = fingerprints
        #: Rows done and failed in earlier windows of a streamed batch.
        self.done_before, self.failed = before
        self.progress = Progress(
            total, already_done=self.done_before + len(results), logger=logger, clock=clock
        )
        self._unsaved: list[RowResult] = []
        self._clock = clock
        self._saved_at = clock()
        self._every = max(1, total // 10)

    async def record(self, result: RowResult) -> None:
        """Take one finished row.

        :param result: the row's result.
        """
        self.results[result.row] = result
        self.failed += not result.ok
        self._unsaved.append(result)
        self.progress.update(self.done_before + len(self.results), self.failed)
        if len(self._unsaved) >= self._every or self._clock() - self._saved_at >= 10.0:
            await self.flush()

    async def flush(self) -> None:
        """Checkpoint the rows finished since the last flush (off the event loop: it is blocking IPC)."""
        unsaved, self._unsaved = self._unsaved, []
        self._saved_at = self._clock()
        if unsaved and self.checkpoint.enabled:
            await asyncio.to_thread(self.checkpoint.save, unsaved, self.fingerprints)
