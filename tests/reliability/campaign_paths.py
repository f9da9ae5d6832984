"""Every way a user reaches the API, run to its end as Airflow would: each returns what the user gets.

Operators run as a worker would run them (``execute``, and while they defer the trigger rebuilt
from its serialized form, then ``execute_complete``), with one Airflow retry: a second try with
the same task instance, as ``retries=1`` gives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import BaseTrigger

from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.sensors.minimax import MiniMaxTaskSensor

TASK_CONN, CHAT_CONN = "minimax_default", "minimax_chat"
CAMPAIGN_KEY = "campaign-key"
#: Short timeouts and few retries keep slow and endless answers cheap to run.
CAMPAIGN_EXTRA = {
    "timeout": 1.5,
    "total_timeout": 10,
    "stream_idle_timeout": 1.5,
    "max_retries": 2,
    "retry_max_wait": 1,
}


def connection_json(base_url: str, api: str, key: str = CAMPAIGN_KEY, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "minimax",
            "host": base_url,
            "password": key,
            "extra": {"api": api, **CAMPAIGN_EXTRA, **extra},
        }
    )


CADENCE = {"poll_interval": 0.05, "max_poll_interval": 0.2}
#: How long deferred tasks wait: a fault that never ends meets this deadline.
WAIT_TIMEOUT = 2.0
#: Airflow ``retries=1``: a failed first try gets one more (``set_tries`` changes it for a case).
TRIES = [2]


def set_tries(tries: int) -> None:
    TRIES[0] = tries


class StateStore:
    """Airflow 3.3's ``task_state_store`` as the worker sees it: JSON values per task instance."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = json.dumps(value)


class FakeTI:
    """The task instance: identity and the XComs pushed."""

    def __init__(self, task_id: str, run_id: str) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index = "campaign", task_id, run_id, -1
        self.try_number = 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


#: Every context made, so a case can read what reached XCom even when the operator raised.
CONTEXTS: list[dict[str, Any]] = []
#: Every operator built, serialized trigger and trigger event, for the secrets scan.
SEEN: list[Any] = []


def make_context(task_id: str, run_id: str) -> dict[str, Any]:
    context = {"ti": FakeTI(task_id, run_id), "task_state_store": StateStore()}
    CONTEXTS.append(context)
    return context


def rebuilt(trigger: BaseTrigger) -> BaseTrigger:
    """The trigger as a triggerer builds it: from its JSON-serialized form only."""
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls(**json.loads(json.dumps(kwargs)))


