"""MiniMaxTextInferenceOperator: one textInference, waited on in the triggerer, paid for once."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from airflow.providers.common.compat.sdk import BaseOperator, conf
from pydantic import BaseModel

from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import MiniMaxTimeoutError, MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.hooks.request_building import Messages, normalise_messages
from airflow_provider_minimax.hooks.responses import api_error
from airflow_provider_minimax.idempotency import GenerationStore, TaskIdentity, resolve_and_submit
from airflow_provider_minimax.lineage import LineageMixin, prompt_hash
from airflow_provider_minimax.models import TaskResult, TextInferenceTask
from airflow_provider_minimax.operators._answer_state import AnswerDeferralState, Spent, TextInferenceOptions
from airflow_provider_minimax.operators._options import check_output_type, checked_options
from airflow_provider_minimax.operators._templating import (
    PromptTemplateMixin,
    check_prompt,
    system_with_schema,
)
from airflow_provider_minimax.poll_cadence import DEFAULT_NOT_FOUND_GRACE
from airflow_provider_minimax.polling import (
    outcome_from_event,
    require_task_api,
    results_of,
    wait_for_tasks,
)
from airflow_provider_minimax.results import Spend, TasksOutcome, result_json
from airflow_provider_minimax.structured import OutputMismatch, OutputReasks, check_output_retries

try:  # the class BaseOperator.resume_execution raises: the Task SDK's, or core's before Airflow 3.2
    from airflow.sdk.exceptions import TaskDeferralTimeout
except ImportError:  # Airflow < 3.2
    from airflow.exceptions import TaskDeferralTimeout  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class MiniMaxTextInferenceOperator(LineageMixin, PromptTemplateMixin, BaseOperator):
    """Run one MiniMax M2.7 ``textInference`` and push its answer to XCom.

    The task is submitted with ``deliveryMethod: async`` under a taskUUID derived from the task
    instance, and waited on in the triggerer (``deferrable=True``) or in the worker. A retried
    try asks for that UUID first and re-attaches to it or reuses its result, so a task
    instance never pays twice for the same answer.

    :param prompt: the user prompt (or a ``.txt``/``.md``/``.j2`` template file); give this or ``messages``.
    :param messages: the conversation: ``{"role", "content"}`` dicts, the last one from the user.
    :param system_prompt: the system prompt (or a template file).
    :param model: the model; the connection's default when omitted.
    :param temperature: 0..1, step 0.01.
    :param top_p: 0..1, step 0.01.
    :param max_tokens: 1..196608.
    :param number_results: answers to generate, 1..4; the XCom ``text`` is a list when above 1.
    :param seed: 0..4294967295, for reproducible answers.
    :param include_cost: ask the API for the cost.
    :param include_usage: ask the API for token usage.
    :param webhook_url: where the API also POSTs the finished result.
    :param conn_id: the ``minimax`` connection (task API).
    :param deferrable: wait in the triggerer instead of the worker.
    :param delivery: ``async`` (submit, then wait) or ``sync`` (one blocking call, for short prompts).
    :param poll_interval: seconds before the first poll; the wait grows x1.5 from there.
    :param max_poll_interval: the cap of the wait between polls, in seconds.
    :param wait_timeout: how long to wait for the answer (seconds or a timedelta), counted from
        the first deferral of a try; the deadline then stays fixed across re-asks.
    :param not_found_grace: seconds (or a timedelta) after the submit was accepted during which the
        API's ``taskFailedOrNotFound`` reads as "not visible yet" rather than a failure (default 120).
    :param output_type: a pydantic model the answer must match; XCom gets ``output`` as JSON.
    :param max_output_retries: re-asks after an answer that does not match ``output_type`` (0..10).
    """

    ui_color = "#e8d8ff"
    template_fields: Sequence[str] = (
        "prompt",
        "messages",
        "system_prompt",
        "model",
        "temperature",
        "top_p",
        "max_tokens",
        "number_results",
        "seed",
        "include_cost",
        "include_usage",
        "webhook_url",
        "conn_id",
        "delivery",
        "poll_interval",
        "max_poll_interval",
        "wait_timeout",
        "not_found_grace",
        "max_output_retries",
    )

    def __init__(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        number_results: int = 1,
        seed: int | None = None,
        include_cost: bool = True,
        include_usage: bool = True,
        webhook_url: str | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        delivery: Literal["async", "sync"] = "async",
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        wait_timeout: float | timedelta = timedelta(hours=1),
        not_found_grace: float | timedelta = DEFAULT_NOT_FOUND_GRACE,
        output_type: type[BaseModel] | None = None,
        max_output_retries: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_output_type(output_type, self.task_id)
        check_output_retries(max_output_retries, type(self).__name__)
        if (prompt is None) == (messages is None):
            raise ValueError(f"{type(self).__name__}: give exactly one of 'prompt' or 'messages'")
        self.prompt = prompt
        self.messages = messages
        self.system_prompt = system_prompt
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.number_results = number_results
        self.seed = seed
        self.include_cost = include_cost
        self.include_usage = include_usage
        self.webhook_url = webhook_url
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.delivery = delivery
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.wait_timeout = wait_timeout
        self.not_found_grace = not_found_grace
        self.output_type = output_type
        self.max_output_retries = max_output_retries
        #: The taskUUIDs this try submitted or waits on, for on_kill and errors.
        self.task_uuids: list[str] = []

    @cached_property
    def hook(self) -> MiniMaxHook:
        """The hook of ``conn_id``."""
        return MiniMaxHook(minimax_conn_id=self.conn_id)

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> dict[str, Any]:
        """Reuse, re-attach to or submit the task, then defer (or wait here) for its answer."""
        return self._advance(context, attempt=0, results=None, spent=Spent(), end_time=None)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, **resume: Any
    ) -> dict[str, Any]:
        """Resume after the trigger fired: check the event, then accept the answer or re-ask.

        :param context: the task context.
        :param event: the trigger's :class:`TasksOutcome` payload.
        :param resume: the deferral's kwargs (see :class:`AnswerDeferralState`); empty when the runner drops
            them (``airflow dags test``), and then read from the task-state store.
        """
        outcome = outcome_from_event(event)
        self.task_uuids = list(outcome.task_uuids)
        results = results_of(outcome)
        state = AnswerDeferralState.model_validate(GenerationStore(context).load_resume(resume))
        return self._advance(context, state.attempt, results, state.spent, state.end_time)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Turn Airflow's own deferral timeout (``execution_timeout``) into an error naming the UUIDs."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout as timeout:
            uuids = GenerationStore(context).waiting()
            raise MiniMaxTimeoutError(
                f"Airflow's deferral timeout (execution_timeout) hit while waiting for MiniMax task(s) "
                f"{', '.join(uuids) or '(unknown: no task-state store)'}; they may still finish "
                "upstream, and a retry re-attaches to them instead of paying again",
                task_uuids=uuids,
            ) from timeout

    def on_kill(self) -> None:
        """Log the UUIDs in flight: the API has no cancel call, so they run (and bill) to the end."""
        self.log.warning(
            "Killed while MiniMax task(s) %s were in flight. The task API has no cancel call: they run "
            "to completion upstream and are billed; a retry of this task re-attaches to them.",
            ", ".join(self.task_uuids) or "(none submitted yet)",
        )

    # ------------------------------------------------------------------ the loop

    def _advance(
        self,
        context: Context,
        attempt: int,
        results: list[TaskResult] | None,
        spent: Spent,
        end_time: float | None,
    ) -> dict[str, Any]:
        """Get each answer (reused, waited on or deferred) and accept it, re-asking on a mismatch."""
        options = self._options()
        identity = TaskIdentity.from_context(context)
        store = GenerationStore(context)
        reasks = (
            OutputReasks(self.output_type, options.max_output_retries, reasks=attempt)
            if self.output_type
            else None
        )
        follow_up: list[dict[str, str]] = []
        while True:
            if results is None:
                task_uuid, results = self._resolve(identity, store, attempt, follow_up, options)
                if results is None:
                    # Accepted (or found known) just now: not found reads as pending until then.
                    not_found_until = time.time() + options.not_found_grace
                    end_time = end_time or time.time() + options.wait_timeout
                    if self.deferrable:
                        self._defer(store, task_uuid, attempt, end_time, not_found_until, spent, options)
                    results = results_of(self._wait(task_uuid, end_time, not_found_until, options))
            spent = spent.add(results)
            self.minimax_spend = Spend.start(
                self.hook.settings, self.model, prompt_hash(self.system_prompt, self.prompt, self.messages)
            ).model_copy(update={**dict(spent), "calls": len(spent.task_uuids)})
            try:
                return self._accept(results, spent, options, reasks)
            except OutputMismatch as err:
                assert reasks is not None  # Only output_type mismatches reach this point.
                follow_up = reasks.follow_up(err, task_uuid=results[0].task_uuid)
                self.log.warning("Answer %d did not match the output type (%s); re-asking", attempt, err)
                attempt, results = reasks.reasks, None

    def _options(self) -> TextInferenceOptions:
        """The checked knobs; also refuses a chat connection and blank prompts, before any HTTP call."""
        require_task_api(self.hook, type(self).__name__)
        check_prompt(self.prompt, self.messages)
        return checked_options(TextInferenceOptions, self)

    def _resolve(
        self,
        identity: TaskIdentity,
        store: GenerationStore,
        attempt: int,
        follow_up: list[dict[str, str]],
        options: TextInferenceOptions,
    ) -> tuple[str, list[TaskResult] | None]:
        """Reuse, re-attach to or submit answer ``attempt``; its UUID and results when already done."""
        if self.output_type is not None and options.number_results > 1:
            raise MiniMaxValidationError(
                "output_type needs number_results=1 (one answer to validate), "
                f"got number_results={options.number_results}",
                parameter="number_results",
            )
        conversation = self._conversation(follow_up)

        def build_task(item: int, task_uuid: str) -> TextInferenceTask:
            return self.hook.new_text_inference(
                conversation,
                system_prompt=system_with_schema(self.system_prompt, self.output_type),
                task_uuid=task_uuid,
                delivery_method=options.delivery,
                model=self.model,
                temperature=self.temperature,
                top_p=self.top_p,
                max_tokens=self.max_tokens,
                number_results=options.number_results,
                seed=self.seed,
                include_cost=options.include_cost,
                include_usage=options.include_usage,
                webhook_url=self.webhook_url,
            )

        resolution = resolve_and_submit(
            self.hook,
            identity,
            build_task,
            [attempt],
            store,
            options.number_results,
            not_found_grace=options.not_found_grace,
            poll_interval=options.poll_interval,
            max_poll_interval=options.max_poll_interval,
        )
        task_uuid = resolution.uuids[attempt]
        self.task_uuids = [task_uuid]
        if attempt in resolution.rejected:
            error = resolution.rejected[attempt]
            raise api_error(error.model_copy(update={"task_uuid": error.task_uuid or task_uuid}), None)
        return task_uuid, resolution.finished.get(attempt)

    def _defer(
        self,
        store: GenerationStore,
        task_uuid: str,
        attempt: int,
        end_time: float,
        not_found_until: float,
        spent: Spent,
        options: TextInferenceOptions,
    ) -> NoReturn:
        from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

        store.remember_waiting([task_uuid])
        resume = AnswerDeferralState(attempt=attempt, end_time=end_time, spent=spent).model_dump(mode="json")
        store.save_resume(resume)
        self.log.info("Deferring on MiniMax task %s (deadline %.0f)", task_uuid, end_time)
        self.defer(
            trigger=MiniMaxTaskTrigger(
                [task_uuid],
                conn_id=self.conn_id,
                end_time=end_time,
                poll_interval=options.poll_interval,
                max_poll_interval=options.max_poll_interval,
                number_results=options.number_results,
                not_found_until=not_found_until,
            ),
            method_name="execute_complete",
            kwargs=resume,
        )

    def _wait(
        self, task_uuid: str, end_time: float, not_found_until: float, options: TextInferenceOptions
    ) -> TasksOutcome:
        self.log.info("Waiting in the worker for MiniMax task %s", task_uuid)
        return wait_for_tasks(
            self.hook,
            [task_uuid],
            end_time=end_time,
            not_found_until=not_found_until,
            poll_interval=options.poll_interval,
            max_poll_interval=options.max_poll_interval,
            number_results=options.number_results,
        )

    # ------------------------------------------------------------------ requests and answers

    def _conversation(self, follow_up: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The messages of one answer: the user's, then a re-ask's turns (wrong answer, feedback)."""
        source: Messages = self.prompt if self.prompt is not None else list(self.messages or [])
        return normalise_messages(source) + follow_up

    def _accept(
        self,
        results: list[TaskResult],
        spent: Spent,
        options: TextInferenceOptions,
        reasks: OutputReasks | None,
    ) -> dict[str, Any]:
        """The XCom value; raises :class:`OutputMismatch` when the answer misses ``output_type``."""
        # The sensor's shape, with usage and cost over every answer this task instance used.
        value = result_json(results[0].task_uuid, results, options.number_results)
        value.update(usage=spent.usage.model_dump(mode="json"), cost=spent.cost)
        if reasks is not None:  # Only with number_results=1 (see _resolve): text is a str.
            value["output"] = reasks.read(value["text"]).model_dump(mode="json")
        if self.minimax_spend is not None:
            self.log.info("MiniMax task %s done. %s", value["task_uuid"], self.minimax_spend.summary())
        return value
