"""The shared transport of both APIs: connection settings, pooled clients, one retried send, SSE events.

Every call runs under a :class:`CallBudget`: a total deadline, an idle limit for streams and a cap
on the decoded size of an answer. Every failure leaves as one of our typed errors, never carrying
a request header (the key) in its message or its chained causes.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache, cached_property
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import httpx
from airflow.sdk import BaseHook
from httpx_sse import EventSource
from typing_extensions import Self

from airflow_provider_minimax import __version__
from airflow_provider_minimax.connection import DEFAULT_CONN_ID, DEFAULT_MODELS, MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import (
    MiniMaxConfigurationError,
    MiniMaxConnectionError,
    MiniMaxDeadlineError,
    MiniMaxError,
    MiniMaxMalformedResponseError,
    MiniMaxResponseTooLargeError,
    MiniMaxTransientError,
)
from airflow_provider_minimax.hooks.responses import is_event_stream, raise_for_redirect
from airflow_provider_minimax.retry import RETRYABLE_TRANSPORT_ERRORS, SENT_TRANSPORT_ERRORS, RetryPolicy
from airflow_provider_minimax.streaming import stream_cut

if TYPE_CHECKING:
    from airflow.sdk import Connection

T = TypeVar("T")
Api = Literal["task", "chat"]
#: Failures of the HTTP machinery itself; UnicodeError is what a header value httpx cannot encode raises.
_TRANSPORT_FAILURES = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)


@dataclass(frozen=True)
class StreamShape(Generic[T]):
    """How to read one API's event stream.

    :param check: raises the typed error of an answer that is not a stream (read in full).
    :param parse: one ``data`` line into a chunk; a malformed or error chunk raises.
    :param is_final: whether a chunk ends the answer (it carries a finish reason).
    :param text_length: the answer characters a chunk adds, for the message of a cut stream.
    """

    check: Callable[[httpx.Response], None]
    parse: Callable[[str], T]
    is_final: Callable[[T], bool]
    text_length: Callable[[T], int]


class MiniMaxBaseHook(BaseHook):
    """The connection and the HTTP plumbing both APIs share; :class:`MiniMaxHook` adds the API calls.

    :param minimax_conn_id: the ``minimax`` connection to use.
    :param max_retries: retries for transient failures; overrides the connection's value.
    :param timeout: seconds per HTTP response; overrides the connection's value.
    """

    #: Sleep functions used between retries; tests replace them to avoid real waiting.
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    asleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        minimax_conn_id: str = DEFAULT_CONN_ID,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.minimax_conn_id = minimax_conn_id
        self._max_retries = max_retries
        self._timeout = timeout
        self._settings: MiniMaxConnectionSettings | None = None
        self._settings_loading: asyncio.Future[MiniMaxConnectionSettings] | None = None
        self._async_client: httpx.AsyncClient | None = None
        #: Chat requests resent after a read timeout or a cut answer: each may have been billed twice.
        self.chat_resends_after_timeout = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(minimax_conn_id={self.minimax_conn_id!r})"

    # ---------------------------------------------------------------- connection settings

    def _settings_from(self, conn: Connection) -> MiniMaxConnectionSettings:
        settings = MiniMaxConnectionSettings.from_connection(conn)
        overrides = {
            key: value
            for key, value in (("max_retries", self._max_retries), ("timeout", self._timeout))
            if value is not None
        }
        return settings.model_copy(update=overrides) if overrides else settings

    @property
    def settings(self) -> MiniMaxConnectionSettings:
        """The validated connection settings, read once."""
        if self._settings is None:
            self._settings = self._settings_from(self.get_connection(self.minimax_conn_id))
        return self._settings

    async def aget_settings(self) -> MiniMaxConnectionSettings:
        """The validated connection settings, read once without blocking the event loop.

        Concurrent first callers (many rows or triggers starting at once) share one read.
        """
        if self._settings is None:
            if self._settings_loading is None:
                self._settings_loading = asyncio.ensure_future(self._aread_settings())
            loading = self._settings_loading
            try:
                # Shielded: one caller being cancelled must not cancel the read the others await.
                self._settings = await asyncio.shield(loading)
            finally:
                if self._settings_loading is loading and loading.done():
                    self._settings_loading = None  # a failed read is tried again by the next call
        return self._settings

    async def _aread_settings(self) -> MiniMaxConnectionSettings:
        aget = getattr(BaseHook, "aget_connection", None)
        if aget is not None:
            conn = await aget(self.minimax_conn_id)
        else:  # Airflow 3.0 has no async connection getter.
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.minimax_conn_id)
        return self._settings_from(conn)

    def _default_model(self, api: str) -> str:
        # Async callers load the settings first, so this never reads the connection on the event loop.
        settings = self._settings or self.settings
        return settings.model if settings.api == api else DEFAULT_MODELS[api]

    # ---------------------------------------------------------------- clients

    def _client_options(self, settings: MiniMaxConnectionSettings) -> dict[str, Any]:
        return {
            "headers": {
                "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
                "User-Agent": f"airflow-provider-minimax/{__version__}",
            },
            "timeout": httpx.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            "limits": httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            "verify": default_ssl_context(),
        }

    @cached_property
    def client(self) -> httpx.Client:
        """The pooled synchronous client."""
        return httpx.Client(**self._client_options(self.settings))

    async def aclient(self) -> httpx.AsyncClient:
        """The pooled asynchronous client, created on first use in the running event loop."""
        if self._async_client is None:
            settings = await self.aget_settings()
            await asyncio.to_thread(default_ssl_context)  # loads the CA bundle: never on the loop
            if self._async_client is None:
                self._async_client = httpx.AsyncClient(**self._client_options(settings))
        return self._async_client

    def close(self) -> None:
        """Close the synchronous client's connections."""
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        """Close both clients' connections."""
        self.close()
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _require_api(self, settings: MiniMaxConnectionSettings, api: Api, what: str) -> None:
        """Refuse a call the connection's API does not offer, before any HTTP call."""
        if settings.api != api:
            raise MiniMaxConfigurationError(
                f"{what} needs a connection with api '{api}', but connection {settings.conn_id!r} "
                f"has api '{settings.api}'; set the connection's extra field 'api' or use another connection",
                parameter="api",
            )

    def _policy(
        self, settings: MiniMaxConnectionSettings, max_retries: int | None, api: Api, budget: CallBudget
    ) -> RetryPolicy:
        chat = api == "chat"
        return RetryPolicy(
            max_retries=settings.max_retries if max_retries is None else max_retries,
            max_wait=settings.retry_max_wait,
            retry_sent=settings.chat_retry_on_read_timeout or not chat,
            time_left=budget.remaining,
            on_resend=self._count_chat_resend if chat else None,
        )

    def _count_chat_resend(self) -> None:
        self.chat_resends_after_timeout += 1

    # ---------------------------------------------------------------- the one send per API

    def _send(
        self,
        url: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        max_retries: int | None = None,
        *,
        api: Api,
    ) -> T:
        """POST ``body`` and parse the answer, retrying transient failures within the call's budget."""
        settings = self.settings
        budget = CallBudget(settings, url)
        policy = self._policy(settings, max_retries, api, budget)
        try:
            for attempt in policy.retrying(sleep=self.sleep):
                with attempt:
                    return parse(self._exchange(self.client, url, body, budget))
            raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
        except Exception as err:
            failure = typed_error(err, url, api, policy)
        raise failure  # outside the handler: a scrubbed error must not keep the raw one as its context

    async def _asend(
        self,
        url: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        max_retries: int | None = None,
        *,
        api: Api,
    ) -> T:
        """POST ``body`` and parse the answer without blocking the loop, retrying transient failures."""
        settings = await self.aget_settings()
        client = await self.aclient()
        budget = CallBudget(settings, url)
        policy = self._policy(settings, max_retries, api, budget)
        try:
            async for attempt in policy.async_retrying(sleep=self.asleep):
                with attempt:
                    return parse(await self._aexchange(client, url, body, budget))
            raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
        except Exception as err:
            failure = typed_error(err, url, api, policy)
        raise failure

    @staticmethod
    def _exchange(
        client: httpx.Client, url: str, body: Any, budget: CallBudget, *, stream: bool = False
    ) -> httpx.Response:
        """One POST: an opened event stream when one was asked for and given, else the read answer."""
        budget.check()
        request = budget.request(client, url, body, stream)
        response = client.send(request, stream=True)
        response.stream = GuardedStream(response.stream, budget)
        if stream and is_event_stream(response):
            budget.stream_opened()
            return response
        try:
            content = bytearray()
            for piece in response.iter_bytes():
                content += piece
                budget.check_size(len(content))
        finally:
            response.close()
        return _read(response, bytes(content))

    @staticmethod
    async def _aexchange(
        client: httpx.AsyncClient, url: str, body: Any, budget: CallBudget, *, stream: bool = False
    ) -> httpx.Response:
        """Async :meth:`_exchange`."""
        budget.check()
        request = budget.request(client, url, body, stream)
        response = await client.send(request, stream=True)
        response.stream = GuardedStream(response.stream, budget)
        if stream and is_event_stream(response):
            budget.stream_opened()
            return response
        try:
            content = bytearray()
            async for piece in response.aiter_bytes():
                content += piece
                budget.check_size(len(content))
        finally:
            await response.aclose()
        return _read(response, bytes(content))

    def _stream(
        self,
        url: str,
        body: Any,
        shape: StreamShape[T],
        max_retries: int | None,
        *,
        api: Api,
    ) -> Iterator[T]:
        """POST for an SSE answer and yield its chunks; retries cover only the time before the first event."""
        settings = self.settings
        budget = CallBudget(settings, url)
        policy = self._policy(settings, max_retries, api, budget)
        try:
            for attempt in policy.retrying(sleep=self.sleep):
                with attempt:
                    response = self._exchange(self.client, url, body, budget, stream=True)
                    if not is_event_stream(response):
                        shape.check(response)
            yield from _events(response, shape, budget)
            return
        except Exception as err:
            failure = typed_error(err, url, api, policy)
        raise failure

    async def _astream(
        self,
        url: str,
        body: Any,
        shape: StreamShape[T],
        max_retries: int | None,
        *,
        api: Api,
    ) -> AsyncIterator[T]:
        """Async :meth:`_stream`."""
        settings = await self.aget_settings()
        client = await self.aclient()
        budget = CallBudget(settings, url)
        policy = self._policy(settings, max_retries, api, budget)
        try:
            async for attempt in policy.async_retrying(sleep=self.asleep):
                with attempt:
                    response = await self._aexchange(client, url, body, budget, stream=True)
                    if not is_event_stream(response):
                        shape.check(response)
            async for chunk in _aevents(response, shape, budget):
                yield chunk
            return
        except Exception as err:
            failure = typed_error(err, url, api, policy)
        raise failure