async def first_event(trigger: BaseTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


async def run_operator(make: Callable[[], Any], context: dict[str, Any]) -> Any:
    """One try: execute, then resume from each trigger event until the operator returns or raises."""

    def built() -> Any:
        operator = make()
        operator.render_template_fields(context)  # as the worker does before execute
        SEEN.append(operator)
        return operator

    try:
        return await asyncio.to_thread(built().execute, context)
    except TaskDeferred as deferred:
        pending = deferred
    while True:
        SEEN.extend([pending.trigger, pending.trigger.serialize(), pending.kwargs])
        event = await first_event(rebuilt(pending.trigger))
        SEEN.append(event)
        method = pending.method_name or "execute_complete"
        try:
            resume = getattr(built(), method)
            return await asyncio.to_thread(resume, context, event, **(pending.kwargs or {}))
        except TaskDeferred as again:
            pending = again


async def with_retry(make: Callable[[], Any], context: dict[str, Any]) -> Any:
    """Run tries as Airflow does with ``retries=1``; the last try's error is what the user sees."""
    tries = TRIES[0]
    for attempt in range(tries):
        context["ti"].try_number = attempt + 1
        try:
            return await run_operator(make, context)
        except Exception:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- the paths

Path = Callable[[str, str], Awaitable[Any]]


async def hook_sync(prompt: str, run_id: str) -> Any:
    def call() -> Any:
        with MiniMaxHook(TASK_CONN) as hook:
            return hook.text_inference(prompt).results[0].text

    return await asyncio.to_thread(call)


async def hook_async(prompt: str, run_id: str) -> Any:
    hook = MiniMaxHook(TASK_CONN)
    try:
        return (await hook.atext_inference(prompt)).results[0].text
    finally:
        await hook.aclose()


def _text_operator(deferrable: bool) -> Path:
    async def text_operator(prompt: str, run_id: str) -> Any:
        context = make_context("ask", run_id)
        return await with_retry(
            lambda: MiniMaxTextInferenceOperator(
                task_id="ask",
                prompt=prompt,
                conn_id=TASK_CONN,
                deferrable=deferrable,
                wait_timeout=WAIT_TIMEOUT,
                **CADENCE,
            ),
            context,
        )

    return text_operator


deferrable_operator = _text_operator(deferrable=True)
operator_in_worker = _text_operator(deferrable=False)


async def sensor(prompt: str, run_id: str, *, arm: Callable[[], None] = lambda: None) -> Any:
    """Submit with the hook (fault-free), then wait with the deferrable sensor under the fault."""
    with MiniMaxHook(TASK_CONN) as hook:
        task = hook.new_text_inference(prompt, delivery_method="async")
        await asyncio.to_thread(hook.submit_tasks, [task])
    arm()
    context = make_context("wait", run_id)
    return await with_retry(
        lambda: MiniMaxTaskSensor(
            task_id="wait",
            task_uuids=[task.task_uuid],
            conn_id=TASK_CONN,
            deferrable=True,
            timeout=WAIT_TIMEOUT,
            **CADENCE,
        ),
        context,
    )


def _batch(conn_id: str, deferrable: bool = True) -> Path:
    async def batch(prompt: str, run_id: str) -> Any:
        context = make_context("batch", run_id)
        return await with_retry(
            lambda: MiniMaxBatchOperator(
                task_id="batch",
                prompt_template="{{ row.q }}",
                rows=[{"q": f"{prompt} row0"}, {"q": f"{prompt} row1"}],
                conn_id=conn_id,
                deferrable=deferrable and conn_id == TASK_CONN,
                on_row_error="fail",
                wait_timeout=WAIT_TIMEOUT,
                **CADENCE,
            ),
            context,
        )

    return batch


batch_task = _batch(TASK_CONN)
batch_task_in_worker = _batch(TASK_CONN, deferrable=False)
batch_chat = _batch(CHAT_CONN)


async def hook_chat_sync(prompt: str, run_id: str) -> Any:
    def call() -> Any:
        with MiniMaxHook(CHAT_CONN) as hook:
            return hook.chat_completion(prompt).answer

    return await asyncio.to_thread(call)


async def hook_chat_async(prompt: str, run_id: str) -> Any:
    hook = MiniMaxHook(CHAT_CONN)
    try:
        return (await hook.achat_completion(prompt)).answer
    finally:
        await hook.aclose()


def _chat_operator(**params: Any) -> Path:
    async def chat_operator(prompt: str, run_id: str) -> Any:
        context = make_context("chat", run_id)
        return await with_retry(
            lambda: MiniMaxChatOperator(task_id="chat", prompt=prompt, conn_id=CHAT_CONN, **params), context
        )

    return chat_operator


chat_operator = _chat_operator()
chat_operator_stream = _chat_operator(stream=True)


async def hook_stream_task(prompt: str, run_id: str) -> Any:
    def call() -> Any:
        with MiniMaxHook(TASK_CONN) as hook:
            return "".join(chunk.delta.text or "" for chunk in hook.stream_text_inference(prompt))

    return await asyncio.to_thread(call)


async def hook_stream_chat(prompt: str, run_id: str) -> Any:
    hook = MiniMaxHook(CHAT_CONN)
    try:
        parts = []
        async for chunk in hook.astream_chat_completion(prompt):
            parts.extend(choice.delta.content or "" for choice in chunk.choices)
        return "".join(parts)
    finally:
        await hook.aclose()


TASK_PATHS: dict[str, Path] = {
    "hook sync": hook_sync,
    "hook async": hook_async,
    "deferrable operator": deferrable_operator,
    "operator in worker": operator_in_worker,
    "sensor": sensor,
    "batch (task)": batch_task,
    "batch (task, in worker)": batch_task_in_worker,
}
CHAT_PATHS: dict[str, Path] = {
    "hook chat sync": hook_chat_sync,
    "hook chat async": hook_chat_async,
    "chat operator": chat_operator,
    "batch (chat)": batch_chat,
}
STREAM_PATHS: dict[str, Path] = {
    "hook stream (task)": hook_stream_task,
    "hook stream (chat, async)": hook_stream_chat,
    "chat operator stream": chat_operator_stream,
}
