"""Reading an SSE answer: chunks out, a stream cut or ended before its final chunk raised."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, closing, contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx
from httpx_sse import EventSource

from airflow_provider_minimax.hooks.call_budget import CallBudget
from airflow_provider_minimax.streaming import stream_cut

T = TypeVar("T")


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


class _ChunkReader(Generic[T]):
    """Turn the ``data`` lines of one stream into chunks, counting what arrived, checking how it ended."""

    def __init__(self, shape: StreamShape[T], budget: CallBudget) -> None:
        self._shape = shape
        self._budget = budget
        self._received = 0
        self._finished = False

    def chunk(self, data: str) -> T:
        """Parse one ``data`` line; it resets the stream's idle clock."""
        self._budget.event_received()
        chunk = self._shape.parse(data)
        self._received += self._shape.text_length(chunk)
        self._finished = self._finished or self._shape.is_final(chunk)
        return chunk

    @contextmanager
    def cut_on_network_error(self) -> Iterator[None]:
        """Raise a stream whose connection failed mid-way as a cut stream (our typed error)."""
        try:
            yield
        except httpx.TransportError as err:
            raise stream_cut(self._received, f"{type(err).__name__}: {err}") from err

    def end(self) -> None:
        """Raise if the stream ended (``[DONE]`` or not) before its final chunk."""
        if not self._finished:
            raise stream_cut(self._received, "no final chunk")


def events(response: httpx.Response, shape: StreamShape[T], budget: CallBudget) -> Iterator[T]:
    """Parse each SSE ``data`` line until ``[DONE]``; a stream cut or ended before its final chunk raises."""
    reader = _ChunkReader(shape, budget)
    with closing(response), reader.cut_on_network_error():
        for event in EventSource(response).iter_sse():
            if event.data.strip() == "[DONE]":
                break
            if event.data:
                yield reader.chunk(event.data)
    reader.end()


async def aevents(response: httpx.Response, shape: StreamShape[T], budget: CallBudget) -> AsyncIterator[T]:
    """Async :func:`events`."""
    reader = _ChunkReader(shape, budget)
    async with aclosing(response):
        with reader.cut_on_network_error():
            async for event in EventSource(response).aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                if event.data:
                    yield reader.chunk(event.data)
    reader.end()
