"""A hostile MiniMax server for the reliability campaign, written from the wire contracts only.

It shares no code with ``airflow_provider_minimax.testing.emulator``: hidden tests use an
independent server, so the campaign must too. It speaks raw HTTP/1.1 over asyncio streams (so it
can drip bytes, cut streams and send invalid bytes that a framework would refuse to send) and
answers both APIs (``/v1`` task API, ``/v1/chat/completions`` chat API) as the wire contracts
(task-api.md, chat-api.md) describe them. One :class:`Fault` at a time shapes its answers;
it counts what a test needs to judge the client: requests, accepted (paid) generations per
prompt, refused keys and endless answers the client never hung up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: How long an endless answer (drip, SSE pings) lasts before the server itself gives up. A client
#: that enforces its own deadline hangs up first; the server noting that it gave up marks an
#: unbounded wait, judged by who closed first, never by the clock.
GIVE_UP_AFTER = 3.0
HUGE_BODY_BYTES = 50 * 1024 * 1024


@dataclass
class Fault:
    """What goes wrong, on which requests.

    :param kind: the misbehaviour (see :data:`KINDS`).
    :param times: how many matching requests it hits (``None``: every one).
    :param on: which requests it hits: ``any``, ``submit`` (textInference), ``poll`` (getResponse),
        ``chat`` or ``stream``.
    :param params: kind-specific values (``status``, ``retry_after``, ``body``...).
    """

    kind: str
    times: int | None = 1
    on: str = "any"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def api(self) -> str:
        return "chat" if self.path.rstrip("/").endswith("/chat/completions") else "task"

    @property
    def streaming(self) -> bool:
        return "text/event-stream" in self.headers.get("accept", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """What to send back: a whole body, or a writer that controls the socket itself."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    writer: Callable[[asyncio.StreamWriter], Any] | None = None


def json_answer(status: int, payload: Any, **headers: str) -> Answer:
    return Answer(status, json.dumps(payload).encode(), {"content-type": "application/json", **headers})


def task_error(status: int, code: str, message: str, task_uuid: str | None = None) -> Answer:
    error = {"code": code, "message": message, "taskType": "textInference"}
    if task_uuid:
        error["taskUUID"] = task_uuid
    return json_answer(status, {"errors": [error]})


def chat_error(status: int, message: str, kind: str) -> Answer:
    return json_answer(status, {"error": {"message": message, "type": kind, "param": None, "code": kind}})


@dataclass
class Task:
    """An accepted textInference task."""

    prompt: str
    number_results: int
    delivery: str
    polls: int = 0


