"""The shared transport of both APIs: connection settings, pooled clients, one retried send per API.

Every call runs under a :class:`~.call_budget.CallBudget` (a total deadline, an idle limit for
streams, a cap on the decoded size of an answer); every failure leaves through
:func:`~.failures.typed_error`, as one of our typed errors.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache, cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.providers.common.compat.sdk import BaseHook
from typing_extensions import Self

from airflow_provider_minimax import __version__
from airflow_provider_minimax.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_MODELS,
    Api,
    MiniMaxConnectionSettings,
)
from airflow_provider_minimax.exceptions import MiniMaxConfigurationError
from airflow_provider_minimax.hooks.call_budget import CallBudget, guard_body, read_answer, sent_as_is
from airflow_provider_minimax.hooks.events import StreamShape, aevents, events
from airflow_provider_minimax.hooks.failures import typed_error
from airflow_provider_minimax.hooks.request_building import checked_text
from airflow_provider_minimax.hooks.responses import is_event_stream
from airflow_provider_minimax.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

T = TypeVar("T")
_API_CALLS: dict[str, str] = {
    "task": "text_inference, submit_tasks, get_responses and stream_text_inference",
    "chat": "chat_completion and stream_chat_completion",
}


class MiniMaxBaseHook(BaseHook):
    """The connection and the HTTP plumbing both APIs share; :class:`MiniMaxHook` adds the API calls.

    :param minimax_conn_id: the ``minimax`` connection to use.
    :param max_retries: retries for transient failures; overrides the connection's value.
    :param timeout: seconds per HTTP response; overrides the connection's value.
    """

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
        self._policies: dict[tuple[Api, int | None], tuple[MiniMaxConnectionSettings, RetryPolicy]] = {}
        #: Chat requests resent after a read timeout or a cut answer: each may have been billed twice.
        self.chat_resends_after_timeout = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(minimax_conn_id={self.minimax_conn_id!r})"

    def with_own_pool(self) -> Self:
        """Another hook on the same connection and overrides, with HTTP clients (connection pools) of its own.

        The settings already read are shared, so the connection is not read again.
        """
        twin = type(self)(self.minimax_conn_id, max_retries=self._max_retries, timeout=self._timeout)
        twin._settings = self._settings
        return twin

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

    def _model(self, model: Any, api: Api) -> str:
        """The model a request names (checked), or the default: the connection's for its own API.

        :param model: the ``model`` parameter given, or None.
        :param api: the API the request is for.
        """
        if checked_text(model, "model") is not None:
            return model
        # Async callers load the settings first, so this never reads the connection on the event loop.
        settings = self._settings or self.settings
        return settings.model if settings.api == api else DEFAULT_MODELS[api]

    # ---------------------------------------------------------------- clients

    def _client_options(self, settings: MiniMaxConnectionSettings) -> dict[str, Any]:
        return {
            "headers": {
                "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
                "User-Agent": f"airflow-provider-minimax/{__version__}",
                # Every request is a POST of JSON, encoded once per call (see ApiCall.body).
                "Content-Type": "application/json",
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

    @staticmethod
    def _require_api(settings: MiniMaxConnectionSettings, api: Api) -> None:
        """Refuse a call the connection's API does not offer, before any HTTP call."""
        if settings.api != api:
            raise MiniMaxConfigurationError(
                f"{_API_CALLS[api]} are {api}-API calls: they need a connection with api '{api}', but "
                f"connection {settings.conn_id!r} has api '{settings.api}'; set the connection's extra "
                "field 'api' or use another connection (generate() works with either)",
                parameter="api",
            )

    def _call(
        self,
        settings: MiniMaxConnectionSettings,
        url: str,
        body: bytes,
        api: Api,
        max_retries: int | None = None,
        budget: CallBudget | None = None,
    ) -> ApiCall:
        """One POST of a call: where it goes, what it carries, what it may spend, how it retries.

        :param settings: the connection's settings.
        :param url: the URL to POST to.
        :param body: the JSON body, encoded.
        :param api: the API called.
        :param max_retries: retries for transient failures; the connection's when None.
        :param budget: the budget of a call that spans several requests; a fresh one when None.
        """
        return ApiCall(
            url, body, api, budget or CallBudget(settings, url), self._policy(settings, api, max_retries)
        )

    def _policy(self, settings: MiniMaxConnectionSettings, api: Api, max_retries: int | None) -> RetryPolicy:
        """How the hook's calls to ``api`` retry: built once per API and retry count, not per call."""
        known = self._policies.get((api, max_retries))
        if known is not None and known[0] is settings:
            return known[1]
        chat = api == "chat"
        policy = replace(
            RetryPolicy.for_connection(settings, max_retries),
            retry_sent=settings.chat_retry_on_read_timeout or not chat,
            on_resend=self._count_chat_resend if chat else None,
        )
        self._policies[(api, max_retries)] = (settings, policy)
        return policy

    def _count_chat_resend(self) -> None:
        self.chat_resends_after_timeout += 1

    # ---------------------------------------------------------------- the one send per API

    def _send(self, call: ApiCall, parse: Callable[[httpx.Response], T]) -> T:
        """POST the call's body and parse the answer, retrying transient failures within its budget.

        :param call: the POST.
        :param parse: reads the answer into the call's result, or raises its typed error.
        """
        try:
            if call.policy.max_retries == 0:
                # One attempt (the batch runner's calls: it retries through its limiter): tenacity's
                # controller would cost more CPU than parsing the answer.
                return parse(self._exchange(self.client, call))
            with call.policy.retrying(call.budget.remaining) as retrying:
                for attempt in retrying:
                    with attempt:
                        return parse(self._exchange(self.client, call))
            raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
        except Exception as err:
            failure = call.failure(err)
        raise failure  # outside the handler: a scrubbed error must not keep the raw one as its context

    async def _asend(self, call: ApiCall, parse: Callable[[httpx.Response], T]) -> T:
        """Async :meth:`_send`."""
        client = await self.aclient()
        try:
            if call.policy.max_retries == 0:  # one attempt, as in _send
                return parse(await self._aexchange(client, call))
            with call.policy.async_retrying(call.budget.remaining) as retrying:
                async for attempt in retrying:
                    with attempt:
                        return parse(await self._aexchange(client, call))
            raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
        except Exception as err:
            failure = call.failure(err)
        raise failure

    @staticmethod
    def _exchange(client: httpx.Client, call: ApiCall, *, stream: bool = False) -> httpx.Response:
        """One POST: an opened event stream when one was asked for and given, else the read answer."""
        budget = call.budget
        budget.check()
        response = client.send(budget.request(client, call.url, call.body, stream), stream=True)
        if guard_body(response, budget, stream):
            return response
        try:
            if sent_as_is(response):
                response.read()  # its guard caps it as it arrives
                return read_answer(response)
            decoded = bytearray()
            for piece in response.iter_bytes():
                decoded += piece
                budget.check_size(len(decoded))
        finally:
            response.close()
        return read_answer(response, bytes(decoded))

    @staticmethod
    async def _aexchange(client: httpx.AsyncClient, call: ApiCall, *, stream: bool = False) -> httpx.Response:
        """Async :meth:`_exchange`."""
        budget = call.budget
        budget.check()
        response = await client.send(budget.request(client, call.url, call.body, stream), stream=True)
        if guard_body(response, budget, stream):
            return response
        try:
            if sent_as_is(response):
                await response.aread()
                return read_answer(response)
            decoded = bytearray()
            async for piece in response.aiter_bytes():
                decoded += piece
                budget.check_size(len(decoded))
        finally:
            await response.aclose()
        return read_answer(response, bytes(decoded))

    def _stream(self, call: ApiCall, shape: StreamShape[T]) -> Iterator[T]:
        """POST for an SSE answer and yield its chunks; retries cover only the time before the first event.

        :param call: the POST.
        :param shape: how to read the API's stream.
        """
        try:
            with call.policy.retrying(call.budget.remaining) as retrying:
                for attempt in retrying:
                    with attempt:
                        response = self._exchange(self.client, call, stream=True)
                        if not is_event_stream(response):
                            shape.check(response)
            yield from events(response, shape, call.budget)
            return
        except Exception as err:
            failure = call.failure(err)
        raise failure

    async def _astream(self, call: ApiCall, shape: StreamShape[T]) -> AsyncIterator[T]:
        """Async :meth:`_stream`."""
        client = await self.aclient()
        try:
            with call.policy.async_retrying(call.budget.remaining) as retrying:
                async for attempt in retrying:
                    with attempt:
                        response = await self._aexchange(client, call, stream=True)
                        if not is_event_stream(response):
                            shape.check(response)
            async for chunk in aevents(response, shape, call.budget):
                yield chunk
            return
        except Exception as err:
            failure = call.failure(err)
        raise failure


@dataclass(slots=True)
class ApiCall:
    """One POST of a hook call: where it goes, what it carries, what it may spend, how it retries.

    :param url: the URL called.
    :param body: the JSON body, encoded once for every attempt.
    :param api: the API called.
    :param budget: the call's budget; its deadline also stops the retries.
    :param policy: its retry policy.
    """

    url: str
    body: bytes
    api: Api
    budget: CallBudget
    policy: RetryPolicy

    def failure(self, err: Exception) -> Exception:
        """The call's failure as one of our typed errors; raise it outside the ``except`` block."""
        return typed_error(err, self.url, self.api, self.policy)


@cache
def default_ssl_context() -> ssl.SSLContext:
    """The TLS context every client shares, built once per process (loading CA certificates takes ~0.1 s)."""
    return httpx.create_ssl_context()
