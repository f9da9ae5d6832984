"""The ``minimax`` batch adapter of common.ai's ``LLMBatchOperator`` / ``@task.llm_batch``.

Each request is one ``textInference`` task with async delivery. Its taskUUID is derived from
the operator's idempotency key, the batch's input fingerprint and the request's position, so
a submit after a lost response, a retry after a worker crash and a re-attach all land on the
same tasks: the submit polls first (``getResponse`` is free) and sends only the unknown UUIDs,
and the server refuses a known UUID anyway. The batch id carries everything needed to rebuild
the UUIDs, so ``get_batch`` and ``iter_results`` need nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.ai.batch.base import (
    BatchAdapter,
    BatchState,
    ExtractedOutput,
    RawResultItem,
    SubmitResult,
)
from airflow.providers.common.ai.exceptions import LLMBatchInputError, LLMBatchLimitExceededError
from airflow.providers.common.compat.sdk import Connection

from airflow_provider_minimax.common_ai.hook import CONN_TYPE, MODEL_PROVIDER
from airflow_provider_minimax.common_ai.outputs import schema_prompt
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.idempotency import GenerationStore, TaskIdentity, resolve_and_submit
from airflow_provider_minimax.models import ApiError, TaskResult, TextInferenceTask, split_think
from airflow_provider_minimax.task_progress import abbreviate, classify

if TYPE_CHECKING:
    from airflow.providers.common.ai.batch.base import BatchRequest
    from airflow.providers.common.ai.batch.output_schema import OutputSpec

log = logging.getLogger(__name__)

BATCH_ID_PREFIX = "minimax-batch"
#: The rejected-at-submit error a result row carries (the API's own error is logged at submit).
REJECTED_CODE = "rejectedAtSubmit"
_REQUEST_PARAMS = frozenset({"temperature", "top_p", "seed"})


@dataclass(frozen=True)
class BatchIdentity(TaskIdentity):
    """The identity a batch's taskUUIDs derive from: idempotency key and input fingerprint.

    The fingerprint covers every request of the batch already, so a request's own fingerprint
    is left out: the UUIDs can then be rebuilt from the batch id alone.
    """

    def task_uuid(self, item_index: int = 0, generation: int = 0, fingerprint: str = "") -> str:
        """The taskUUID of request ``item_index`` at ``generation`` (``fingerprint`` is ignored)."""
        return super().task_uuid(item_index, generation)

    @classmethod
    def of(cls, idempotency_key: str, input_fingerprint: str) -> BatchIdentity:
        """The identity of one submission of one task instance.

        :param idempotency_key: the operator's key of the task instance.
        :param input_fingerprint: the operator's fingerprint of the whole input.
        """
        return cls(dag_id="common.ai llm_batch", task_id=idempotency_key, run_id=input_fingerprint)


@dataclass(frozen=True)
class BatchRef:
    """What a batch id encodes: the identity, the request count and the exceptions to generation 0.

    :param idempotency_key: the operator's key of the task instance.
    :param input_fingerprint: the operator's fingerprint of the whole input.
    :param request_count: how many requests the batch has.
    :param generations: requests whose UUID moved past generation 0 (an earlier task failed).
    :param rejected: requests the API refused at submit (nothing to wait for).
    """

    idempotency_key: str
    input_fingerprint: str
    request_count: int
    generations: dict[int, int] = field(default_factory=dict)
    rejected: frozenset[int] = frozenset()

    def to_id(self) -> str:
        """The batch id recorded by the operator."""
        parts = [BATCH_ID_PREFIX, self.idempotency_key, self.input_fingerprint, str(self.request_count)]
        if self.generations:
            parts.append("g" + ",".join(f"{i}:{g}" for i, g in sorted(self.generations.items())))
        if self.rejected:
            parts.append("r" + ",".join(map(str, sorted(self.rejected))))
        return "/".join(parts)

    @classmethod
    def parse(cls, batch_id: str) -> BatchRef:
        """Read a batch id written by :meth:`to_id`.

        :param batch_id: the id.
        """
        try:
            prefix, key, fingerprint, count, *rest = batch_id.split("/")
            if prefix != BATCH_ID_PREFIX:
                raise ValueError(prefix)
            generations: dict[int, int] = {}
            rejected: set[int] = set()
            for part in rest:
                body = part[1:].split(",")
                if part[0] == "g":
                    generations = {int(i): int(g) for i, g in (pair.split(":") for pair in body)}
                elif part[0] == "r":
                    rejected = {int(i) for i in body}
                else:
                    raise ValueError(part)
            return cls(key, fingerprint, int(count), generations, frozenset(rejected))
        except (ValueError, IndexError):
            raise ValueError(
                f"{batch_id!r} is not a MiniMax batch id ({BATCH_ID_PREFIX}/<key>/<fingerprint>/<count>...)"
            ) from None

    def uuids(self) -> dict[int, str]:
        """Each request's current taskUUID."""
        identity = BatchIdentity.of(self.idempotency_key, self.input_fingerprint)
        return {
            i: identity.task_uuid(i, self.generations.get(i, 0))
            for i in range(self.request_count)
            if i not in self.rejected
        }