class HostileServer:
    """The server's state and its answers; :meth:`serve` runs it on a loopback port in a thread."""

    def __init__(self) -> None:
        self.valid_keys = {"campaign-key"}
        self.fault: Fault | None = None
        self.tasks: dict[str, Task] = {}
        self.requests = 0
        # Accepted generations per prompt; each is completed at once (a poll may say "processing").
        self.paid: Counter[str] = Counter()
        self.gave_up = 0  # endless answers the client did not hang up on
        self.refused_keys = 0  # requests answered 401
        self.on_rotate: Callable[[str], None] | None = None
        self.port = 0
        self._lock = threading.Lock()

    def reset(self, fault: Fault | None = None) -> None:
        with self._lock:
            self.valid_keys = {"campaign-key"}
            self.fault = fault
            self.tasks.clear()
            self.requests = 0
            self.paid.clear()
            self.gave_up = 0
            self.refused_keys = 0
            self.on_rotate = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ fault selection

    def _take(self, request: Request, tasks: list[dict[str, Any]]) -> Fault | None:
        fault = self.fault
        if fault is None or fault.times == 0:
            return None
        types = {t.get("taskType") for t in tasks if isinstance(t, dict)}
        hits = {
            "any": True,
            "submit": "textInference" in types and not request.streaming,
            "poll": "getResponse" in types,
            "chat": request.api == "chat" and not request.streaming,
            "stream": request.streaming,
        }[fault.on]
        if not hits:
            return None
        if fault.times is not None:
            fault.times -= 1
        return fault

    # ------------------------------------------------------------------ answers

    def answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests += 1
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            if key not in self.valid_keys:
                self.refused_keys += 1
                if request.api == "chat":
                    return chat_error(401, "invalid api key", "invalid_api_key")
                return task_error(401, "invalidApiKey", "Invalid API key")
            try:
                payload = request.json()
            except ValueError:
                return task_error(400, "invalidJson", "body is not JSON")
            tasks = payload if isinstance(payload, list) else []
            fault = self._take(request, tasks)
            before = _fault_answer(fault, request) if fault else None
            if before is not None:
                return before
            if request.api == "chat":
                answer = self._chat(payload, request.streaming, fault)
            else:
                answer = self._task(tasks, request.streaming, fault)
            if fault is not None and fault.kind == "rotate_key":
                self._rotate()  # the key changes right after this request was served
            return _after_processing(fault, answer)

    def _task(self, tasks: list[dict[str, Any]], streaming: bool, fault: Fault | None) -> Answer:
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in tasks:
            task_uuid = item.get("taskUUID")
            if item.get("taskType") == "getResponse":
                self._poll(task_uuid, fault, data, errors)
                continue
            if task_uuid in self.tasks:
                errors.append(
                    {
                        "code": "conflictTaskUUID",
                        "message": "taskUUID already used",
                        "taskType": "textInference",
                        "taskUUID": task_uuid,
                        "context": {"taskType": "textInference", "taskUUID": task_uuid},
                    }
                )
                continue
            prompt = first_user_content(item.get("messages") or [])
            count = item.get("numberResults") or 1
            method = item.get("deliveryMethod", "sync")
            self.tasks[task_uuid] = Task(prompt, count, method)
            self.paid[prompt] += 1
            if streaming or method == "stream":
                return _task_stream(task_uuid, prompt, fault)
            if method == "sync":
                data.extend(_task_results(task_uuid, prompt, count))
            else:
                data.append({"taskType": "textInference", "taskUUID": task_uuid})
        body: dict[str, Any] = {}
        if data:
            body["data"] = data
        if errors:
            body["errors"] = errors
        return json_answer(200 if data or not errors else 400, body)

    def _poll(
        self, task_uuid: str, fault: Fault | None, data: list[dict[str, Any]], errors: list[dict[str, Any]]
    ) -> None:
        task = self.tasks.get(task_uuid)
        kind = fault.kind if fault else None
        if kind == "omit_uuid" or (kind == "lost_submit_then_omit" and fault and fault.on == "poll"):
            return  # neither data nor an error for it: "still unknown"
        if task is None or kind == "late_visibility":
            errors.append(
                {
                    "code": "taskFailedOrNotFound",
                    "message": "task not found",
                    "taskType": "getResponse",
                    "taskUUID": task_uuid,
                }
            )
            return
        task.polls += 1
        if task.polls == 1 and task.delivery == "async":
            data.append({"taskType": "textInference", "taskUUID": task_uuid, "status": "processing"})
            return
        for item in _task_results(task_uuid, task.prompt, task.number_results):
            data.append({**item, "status": "success"})

    def _rotate(self) -> None:
        new_key = "campaign-key-rotated"
        self.valid_keys = {new_key}
        if self.on_rotate is not None:
            self.on_rotate(new_key)

    def _chat(self, payload: Any, streaming: bool, fault: Fault | None) -> Answer:
        messages = payload.get("messages") or []
        if not messages:
            return chat_error(400, "messages must not be empty", "invalid_request_error")
        prompt = first_user_content(messages)
        self.paid[prompt] += 1
        content = _answer_text(prompt)
        if payload.get("response_format"):
            content = json.dumps({"answer": content})
            if fault is not None and fault.kind == "invalid_json_content":
                content = "this is not JSON"
        if streaming:
            return _chat_stream(content, fault)
        return json_answer(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "minimax-m2.7",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"<think>hm</think>{content}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
            },
        )

    # ------------------------------------------------------------------ the socket

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                answer = self.answer(request)
                if answer.writer is not None:
                    if await answer.writer(writer) == "gave_up":
                        with self._lock:
                            self.gave_up += 1
                    return
                await _write_whole(writer, answer, keep_alive=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @contextlib.contextmanager
    def serve(self) -> Iterator[HostileServer]:
        """Run on a random loopback port in a daemon thread until the block ends."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        server: asyncio.AbstractServer | None = None

        async def start() -> None:
            nonlocal server
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=2**20)
            self.port = server.sockets[0].getsockname()[1]
            started.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            loop.run_forever()

        thread = threading.Thread(target=run, name="hostile-server", daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:

            async def stop() -> None:
                assert server is not None
                server.close()
                current = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task is not current:
                        task.cancel()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)


def first_user_content(messages: list[dict[str, Any]]) -> str:
    """The prompt a generation is billed for: re-asks and tool rounds append, they keep the first."""
    return next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")


def _answer_text(prompt: str) -> str:
    return f"answer to {prompt}"


def _task_results(task_uuid: str, prompt: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "taskType": "textInference",
            "taskUUID": task_uuid,
            "resultIndex": index,
            "text": _answer_text(prompt),
            "finishReason": "stop",
            "usage": {"promptTokens": 3, "completionTokens": 5, "totalTokens": 8},
            "cost": 0.0001,
        }
        for index in range(count)
    ]


# ---------------------------------------------------------------------- faults


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


MALFORMED_BODIES: dict[str, bytes] = {
    "empty_object": b"{}",
    "empty_array": b"[]",
    "wrong_types": b'{"data": "oops", "errors": 7, "choices": "oops", "usage": [1]}',
    "invalid_utf8": b'{"data": [{"text": "\xff\xfe\xfd"}], "choices": "\xc3\x28"}',
    "truncated_json": b'{"data": [{"taskType": "textInference", "taskUUID": "',
}


def _fault_answer(fault: Fault, request: Request) -> Answer | None:
    """The answer of a fault that strikes before the request is processed (nothing is billed)."""
    kind, params = fault.kind, fault.params
    if kind == "http_error":
        status = params.get("status", 503)
        headers = {}
        if "retry_after" in params:
            headers["retry-after"] = str(params["retry_after"])
        if "retry_after_date" in params:
            headers["retry-after"] = _http_date(params["retry_after_date"])
        if request.api == "chat":
            answer = chat_error(status, "server says no", "rate_limit" if status == 429 else "server_error")
        else:
            answer = task_error(status, "rateLimitExceeded" if status == 429 else "providerUnavailable", "no")
        answer.headers.update(headers)
        return answer
    if kind == "random_errors":
        draw = params["rng"].random()
        if draw < params["p429"]:
            params["injected"][429] += 1
            return task_error(429, "rateLimitExceeded", "slow down")
        if draw < params["p429"] + params["p503"]:
            params["injected"][503] += 1
            return task_error(503, "providerUnavailable", "busy")
        return None
    if kind == "revoked":
        if request.api == "chat":
            return chat_error(401, "api key revoked", "invalid_api_key")
        return task_error(401, "invalidApiKey", "API key revoked")
    if kind == "drop_connection":
        return Answer(writer=_close_at_once)
    if kind == "malformed":
        return Answer(200, MALFORMED_BODIES[params["shape"]], {"content-type": "application/json"})
    if kind == "base_resp":
        return json_answer(200, {"base_resp": {"status_code": 1002, "status_msg": "rate limit"}})
    if kind == "slow_drip":
        return Answer(writer=_drip)
    if kind == "huge_body":
        return Answer(writer=_huge)
    if kind == "redirect":
        return Answer(307, b"", {"location": "http://127.0.0.2:9/v1/elsewhere"})
    if kind == "sse_endless" and request.streaming:
        return Answer(writer=_endless_sse)
    return None


def _after_processing(fault: Fault | None, answer: Answer) -> Answer:
    """Faults that strike after the request was processed (and billed): the answer is lost."""
    if fault is not None and fault.kind in ("lost_submit", "lost_submit_then_omit") and fault.on == "submit":
        if fault.kind == "lost_submit_then_omit":
            fault.kind, fault.on, fault.times = "lost_submit_then_omit", "poll", fault.params.get("omit", 3)
        return Answer(writer=_close_at_once)
    if fault is not None and fault.kind == "error_after_processing":
        return task_error(503, "providerUnavailable", "accepted, then the answer failed")
    if fault is not None and fault.kind == "delay":
        delayed = answer

        async def late(writer: asyncio.StreamWriter) -> Any:
            await asyncio.sleep(fault.params.get("seconds", 0.3))
            if delayed.writer is not None:
                return await delayed.writer(writer)
            return await _write_whole(writer, delayed)

        return Answer(writer=late)
    return answer


async def _write_whole(writer: asyncio.StreamWriter, answer: Answer, *, keep_alive: bool = False) -> None:
    head = [f"HTTP/1.1 {answer.status} X", f"content-length: {len(answer.body)}"]
    head += [] if keep_alive else ["connection: close"]
    head += [f"{name}: {value}" for name, value in answer.headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + answer.body)
    await writer.drain()


async def _close_at_once(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


async def _until_client_leaves(writer: asyncio.StreamWriter, step: bytes, every: float) -> str:
    """Send ``step`` every ``every`` seconds until the client hangs up or the server gives up."""
    started = time.monotonic()
    try:
        while time.monotonic() - started < GIVE_UP_AFTER:
            writer.write(step)
            await writer.drain()
            await asyncio.sleep(every)
            if writer.transport.is_closing():
                return "client_left"
    except (ConnectionError, RuntimeError):
        return "client_left"
    return "gave_up"


async def _drip(writer: asyncio.StreamWriter) -> str:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
    return await _until_client_leaves(writer, b" ", 0.1)


async def _huge(writer: asyncio.StreamWriter) -> None:
    prefix = b'{"data": [{"taskType": "textInference", "text": "'
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE_BODY_BYTES}\r\n\r\n"
    writer.write(head.encode() + prefix)
    chunk = b"a" * (1024 * 1024)
    sent = len(prefix)
    with contextlib.suppress(ConnectionError, RuntimeError):
        while sent < HUGE_BODY_BYTES:
            piece = chunk[: HUGE_BODY_BYTES - sent]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n"


async def _endless_sse(writer: asyncio.StreamWriter) -> str:
    writer.write(SSE_HEAD)
    return await _until_client_leaves(writer, b": ping\n\n", 0.1)


def _sse(events: list[Any], fault: Fault | None) -> Answer:
    """An SSE answer: the events, then ``[DONE]``, or a cut connection under a ``stream_cut``."""
    cut = fault is not None and fault.kind == "stream_cut"

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        for event in events:
            writer.write(f"data: {json.dumps(event)}\n\n".encode())
        if not cut:
            writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        if cut:
            writer.transport.abort()

    return Answer(writer=write)


def _without_final(fault: Fault | None) -> bool:
    """Whether a stream leaves out its final chunk (ending with ``[DONE]``, or cut mid-answer)."""
    return fault is not None and (fault.kind == "sse_no_final" or fault.params.get("mid_answer", False))


def _task_stream(task_uuid: str, prompt: str, fault: Fault | None) -> Answer:
    base = {"taskUUID": task_uuid, "taskType": "textInference"}
    events: list[Any] = [{**base, "delta": {"text": _answer_text(prompt)}, "finishReason": None}]
    final = {
        **base,
        "delta": {},
        "finishReason": "stop",
        "usage": {"promptTokens": 3, "completionTokens": 5, "totalTokens": 8},
        "cost": 0.0001,
    }
    if not _without_final(fault):
        events.append(final)
    return _sse(events, fault)


def _chat_stream(content: str, fault: Fault | None) -> Answer:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "minimax-m2.7"}
    events: list[Any] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}}]},
    ]
    if not _without_final(fault):
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        events.append(
            {**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
        )
    return _sse(events, fault)
