"""The shared transport of both APIs: connection settings, pooled clients, one retried send, SSE events."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.sdk import BaseHook
from httpx_sse import EventSource

from airflow_provider_minimax import __version__
from airflow_provider_minimax.connection import DEFAULT_CONN_ID, DEFAULT_MODELS, MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxConnectionError
from airflow_provider_minimax.hooks.responses import is_event_stream
from airflow_provider_minimax.retry import RETRYABLE_TRANSPORT_ERRORS, RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

T = TypeVar("T")


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
        """Close the asynchronous client's connections."""
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def _policy(self, settings: MiniMaxConnectionSettings, max_retries: int | None) -> RetryPolicy:
        return RetryPolicy(
            max_retries=settings.max_retries if max_retries is None else max_retries,
            max_wait=settings.retry_max_wait,
        )

    # ---------------------------------------------------------------- the one send per API

    def _send(
        self,
        url: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        max_retries: int | None = None,
    ) -> T:
        """POST ``body`` and parse the answer, retrying transient failures."""
        settings = self.settings
        try:
            for attempt in self._policy(settings, max_retries).retrying(sleep=self.sleep):
                with attempt:
                    return parse(self.client.post(url, json=body))
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _asend(
        self,
        url: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        max_retries: int | None = None,
    ) -> T:
        """POST ``body`` and parse the answer without blocking the loop, retrying transient failures."""
        settings = await self.aget_settings()
        client = await self.aclient()
        try:
            async for attempt in self._policy(settings, max_retries).async_retrying(sleep=self.asleep):
                with attempt:
                    return parse(await client.post(url, json=body))
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _open_stream(
        self, url: str, body: Any, check: Callable[[httpx.Response], None], max_retries: int | None
    ) -> httpx.Response:
        """Open an SSE response; retries cover only what happens before the first event."""
        settings = self.settings

        def attempt_once() -> httpx.Response:
            request = self.client.build_request(
                "POST", url, json=body, headers={"Accept": "text/event-stream"}
            )
            response = self.client.send(request, stream=True)
            if not is_event_stream(response):
                response.read()
                response.close()
                check(response)
            return response

        try:
            for attempt in self._policy(settings, max_retries).retrying(sleep=self.sleep):
                with attempt:
                    return attempt_once()
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aopen_stream(
        self, url: str, body: Any, check: Callable[[httpx.Response], None], max_retries: int | None
    ) -> httpx.Response:
        """Open an SSE response asynchronously; retries cover only what happens before the first event."""
        settings = await self.aget_settings()
        client = await self.aclient()

        async def attempt_once() -> httpx.Response:
            request = client.build_request("POST", url, json=body, headers={"Accept": "text/event-stream"})
            response = await client.send(request, stream=True)
            if not is_event_stream(response):
                await response.aread()
                await response.aclose()
                check(response)
            return response

        try:
            async for attempt in self._policy(settings, max_retries).async_retrying(sleep=self.asleep):
                with attempt:
                    return await attempt_once()
        except RETRYABLE_TRANSPORT_ERRORS as err:
            raise _unreachable(url, err) from None
        raise AssertionError("unreachable")  # pragma: no cover


@cache
def default_ssl_context() -> ssl.SSLContext:
    """The TLS context every client shares, built once per process (loading CA certificates takes ~0.1 s)."""
    return httpx.create_ssl_context()


def events(response: httpx.Response, parse: Callable[[str], T]) -> Iterator[T]:
    """Parse each SSE ``data`` line until ``[DONE]``, closing the response however the loop ends.

    :param response: an opened event stream.
    :param parse: turns one ``data`` line into a chunk.
    """
    try:
        for event in EventSource(response).iter_sse():
            if event.data.strip() == "[DONE]":
                return
            if event.data:
                yield parse(event.data)
    finally:
        response.close()


async def aevents(response: httpx.Response, parse: Callable[[str], T]) -> AsyncIterator[T]:
    """Async :func:`events`.

    :param response: an opened event stream.
    :param parse: turns one ``data`` line into a chunk.
    """
    try:
        async for event in EventSource(response).aiter_sse():
            if event.data.strip() == "[DONE]":
                return
            if event.data:
                yield parse(event.data)
    finally:
        await response.aclose()


def _unreachable(url: str, err: Exception) -> MiniMaxConnectionError:
    return MiniMaxConnectionError(
        f"Could not reach MiniMax at {url} after retries: {type(err).__name__}: {err}"
    )
