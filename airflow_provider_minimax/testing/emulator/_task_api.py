"""The task API (``POST /v1``): textInference in sync, async, stream and webhook modes, getResponse."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from airflow_provider_minimax.models import TASK_MODEL, GetResponseTask, TextInferenceTask
from airflow_provider_minimax.testing.emulator._faults import Fault
from airflow_provider_minimax.testing.emulator._http import (
    ErrorStyle,
    error_path,
    read_json,
    serve_with_faults,
    sse_response,
    task_error,
)
from airflow_provider_minimax.testing.emulator._schema import instance_for
from airflow_provider_minimax.testing.emulator._state import EmulatorState, StoredTask
from airflow_provider_minimax.testing.emulator._text import FAIL_MARKER, Reply, make_reply, pieces

STYLE = ErrorStyle("task")
_FENCED_JSON = re.compile(r"```json\s*(.*?)```", re.DOTALL)
router = APIRouter()


@router.post("/v1")
@router.post("/v1/", include_in_schema=False)
async def task_api(request: Request) -> Response:
    """Serve one task API request: a JSON array of tasks of any types."""
    state: EmulatorState = request.app.state.emulator
    body, bad_json = await read_json(request)
    items = [i for i in body if isinstance(i, dict)] if isinstance(body, list) else []
    types = [str(i.get("taskType")) for i in items]
    entry = state.record("task", body, types)
    streaming = any(i.get("deliveryMethod") == "stream" for i in items)

    async def serve(fault: Fault | None) -> Response:
        return await _serve(body, bad_json, request, state, fault, streaming)

    return await serve_with_faults(
        request, state, STYLE, entry, serve, task_types=set(types), streaming=streaming
    )


async def _serve(
    body: Any,
    bad_json: str | None,
    request: Request,
    state: EmulatorState,
    fault: Fault | None,
    streaming: bool,
) -> Response:
    """Route an authenticated request: reject bad bodies, stream a stream task, else run the batch."""
    if bad_json is not None:
        return STYLE.response(400, "invalidRequestBody", bad_json)
    if not isinstance(body, list) or not body or not all(isinstance(i, dict) for i in body):
        message = "The body must be a non-empty JSON array of task objects."
        return STYLE.response(400, "invalidRequestBody", message)
    if streaming:
        if len(body) > 1:
            message = "A task with deliveryMethod 'stream' must be alone in its request."
            return STYLE.response(400, "incompatibleParameters", message, "deliveryMethod")
        cut = fault.after_chunks if fault is not None and fault.kind == "stream_cut" else None
        return await _stream(body[0], request, state, cut)
    return await _batch(body, state)


async def _batch(items: list[dict[str, Any]], state: EmulatorState) -> JSONResponse:
    """Run every task of a non-streaming request; 200 with data (and errors), 400 when all fail."""
    data: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    sync_tasks = 0
    for item in items:
        task_type = item.get("taskType")
        if task_type == "textInference":
            outcome = _register(item, state)
            if isinstance(outcome, list):
                errors.extend(outcome)
                continue
            _, stored = outcome
            if stored.delivery_method == "async":
                data.append({"taskType": "textInference", "taskUUID": stored.task_uuid})
                continue
            sync_tasks += 1
            if stored.error is not None:
                errors.append(_failure(stored))
            data.extend(stored.results)
        elif task_type == "getResponse":
            found = _poll(item, state)
            (errors if "code" in found[0] else data).extend(found)
        else:
            code = "missingTaskType" if task_type is None else "invalidTaskType"
            message = f"Unsupported or missing taskType: {task_type!r}."
            errors.append(task_error(code, message, item.get("taskUUID"), task_type, "taskType"))
    # Sync tasks of one request run side by side, each taking `latency` in a concurrency slot.
    await asyncio.gather(*(state.occupy() for _ in range(sync_tasks)))
    if not data:
        return JSONResponse({"errors": errors}, status_code=400)
    return JSONResponse({"data": data, "errors": errors} if errors else {"data": data})


def _register(
    item: dict[str, Any], state: EmulatorState
) -> tuple[TextInferenceTask, StoredTask] | list[dict[str, Any]]:
    """Validate and store a textInference task; the errors when it is refused.

    :param item: the task object as sent
    :param state: emulator state
    """
    raw_uuid = item.get("taskUUID")
    if isinstance(raw_uuid, str):
        # Every submit attempt counts, refused ones too: that is what proves idempotency.
        state.submissions[_normal_uuid(raw_uuid)] += 1
    try:
        task = TextInferenceTask.model_validate(item)
    except ValidationError as exc:
        return validation_errors(exc, item)
    if state.config.strict_model and task.model != TASK_MODEL:
        message = f"Unknown model {task.model!r}; this emulator serves {TASK_MODEL!r}."
        return [task_error("invalidModel", message, task.task_uuid, parameter="model")]
    known = state.tasks.get(task.task_uuid)
    if known is not None:
        return [_conflict(task.task_uuid, known)]
    now = time.monotonic()
    done = state.finish_time(now) if task.delivery_method == "async" else now
    stored = StoredTask(task.task_uuid, task.delivery_method, now, done)
    if FAIL_MARKER in task.messages[-1].content:
        stored.error = {"code": "inferenceError", "message": f"Emulated inference failure ({FAIL_MARKER})."}
    else:
        stored.results = [_result(task, i) for i in range(task.number_results or 1)]
    state.tasks[task.task_uuid] = stored
    if task.webhook_url is not None and task.delivery_method != "stream":
        state.spawn(_deliver_webhook(state, str(item.get("webhookURL")), stored, state.generation))
    return task, stored


def _reply(task: TextInferenceTask, index: int) -> Reply:
    """The deterministic answer for one result of a task."""
    settings = task.settings
    system = settings.system_prompt if settings and settings.system_prompt else ""
    prompt = "\n".join([system, *(f"{m.role}: {m.content}" for m in task.messages)]).strip()
    max_tokens = settings.max_tokens if settings else None
    schema = _requested_schema(system)
    return make_reply(
        last_user=task.messages[-1].content,
        prompt=prompt,
        seed=task.seed,
        result_index=index,
        max_tokens=max_tokens,
        text=None if schema is None else json.dumps(instance_for(schema, hint=prompt), ensure_ascii=False),
    )


def _requested_schema(system_prompt: str) -> dict[str, Any] | None:
    """The JSON schema a system prompt asks the answer to follow (the task API has no response_format).

    A model follows such instructions; the emulator does so when the schema is in a fenced JSON block.
    """
    for block in _FENCED_JSON.findall(system_prompt):
        try:
            schema = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(schema, dict) and ("properties" in schema or "type" in schema):
            return schema
    return None


def _result(task: TextInferenceTask, index: int) -> dict[str, Any]:
    """One finished result item, shaped as a sync response item."""
    reply = _reply(task, index)
    item: dict[str, Any] = {
        "taskType": "textInference",
        "taskUUID": task.task_uuid,
        "resultIndex": index,
        "text": reply.text,
        "finishReason": reply.finish_reason,
        "reasoningContent": [reply.reasoning],
    }
    if task.include_usage:
        item["usage"] = _usage(reply)
    if task.include_cost:
        item["cost"] = reply.cost
    if task.seed is not None:
        item["seed"] = task.seed
    return item


def _usage(reply: Reply) -> dict[str, int]:
    """The task API's camelCase usage object."""
    return {
        "promptTokens": reply.prompt_tokens,
        "completionTokens": reply.completion_tokens,
        "totalTokens": reply.total_tokens,
        "thinkingTokens": reply.thinking_tokens,
    }