class CallBudget:
    """What one hook call may still spend: time until its deadline, time between stream events, body bytes.

    :param settings: the connection's limits.
    :param url: the URL called, for messages.
    """

    def __init__(self, settings: MiniMaxConnectionSettings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.deadline = monotonic() + settings.total_timeout
        self.last_event: float | None = None  # set once a stream is open

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - monotonic()

    def request(
        self, client: httpx.Client | httpx.AsyncClient, url: str, body: Any, stream: bool
    ) -> httpx.Request:
        """The POST, its read timeout cut to what is left of the deadline.

        :param client: the client that will send it.
        :param url: the target.
        :param body: the JSON body.
        :param stream: ask for an event stream.
        """
        read = max(min(self.settings.timeout, self.remaining()), 0.001)
        return client.build_request(
            "POST",
            url,
            json=body,
            headers={"Accept": "text/event-stream"} if stream else None,
            timeout=httpx.Timeout(read, connect=min(read, 10.0)),
        )

    def stream_opened(self) -> None:
        """Start the idle clock of a stream."""
        self.last_event = monotonic()

    def event_received(self) -> None:
        """Reset the idle clock: a data event arrived (comments do not count)."""
        self.last_event = monotonic()

    def check(self) -> None:
        """Raise once the deadline or the stream's idle limit has passed."""
        now = monotonic()
        settings = self.settings
        if now >= self.deadline:
            raise MiniMaxDeadlineError(
                f"MiniMax call to {self.url} ran past its total_timeout of {settings.total_timeout:g} s "
                "(connection extra 'total_timeout')"
            )
        if self.last_event is not None and now - self.last_event >= settings.stream_idle_timeout:
            raise MiniMaxDeadlineError(
                f"MiniMax stream from {self.url} sent no event for {settings.stream_idle_timeout:g} s "
                "(connection extra 'stream_idle_timeout'; keep-alive comments do not count)"
            )

    def check_size(self, size: int) -> None:
        """Raise once an answer's decoded body is past the cap.

        :param size: decoded bytes read so far.
        """
        limit = self.settings.max_response_bytes
        if size > limit:
            raise MiniMaxResponseTooLargeError(
                f"MiniMax answer from {self.url} is larger than {limit} bytes once decoded "
                "(connection extra 'max_response_bytes')"
            )


class GuardedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that checks the call's budget at every piece the network delivers.

    Checking per raw piece (not per decoded chunk) stops a slow drip even when the pieces
    decode to nothing yet (gzip), and a stream of keep-alive comments at its idle limit.

    :param stream: the response's own byte stream.
    :param budget: the call's budget.
    """

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, budget: CallBudget) -> None:
        self._stream = stream
        self._budget = budget

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._stream:  # type: ignore[union-attr]
            self._budget.check()
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._stream:  # type: ignore[union-attr]
            self._budget.check()
            yield piece

    def close(self) -> None:
        self._stream.close()  # type: ignore[union-attr]

    async def aclose(self) -> None:
        await self._stream.aclose()  # type: ignore[union-attr]


def _read(response: httpx.Response, content: bytes) -> httpx.Response:
    """The answer with its body already decoded, for the pure parsers in :mod:`.responses`."""
    raise_for_redirect(response)
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(response.status_code, headers=headers, content=content, request=response.request)


@cache
def default_ssl_context() -> ssl.SSLContext:
    """The TLS context every client shares, built once per process (loading CA certificates takes ~0.1 s)."""
    return httpx.create_ssl_context()


def _events(response: httpx.Response, shape: StreamShape[T], budget: CallBudget) -> Iterator[T]:
    """Parse each SSE ``data`` line until ``[DONE]``; a stream cut or ended before its final chunk raises."""
    received, finished = 0, False
    try:
        for event in EventSource(response).iter_sse():
            if event.data.strip() == "[DONE]":
                break
            if event.data:
                budget.event_received()
                chunk = shape.parse(event.data)
                received += shape.text_length(chunk)
                finished = finished or shape.is_final(chunk)
                yield chunk
    except httpx.TransportError as err:
        raise stream_cut(received, f"{type(err).__name__}: {err}") from err
    finally:
        response.close()
    if not finished:
        raise stream_cut(received, "no final chunk")


async def _aevents(response: httpx.Response, shape: StreamShape[T], budget: CallBudget) -> AsyncIterator[T]:
    """Async :func:`_events`."""
    received, finished = 0, False
    try:
        async for event in EventSource(response).aiter_sse():
            if event.data.strip() == "[DONE]":
                break
            if event.data:
                budget.event_received()
                chunk = shape.parse(event.data)
                received += shape.text_length(chunk)
                finished = finished or shape.is_final(chunk)
                yield chunk
    except httpx.TransportError as err:
        raise stream_cut(received, f"{type(err).__name__}: {err}") from err
    finally:
        await response.aclose()
    if not finished:
        raise stream_cut(received, "no final chunk")


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
    return _caused(error, cause)


def _caused(error: Exception, cause: BaseException | None) -> Exception:
    error.__cause__ = cause
    return error


def _quotes_a_header(err: BaseException) -> bool:
    """Whether any link of the error's chain may show a header (``Bearer …``) in its message or state."""
    link: BaseException | None = err
    while link is not None:
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
