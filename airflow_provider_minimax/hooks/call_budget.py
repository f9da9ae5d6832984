"""What one hook call may spend (deadline, stream idle limit, body cap), and its answer read within it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from time import monotonic

import httpx

from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.exceptions import MiniMaxDeadlineError, MiniMaxResponseTooLargeError
from airflow_provider_minimax.hooks.responses import is_event_stream, raise_for_redirect


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
        self, client: httpx.Client | httpx.AsyncClient, url: str, body: bytes, stream: bool
    ) -> httpx.Request:
        """The POST, its read timeout cut to what is left of the deadline.

        :param client: the client that will send it (its headers say the body is JSON).
        :param url: the target.
        :param body: the JSON body, encoded.
        :param stream: ask for an event stream.
        """
        read = max(min(self.settings.timeout, self.remaining()), 0.001)
        return client.build_request(
            "POST",
            _parsed(url),
            content=body,
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


@lru_cache(maxsize=64)
def _parsed(url: str) -> httpx.URL:
    """The URL parsed once: a hook sends every request of an API to the same one."""
    return httpx.URL(url)


class GuardedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that checks the call's budget at every piece the network delivers.

    Checking per raw piece (not per decoded chunk) stops a slow drip even when the pieces
    decode to nothing yet (gzip), and a stream of keep-alive comments at its idle limit. A body
    sent without a Content-Encoding is also held to the size cap here, as it arrives: its raw
    bytes are its decoded bytes, so it can be read whole.

    :param stream: the response's own byte stream.
    :param budget: the call's budget.
    :param capped: count the raw bytes against ``max_response_bytes``.
    """

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, budget: CallBudget, *, capped: bool
    ) -> None:
        self._stream = stream
        self._budget = budget
        self._capped = capped
        self._size = 0

    def _checked(self, piece: bytes) -> bytes:
        self._budget.check()
        if self._capped:
            self._size += len(piece)
            self._budget.check_size(self._size)
        return piece

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._stream:  # type: ignore[union-attr]
            yield self._checked(piece)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._stream:  # type: ignore[union-attr]
            yield self._checked(piece)

    def close(self) -> None:
        self._stream.close()  # type: ignore[union-attr]

    async def aclose(self) -> None:
        await self._stream.aclose()  # type: ignore[union-attr]


def guard_body(response: httpx.Response, budget: CallBudget, stream: bool) -> bool:
    """Hold the body to the call's budget; whether it is the event stream asked for (its idle clock starts).

    :param response: the answer, headers received.
    :param budget: the call's budget.
    :param stream: an event stream was asked for.
    """
    opened = stream and is_event_stream(response)
    response.stream = GuardedStream(response.stream, budget, capped=not opened and sent_as_is(response))
    if opened:
        budget.stream_opened()
    return opened


def sent_as_is(response: httpx.Response) -> bool:
    """Whether the body has no Content-Encoding: what arrives is what it decodes to."""
    return "content-encoding" not in response.headers


def read_answer(response: httpx.Response, decoded: bytes | None = None) -> httpx.Response:
    """The read answer for the pure parsers in :mod:`.responses`: itself, or one around its decoded body.

    :param response: the answer, its body read (``decoded`` None) or consumed.
    :param decoded: the decoded body of an encoded answer.
    """
    raise_for_redirect(response)
    if decoded is None:
        return response
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(response.status_code, headers=headers, content=decoded, request=response.request)