def _poll(item: dict[str, Any], state: EmulatorState) -> list[dict[str, Any]]:
    """The items answering one getResponse task (or its error entries)."""
    try:
        poll = GetResponseTask.model_validate(item)
    except ValidationError as exc:
        return validation_errors(exc, item)
    stored = state.tasks.get(poll.task_uuid)
    if stored is None:
        message = f"Task {poll.task_uuid} failed or was not found (unknown or expired)."
        return [task_error("taskFailedOrNotFound", message, poll.task_uuid, "getResponse", "taskUUID")]
    return stored.poll_items(time.monotonic())


async def _stream(item: dict[str, Any], request: Request, state: EmulatorState, cut: int | None) -> Response:
    """Answer a stream task with SSE chunks: reasoning, text pieces, then the final chunk."""
    outcome = _register(item, state)
    if isinstance(outcome, list):
        return JSONResponse({"errors": outcome}, status_code=400)
    task, stored = outcome
    await state.occupy()
    head = {"taskUUID": task.task_uuid, "taskType": "textInference"}
    reply = _reply(task, 0)
    events: list[dict[str, Any]] = [{**head, "delta": {"reasoningContent": reply.reasoning}}]
    if stored.error is not None:
        events.append({"errors": [_failure(stored)]})
        return sse_response(events, request, state, cut)
    events += [{**head, "delta": {"text": p}, "finishReason": None} for p in pieces(reply.text)]
    final: dict[str, Any] = {**head, "delta": {}, "finishReason": reply.finish_reason}
    if task.include_usage:
        final["usage"] = _usage(reply)
    if task.include_cost:
        final["cost"] = reply.cost
    return sse_response([*events, final], request, state, cut)


