"""Fault injection: a queue of faults that the next matching requests consume, in order."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal[
    "http_error",
    "drop_connection",
    "delay",
    "malformed_json",
    "stream_cut",
    "invalid_json_content",
    "base_resp",
    "slow_drip",
]
ApiName = Literal["task", "chat", "any"]

_ids = itertools.count(1)


class Fault(BaseModel):
    """One planned fault; the same JSON is accepted by ``POST /_emulator/faults``.

    :param kind: what goes wrong (see ``FaultKind``)
    :param api: which API it hits: ``task``, ``chat`` or ``any``
    :param count: how many matching requests it affects before it is used up
    :param task_type: only task API requests holding a task of this type (``getResponse`` = polls)
    :param status: HTTP status of an ``http_error``
    :param retry_after: seconds to announce in ``Retry-After`` (``http_error``), none when unset
    :param retry_after_format: ``seconds`` (``Retry-After: 2``) or ``http-date``
    :param code: error code of an ``http_error`` (defaults by status)
    :param message: error message of an ``http_error``
    :param delay: seconds a ``delay`` fault waits before answering normally; for ``slow_drip``, the
        seconds between two pieces of a body that never ends (a space, or an SSE ``: ping`` comment
        when the request asked for a stream)
    :param after_chunks: SSE events sent before a ``stream_cut`` drops the connection
    :param after_processing: ``http_error``/``drop_connection``/``malformed_json`` only after the
        request was fully processed (tasks accepted, then the answer is lost)
    :param variant: ``invalid_json_content``: ``not_json`` or ``wrong_shape`` (valid JSON, wrong schema)
    :param status_code: ``base_resp`` status code (1002 rate limit, 1004 auth, 1008 balance, ...)
    :param status_msg: ``base_resp`` status message
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    api: ApiName = "any"
    count: int = Field(default=1, ge=1)
    task_type: str | None = None
    status: int = Field(default=503, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    code: str | None = None
    message: str | None = None
    delay: float = Field(default=1.0, ge=0)
    after_chunks: int = Field(default=1, ge=0)
    after_processing: bool = False
    variant: Literal["not_json", "wrong_shape"] = "not_json"
    status_code: int = 1002
    status_msg: str = "rate limit"
    id: int = Field(default_factory=lambda: next(_ids))

    def matches(self, api: str, task_types: set[str], streaming: bool, structured: bool) -> bool:
        """Whether this fault applies to a request.

        :param api: ``task`` or ``chat``
        :param task_types: task types in a task API request (empty for chat)
        :param streaming: whether the request asks for SSE
        :param structured: whether the chat request asks for JSON output
        """
        if self.api not in ("any", api):
            return False
        if self.task_type is not None and self.task_type not in task_types:
            return False
        if self.kind == "stream_cut" and not streaming:
            return False
        if self.kind == "invalid_json_content" and not (api == "chat" and structured):
            return False
        return not (self.kind == "base_resp" and api != "chat")


class FaultQueue:
    """Faults waiting for requests; thread-safe because tests add them from another thread."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._pending: list[Fault] = []
        self.fired: Counter[str] = Counter()

    def add(self, kind: FaultKind | Fault, **params: Any) -> Fault:
        """Queue a fault behind those already queued.

        :param kind: the fault kind, or a ready ``Fault``
        :param params: the other ``Fault`` fields (api, count, task_type, status, ...)
        """
        fault = kind if isinstance(kind, Fault) else Fault(kind=kind, **params)
        with self._lock:
            self._pending.append(fault)
        return fault

    def http_error(self, status: int = 503, **params: Any) -> Fault:
        """Answer with an HTTP error status and the API's error body.

        :param status: 4xx/5xx status
        :param params: other ``Fault`` fields, e.g. ``retry_after=2``, ``count=3``, ``api="task"``
        """
        return self.add("http_error", status=status, **params)

    def rate_limit(self, retry_after: float | None = None, **params: Any) -> Fault:
        """Answer 429, with ``Retry-After`` when ``retry_after`` is given.

        :param retry_after: seconds to announce
        :param params: other ``Fault`` fields, e.g. ``retry_after_format="http-date"``
        """
        return self.add("http_error", status=429, retry_after=retry_after, **params)

    def drop_connection(self, **params: Any) -> Fault:
        """Close the socket without answering.

        :param params: other ``Fault`` fields, e.g. ``after_processing=True``
        """
        return self.add("drop_connection", **params)

    def delay(self, seconds: float, **params: Any) -> Fault:
        """Wait before answering normally.

        :param seconds: extra delay
        :param params: other ``Fault`` fields
        """
        return self.add("delay", delay=seconds, **params)

    def malformed_json(self, **params: Any) -> Fault:
        """Answer 200 with a body that is not valid JSON.

        :param params: other ``Fault`` fields
        """
        return self.add("malformed_json", **params)

    def stream_cut(self, after_chunks: int = 1, **params: Any) -> Fault:
        """Send some SSE events of a streamed answer, then drop the connection.

        :param after_chunks: events sent before the cut
        :param params: other ``Fault`` fields
        """
        return self.add("stream_cut", after_chunks=after_chunks, **params)

    def invalid_json_content(self, variant: str = "not_json", **params: Any) -> Fault:
        """Make structured-output chat answers not valid JSON (or not matching the schema).

        :param variant: ``not_json`` or ``wrong_shape``
        :param params: other ``Fault`` fields, e.g. ``count=2``
        """
        return self.add("invalid_json_content", variant=variant, **params)

    def base_resp(self, status_code: int = 1002, status_msg: str = "rate limit", **params: Any) -> Fault:
        """Answer a chat call HTTP 200 with a MiniMax ``base_resp`` error.

        :param status_code: MiniMax status code
        :param status_msg: MiniMax status message
        :param params: other ``Fault`` fields
        """
        return self.add("base_resp", status_code=status_code, status_msg=status_msg, **params)

    def take(
        self, api: str, task_types: set[str], *, streaming: bool = False, structured: bool = False
    ) -> Fault | None:
        """Consume one use of the first fault that matches a request.

        :param api: ``task`` or ``chat``
        :param task_types: task types in the request
        :param streaming: whether the request streams
        :param structured: whether the chat request wants JSON
        """
        with self._lock:
            for fault in self._pending:
                if fault.matches(api, task_types, streaming, structured):
                    fault.count -= 1
                    if fault.count == 0:
                        self._pending.remove(fault)
                    self.fired[fault.kind] += 1
                    return fault.model_copy(update={"count": 1})
        return None

    @property
    def pending(self) -> list[Fault]:
        """Faults not yet used up, in order."""
        with self._lock:
            return list(self._pending)

    def clear(self) -> None:
        """Drop every pending fault and the fired counts."""
        with self._lock:
            self._pending.clear()
            self.fired.clear()
