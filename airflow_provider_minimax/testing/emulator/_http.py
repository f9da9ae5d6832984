"""HTTP plumbing shared by both APIs: auth, error bodies, faults, latency, SSE, dropped sockets."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from airflow_provider_minimax.testing.emulator._faults import Fault
from airflow_provider_minimax.testing.emulator._state import (
    EMULATOR_API_KEY,
    NO_CREDIT_API_KEY,
    EmulatorState,
)

SEND_SCOPE_KEY = "minimax_emulator.send"
# Union members show up in pydantic error locations; they are not parameter names.
_NOT_PARAMS = re.compile(r"^(str|int|float|bool|none|dict|list)$|[\[\],\-]")
_TASK_CODES = {
    400: "invalidRequest",
    401: "invalidApiKey",
    402: "insufficientCredits",
    403: "accessDenied",
    404: "notFound",
    408: "requestTimeout",
    422: "unprocessableEntity",
    429: "rateLimitExceeded",
    503: "providerUnavailable",
    504: "timeoutProvider",
}
_CHAT_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class ErrorStyle:
    """How one API spells an error body.

    :param api: ``task`` (``{"errors":[...]}``, camelCase codes) or ``chat`` (OpenAI ``{"error":{}}``)
    """

    api: Literal["task", "chat"]

    def body(self, status: int, code: str, message: str, param: str | list[str] | None = None) -> Any:
        """The error body for one error.

        :param status: HTTP status (picks the OpenAI ``type``)
        :param code: camelCase error code, converted to snake_case for chat
        :param message: human-readable message
        :param param: offending parameter path
        """
        if self.api == "task":
            return {"errors": [task_error(code, message, task_type=None, parameter=param)]}
        kind = _CHAT_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        chat_param = param if isinstance(param, str) or param is None else ",".join(param)
        return {"error": {"message": message, "type": kind, "param": chat_param, "code": snake(code)}}

    def response(
        self,
        status: int,
        code: str,
        message: str,
        param: str | list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        """A JSON error response.

        :param status: HTTP status
        :param code: camelCase error code
        :param message: human-readable message
        :param param: offending parameter path
        :param headers: extra headers (``Retry-After``)
        """
        return JSONResponse(self.body(status, code, message, param), status_code=status, headers=headers)


def task_error(
    code: str,
    message: str,
    task_uuid: Any = None,
    task_type: Any = "textInference",
    parameter: str | list[str] | None = None,
) -> dict[str, Any]:
    """One entry of the task API's ``errors`` list; the optional keys only when set.

    :param code: camelCase error code
    :param message: human-readable message
    :param task_uuid: the task it is scoped to
    :param task_type: the task's type
    :param parameter: offending parameter path
    """
    entry: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        entry["parameter"] = parameter
    if task_type is not None:
        entry["taskType"] = task_type
    if task_uuid is not None:
        entry["taskUUID"] = task_uuid
    return entry


def snake(code: str) -> str:
    """``insufficientCredits`` → ``insufficient_credits``, the OpenAI spelling of a code.

    :param code: camelCase code
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", code).lower()


def check_auth(request: Request, style: ErrorStyle) -> JSONResponse | None:
    """The 401/402 response for a request whose Bearer key is missing, wrong or out of credit.

    :param request: the incoming request
    :param style: the API's error style
    """
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return style.response(401, "missingApiKey", "Missing API key: send 'Authorization: Bearer <key>'.")
    if key == NO_CREDIT_API_KEY:
        return style.response(402, "insufficientCredits", "Insufficient credits: top up your balance.")
    if key != EMULATOR_API_KEY:
        return style.response(401, "invalidApiKey", "Invalid API key.")
    return None


async def read_json(request: Request) -> tuple[Any, str | None]:
    """Decode the body; the second item is an error message when it is not JSON.

    :param request: the incoming request
    """
    raw = await request.body()
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"Request body is not valid JSON: {exc}"


