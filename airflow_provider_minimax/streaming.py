"""Reading a streamed answer: text and usage out, the answer written to a log line by line as it grows."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from airflow_provider_minimax.exceptions import MiniMaxConnectionError
from airflow_provider_minimax.models import ChatCompletionChunk, TextInferenceChunk, split_think
from airflow_provider_minimax.results import GenerateResult, Usage

_OPEN, _CLOSE = "<think>", "</think>"
#: A line longer than this is logged in pieces, so a long unbroken answer (JSON) still shows progress.
MAX_LINE_CHARS = 2_000


class LineLog:
    """Collect text pieces and emit each completed line; ``flush`` emits the rest.

    :param emit: called with each line, without its newline.
    """

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._partial = ""

    def write(self, text: str) -> None:
        """Add text; every line it completes is emitted.

        :param text: the next piece.
        """
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._emit(line)
        while len(self._partial) >= MAX_LINE_CHARS:
            self._emit(self._partial[:MAX_LINE_CHARS])
            self._partial = self._partial[MAX_LINE_CHARS:]

    def flush(self) -> None:
        """Emit the unfinished last line, if any."""
        if self._partial:
            self._emit(self._partial)
            self._partial = ""


class ThinkSplitter:
    """Route streamed content to the answer or the reasoning as a leading ``<think>`` block opens and closes.

    Only for display: the returned text comes from :func:`split_think` on the whole content.
    """

    def __init__(self) -> None:
        self._state = "start"  # start → thinking → answer_start → answer
        self._buffer = ""

    def feed(self, piece: str) -> list[tuple[str, str]]:
        """Classify the next piece of content.

        :param piece: streamed content.
        :return: ``("answer" | "reasoning", text)`` pairs ready to show.
        """
        if self._state == "answer":
            return [("answer", piece)]
        self._buffer += piece
        out: list[tuple[str, str]] = []
        if self._state == "start":
            head = self._buffer.lstrip()
            if _OPEN.startswith(head):  # Still could be the start of "<think>": wait for more.
                return out
            if not head.startswith(_OPEN):
                self._state, text, self._buffer = "answer", self._buffer, ""
                return [("answer", text)]
            self._state, self._buffer = "thinking", head[len(_OPEN) :]
        if self._state == "thinking":
            end = self._buffer.find(_CLOSE)
            if end < 0:
                # Hold back a tail that may be the start of "</think>" split across pieces.
                cut = len(self._buffer) - _partial_suffix(self._buffer, _CLOSE)
                ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
                return [("reasoning", ready)] if ready else out
            if end:
                out.append(("reasoning", self._buffer[:end]))
            self._state, self._buffer = "answer_start", self._buffer[end + len(_CLOSE) :]
        # The blank lines between "</think>" and the answer are not part of the answer.
        text, self._buffer = self._buffer.lstrip(), ""
        if text:
            self._state = "answer"
            out.append(("answer", text))
        return out

    def flush(self) -> list[tuple[str, str]]:
        """Whatever is still held when the stream ends."""
        text, self._buffer = self._buffer, ""
        if not text:
            return []
        return [("reasoning" if self._state == "thinking" else "answer", text)]


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest suffix of ``text`` that starts ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class StreamLog:
    """Write a streamed answer to a log line by line; reasoning is written only when asked.

    :param emit: the log call for one line (e.g. ``log.info``).
    :param show_reasoning: also write the reasoning, each line prefixed ``[thinking]``.
    """

    def __init__(self, emit: Callable[[str], None], show_reasoning: bool = False) -> None:
        self._emit = emit
        self._show_reasoning = show_reasoning
        self._splitter = ThinkSplitter()
        self._answer = LineLog(emit)
        self._reasoning = LineLog(lambda line: emit(f"[thinking] {line}"))
        self.reasoning_chars = 0

    def content(self, piece: str) -> None:
        """Take a piece of content that may hold a ``<think>`` block.

        :param piece: streamed content.
        """
        self._route(self._splitter.feed(piece))

    def reasoning(self, piece: str) -> None:
        """Take a piece of reasoning that the API streams apart from the answer.

        :param piece: streamed reasoning.
        """
        self.reasoning_chars += len(piece)
        if self._show_reasoning:
            self._reasoning.write(piece)

    def close(self) -> None:
        """Flush what is held, once the stream has ended."""
        self._route(self._splitter.flush())
        self._reasoning.flush()
        self._answer.flush()

    def _route(self, parts: list[tuple[str, str]]) -> None:
        for kind, text in parts:
            if kind == "answer":
                self._reasoning.flush()
                self._answer.write(text)
            else:
                self.reasoning(text)


def stream_cut(received: int, reason: str) -> MiniMaxConnectionError:
    """The error for a stream that ended before its final chunk.

    :param received: characters received before the cut.
    :param reason: what happened.
    """
    return MiniMaxConnectionError(
        f"The MiniMax answer stream was cut after {received} characters ({reason}); "
        "the partial answer was discarded, retry the task"
    )


def _finish(pieces: list[str], finish: str | None, log: StreamLog) -> tuple[str, str, str | None]:
    """End a read stream: raise if it had no final chunk, else flush the log.

    :return: the whole content, the answer and the inline reasoning (see :func:`split_think`).
    """
    if finish is None:
        raise stream_cut(sum(map(len, pieces)), "no final chunk")
    log.close()
    raw = "".join(pieces)
    return (raw, *split_think(raw))


def collect_chat_stream(chunks: Iterable[ChatCompletionChunk], log: StreamLog) -> GenerateResult:
    """Read a streamed chat completion to its end, logging the answer as it arrives.

    :param chunks: the chunks from :meth:`MiniMaxHook.stream_chat_completion`.
    :param log: where the answer is written.
    :raises MiniMaxConnectionError: when the stream ends before a chunk with ``finish_reason``.
    """
    content: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    model: str | None = None
    for chunk in chunks:
        model = chunk.model or model
        if chunk.usage is not None:
            usage = Usage.of_chat(chunk.usage)
        for choice in chunk.choices:
            if choice.index == 0 and choice.delta.content:
                content.append(choice.delta.content)
                log.content(choice.delta.content)
            if choice.index == 0 and choice.finish_reason:
                finish = choice.finish_reason
    raw, answer, reasoning = _finish(content, finish, log)
    return GenerateResult(
        text=answer,
        reasoning=reasoning,
        usage=usage or Usage(),
        finish_reason=finish,
        model=model,
        raw_content=raw,
    )


def collect_task_stream(chunks: Iterable[TextInferenceChunk], log: StreamLog) -> GenerateResult:
    """Read a streamed textInference to its end, logging the answer as it arrives.

    :param chunks: the chunks from :meth:`MiniMaxHook.stream_text_inference`.
    :param log: where the answer is written.
    :raises MiniMaxConnectionError: when the stream ends before a chunk with ``finishReason``.
    """
    text: list[str] = []
    reasoning: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    task_uuid: str | None = None
    for chunk in chunks:
        task_uuid = chunk.task_uuid or task_uuid
        if chunk.delta.reasoning_content:
            reasoning.append(chunk.delta.reasoning_content)
            log.reasoning(chunk.delta.reasoning_content)
        if chunk.delta.text:
            text.append(chunk.delta.text)
            log.content(chunk.delta.text)
        finish = chunk.finish_reason or finish
        if chunk.usage is not None:
            usage = Usage.of_task(chunk.usage)
        cost = chunk.cost if chunk.cost is not None else cost
    raw, answer, thought = _finish(text, finish, log)
    return GenerateResult(
        text=answer,
        reasoning="".join(reasoning) or thought,
        usage=usage or Usage(),
        cost=cost,
        finish_reason=finish,
        task_uuid=task_uuid,
        raw_content=raw,
    )
