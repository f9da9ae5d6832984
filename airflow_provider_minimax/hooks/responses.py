"""Reading API responses: envelopes into models, failures into typed errors (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxCreditError,
    MiniMaxError,
    MiniMaxInvalidRequestError,
    MiniMaxMalformedResponseError,
    MiniMaxRateLimitError,
    MiniMaxRedirectError,
    MiniMaxServerError,
    MiniMaxTaskFailedError,
)
from airflow_provider_minimax.models import (
    ApiError,
    ChatCompletion,
    ChatCompletionChunk,
    ChatErrorDetail,
    TaskApiResponse,
    TextInferenceChunk,
)
from airflow_provider_minimax.retry import is_retryable_status, parse_retry_after

CONFLICT_CODE = "conflictTaskUUID"
NOT_FOUND_CODE = "taskFailedOrNotFound"

_AUTH_CODES = frozenset({"invalidApiKey", "missingApiKey", "forbidden", "permissionDenied"})
_CREDIT_CODES = frozenset({"insufficientCredits", "insufficientBalance"})
_RATE_CODES = frozenset({"rateLimitExceeded", "inferenceRateLimitExceeded"})
_SERVER_CODES = frozenset({"timeoutProvider", "providerError", "providerUnavailable", "noAvailableServer"})
_TASK_CODES = frozenset({"inferenceError", "contentPolicyViolation", NOT_FOUND_CODE, "modelUnavailable"})
# MiniMax gateways answer 200 with base_resp.status_code; each maps to the HTTP status it means.
_BASE_RESP_STATUS = {1001: 504, 1002: 429, 1004: 401, 1008: 402, 1024: 500, 1026: 400, 1027: 400}
_Chunk = TypeVar("_Chunk", bound=BaseModel)


def error_type(status_code: int | None, code: str | None) -> type[MiniMaxError]:
    """The exception class for an API failure: by the API's code first, then by HTTP status.

    :param status_code: the HTTP status (None for an error inside a 200 or a poll result).
    :param code: the API's error code.
    """
    if code:
        if code in _AUTH_CODES:
            return MiniMaxAuthError
        if code in _CREDIT_CODES:
            return MiniMaxCreditError
        if code in _RATE_CODES:
            return MiniMaxRateLimitError
        if code in _SERVER_CODES or code.endswith("Timeout"):
            return MiniMaxServerError
        if code in _TASK_CODES:
            return MiniMaxTaskFailedError
        if code.startswith(("invalid", "missing", "unsupported", "unknown", "incompatible")):
            return MiniMaxInvalidRequestError
    if status_code is None:
        return MiniMaxTaskFailedError if code else MiniMaxError
    if status_code in (401, 403):
        return MiniMaxAuthError
    if status_code == 402:
        return MiniMaxCreditError
    if status_code == 429:
        return MiniMaxRateLimitError
    if is_retryable_status(status_code):
        return MiniMaxServerError
    if 400 <= status_code < 500:
        return MiniMaxInvalidRequestError
    return MiniMaxError


_HINTS: dict[type[MiniMaxError], str] = {
    MiniMaxAuthError: "check the API key in the connection's password field",
    MiniMaxCreditError: "top up the MiniMax account balance",
    MiniMaxRateLimitError: "lower concurrency, or raise max_retries in the connection",
    MiniMaxServerError: "the API is failing on its side; retry later",
}


def api_error(error: ApiError, status_code: int | None, retry_after: float | None = None) -> MiniMaxError:
    """Turn one task-API error entry into the typed exception it names.

    :param error: the error entry.
    :param status_code: the HTTP status it came with, if any.
    :param retry_after: the server's ``Retry-After``, in seconds.
    """
    cls = error_type(status_code, error.code)
    message = f"MiniMax task API error {error.code}: {error.message or 'no message'}"
    if hint := _HINTS.get(cls):
        message = f"{message} ({hint})"
    return cls(
        message,
        status_code=status_code,
        code=error.code,
        task_uuid=error.task_uuid,
        parameter=error.parameter,
        retry_after=retry_after,
    )


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _status_error(response: httpx.Response, api: str, detail: str) -> MiniMaxError:
    cls = error_type(response.status_code, None)
    message = f"MiniMax {api} API answered HTTP {response.status_code}: {detail[:300]}"
    if hint := _HINTS.get(cls):
        message = f"{message} ({hint})"
    return cls(
        message,
        status_code=response.status_code,
        retry_after=_retry_after(response),
    )


def parse_task_response(response: httpx.Response) -> TaskApiResponse:
    """Read a task-API response: errors scoped to tasks are returned, any other failure is raised.

    Transient failures raise a :class:`MiniMaxTransientError` subclass so the retry policy
    repeats the whole request (safe: taskUUIDs make resubmission idempotent).

    :param response: a fully read response.
    """
    status = response.status_code
    envelope = _task_envelope(response)
    unscoped = [e for e in envelope.errors if not e.task_uuid]
    if status in (401, 402, 403) or unscoped:
        scoped_or_not = unscoped or envelope.errors
        if not scoped_or_not:
            raise _status_error(response, "task", response.text)
        raise api_error(scoped_or_not[0], status if status >= 400 else None, _retry_after(response))
    if status >= 400 and not envelope.errors:
        raise _status_error(response, "task", response.text)
    return envelope


def _task_envelope(response: httpx.Response) -> TaskApiResponse:
    """The envelope of a task-API answer; an answer without one (not JSON, transient) is raised.

    The body is validated from its bytes in one pass; only a body that fails that is read
    again as Python's JSON reader reads it, to tell which failure it is.

    :param response: a fully read response.
    """
    status = response.status_code
    if not is_retryable_status(status):
        try:
            return TaskApiResponse.model_validate_json(response.content)
        except ValidationError:
            pass  # told apart below
    body = _json_body(response)
    if is_retryable_status(status) or body is None:
        if body is None and status < 300:
            # A 2xx whose body is not JSON is a broken proxy or a cut answer: worth a retry.
            raise MiniMaxServerError(
                f"MiniMax task API answered HTTP {status} with a body that is not JSON",
                status_code=status,
            )
        first = _first_error(body)
        if first is not None:
            raise api_error(first, status, _retry_after(response))
        raise _status_error(response, "task", response.text)
    try:
        return TaskApiResponse.model_validate(body if isinstance(body, dict) else {"data": body})
    except ValidationError as err:
        raise MiniMaxServerError(
            f"MiniMax task API answered with an unexpected shape: {err.errors()[0]['msg']}",
            status_code=status,
        ) from None


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


def _first_error(body: Any) -> ApiError | None:
    if not isinstance(body, dict):
        return None
    try:
        errors = TaskApiResponse.model_validate(body).errors
    except ValidationError:
        return None
    return errors[0] if errors else None


def chat_error(
    status_code: int | None, detail: ChatErrorDetail, retry_after: float | None = None
) -> MiniMaxError:
    """Turn an OpenAI-style error object into the typed exception its status names.

    :param status_code: the HTTP status (or the one a ``base_resp`` code stands for).
    :param detail: the error object.
    :param retry_after: the server's ``Retry-After``, in seconds.
    """
    cls = error_type(status_code, None)
    code = None if detail.code is None else str(detail.code)
    message = f"MiniMax chat API error: {detail.message or 'no message'}"
    if hint := _HINTS.get(cls):
        message = f"{message} ({hint})"
    return cls(message, status_code=status_code, code=code, parameter=detail.param, retry_after=retry_after)


def base_resp_error(status_code: int, status_msg: str) -> MiniMaxError:
    """Turn a non-zero MiniMax ``base_resp.status_code`` into the error of the HTTP status it means.

    :param status_code: the ``base_resp.status_code``.
    :param status_msg: the ``base_resp.status_msg``.
    """
    http_status = _BASE_RESP_STATUS.get(status_code, 400)
    detail = ChatErrorDetail(message=status_msg or f"base_resp {status_code}", code=str(status_code))
    return chat_error(http_status, detail)


def raise_for_redirect(response: httpx.Response) -> None:
    """Raise a redirect as one error naming where it points; never followed (the key would go along).

    :param response: the response, headers received.
    """
    if response.is_redirect:
        location = response.headers["location"]
        raise MiniMaxRedirectError(
            f"MiniMax API at {response.request.url} answered HTTP {response.status_code}, a redirect to "
            f"{location}; redirects are not followed: set the connection's host to the URL you mean",
            status_code=response.status_code,
            location=location,
        )


def malformed(api: str, status_code: int | None, problem: str) -> MiniMaxMalformedResponseError:
    """The error for an answer that does not have the contract's shape.

    :param api: ``task`` or ``chat``.
    :param status_code: the HTTP status it came with.
    :param problem: what is wrong with it.
    """
    return MiniMaxMalformedResponseError(
        f"MiniMax {api} API answered with an unexpected shape: {problem}", status_code=status_code
    )


def _shape_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _error_detail(raw: Any) -> ChatErrorDetail:
    """An ``error`` object of any shape as a detail; its message is kept even when its fields are odd."""
    try:
        return ChatErrorDetail.model_validate(raw)
    except ValidationError:
        return ChatErrorDetail(message=str(raw)[:300])


def parse_chat_response(response: httpx.Response) -> ChatCompletion:
    """Read a chat completions response; every failure, including a ``base_resp`` error, is raised.

    A 2xx answer of the wrong shape (no ``choices``, wrong types) is a
    :class:`MiniMaxMalformedResponseError`, never retried: the request may have been billed.

    :param response: a fully read response.
    """
    raise_for_chat_status(response)
    status = response.status_code
    try:
        completion = ChatCompletion.model_validate_json(response.content)
    except ValidationError:
        completion = None  # told apart below
    if completion is None or "error" in (completion.model_extra or ()):
        # Read again as Python's JSON reader reads it: an error object, or which shape is wrong.
        body = _json_body(response)
        if not isinstance(body, dict):
            raise malformed("chat", status, "the body is not a JSON object")
        if isinstance(body.get("error"), dict):
            raise chat_error(status, _error_detail(body["error"]))
        try:
            completion = ChatCompletion.model_validate(body)
        except ValidationError as err:
            raise malformed("chat", status, _shape_problem(err)) from None
    if completion.base_resp is not None and completion.base_resp.status_code != 0:
        raise base_resp_error(completion.base_resp.status_code, completion.base_resp.status_msg)
    if not completion.choices:
        raise malformed("chat", status, "the completion has no choices")
    return completion


def raise_for_chat_status(response: httpx.Response) -> None:
    """Raise the typed error of a non-2xx chat response (the body must be read).

    :param response: the response, read.
    """
    if response.status_code < 400:
        return
    body = _json_body(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise chat_error(response.status_code, _error_detail(body["error"]), _retry_after(response))
    raise _status_error(response, "chat", response.text)


def is_event_stream(response: httpx.Response) -> bool:
    """Whether a response opened a stream: a 2xx/3xx whose content type is SSE.

    :param response: the response, headers received.
    """
    return response.status_code < 400 and "text/event-stream" in response.headers.get("content-type", "")


def raise_for_chat_stream_status(response: httpx.Response) -> None:
    """Raise the typed error of a chat stream that did not start (the body must be read).

    A gateway may answer a stream request with JSON instead of SSE: an ``error`` object or a
    non-zero ``base_resp`` inside a 200 is raised as the error it names.

    :param response: the response, read.
    """
    raise_for_chat_status(response)
    if not is_event_stream(response):
        parse_chat_response(response)
        raise _status_error(response, "chat", "expected an event stream")


def raise_for_task_stream_status(response: httpx.Response) -> None:
    """Raise the typed error of a task-API stream that did not start (the body must be read).

    :param response: the response, read.
    """
    if not is_event_stream(response):
        envelope = parse_task_response(response)
        if envelope.errors:
            raise api_error(envelope.errors[0], response.status_code)
        raise _status_error(response, "task", "expected an event stream")


def task_chunk(data: str) -> TextInferenceChunk:
    """Parse one task-API SSE data line; an error chunk raises its typed error.

    :param data: the event's data.
    """
    chunk = _stream_chunk(TextInferenceChunk, "task", data)
    if chunk.errors:
        raise api_error(chunk.errors[0], None)
    return chunk


def chat_chunk(data: str) -> ChatCompletionChunk:
    """Parse one chat SSE data line; an ``error`` chunk or ``base_resp`` error raises.

    :param data: the event's data.
    """
    chunk = _stream_chunk(ChatCompletionChunk, "chat", data)
    if chunk.error is not None:
        raise chat_error(None, chunk.error)
    if chunk.base_resp is not None and chunk.base_resp.status_code != 0:
        raise base_resp_error(chunk.base_resp.status_code, chunk.base_resp.status_msg)
    return chunk


def _stream_chunk(model: type[_Chunk], api: str, data: str) -> _Chunk:
    """Parse one SSE data line into the API's chunk model; a malformed one raises.

    :param model: the chunk model.
    :param api: ``task`` or ``chat``, for the error.
    :param data: the event's data.
    """
    try:
        return model.model_validate_json(data)
    except ValidationError as err:
        raise malformed(api, None, f"stream chunk {_shape_problem(err)}") from None