def drop_connection(request: Request) -> Response:
    """Close the client's socket without an answer; the returned response is never sent.

    Under uvicorn the raw ``send`` is bound to the protocol cycle that owns the transport, so the
    socket can be closed cleanly (the client sees ``RemoteProtocolError``). In-process (httpx
    ASGITransport) there is no socket: raise the error the client would have seen.

    :param request: the request whose connection is dropped
    """
    cycle = getattr(request.scope.get(SEND_SCOPE_KEY), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    # Marking the cycle disconnected makes uvicorn ignore the response the app still returns.
    cycle.disconnected = True  # type: ignore[union-attr]
    transport.close()
    return Response(status_code=204)


def retry_after_header(fault: Fault) -> dict[str, str]:
    """The ``Retry-After`` header a fault announces, in seconds or HTTP-date form.

    :param fault: an ``http_error`` fault
    """
    if fault.retry_after is None:
        return {}
    if fault.retry_after_format == "http-date":
        return {"Retry-After": email.utils.formatdate(time.time() + fault.retry_after, usegmt=True)}
    return {"Retry-After": f"{fault.retry_after:g}"}


def fault_response(fault: Fault, request: Request, style: ErrorStyle, streaming: bool) -> Response:
    """The response that replaces a normal answer for a connection-level fault.

    :param fault: an ``http_error``, ``drop_connection`` or ``malformed_json`` fault
    :param request: the incoming request
    :param style: the API's error style
    :param streaming: whether the request asked for SSE
    """
    if fault.kind == "drop_connection":
        return drop_connection(request)
    if fault.kind == "malformed_json":
        if streaming:
            return Response('data: {"taskUUID": "trunc\n\ndata: [DONE]\n\n', media_type="text/event-stream")
        return Response('{"data": [{"taskType": "textInfer', media_type="application/json")
    fallback = "providerError" if fault.status >= 500 else "invalidRequest"
    code = fault.code or _TASK_CODES.get(fault.status, fallback)
    message = fault.message or f"Emulated HTTP {fault.status} ({code})."
    return style.response(fault.status, code, message, headers=retry_after_header(fault))


async def _before_processing(
    fault: Fault | None, request: Request, style: ErrorStyle, streaming: bool
) -> Response | None:
    """Apply the part of a fault that happens before the request is processed.

    Returns the response to send instead, or None to process the request normally (a delay has
    then already been waited; faults applied later are left to the caller).

    :param fault: the fault taken for this request, if any
    :param request: the incoming request
    :param style: the API's error style
    :param streaming: whether the request asked for SSE
    """
    if fault is None or fault.after_processing:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind in ("http_error", "drop_connection", "malformed_json"):
        return fault_response(fault, request, style, streaming)
    if fault.kind == "slow_drip":
        return slow_drip(fault.delay, streaming)
    return None


def slow_drip(delay: float, streaming: bool) -> StreamingResponse:
    """A 200 whose body never ends: one piece every ``delay`` seconds, until the client gives up.

    :param delay: seconds between two pieces
    :param streaming: send SSE keep-alive comments instead of JSON whitespace
    """
    piece = ": ping\n\n" if streaming else " "

    async def body() -> AsyncIterator[str]:
        while True:
            yield piece
            await asyncio.sleep(delay)

    media_type = "text/event-stream" if streaming else "application/json"
    return StreamingResponse(body(), media_type=media_type)


def _after_processing(
    fault: Fault | None, request: Request, style: ErrorStyle, streaming: bool, response: Response
) -> Response:
    """Replace a computed response when the fault says the answer is lost after processing.

    :param fault: the fault taken for this request, if any
    :param request: the incoming request
    :param style: the API's error style
    :param streaming: whether the request asked for SSE
    :param response: the normal response
    """
    if fault is not None and fault.after_processing and fault.kind != "delay":
        return fault_response(fault, request, style, streaming)
    return response


def sse_response(
    events: list[Any], request: Request, state: EmulatorState, cut_after: int | None = None
) -> StreamingResponse:
    """Stream ``events`` as SSE ``data:`` lines ending ``data: [DONE]``, optionally cut mid-way.

    :param events: JSON-ready chunks
    :param request: the incoming request (its connection is dropped on a cut)
    :param state: emulator state (chunk delay)
    :param cut_after: drop the connection after this many events
    """

    async def body() -> AsyncIterator[str]:
        for index, event in enumerate(events):
            if cut_after is not None and index >= cut_after:
                drop_connection(request)
                return
            if index and state.config.stream_chunk_delay:
                await asyncio.sleep(state.config.stream_chunk_delay)
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        if cut_after is not None:
            drop_connection(request)
            return
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def serve_with_faults(
    request: Request,
    state: EmulatorState,
    style: ErrorStyle,
    entry: dict[str, Any],
    serve: Callable[[Fault | None], Awaitable[Response]],
    *,
    task_types: set[str] | None = None,
    streaming: bool = False,
    structured: bool = False,
) -> Response:
    """The request pipeline both APIs share: take a fault, apply it, check the key, serve, log.

    :param request: the incoming request
    :param state: emulator state
    :param style: the API's error style
    :param entry: the request's log entry
    :param serve: produces the normal answer; gets the fault for the kinds it applies itself
    :param task_types: task types in the request (task API)
    :param streaming: whether the request asks for SSE
    :param structured: whether a chat request asks for JSON output
    """
    fault = state.faults.take(style.api, task_types or set(), streaming=streaming, structured=structured)
    response = await _before_processing(fault, request, style, streaming) or check_auth(request, style)
    if response is None:
        response = _after_processing(fault, request, style, streaming, await serve(fault))
    entry["status"] = response.status_code
    return response


def error_path(loc: Sequence[int | str]) -> tuple[str, list[str]]:
    """A pydantic error location as a parameter path (``messages[0].content``) and its field names.

    :param loc: the error's ``loc``
    """
    parts = [p for p in loc if not (isinstance(p, str) and _NOT_PARAMS.search(p))]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return path, [p for p in parts if isinstance(p, str)]
