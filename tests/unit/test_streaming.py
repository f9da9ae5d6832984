"""Streamed answers: think-block routing, line-buffered logging, end-of-stream checks."""

from __future__ import annotations

import pytest

from airflow_provider_minimax.exceptions import MiniMaxConnectionError
from airflow_provider_minimax.models import ChatCompletionChunk
from airflow_provider_minimax.streaming import (
    MAX_LINE_CHARS,
    LineLog,
    StreamLog,
    ThinkSplitter,
    collect_chat_stream,
)


@pytest.mark.parametrize(
    ("pieces", "answer", "reasoning"),
    [
        (["<think>a</think>b"], "b", "a"),
        (["<th", "ink>pl", "an</th", "ink>", "\n\n", "ans", "wer"], "answer", "plan"),
        (["  <think>x</think>\n\ny"], "y", "x"),
        (["no think ", "here"], "no think here", ""),
        (["<thin"], "<thin", ""),
        (["<think>never closed"], "", "never closed"),
        (["<think>a < b</think>c</think>"], "c</think>", "a < b"),
    ],
)
def test_think_splitter_routes_content_whatever_the_chunking(
    pieces: list[str], answer: str, reasoning: str
) -> None:
    splitter = ThinkSplitter()
    parts = [part for piece in pieces for part in splitter.feed(piece)] + splitter.flush()

    assert "".join(text for kind, text in parts if kind == "answer") == answer
    assert "".join(text for kind, text in parts if kind == "reasoning") == reasoning


def test_line_log_emits_complete_lines_then_the_rest_on_flush() -> None:
    lines: list[str] = []
    log = LineLog(lines.append)

    log.write("one\ntw")
    assert lines == ["one"]
    log.write("o\n\nthr")
    assert lines == ["one", "two", ""]
    log.flush()
    assert lines == ["one", "two", "", "thr"]


def test_line_log_splits_a_line_too_long_to_hold() -> None:
    lines: list[str] = []
    log = LineLog(lines.append)

    log.write("a" * MAX_LINE_CHARS + "b" * MAX_LINE_CHARS + "rest")

    assert lines == ["a" * MAX_LINE_CHARS, "b" * MAX_LINE_CHARS]


@pytest.mark.parametrize(
    ("show_reasoning", "expected"),
    [
        (False, ["Hello", "world"]),
        (True, ["[thinking] let me", "[thinking] think", "Hello", "world"]),
    ],
)
def test_stream_log_writes_the_answer_and_reasoning_only_when_asked(
    show_reasoning: bool, expected: list[str]
) -> None:
    lines: list[str] = []
    log = StreamLog(lines.append, show_reasoning=show_reasoning)

    for piece in ["<think>let me\nthi", "nk</think>\n\nHel", "lo\nworld"]:
        log.content(piece)
    log.close()

    assert lines == expected
    assert log.reasoning_chars == len("let me\nthink")


def chunk(content: str | None = None, finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    )


def test_chat_stream_without_a_final_chunk_is_a_cut() -> None:
    with pytest.raises(MiniMaxConnectionError, match="cut after 3 characters \\(no final chunk\\)"):
        collect_chat_stream([chunk("abc")], StreamLog(lambda line: None))


def test_chat_stream_keeps_the_raw_content_for_replay() -> None:
    result = collect_chat_stream(
        [chunk("<think>p</think>\n\nA"), chunk(finish="stop")], StreamLog(lambda line: None)
    )

    assert (result.text, result.reasoning, result.raw_content) == ("A", "p", "<think>p</think>\n\nA")
