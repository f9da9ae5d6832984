"""Emulator configuration and in-memory state: tasks, counters, request log, lanes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_minimax.testing.emulator._faults import FaultQueue

EMULATOR_API_KEY = "emulator-key"
NO_CREDIT_API_KEY = "emulator-no-credit"
_SECRET_KEYS = frozenset({"apiKey", "api_key", "authorization", "password"})


class EmulatorConfig(BaseModel):
    """Knobs of one emulator run; mutable, later requests see changes at once.

    :param latency: seconds each sync/stream task and each chat call takes
    :param async_latency: seconds an async task stays ``processing``
    :param concurrency: lanes serving requests (None = unlimited); async tasks queue on lanes,
        sync/chat calls on a semaphore
    :param log_size: how many recent requests the log keeps
    :param webhook_attempts: deliveries tried per webhook result before giving up
    :param webhook_retry_delay: seconds between webhook attempts
    :param stream_chunk_delay: seconds between SSE events
    :param strict_model: reject model names other than the contract's
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    latency: float = Field(default=0.0, ge=0)
    async_latency: float = Field(default=1.0, ge=0)
    concurrency: int | None = Field(default=None, ge=1)
    log_size: int = Field(default=200, ge=0)
    webhook_attempts: int = Field(default=3, ge=1)
    webhook_retry_delay: float = Field(default=0.05, ge=0)
    stream_chunk_delay: float = Field(default=0.0, ge=0)
    strict_model: bool = True


@dataclass
class StoredTask:
    """A submitted textInference task and its precomputed outcome.

    :param task_uuid: the task's UUID
    :param delivery_method: sync, async or stream
    :param submitted_at: monotonic submit time
    :param done_at: monotonic time the task turns terminal
    :param results: the finished result items (one per resultIndex), empty on error
    :param error: ``{"code","message"}`` when the task fails
    """

    task_uuid: str
    delivery_method: str
    submitted_at: float
    done_at: float
    results: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None

    def poll_items(self, now: float) -> list[dict[str, Any]]:
        """The getResponse items for this task at time ``now``: processing, success or error."""
        head = {"taskType": "textInference", "taskUUID": self.task_uuid}
        if now < self.done_at:
            span = max(self.done_at - self.submitted_at, 1e-9)
            progress = min(99, int((now - self.submitted_at) / span * 100))
            indexes = [r["resultIndex"] for r in self.results] or [0]
            return [{**head, "status": "processing", "progress": progress, "resultIndex": i} for i in indexes]
        if self.error is not None:
            return [{**head, "status": "error", "error": dict(self.error)}]
        return [{**r, "status": "success"} for r in self.results]


def scrub(value: Any) -> Any:
    """Copy a JSON value with credentials removed, for the request log.

    :param value: a decoded request body
    """
    if isinstance(value, dict):
        return {k: ("***" if k in _SECRET_KEYS else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class EmulatorState:
    """Everything the emulator remembers; reachable as ``app.state.emulator``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        """Start empty.

        :param config: the run's knobs (defaults when omitted)
        """
        self.config = config or EmulatorConfig()
        self.faults = FaultQueue()
        self.generation = 0
        self._clear()

    def _clear(self) -> None:
        self.tasks: dict[str, StoredTask] = {}
        self.submissions: Counter[str] = Counter()
        self.route_requests: Counter[str] = Counter()
        self.task_type_requests: Counter[str] = Counter()
        self.task_type_items: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=self.config.log_size)
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.webhook_sink: dict[str, list[Any]] = {}
        self.webhook_attempts: Counter[str] = Counter()
        self.background: set[asyncio.Task[None]] = set()
        # Digests of system prompts already seen: a repeat is a prompt-cache hit (cached_tokens).
        self.cached_prefixes: set[str] = set()
        self._lanes: list[float] = []
        self._semaphore: tuple[int, asyncio.Semaphore] | None = None

    def reset(self, config: EmulatorConfig | None = None) -> None:
        """Forget tasks, counters, log and faults; pending webhooks are abandoned.

        :param config: a new config to use from now on (the current one is kept when omitted)
        """
        if config is not None:
            self.config = config
        self.generation += 1
        self.faults.clear()
        self._clear()

    @property
    def chat_requests(self) -> int:
        """Chat completion requests received."""
        return self.route_requests["chat"]

    def duplicate_submissions(self) -> dict[str, int]:
        """taskUUIDs submitted more than once, with their counts (empty proves idempotency)."""
        return {uuid: n for uuid, n in self.submissions.items() if n > 1}

    def record(self, route: str, body: Any, task_types: list[str] | None = None) -> dict[str, Any]:
        """Count a request and add it to the log; the returned entry gets the status later.

        :param route: ``task`` or ``chat``
        :param body: the decoded body (credentials are scrubbed)
        :param task_types: the task type of every item of a task API request
        """
        self.route_requests[route] += 1
        for task_type in set(task_types or []):
            self.task_type_requests[task_type] += 1
        self.task_type_items.update(task_types or [])
        entry = {"time": time.time(), "route": route, "body": scrub(body), "status": None}
        self.log.append(entry)
        return entry

    def finish_time(self, now: float) -> float:
        """When an async task submitted at ``now`` completes, given the concurrency lanes.

        :param now: monotonic submit time
        """
        latency = self.config.async_latency
        lanes = self.config.concurrency
        if lanes is None:
            return now + latency
        if len(self._lanes) != lanes:
            self._lanes = [0.0] * lanes
        lane = min(range(lanes), key=self._lanes.__getitem__)
        self._lanes[lane] = max(now, self._lanes[lane]) + latency
        return self._lanes[lane]

    async def occupy(self) -> None:
        """Hold one of the ``concurrency`` slots for ``latency`` seconds (sync, stream and chat work)."""
        lanes = self.config.concurrency
        if lanes is None:
            await asyncio.sleep(self.config.latency)
            return
        if self._semaphore is None or self._semaphore[0] != lanes:
            self._semaphore = (lanes, asyncio.Semaphore(lanes))
        async with self._semaphore[1]:
            await asyncio.sleep(self.config.latency)

    def spawn(self, coro: Any) -> None:
        """Run a background coroutine (webhook delivery), keeping a reference so it is not collected.

        :param coro: the coroutine
        """
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counters, tasks, faults and log."""
        now = time.monotonic()
        statuses: Counter[str] = Counter()
        last_done_at = None
        for task in list(self.tasks.values()):
            statuses["processing" if now < task.done_at else ("error" if task.error else "success")] += 1
            last_done_at = task.done_at if last_done_at is None else max(last_done_at, task.done_at)
        return {
            "requests": dict(self.route_requests),
            "task_requests": dict(self.task_type_requests),
            "task_items": dict(self.task_type_items),
            "poll_requests": self.task_type_requests["getResponse"],
            "poll_items": self.task_type_items["getResponse"],
            "chat_requests": self.chat_requests,
            "submissions": dict(self.submissions),
            "duplicate_submissions": self.duplicate_submissions(),
            "tasks": dict(statuses),
            # time.monotonic() of the last task to turn terminal (the same clock in every process)
            "last_done_at": last_done_at,
            "faults_pending": [f.model_dump() for f in self.faults.pending],
            "faults_fired": dict(self.faults.fired),
            "webhook_deliveries": list(self.webhook_deliveries),
            "log": list(self.log),
        }
