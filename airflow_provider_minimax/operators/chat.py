"""MiniMaxChatOperator: one prompt in, one answer out, over either API (structured, tools, streaming)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator
from pydantic import BaseModel

from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import (
    MiniMaxError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.hooks.request_building import message_dict, refuse_seed_on_chat
from airflow_provider_minimax.hooks.responses import api_error
from airflow_provider_minimax.idempotency import GenerationStore, TaskIdentity, resolve_and_submit
from airflow_provider_minimax.images import as_list, image_part, with_images
from airflow_provider_minimax.lineage import LineageMixin, prompt_hash
from airflow_provider_minimax.models import ChatToolCall, TextInferenceTask
from airflow_provider_minimax.operators._templating import PromptTemplateMixin, system_with_schema
from airflow_provider_minimax.polling import results_of, wait_for_tasks
from airflow_provider_minimax.results import (
    GenerateResult,
    Spend,
    TaskBatchResult,
    result_from_chat,
    result_from_task,
)
from airflow_provider_minimax.streaming import StreamLog, collect_chat_stream, collect_task_stream
from airflow_provider_minimax.structured import (
    OutputMismatch,
    OutputReasks,
    check_output_retries,
    response_format,
)
from airflow_provider_minimax.tools import Tool, ToolBox

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom keys pushed next to the return value.
USAGE_KEY, COST_KEY, REASONING_KEY = "usage", "cost", "reasoning"


@dataclass
class ChatRun:
    """One execution's state, handed from call to call instead of kept on the operator.

    :param api: ``task`` or ``chat``, as the connection says.
    :param identity: the task instance, from which task-API answers get their taskUUIDs.
    :param store: where those taskUUIDs' generations survive between tries.
    :param spend: where calls, usage and cost are summed.
    """

    api: str
    identity: TaskIdentity
    store: GenerationStore
    spend: Spend


class MiniMaxChatOperator(LineageMixin, PromptTemplateMixin, BaseOperator):
    """Ask MiniMax M2.7 for one answer, over the task API or the chat API (the connection decides).

    The ``<think>`` block is stripped from the answer; the full content goes back unchanged
    whenever the conversation continues (re-asks, tool rounds). XCom: the return value is the
    answer (or ``output_type``'s ``model_dump(mode="json")``); ``usage`` (tokens by kind) and
    ``cost`` are pushed under their own keys, summed over every call the task made. ``cost`` is
    the task API's own figure, or on the chat API an estimate from the connection's
    ``price_per_million_*`` extras (pushed only when known).

    :param prompt: the user prompt, or a ``.txt``/``.md``/``.j2`` template file (templated).
        With ``messages`` it is appended as the last user turn.
    :param messages: OpenAI-style message dicts; earlier assistant turns are sent back as given
        (templated).
    :param system_prompt: the system prompt, or a template file (templated).
    :param images: images for the last user turn (chat API only): local paths,
        ``ObjectStoragePath``/URIs (``s3://...``), ``http(s)`` URLs (passed through) or bytes;
        one or a list (templated). Files go inline as ``data:`` URLs; PNG, JPEG, WebP and GIF up
        to :data:`~airflow_provider_minimax.images.MAX_IMAGE_BYTES` each.
    :param conn_id: the ``minimax`` connection (templated).
    :param model: the model; the connection's default when omitted (templated).
    :param temperature: 0..1, step 0.01.
    :param top_p: 0..1, step 0.01.
    :param max_tokens: the output budget (chat API: at most 16384; task API: 196608).
    :param seed: 0..4294967295, task API only.
    :param output_type: a pydantic model the answer must validate against (JSON).
    :param max_output_retries: re-asks after an answer that does not match ``output_type`` (0..10).
    :param tools: Python callables the model may call (chat API only); see :mod:`..tools`.
    :param max_tool_rounds: the most rounds of tool calls before the task fails.
    :param stream: write the answer to the task log line by line as it arrives.
    :param include_reasoning: push the reasoning to XCom under ``reasoning`` (and, when
        streaming, log it with a ``[thinking]`` prefix).
    """

    template_fields: Sequence[str] = ("prompt", "messages", "system_prompt", "images", "conn_id", "model")
    ui_color = "#f5d0e4"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        images: Any = None,
        conn_id: str = DEFAULT_CONN_ID,
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        output_type: type[BaseModel] | None = None,
        max_output_retries: int = 2,
        tools: Sequence[Callable[..., Any] | Tool] | None = None,
        max_tool_rounds: int = 5,
        stream: bool = False,
        include_reasoning: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # "is None", not falsiness: either may be an XComArg resolved only at run time.
        if prompt is None and messages is None:
            raise ValueError(f"{self.task_id}: give 'prompt' or 'messages'")
        if output_type is not None and not (
            isinstance(output_type, type) and issubclass(output_type, BaseModel)
        ):
            raise TypeError(
                f"{self.task_id}: 'output_type' must be a pydantic model class, got {output_type!r}"
            )
        check_output_retries(max_output_retries, type(self).__name__)
        if max_tool_rounds < 1:
            raise ValueError(f"{self.task_id}: 'max_tool_rounds' must be >= 1, got {max_tool_rounds}")
        if tools and stream:
            raise ValueError(f"{self.task_id}: 'stream' cannot be combined with 'tools'")
        ToolBox(tools or ())  # Fail at DAG parse time on a callable that cannot be a tool.
        self.prompt = prompt
        self.messages = messages
        self.system_prompt = system_prompt
        self.images = images
        self.conn_id = conn_id
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.seed = seed
        self.output_type = output_type
        self.max_output_retries = max_output_retries
        self.tools = list(tools or ())
        self.max_tool_rounds = max_tool_rounds
        self.stream = stream
        self.include_reasoning = include_reasoning

    @cached_property
    def hook(self) -> MiniMaxHook:
        """The hook of ``conn_id``."""
        return MiniMaxHook(minimax_conn_id=self.conn_id)

    @cached_property
    def toolbox(self) -> ToolBox:
        """The tools, with their schemas."""
        return ToolBox(self.tools)

    # ------------------------------------------------------------------------------ execution

    def execute(self, context: Context) -> Any:
        """Ask, validate, push usage/cost (and reasoning when asked), return the answer."""
        settings = self.hook.settings
        self._check_api(settings.api)
        conversation = self.conversation()  # Images read and checked here, before any HTTP call.
        spend = self.minimax_spend = Spend.start(
            settings, self.model, prompt_hash(self.system_prompt, self.prompt, self.messages)
        )
        run = ChatRun(settings.api, TaskIdentity.from_context(context), GenerationStore(context), spend)
        try:
            result, output = self.converse(run, conversation)
        finally:
            spend.estimate_cost(settings.prices)
            spend.resends = self.hook.chat_resends_after_timeout
            self.log.info(spend.summary())
        ti = context["ti"]
        ti.xcom_push(key=USAGE_KEY, value=spend.usage.model_dump())
        if spend.cost is not None:
            ti.xcom_push(key=COST_KEY, value=spend.cost)
        if self.include_reasoning and result.reasoning:
            ti.xcom_push(key=REASONING_KEY, value=result.reasoning)
        return output.model_dump(mode="json") if output is not None else result.text

    def _check_api(self, api: str) -> None:
        """Refuse, before any HTTP call, what the connection's API cannot do."""
        if api != "chat" and self.tools:
            raise MiniMaxValidationError(
                f"'tools' needs a chat-API connection; {self.conn_id!r} speaks the {api} API "
                "(set extra.api to 'chat')",
                parameter="tools",
            )
        if api != "chat" and self.images:
            raise MiniMaxValidationError(
                f"'images' needs a chat-API connection (the task API takes text only); {self.conn_id!r} "
                "speaks the task API: use a connection with extra.api 'chat'",
                parameter="images",
            )
        refuse_seed_on_chat(self.seed, api, self.conn_id)

    def conversation(self) -> list[dict[str, Any]]:
        """The messages to send: ``messages`` as given, then ``prompt`` as the last user turn."""
        turns: list[dict[str, Any]] = []
        if isinstance(self.messages, str):
            raise MiniMaxValidationError(
                "'messages' rendered to a string, not a list of dicts; pass a list, or set "
                "render_template_as_native_obj=True on the DAG when it comes from a template",
                parameter="messages",
            )
        for index, message in enumerate(self.messages or ()):
            turn = message_dict(message, f"messages.{index}")
            if "role" not in turn:
                raise MiniMaxValidationError(
                    f"messages[{index}] must be a dict with 'role' and 'content', got {message!r:.80}",
                    parameter=f"messages.{index}",
                )
            turns.append(turn)
        if self.prompt:
            if not isinstance(self.prompt, str):
                raise MiniMaxValidationError(
                    f"'prompt' must be a string, got {type(self.prompt).__name__}", parameter="prompt"
                )
            turns.append({"role": "user", "content": self.prompt})
        if not turns:
            raise MiniMaxValidationError("'prompt' and 'messages' rendered empty", parameter="prompt")
        sources = as_list(self.images)
        if sources:
            parts = [image_part(source, f"images[{i}]") for i, source in enumerate(sources)]
            last_user = next((t for t in reversed(turns) if t.get("role") == "user"), None)
            if last_user is None:
                raise MiniMaxValidationError("'images' needs a user turn to go with", parameter="images")
            last_user["content"] = with_images(last_user.get("content"), parts)
        return turns

    def converse(
        self, run: ChatRun, conversation: list[dict[str, Any]]
    ) -> tuple[GenerateResult, BaseModel | None]:
        """Get an answer, re-asking while it does not match ``output_type``.

        :param run: this execution's state.
        :param conversation: the messages; grows with every re-ask and tool round.
        :return: the last answer and, with ``output_type``, its parsed value.
        """
        reasks = OutputReasks(self.output_type, self.max_output_retries) if self.output_type else None
        while True:
            result = self.answer(run, conversation)
            if reasks is None:
                return result, None
            try:
                return result, reasks.read(result.text)
            except OutputMismatch as mismatch:
                self.log.warning(
                    "Answer %d/%d does not match %s: %s",
                    reasks.reasks + 1,
                    self.max_output_retries + 1,
                    reasks.output_type.__name__,
                    mismatch.feedback,
                )
                conversation += reasks.follow_up(mismatch, result.raw_content or result.text)

    def answer(self, run: ChatRun, conversation: list[dict[str, Any]]) -> GenerateResult:
        """One answer: through the tool loop, a stream, or a single call.

        :param run: this execution's state.
        :param conversation: the messages so far.
        """
        api, spend = run.api, run.spend
        system, sampling = self._request(api)
        if self.tools:
            return self._tool_loop(conversation, system, sampling, spend)
        if self.stream:
            log = StreamLog(self.log.info, show_reasoning=self.include_reasoning)
            if api == "chat":
                chunks = self.hook.stream_chat_completion(conversation, system_prompt=system, **sampling)
                result = collect_chat_stream(chunks, log)
            else:
                pieces = self.hook.stream_text_inference(conversation, system_prompt=system, **sampling)
                result = collect_task_stream(pieces, log)
            if log.reasoning_chars and not self.include_reasoning:
                self.log.info("(%d characters of reasoning not logged)", log.reasoning_chars)
            return spend.add(result)
        if api == "task":
            return spend.add(self._paid_once(run, conversation, system, sampling))
        return spend.add(self.hook.generate(conversation, system_prompt=system, **sampling))

    def _paid_once(
        self, run: ChatRun, conversation: list[dict[str, Any]], system: str | None, sampling: dict[str, Any]
    ) -> GenerateResult:
        """One task-API answer whose taskUUID derives from the task instance and the request.

        A retried try finds the answer an earlier try already paid for (getResponse is free)
        instead of buying it again; a task still running is waited on.

        :param run: this execution's state; its call count is this call's index within the task
            instance (0, then one per re-ask).
        """
        item = run.spend.calls

        def build_task(_: int, task_uuid: str) -> TextInferenceTask:
            return self.hook.new_text_inference(
                conversation, system_prompt=system, task_uuid=task_uuid, **sampling
            )

        resolution = resolve_and_submit(self.hook, run.identity, build_task, [item], run.store)
        task_uuid = resolution.uuids[item]
        if item in resolution.rejected:
            error = resolution.rejected[item]
            raise api_error(error.model_copy(update={"task_uuid": error.task_uuid or task_uuid}), None)
        results = resolution.finished.get(item)
        if results is None:
            self.log.info("Waiting for MiniMax task %s, accepted by an earlier try", task_uuid)
            deadline = time.time() + self.hook.settings.timeout
            results = results_of(wait_for_tasks(self.hook, [task_uuid], end_time=deadline))
        return result_from_task(TaskBatchResult(results=results))

    def _request(self, api: str) -> tuple[str | None, dict[str, Any]]:
        """The system prompt and the model / sampling parameters for ``api``, with structured-output hints."""
        system = self.system_prompt or None
        sampling: dict[str, Any] = {
            "model": self.model or None,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.output_type is not None:
            if api == "chat":
                sampling["response_format"] = response_format(self.output_type)
            else:  # The task API has no response_format: the schema goes into the system prompt.
                system = system_with_schema(system, self.output_type)
        return system, {key: value for key, value in sampling.items() if value is not None}

    def _tool_loop(
        self, conversation: list[dict[str, Any]], system: str | None, sampling: dict[str, Any], spend: Spend
    ) -> GenerateResult:
        """Call the model, run the tools it asks for, send their results back, until it answers."""
        specs = self.toolbox.specs()
        calls: list[ChatToolCall] = []
        for round_ in range(self.max_tool_rounds + 1):
            completion = self.hook.chat_completion(
                conversation, system_prompt=system, tools=specs, **sampling
            )
            result = spend.add(result_from_chat(completion))
            calls = completion.message.tool_calls or []
            if not calls:
                return result
            if round_ == self.max_tool_rounds:
                break
            conversation.append(completion.message.as_request_message().to_wire())
            for call in calls:
                message, error = self.toolbox.answer(call)
                if error is None:
                    self.log.info("Tool %s(%s) answered", call.function.name, call.id)
                else:
                    self.log.warning("Tool %s(%s) failed: %s", call.function.name, call.id, error)
                conversation.append(message)
        names = ", ".join(sorted({c.function.name for c in calls}))
        raise MiniMaxError(
            f"The model still asked for tools ({names}) after max_tool_rounds={self.max_tool_rounds} "
            "rounds; raise max_tool_rounds or make the prompt say when to stop",
            parameter="max_tool_rounds",
        )