async def _deliver_webhook(state: EmulatorState, url: str, stored: StoredTask, generation: int) -> None:
    """POST each finished result to the task's webhookURL once it is done, retrying non-2xx answers.

    :param state: emulator state (attempts, retry delay, delivery log)
    :param url: the webhookURL exactly as sent (authentication travels in its query)
    :param stored: the task
    :param generation: state generation at submit; a reset abandons the delivery
    """
    await asyncio.sleep(max(0.0, stored.done_at - time.monotonic()))
    if stored.error is not None:
        payloads = [{"errors": [_failure(stored)]}]
    else:
        payloads = [{"data": [result]} for result in stored.results]
    async with httpx.AsyncClient(timeout=10.0) as client:
        for payload in payloads:
            for attempt in range(1, state.config.webhook_attempts + 1):
                if state.generation != generation:
                    return
                try:
                    status: int | None = (await client.post(url, json=payload)).status_code
                except httpx.HTTPError:
                    status = None
                state.webhook_deliveries.append(
                    {"url": url, "taskUUID": stored.task_uuid, "attempt": attempt, "status": status}
                )
                if status is not None and 200 <= status < 300:
                    break
                await asyncio.sleep(state.config.webhook_retry_delay)


def _normal_uuid(value: str) -> str:
    """The canonical spelling of a UUID string (unchanged when it is not a UUID)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _failure(stored: StoredTask) -> dict[str, Any]:
    """The ``errors`` entry of a task that failed."""
    error = stored.error or {"code": "inferenceError", "message": "Inference failed."}
    return task_error(error["code"], error["message"], stored.task_uuid)


def _conflict(task_uuid: str, known: StoredTask) -> dict[str, Any]:
    """The ``conflictTaskUUID`` error for a re-submitted UUID, with the original task's context."""
    message = f"Task UUID {task_uuid} was already submitted."
    entry = task_error("conflictTaskUUID", message, task_uuid, parameter="taskUUID")
    entry["context"] = {
        "taskType": "textInference",
        "taskUUID": task_uuid,
        "deliveryMethod": known.delivery_method,
    }
    return entry


def validation_errors(exc: ValidationError, item: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn a pydantic error into task API errors with camelCase parameter paths and codes.

    :param exc: the validation error
    :param item: the task object as sent (its taskType, taskUUID and keys are echoed)
    """
    out = []
    for err in exc.errors():
        path, names = error_path(err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        parameter: str | list[str] | None = path or None
        if err["type"] == "extra_forbidden":
            code = "unknownParameter"
        elif not names:
            # A rule across fields (stream with numberResults > 1): name the fields it mentions.
            code, parameter = "incompatibleParameters", [k for k in item if k in message] or None
        else:
            prefix = "missing" if err["type"] == "missing" else "invalid"
            code = prefix + names[-1][0].upper() + names[-1][1:]
        message = f"{path or 'task'}: {message}"
        out.append(task_error(code, message, item.get("taskUUID"), item.get("taskType"), parameter))
    return out
