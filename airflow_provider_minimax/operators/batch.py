"""MiniMaxBatchOperator: one prompt per row over thousands of rows, in one task, at the API's pace."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf
from pydantic import BaseModel

from airflow_provider_minimax.batch.chat_mode import ChatRows
from airflow_provider_minimax.batch.checkpoint import RowCheckpoint
from airflow_provider_minimax.batch.io import (
    InputFormat,
    check_records,
    iter_rows,
    read_rows,
    windows,
)
from airflow_provider_minimax.batch.options import BatchOptions, OnRowError, check_output_path
from airflow_provider_minimax.batch.progress import Progress
from airflow_provider_minimax.batch.prompts import RowPrompts
from airflow_provider_minimax.batch.publish import batch_spend, conclude, priced, publish
from airflow_provider_minimax.batch.rows import Manifest
from airflow_provider_minimax.batch.streamed import checked_count, write_windows
from airflow_provider_minimax.batch.task_mode import BatchDeferralState, TaskRows
from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.hooks.request_building import refuse_seed_on_chat
from airflow_provider_minimax.idempotency import GenerationStore
from airflow_provider_minimax.lineage import LineageMixin, prompt_hash
from airflow_provider_minimax.operators._options import check_output_type, checked_options
from airflow_provider_minimax.operators._templating import system_with_schema
from airflow_provider_minimax.poll_cadence import DEFAULT_NOT_FOUND_GRACE
from airflow_provider_minimax.polling import outcome_from_event
from airflow_provider_minimax.results import Spend, TasksOutcome
from airflow_provider_minimax.structured import check_output_retries

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from airflow_provider_minimax.batch.rows import RowResult


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
    :param max_output_retries: re-asks per row for a mismatching answer (chat API), 0..10.
    :param model: the model; the connection's default when omitted.
    :param temperature: 0..1.
    :param top_p: 0..1.
    :param max_tokens: the answer's token budget per row.
    :param seed: task API only (the chat API takes no seed), 0..4294967295, for reproducible answers.
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
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        conn_id: str = DEFAULT_CONN_ID,
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
        check_output_type(output_type, self.task_id)
        check_output_retries(max_output_retries, type(self).__name__)
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

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> Any:
        """Validate and render every row, then run them through the connection's API."""
        _ = self.options  # every knob checked before any file is read or any HTTP call
        refuse_seed_on_chat(self.seed, self.hook.settings.api, self.conn_id)
        if self._streams():
            return self._run_streaming(context)
        records = self._records()
        row_prompts = self._row_prompts(context)
        prompts = row_prompts.window(0, records)
        images = row_prompts.images(records)
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
        :param resume: the deferral's kwargs (see :class:`BatchDeferralState`); empty when the runner drops
            them (``airflow dags test``), and then read from the task-state store.
        """
        outcome = outcome_from_event(event)
        state = BatchDeferralState.model_validate(GenerationStore(context).load_resume(resume))
        if not outcome.task_uuids and outcome.status != "error" and state.row_count > len(state.rejected):
            # The event of a batch stays small (no UUIDs, no results): the rows' taskUUIDs are
            # derived again and their results fetched.
            records = self._records()
            prompts = self._row_prompts(context).window(0, records)
            del records
            uuids = self._task_rows.derived_uuids(context, prompts, state)
            del prompts
            outcome = self._task_rows.fetch(outcome, uuids)
        return self._finish(context, self._task_rows.results(outcome, state))

    # ------------------------------------------------------------------ input and prompts

    @cached_property
    def options(self) -> BatchOptions:
        """The operator's knobs, checked (after templating) before the first HTTP call."""
        if self.output_path is not None:
            check_output_path(self.output_path)
        return checked_options(BatchOptions, self)

    def _records(self) -> list[dict[str, Any]]:
        """The rows: ``input_path``'s, or ``rows`` checked."""
        if self.input_path is not None:
            return read_rows(self.input_path, self.input_format)
        return check_records(self.rows)

    def _row_prompts(self, context: Context) -> RowPrompts:
        """Renders each row's prompt with the DAG's template environment (its filters and macros)."""
        env = self.get_template_env(self.dag if self.has_dag() else None)
        return RowPrompts(env, self.prompt_template, context, image_field=self.image_field, hook=self.hook)

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

    def lineage_datasets(self) -> tuple[list[Any], list[Any]]:
        """``input_path`` and ``output_path``, as OpenLineage datasets."""
        inputs = [self.input_path] if self.input_path is not None else []
        outputs = [self.output_path] if self.output_path is not None else []
        return inputs, outputs

    # ------------------------------------------------------------------ the connection and its API

    @cached_property
    def hook(self) -> MiniMaxHook:
        """The hook of ``conn_id``."""
        return MiniMaxHook(minimax_conn_id=self.conn_id)

    @cached_property
    def _task_rows(self) -> TaskRows:
        """The rows as task-API tasks (``output_type``'s schema goes into the system prompt)."""
        system = system_with_schema(self.system_prompt, self.output_type)
        return TaskRows(self.hook, self.options, system, self.output_type, self._sampling(), self.log)

    @cached_property
    def _chat_rows(self) -> ChatRows:
        """The rows through the chat API (``output_type`` is sent as ``response_format``)."""
        return ChatRows(
            self.hook, self.options, self.system_prompt, self.output_type, self._sampling(), self.log
        )

    def _run_tasks(self, context: Context, prompts: dict[int, str]) -> Any:
        """Submit every row (reusing what earlier tries paid for), then wait on all in one go."""
        started, store = time.time(), GenerationStore(context)
        resolution = self._task_rows.submit(context, prompts, store)
        uuids = [resolution.uuids[row] for row in prompts if row not in resolution.rejected]
        state = BatchDeferralState.of(len(prompts), resolution, started)
        if not resolution.waiting:
            outcome = TasksOutcome(
                status="success",
                task_uuids=uuids,
                results={resolution.uuids[row]: found for row, found in resolution.finished.items()},
            )
            return self._finish(context, self._task_rows.results(outcome, state))
        end_time = started + self.options.wait_timeout
        # Accepted (or found known) just now: not found reads as pending until then.
        not_found_until = time.time() + self.options.not_found_grace
        if self.deferrable:
            resume = state.model_dump(mode="json", by_alias=True)
            store.save_resume(resume)
            self.log.info("Deferring on %d MiniMax task(s), one trigger for the whole batch", len(uuids))
            trigger = self._task_rows.trigger(uuids, end_time, not_found_until)
            self.defer(trigger=trigger, method_name="execute_complete", kwargs=resume)
        return self._finish(context, self._task_rows.results(self._task_rows.wait(uuids, end_time), state))

    def _run_chat(self, context: Context, prompts: dict[int, str], images: dict[int, Any]) -> Any:
        """Run the rows not checkpointed by earlier tries concurrently, checkpointing as they finish."""
        checkpoint = RowCheckpoint(context.get("task_state_store"))
        results = self._chat_rows.run(checkpoint, prompts, len(prompts), images=images)
        return self._finish(context, [results[row] for row in prompts])

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
        """Read, run and write the rows :attr:`window_rows` at a time (see :mod:`..batch.streamed`)."""
        assert self.input_path is not None and self.output_path is not None
        api, started = self.hook.settings.api, time.time()
        if api == "chat" and self.deferrable:
            self.log.info("The chat API has no async delivery: the rows run from the worker")
        row_prompts = self._row_prompts(context)
        chat = self._chat_rows if api == "chat" else None
        check = chat.fingerprints if chat is not None else lambda prompts, _: self._task_rows.check(prompts)
        total = checked_count(self._record_windows(), row_prompts, check)
        self.log.info("MiniMax batch: %d row(s) from %s through the %s API", total, self.input_path, api)
        manifest = Manifest(rows=0, succeeded=0, failed=0)
        progress: Progress | None = None  # the chat runner logs its own progress lines
        results: Iterator[list[RowResult]]
        if chat is not None:
            checkpoint = RowCheckpoint(context.get("task_state_store"))
            results = chat.windows(checkpoint, self._record_windows(), row_prompts, total, manifest)
        else:
            progress = Progress(total, started=started, clock=time.time, logger=self.log)
            prompts = (row_prompts.window(offset, records) for offset, records in self._record_windows())
            results = self._task_rows.windows(context, prompts, started + self.options.wait_timeout)
        task_uuids = write_windows(results, self.output_path, manifest, progress)
        self.log.info("Wrote %d row(s) to %s", manifest.rows, manifest.path)
        spend = self._record_spend(manifest, task_uuids)
        return conclude(context, manifest, manifest.to_json(), spend, self.on_row_error, self.log)

    def _record_windows(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """``input_path``'s rows, :attr:`window_rows` at a time, each window with its first row's index."""
        assert self.input_path is not None
        return windows(iter_rows(self.input_path, self.input_format), self.window_rows)

    # ------------------------------------------------------------------ output

    def _finish(self, context: Context, results: list[RowResult]) -> Any:
        """Publish the rows (XCom or storage), log the summary, then apply ``on_row_error``."""
        results = priced(results, self.hook.settings)
        manifest = Manifest.of(results)
        spend = self._record_spend(manifest, [r.task_uuid for r in results if r.task_uuid])
        value = publish(results, manifest, self.output_path, self.max_xcom_bytes, self.log)
        return conclude(context, manifest, value, spend, self.on_row_error, self.log)

    def _record_spend(self, manifest: Manifest, task_uuids: list[str]) -> Spend:
        """What the batch spent, kept for lineage (``minimax_spend``).

        :param manifest: the rows' summary.
        :param task_uuids: the task API's taskUUIDs.
        """
        start = Spend.start(
            self.hook.settings, self.model, prompt_hash(self.system_prompt, self.prompt_template)
        )
        spend = batch_spend(start, manifest, task_uuids, self.hook.chat_resends_after_timeout)
        self.minimax_spend = spend
        return spend
