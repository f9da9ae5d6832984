"""Every failure of a call as one of our typed errors, with no request header (the key) in it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from airflow_provider_minimax.connection import Api
from airflow_provider_minimax.exceptions import (
    MiniMaxConnectionError,
    MiniMaxError,
    MiniMaxMalformedResponseError,
    MiniMaxTransientError,
)
from airflow_provider_minimax.retry import RETRYABLE_TRANSPORT_ERRORS, SENT_TRANSPORT_ERRORS, RetryPolicy

#: Failures of the HTTP machinery itself; UnicodeError is what a header value httpx cannot encode raises.
_TRANSPORT_FAILURES = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)


def typed_error(err: Exception, url: str, api: Api, policy: RetryPolicy) -> Exception:
    """The failure of a call as one of our typed errors, with no header or key in it or in its causes.

    Our own errors pass through, except a ``Retry-After`` longer than the policy waits, which
    becomes an error saying when to come back. A transport failure keeps its cause chained
    (SSL and DNS details matter) unless some link of the chain quotes a header. Raise the
    result outside the ``except`` block, so that a withheld cause is not kept as the context.

    :param err: the failure.
    :param url: the URL called.
    :param api: the API called.
    :param policy: the retry policy the call ran under.
    """
    if isinstance(err, MiniMaxTransientError) and policy.waits_too_long(err):
        return _caused(_come_back_later(err, policy), err)
    if not isinstance(err, _TRANSPORT_FAILURES):
        return err
    name = type(err).__name__
    cause = None if _quotes_a_header(err) else err
    detail = (
        f"{name}: {err}" if cause is not None else f"{name} (details withheld: they quote a request header)"
    )
    error: MiniMaxError
    if isinstance(err, httpx.DecodingError):
        error = MiniMaxMalformedResponseError(
            f"MiniMax {api} API answer from {url} could not be decoded: {detail}"
        )
    elif isinstance(err, SENT_TRANSPORT_ERRORS) and api == "chat" and not policy.retry_sent:
        error = MiniMaxConnectionError(
            f"MiniMax chat API at {url} did not answer a request it received ({detail}); it may have been "
            "billed already, so it was not resent (connection extra 'chat_retry_on_read_timeout' is false)"
        )
    elif isinstance(err, RETRYABLE_TRANSPORT_ERRORS):
        error = MiniMaxConnectionError(f"Could not reach MiniMax at {url} after retries: {detail}")
    else:
        error = MiniMaxConnectionError(f"MiniMax request to {url} failed and was not retried: {detail}")
    if api == "chat" and isinstance(err, SENT_TRANSPORT_ERRORS) and isinstance(error, MiniMaxConnectionError):
        error.maybe_billed = True  # the chat API has no idempotency key: a caller resending it may pay twice
    return _caused(error, cause)


def _caused(error: Exception, cause: BaseException | None) -> Exception:
    error.__cause__ = cause
    return error


def _quotes_a_header(err: BaseException) -> bool:
    """Whether any link of the error's chain may show a header (``Bearer …``) in its message or state."""
    link: BaseException | None = err
    seen: set[int] = set()
    while link is not None and id(link) not in seen:  # a chain can loop (respx wraps side effects so)
        seen.add(id(link))
        if isinstance(link, UnicodeError | httpx.LocalProtocolError) or "bearer" in str(link).lower():
            return True
        link = link.__cause__ or link.__context__
    return False


def _come_back_later(err: MiniMaxTransientError, policy: RetryPolicy) -> MiniMaxTransientError:
    wait = float(err.retry_after or 0)
    when = (datetime.now(timezone.utc) + timedelta(seconds=wait)).strftime("%Y-%m-%d %H:%M:%S UTC")
    message = (
        f"{err.message}; the server asks to wait {wait:g} s, longer than the {policy.max_retry_after:g} s "
        f"this hook waits between retries: try again after {when}"
    )
    return type(err)(
        message,
        status_code=err.status_code,
        code=err.code,
        task_uuid=err.task_uuid,
        parameter=err.parameter,
        retry_after=err.retry_after,
    )
