"""Deterministic text, reasoning, token counts and cost for the emulator's answers."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

REPLY_PREFIX = "[minimax-emulator]"
FAIL_MARKER = "[[emulator:fail]]"
CONTENT_FILTER_MARKER = "[[emulator:content_filter]]"
# MiniMax M2 list prices in USD per token; only the ratio matters for tests.
INPUT_PRICE = 0.30 / 1_000_000
OUTPUT_PRICE = 1.20 / 1_000_000
QUOTE_CHARS = 60

_REMARKS = (
    "Here is a concise answer.",
    "Short version: it depends on the details, but this is the gist.",
    "I have considered the request carefully.",
    "In one sentence, as asked.",
    "This is the emulator's best effort.",
    "The answer follows from the prompt.",
    "Summary: the key points are covered.",
    "Noted; replying deterministically.",
)


@dataclass(frozen=True)
class Reply:
    """One generated answer with its reasoning and accounting.

    :param text: the answer
    :param reasoning: the thinking that precedes the answer
    :param finish_reason: ``stop``, ``length`` or ``content_filter``
    :param prompt_tokens: tokens of the whole prompt
    :param completion_tokens: tokens of reasoning plus answer
    :param thinking_tokens: tokens of the reasoning alone
    """

    text: str
    reasoning: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    thinking_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        """USD cost derived from the token counts."""
        return round(self.prompt_tokens * INPUT_PRICE + self.completion_tokens * OUTPUT_PRICE, 10)


def count_tokens(text: str) -> int:
    """Approximate a token count the way tests can recompute: ceil(chars / 4), at least 1.

    :param text: any text
    """
    return max(1, math.ceil(len(text) / 4))


def digest(*parts: object) -> str:
    """Stable hex digest of the parts, so answers vary with every input that matters.

    :param parts: values joined with a separator before hashing
    """
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """The start of a message on one line, as the answer quotes it.

    :param text: the message
    :param limit: maximum characters kept
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def reply_text(last_user: str, prompt: str, seed: int | None = None, result_index: int = 0) -> str:
    """The answer text (without reasoning) for a conversation.

    :param last_user: the last user message
    :param prompt: the whole prompt (system prompt and every message), which varies the answer
    :param seed: the request seed, if any
    :param result_index: index of the result among numberResults
    """
    key = digest(prompt, seed, result_index)
    remark = _REMARKS[int(key[:8], 16) % len(_REMARKS)]
    words = len(last_user.split())
    noun = "word" if words == 1 else "words"
    return f'{REPLY_PREFIX} You said: "{quote(last_user)}" ({words} {noun}). {remark} [ref {key[:8]}]'


def reasoning_text(last_user: str) -> str:
    """Short deterministic reasoning for a conversation.

    :param last_user: the last user message
    """
    return f'The user wrote "{quote(last_user, 40)}". I will answer briefly and deterministically.'


def make_reply(
    *,
    last_user: str,
    prompt: str,
    seed: int | None = None,
    result_index: int = 0,
    max_tokens: int | None = None,
    text: str | None = None,
) -> Reply:
    """Build the full answer for a conversation, truncated to ``max_tokens`` when needed.

    :param last_user: the last user message (markers in it steer the outcome)
    :param prompt: the whole prompt, for token counting and variation
    :param seed: the request seed
    :param result_index: index among numberResults
    :param max_tokens: completion budget; exceeding it cuts the text and finishes with ``length``
    :param text: a ready answer (JSON, tool summary) instead of the generated sentence
    """
    reasoning = reasoning_text(last_user)
    answer = text if text is not None else reply_text(last_user, prompt, seed, result_index)
    finish = "content_filter" if CONTENT_FILTER_MARKER in last_user else "stop"
    thinking = count_tokens(reasoning)
    if max_tokens is not None and thinking + count_tokens(answer) > max_tokens:
        # Keep the reasoning whole, spend what is left of the budget on the answer.
        answer = answer[: max(0, max_tokens - thinking) * 4]
        finish = "length"
    return Reply(
        text=answer,
        reasoning=reasoning,
        finish_reason=finish,
        prompt_tokens=count_tokens(prompt),
        completion_tokens=thinking + (count_tokens(answer) if answer else 0),
        thinking_tokens=thinking,
    )


def pieces(text: str, size: int = 16) -> list[str]:
    """Split text into stream deltas of about ``size`` characters, on word boundaries when possible.

    :param text: the text to stream
    :param size: target piece length
    """
    out: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate) > size and current:
            out.append(current + " ")
            current = word
        else:
            current = candidate
    if current:
        out.append(current)
    return out
