"""MiniMaxBatchOperator: one prompt per row over thousands of rows, in one task, at the API's pace."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator, conf
from pydantic import BaseModel, Field, field_validator

from airflow_provider_minimax.batch.chat import ChatBatchRunner, ChatRunSettings, shard_count
from airflow_provider_minimax.batch.checkpoint import RowCheckpoint, fingerprint
from airflow_provider_minimax.batch.io import InputFormat, check_records, read_rows, storage_path, write_jsonl
from airflow_provider_minimax.batch.progress import Progress
from airflow_provider_minimax.batch.rows import (
    OUTPUT_MISMATCH,
    Manifest,
    RowResult,
    failed_row,
    row_from_answer,
    row_from_error,
    task_usage,
)
from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import MiniMaxError, MiniMaxTaskFailedError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook, build
from airflow_provider_minimax.hooks.responses import error_type
from airflow_provider_minimax.idempotency import GenerationStore, TaskIdentity, resolve_and_submit
from airflow_provider_minimax.images import check_image
from airflow_provider_minimax.lineage import LineageMixin, prompt_hash
from airflow_provider_minimax.models import ApiError, TaskResult, TextInferenceTask, split_think
from airflow_provider_minimax.operators._templating import system_with_schema
from airflow_provider_minimax.polling import (
    DEFAULT_NOT_FOUND_GRACE,
    WaitOptions,
    outcome_from_event,
    refuse_bool,
    seconds,
    wait_for_tasks,
)
from airflow_provider_minimax.rate_control import AdaptiveLimiter
from airflow_provider_minimax.results import GenerateResult, Spend, TasksOutcome
from airflow_provider_minimax.structured import OutputMismatch, parse_output, response_format

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context, ObjectStoragePath

OnRowError = Literal["fail", "skip"]
#: Failed rows named in the task's error message (the output and the manifest list them all).
ROWS_IN_ERROR = 20


class _BatchOptions(WaitOptions):
    """The operator's own knobs after templating, checked before the first HTTP call."""

    on_row_error: OnRowError
    max_concurrency: int = Field(ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    max_output_retries: int = Field(ge=0)
    max_xcom_bytes: int = Field(ge=0)

    _counts = field_validator(
        "max_concurrency", "requests_per_minute", "max_output_retries", "max_xcom_bytes", mode="before"
    )(refuse_bool)


class _Resume(BaseModel):
    """What gathering the rows needs besides the wait's outcome; the deferral's kwargs, also stored.

    :param row_count: rows in the batch.
    :param rejected: rows the API refused at submit (index as text, for JSON), with the error.
    :param started: epoch time the try started, for the rate in the progress line.
    """

    row_count: int = Field(ge=0)
    rejected: dict[str, ApiError] = Field(default_factory=dict)
    started: float


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
        options = self._options()
        records = self._records()
        prompts = self._render_prompts(records, context)
        images = self._row_images(records)
        self.log.info("MiniMax batch: %d row(s) through the %s API", len(prompts), self.hook.settings.api)
        if self.hook.settings.api == "chat":
            if self.deferrable:
                self.log.info("The chat API has no async delivery: the rows run from the worker")
            return self._run_chat(context, prompts, images, options)
        return self._run_tasks(context, prompts, options)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **resume: Any) -> Any:
        """Gather every row's result in input order after the trigger fired.

        :param context: the task context.
        :param event: the trigger's :class:`TasksOutcome` payload.
        :param resume: the deferral's kwargs (see :class:`_Resume`); empty when the runner drops
            them (``airflow dags test``), and then read from the task-state store.
        """
        outcome = outcome_from_event(event)
        state = _Resume.model_validate(GenerationStore(context).load_resume(resume))
        return self._complete(context, outcome, state)

    # ------------------------------------------------------------------ input and prompts

    def _options(self) -> _BatchOptions:
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

    def _render_prompts(self, records: list[dict[str, Any]], context: Context) -> list[str]:
        """Each row's prompt; raises naming the row when a field is missing or the prompt is empty."""
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
        prompts = []
        for index, record in enumerate(records):
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
            prompts.append(prompt)
        return prompts

    def _row_images(self, records: list[dict[str, Any]]) -> dict[int, Any]:
        """Each row's image source, every one checked (not read whole) before any HTTP call."""
        if self.image_field is None:
            return {}
        if self.hook.settings.api != "chat":
            raise MiniMaxValidationError(
                f"image_field needs a chat-API connection (the task API takes text only); "
                f"{self.conn_id!r} speaks the task API: use a connection with extra.api 'chat'",
                parameter="image_field",
            )
        images = {}
        for index, record in enumerate(records):
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

    def _settings(self) -> dict[str, Any]:
        settings = {
            "model": self.model or None,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        return {key: value for key, value in settings.items() if value is not None}

    # ------------------------------------------------------------------ task API

    def _run_tasks(self, context: Context, prompts: list[str], options: _BatchOptions) -> Any:
        """Submit every row (reusing what earlier tries paid for), then wait on all in one go."""
        started = time.time()
        system = system_with_schema(self.system_prompt, self.output_type)
        settings = self._settings()

        def build_task(row: int, task_uuid: str) -> TextInferenceTask:
            try:
                return self.hook.new_text_inference(
                    prompts[row],
                    system_prompt=system,
                    task_uuid=task_uuid,
                    delivery_method="async",
                    **settings,
                )
            except MiniMaxValidationError as err:
                raise MiniMaxValidationError(f"row {row}: {err.message}", parameter=f"rows[{row}]") from None

        identity, store = TaskIdentity.from_context(context), GenerationStore(context)
        resolution = resolve_and_submit(
            self.hook,
            identity,
            build_task,
            list(range(len(prompts))),
            store,
            not_found_grace=options.not_found_grace,
            poll_interval=options.poll_interval,
            max_poll_interval=options.max_poll_interval,
        )
        # Accepted (or found known) just now: not found reads as pending until then.
        not_found_until = time.time() + options.not_found_grace
        self.log.info(
            "Submitted rows: %d already finished by earlier tries, %d running, %d refused by the API",
            len(resolution.finished),
            len(resolution.waiting),
            len(resolution.rejected),
        )
        rows = [row for row in range(len(prompts)) if row not in resolution.rejected]
        uuids = [resolution.uuids[row] for row in rows]
        state = _Resume(
            row_count=len(prompts),
            rejected={str(row): error for row, error in resolution.rejected.items()},
            started=started,
        )
        if not resolution.waiting:
            outcome = TasksOutcome(
                status="success",
                task_uuids=uuids,
                results={resolution.uuids[row]: found for row, found in resolution.finished.items()},
            )
            return self._complete(context, outcome, state)
        end_time = started + options.wait_timeout
        if self.deferrable:
            from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

            resume = state.model_dump(mode="json", by_alias=True)
            store.save_resume(resume)
            self.log.info("Deferring on %d MiniMax task(s), one trigger for the whole batch", len(uuids))
            self.defer(
                trigger=MiniMaxTaskTrigger(
                    uuids,
                    conn_id=self.conn_id,
                    end_time=end_time,
                    poll_interval=options.poll_interval,
                    max_poll_interval=options.max_poll_interval,
                    not_found_until=not_found_until,
                ),
                method_name="execute_complete",
                kwargs=resume,
            )

        outcome = wait_for_tasks(
            self.hook,
            uuids,
            end_time=end_time,
            poll_interval=options.poll_interval,
            max_poll_interval=options.max_poll_interval,
            not_found_until=not_found_until,
            sleep=self.hook.sleep,
        )
        return self._complete(context, outcome, state)

    def _complete(self, context: Context, outcome: TasksOutcome, state: _Resume) -> Any:
        """Every row's result from the wait's outcome, the progress line, then :meth:`_finish`.

        :param context: the task context.
        :param outcome: what the wait (trigger or worker) found.
        :param state: the batch's shape and start, from this try or its deferral.
        """
        refused = {int(row): error for row, error in state.rejected.items()}
        results = self._gather(outcome, state.row_count, refused)
        progress = Progress(state.row_count, started=state.started, clock=time.time, logger=self.log)
        progress.finish(state.row_count, sum(not result.ok for result in results))
        return self._finish(context, results)

    def _gather(
        self,
        outcome: TasksOutcome,
        row_count: int,
        rejected: dict[int, ApiError],
    ) -> list[RowResult]:
        """Every row's result in input order, from the wait's outcome and the rows refused at submit."""
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
        for row in range(row_count):
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

    def _run_chat(
        self, context: Context, prompts: list[str], images: dict[int, Any], options: _BatchOptions
    ) -> Any:
        """Run the rows not checkpointed by earlier tries concurrently, checkpointing as they finish."""
        params: dict[str, Any] = {"system_prompt": self.system_prompt or None, **self._settings()}
        if self.output_type is not None:
            params["response_format"] = response_format(self.output_type)
        fingerprints = []
        for row, prompt in enumerate(prompts):
            try:
                request = self.hook.new_chat_request(prompt, **params)
            except MiniMaxValidationError as err:
                raise MiniMaxValidationError(f"row {row}: {err.message}", parameter=f"rows[{row}]") from None
            # The image's source, not its bytes: a row is not read whole before its turn.
            image = {"image": str(images[row])} if row in images else {}
            fingerprints.append(fingerprint({**request.to_wire(), **image}))
        checkpoint = RowCheckpoint(context.get("task_state_store"))
        results: dict[int, RowResult] = checkpoint.load(fingerprints)
        if results:
            self.log.info("Reusing %d row(s) answered by earlier tries", len(results))
        elif not checkpoint.enabled:
            self.log.warning("No task-state store (Airflow < 3.3): a retry of this task redoes every row")
        todo = {row: prompt for row, prompt in enumerate(prompts) if row not in results}
        settings = self.hook.settings
        self.limiter = AdaptiveLimiter(
            options.max_concurrency, options.requests_per_minute, backoff_max=settings.retry_max_wait
        )
        recorder = _Recorder(results, len(prompts), checkpoint, fingerprints, self.log)
        extra_hooks = [
            MiniMaxHook(minimax_conn_id=self.conn_id)
            for _ in range(shard_count(len(todo) and options.max_concurrency) - 1)
        ]
        runner = ChatBatchRunner(
            [self.hook, *extra_hooks],
            self.limiter,
            ChatRunSettings(
                params=params,
                images=images,
                output_type=self.output_type,
                output_retries=options.max_output_retries,
                max_retries=settings.max_retries,
                backoff_max=settings.retry_max_wait,
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
        return self._finish(context, [results[row] for row in range(len(prompts))])

    async def _chat(self, runner: ChatBatchRunner, recorder: _Recorder, todo: dict[int, str]) -> None:
        try:
            await runner.run(todo)
        finally:
            await recorder.flush()
            for hook in runner.hooks:
                await hook.aclose()

    # ------------------------------------------------------------------ output

    def _finish(self, context: Context, results: list[RowResult]) -> Any:
        """Publish the rows (XCom or storage), log the summary, then apply ``on_row_error``."""
        settings = self.hook.settings
        if settings.api == "chat":  # The gateway reports no cost: estimate each row's.
            results = [r.model_copy(update={"cost": settings.prices.estimate(r.usage)}) for r in results]
        manifest = Manifest.of(results)
        spend = self.minimax_spend = Spend.start(
            settings, self.model, prompt_hash(self.system_prompt, self.prompt_template)
        ).model_copy(
            update={
                "calls": manifest.rows,
                "usage": manifest.usage,
                "cost": manifest.cost,
                "cost_estimated": settings.api == "chat" and manifest.cost is not None,
                "task_uuids": [r.task_uuid for r in results if r.task_uuid],
            }
        )
        value = self._publish(results, manifest)
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
        fingerprints: list[str],
        logger: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.results = results
        self.checkpoint = checkpoint
        self.fingerprints = fingerprints
        self.failed = 0
        self.progress = Progress(total, already_done=len(results), logger=logger, clock=clock)
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
        self.progress.update(len(self.results), self.failed)
        if len(self._unsaved) >= self._every or self._clock() - self._saved_at >= 10.0:
            await self.flush()

    async def flush(self) -> None:
        """Checkpoint the rows finished since the last flush (off the event loop: it is blocking IPC)."""
        unsaved, self._unsaved = self._unsaved, []
        self._saved_at = self._clock()
        if unsaved and self.checkpoint.enabled:
            await asyncio.to_thread(self.checkpoint.save, unsaved, self.fingerprints)