class _AdapterHook(MiniMaxHook):
    """A task-API hook over the credentials common.ai hands an adapter (the API key and the host)."""

    def __init__(self, api_key: str | None, base_url: str | None) -> None:
        super().__init__(CONN_TYPE)
        self._connection = Connection(
            conn_id=CONN_TYPE,
            conn_type=CONN_TYPE,
            host=base_url,
            password=api_key,
            extra=json.dumps({"api": "task"}),
        )

    def get_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
        """The connection built from the adapter's credentials (validated like any ``minimax`` one)."""
        return self._connection


class MiniMaxBatchAdapter(BatchAdapter):
    """``LLMBatchOperator`` over the MiniMax task API's async delivery; ``model_id="minimax:m2.7@highspeed"``.

    The connection must be a ``pydanticai_minimax`` connection with ``api: task`` (only its API
    key and host reach an adapter, so timeouts and retries are the ``minimax`` defaults).

    :param api_key: the connection's password.
    :param base_url: the connection's host (the task API URL).
    :param client: a :class:`MiniMaxHook` to use instead (tests).
    """

    name = MODEL_PROVIDER
    conn_types = frozenset({CONN_TYPE})
    #: Our own bound: the task API has no batch object, and every poll of a batch covers every
    #: request, so a bigger input is better split with ``.expand()``.
    max_requests = 10_000
    #: Our own bound on the summed task JSON of one batch.
    max_payload_bytes = 100_000_000
    allows_per_request_model = True

    def __init__(
        self, *, api_key: str | None = None, base_url: str | None = None, client: Any | None = None
    ) -> None:
        self._client: MiniMaxHook = client if client is not None else _AdapterHook(api_key, base_url)

    # ---------------------------------------------------------------- building and checking

    def build_output_directive(self, spec: OutputSpec) -> dict[str, Any]:
        """The schema instructions appended to every request's system prompt (no ``response_format`` here)."""
        return {"schema_prompt": schema_prompt(spec.json_schema)} if spec.is_structured else {}

    def _build_tasks(
        self,
        requests: list[BatchRequest],
        *,
        model: str,
        output_spec: OutputSpec,
        system_prompt: str = "",
        max_tokens: int = 1024,
        request_params: dict[str, Any] | None = None,
        **_: Any,  # other adapters' options (completion_window)
    ) -> list[TextInferenceTask]:
        """Every request as a validated task (placeholder UUIDs); bad input raises before any HTTP call."""
        directive = self.build_output_directive(output_spec)
        tasks = []
        for index, request in enumerate(requests):
            params = {**(request_params or {}), **(request.get("params") or {})}
            unknown = sorted(set(params) - _REQUEST_PARAMS)
            if unknown:
                raise LLMBatchInputError(
                    f"Request {index}: params {unknown} are not textInference settings; the MiniMax batch "
                    f"adapter accepts {sorted(_REQUEST_PARAMS)}"
                )
            bare = self.resolve_request_model(
                request.get("model"), default_bare_model=model, request_index=index
            )
            system = "\n\n".join(
                s
                for s in (request.get("system_prompt") or system_prompt, directive.get("schema_prompt"))
                if s
            )
            try:
                tasks.append(
                    self._client.new_text_inference(
                        request["prompt"],
                        system_prompt=system or None,
                        delivery_method="async",
                        model=f"{MODEL_PROVIDER}:{bare}",
                        max_tokens=request.get("max_tokens") or max_tokens,
                        **params,
                    )
                )
            except MiniMaxValidationError as err:
                raise LLMBatchInputError(f"Request {index}: {err}") from err
        return tasks

    def validate_requests(
        self,
        requests: list[BatchRequest],
        *,
        model: str,
        output_spec: OutputSpec,
        idempotency_key: str,
        **kwargs: Any,
    ) -> None:
        """Check the count, every request's bounds and the total size, before any HTTP call."""
        if len(requests) > self.max_requests:
            raise LLMBatchLimitExceededError(
                f"The MiniMax batch adapter accepts at most {self.max_requests} requests per batch; got "
                f"{len(requests)}. Split the input across mapped task instances with .expand()."
            )
        self.check_custom_id_length(idempotency_key, len(requests))
        tasks = self._build_tasks(requests, model=model, output_spec=output_spec, **kwargs)
        size = sum(len(json.dumps(task.to_wire(), ensure_ascii=False).encode()) for task in tasks)
        if size > self.max_payload_bytes:
            raise LLMBatchLimitExceededError(
                f"The MiniMax batch adapter accepts at most {self.max_payload_bytes} bytes of tasks per "
                f"batch; this input is {size} bytes. Split the input with .expand()."
            )

    # ---------------------------------------------------------------- the batch's life

    def submit(
        self,
        requests: list[BatchRequest],
        *,
        model: str,
        idempotency_key: str,
        input_fingerprint: str,
        output_spec: OutputSpec,
        **kwargs: Any,
    ) -> SubmitResult:
        """Submit what is not known upstream yet; a repeated submit of the same input pays nothing twice."""
        tasks = self._build_tasks(requests, model=model, output_spec=output_spec, **kwargs)
        resolution = resolve_and_submit(
            self._client,
            BatchIdentity.of(idempotency_key, input_fingerprint),
            lambda item, task_uuid: tasks[item].model_copy(update={"task_uuid": task_uuid}),
            list(range(len(tasks))),
            GenerationStore({}),  # the generations live in the batch id instead
        )
        for item, error in sorted(resolution.rejected.items()):
            log.error("MiniMax refused request %d at submit: %s: %s", item, error.code, error.message)
        ref = BatchRef(
            idempotency_key,
            input_fingerprint,
            len(tasks),
            {i: g for i, g in resolution.generations.items() if g},
            frozenset(resolution.rejected),
        )
        return SubmitResult(batch_id=ref.to_id(), provider_input_ref=None)

    def _poll(self, ref: BatchRef) -> tuple[dict[str, list[TaskResult]], dict[str, ApiError], list[str]]:
        """One bulk ``getResponse`` round over every request of the batch (free, chunked by the hook)."""
        uuids = list(ref.uuids().values())
        return classify(self._client.get_responses(uuids), uuids) if uuids else ({}, {}, [])

    def get_batch(self, batch_id: str) -> BatchState:
        """Where the batch stands, from one bulk ``getResponse`` round."""
        ref = BatchRef.parse(batch_id)
        results, errors, pending = self._poll(ref)
        counts = {
            "succeeded": len(results),
            "errored": len(errors) + len(ref.rejected),
            "expired": 0,
            "cancelled": 0,
        }
        return BatchState(status="in_progress" if pending else "completed", counts=counts, error_message=None)

    def cancel_batch(self, batch_id: str) -> None:
        """Stop waiting: the task API cannot cancel, so tasks still running finish and are billed."""
        _, _, pending = self._poll(BatchRef.parse(batch_id))
        log.warning(
            "The MiniMax task API has no cancel: %d task(s) of batch %s still running will finish and be "
            "billed (%s); a retry of this task instance re-attaches to them without paying again.",
            len(pending),
            batch_id,
            abbreviate(pending),
        )

    def find_orphaned_batch(
        self, idempotency_key: str, input_fingerprint: str, not_before: str
    ) -> str | None:
        """Return ``None`` unconditionally: an orphaned submit needs no lookup with this adapter.

        The operator then submits again (``on_orphaned_intent="resubmit"``, its default), and that
        submit polls the same deterministic UUIDs first: tasks the lost submit had sent are
        re-attached, never paid twice. ``on_orphaned_intent="fail"`` would refuse that free retry.
        """
        return None

    def iter_results(self, batch_id: str) -> Iterator[RawResultItem]:
        """Every finished or failed request, in request order, with usage and cost (running ones left out)."""
        ref = BatchRef.parse(batch_id)
        return self._iter_results(ref, *self._poll(ref)[:2])

    def _iter_results(
        self, ref: BatchRef, results: dict[str, list[TaskResult]], errors: dict[str, ApiError]
    ) -> Iterator[RawResultItem]:
        uuids = ref.uuids()
        for index in range(ref.request_count):
            custom_id = f"{ref.idempotency_key}-{index}"
            task_uuid = uuids.get(index)
            if task_uuid in results:
                yield _success(custom_id, index, results[task_uuid][0])
                continue
            error = errors.get(task_uuid or "")
            if index in ref.rejected or error is not None:
                code = error.code if error else REJECTED_CODE
                message = error.message if error else "refused by the API at submit (see the submit log)"
                detail = {"type": code, "message": message, "provider_code": code, "stage": "provider"}
                yield _result_item(custom_id, index, "errored", error=detail)

    def extract_output(self, raw: RawResultItem, spec: OutputSpec) -> ExtractedOutput:
        """The answer without its think block; as JSON text for common.ai to validate when structured."""
        text, _ = split_think(raw.raw)
        if not spec.is_structured:
            return ExtractedOutput(kind="text", text=text)
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end < start:
            return ExtractedOutput(kind="absent", text=text or None)
        return ExtractedOutput(kind="json_text", text=text[start : end + 1])

    def close(self) -> None:
        """Close the hook's connections."""
        self._client.close()


def _success(custom_id: str, index: int, result: TaskResult) -> RawResultItem:
    usage: dict[str, Any] = {}
    if result.usage is not None:
        usage = {
            "input_tokens": result.usage.prompt_tokens,
            "output_tokens": result.usage.completion_tokens,
            "thinking_tokens": result.usage.thinking_tokens or 0,
        }
    if result.cost is not None:
        usage["cost_usd"] = result.cost
    return _result_item(
        custom_id,
        index,
        "success",
        model=getattr(result, "model", None),
        usage=usage or None,
        finish_reason=result.finish_reason,
        raw=result.text,
    )


def _result_item(
    custom_id: str,
    index: int,
    status: Literal["success", "errored"],
    *,
    model: str | None = None,
    usage: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    error: Mapping[str, Any] | None = None,
    raw: Any = None,
) -> RawResultItem:
    """A result item; what its status does not carry (a success's error, a failure's answer) is None."""
    return RawResultItem(custom_id, index, status, model, usage, finish_reason, error, raw)
