"""Rows through the chat API from the worker: concurrent requests behind one adaptive limiter.

The chat API has no async delivery, so the worker keeps up to ``max_concurrency`` requests in
flight over the hook's pooled ``httpx.AsyncClient``. Every attempt, retries included, goes
through the limiter, so the concurrency cap and the requests-per-minute cap hold exactly:

- a 429 is reported to the limiter, which slows the whole batch (AIMD) and pauses new starts
  for ``Retry-After``; the row then queues for a slot again;
- other transient failures (5xx, 408, network) are retried the same way, after the
  connection's :class:`~airflow_provider_minimax.retry.RetryPolicy` backoff, up to its
  ``max_retries``; they do not cut the cap;
- :meth:`ChatBatchRunner._complete` is the one retry boundary of a row: it calls the hook with
  ``max_retries=0``, because a retry inside the hook would sleep while holding a slot and bypass
  both caps;
- each worker (one per request in flight) sends through a hook of its own, whose connection
  pool holds that worker's one connection: httpcore's pool scans its connections on every
  request and every response, so a shared pool costs CPU per request that grows with its size
  (bare httpx against the emulator, 4,000 requests at C=200: 16 ms of CPU per request through
  one pool of 200, 0.8-1.0 ms through pools of 10, 0.6-0.7 ms through pools of 1; the batch
  runner took ~15 % less CPU per row with one pool per worker than with pools of 10);
- the heap the worker holds when the rows start is frozen out of garbage collections
  (:func:`~airflow_provider_minimax.heap_freezer.freeze_heap`);
- an auth or credit error stops the batch (every other row would fail the same way); rows
  already answered are kept;
- any other error fails only its row, including a raw library error (code ``clientError``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.batch.rows import OUTPUT_MISMATCH, RowResult, failed_row, row_from_answer
from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxConfigurationError,
    MiniMaxCreditError,
    MiniMaxError,
    MiniMaxOutputValidationError,
    MiniMaxRateLimitError,
    MiniMaxTransientError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.heap_freezer import freeze_heap
from airflow_provider_minimax.images import image_part, with_images
from airflow_provider_minimax.results import GenerateResult, Usage, result_from_chat
from airflow_provider_minimax.retry import RetryPolicy
from airflow_provider_minimax.structured import OutputMismatch, OutputReasks

if TYPE_CHECKING:
    from pydantic import BaseModel

    from airflow_provider_minimax.hooks.minimax import MiniMaxHook
    from airflow_provider_minimax.models import ChatCompletion
    from airflow_provider_minimax.rate_control import AdaptiveLimiter

log = logging.getLogger(__name__)

#: Errors that would fail every row alike: the batch stops instead of paying for nothing.
FATAL_ERRORS = (MiniMaxAuthError, MiniMaxCreditError, MiniMaxConfigurationError)
#: The error code of a row that failed with an error the provider did not expect (a library error).
UNEXPECTED_ERROR = "clientError"


@dataclass
class ChatRunSettings:
    """How each row is asked.

    :param params: chat request parameters shared by every row (system prompt, sampling, ...).
    :param images: each row's image source (checked already), read when the row is sent.
    :param output_type: the pydantic model each answer must match, if any.
    :param output_retries: re-asks per row when the answer does not match ``output_type``.
    :param policy: retries per row for transient failures other than 429 (``max_retries``) and the
        backoff between them; the limiter pauses on 429s with the same policy.
    :param max_rate_limited: 429s tolerated per row before it fails.
    """

    params: Mapping[str, Any]
    images: Mapping[int, Any] = field(default_factory=dict)
    output_type: type[BaseModel] | None = None
    output_retries: int = 1
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_rate_limited: int = 20


class ChatBatchRunner:
    """Run rows through the chat API concurrently, reporting each finished row.

    :param hook: the batch's hook; each further worker sends through a twin of it with a
        connection pool of its own (see the module docstring), all closed when the run ends.
    :param limiter: the batch's adaptive limiter.
    :param settings: how each row is asked.
    :param on_row: awaited with each finished row, in completion order.
    """

    def __init__(
        self,
        hook: MiniMaxHook,
        limiter: AdaptiveLimiter,
        settings: ChatRunSettings,
        on_row: Callable[[RowResult], Awaitable[None]],
    ) -> None:
        self.hook = hook
        self.limiter = limiter
        self.settings = settings
        self.on_row = on_row
        #: A 429 whose Retry-After is beyond the policy's cap: the server said "come back later",
        #: so every row not yet sent fails with it instead of asking again.
        self.come_back_later: MiniMaxRateLimitError | None = None
        self.fatal: MiniMaxError | None = None

    async def run(self, prompts: Mapping[int, str]) -> None:
        """Ask every row; raise the first fatal error after the requests in flight have finished.

        :param prompts: the rendered prompt of each row to ask, by row index.
        """
        rows = iter(sorted(prompts.items()))
        workers = min(self.limiter.max_concurrency, len(prompts))
        hooks = [self.hook, *(self.hook.with_own_pool() for _ in range(workers - 1))]
        freeze_heap()  # full collections would walk Airflow's heap every ~1,000 rows
        try:
            await asyncio.gather(*(self._worker(rows, hook) for hook in hooks[:workers]))
        finally:
            for hook in hooks:  # their async clients belong to this event loop
                await hook.aclose()
        if self.fatal is not None:
            raise self.fatal

    async def _worker(self, rows: Iterator[tuple[int, str]], hook: MiniMaxHook) -> None:
        # A shared iterator: single-threaded, and next() never awaits, so no row is taken twice.
        for row, prompt in rows:
            if self.fatal is not None:
                return
            try:
                result = await self._row(hook, row, prompt)
            except FATAL_ERRORS as err:
                self.fatal = self.fatal or err
                return
            except Exception as err:
                # Whatever raised it (a library error the hook let through, a malformed answer),
                # it fails this row only: the other rows' gather must go on.
                result = self._unexpected(row, err)
            await self.on_row(result)

    async def _row(self, hook: MiniMaxHook, row: int, prompt: str) -> RowResult:
        """One row to the end: an answer (see :meth:`_complete`), re-asked while it does not match."""
        settings = self.settings
        content: Any = prompt
        if row in settings.images:
            try:  # Read now, off the event loop: never every row's image in memory at once.
                part = await asyncio.to_thread(image_part, settings.images[row], f"rows[{row}].image")
            except MiniMaxValidationError as err:  # The file changed since it was checked.
                return _failed(row, err, "invalidImage", Usage())
            content = with_images(prompt, [part])
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        usage = Usage()
        reasks = OutputReasks(settings.output_type, settings.output_retries) if settings.output_type else None
        while True:
            try:
                completion = await self._complete(hook, messages)
            except FATAL_ERRORS:
                raise
            except MiniMaxRateLimitError as err:
                return _failed(row, err, "rateLimitExceeded", usage)
            except MiniMaxTransientError as err:
                return _failed(row, err, "serverError", usage)
            except MiniMaxError as err:
                return _failed(row, err, "invalidRequest", usage)
            answer = result_from_chat(completion)
            if reasks is None:  # one answer, so its usage is the row's
                return row_from_answer(row, answer)
            usage = usage + answer.usage
            try:
                parsed = reasks.read(answer.text)
            except OutputMismatch as mismatch:
                try:
                    messages += reasks.follow_up(mismatch, answer.raw_content or answer.text)
                except MiniMaxOutputValidationError:
                    return failed_row(row, OUTPUT_MISMATCH, mismatch.feedback, text=answer.text, usage=usage)
                continue
            return row_from_answer(row, _with_usage(answer, usage), parsed.model_dump(mode="json"))

    async def _complete(self, hook: MiniMaxHook, messages: list[dict[str, Any]]) -> ChatCompletion:
        """One chat completion: the row's only retry loop, every attempt through the limiter.

        A 429 is reported to the limiter (which pauses every start) and asked again, up to
        ``max_rate_limited`` times; other transient errors back off by the policy outside the
        slot, up to its ``max_retries``. The last error is raised.
        """
        settings = self.settings
        transient = rate_limited = 0
        while True:
            if self.come_back_later is not None:
                raise self.come_back_later
            async with self.limiter.slot() as started:
                try:
                    completion = await hook.achat_completion(messages, max_retries=0, **settings.params)
                except MiniMaxRateLimitError as err:
                    if settings.policy.waits_too_long(err):
                        self.come_back_later = err
                        raise
                    self.limiter.on_rate_limited(started, err.retry_after)
                    rate_limited += 1
                    if rate_limited > settings.max_rate_limited:
                        raise
                    continue
                except FATAL_ERRORS:
                    raise
                except MiniMaxTransientError as err:
                    transient += 1
                    if transient > settings.policy.max_retries:
                        raise
                    if getattr(err, "maybe_billed", False):
                        # Received but unanswered: resend only where the connection allows it, and count it.
                        if not self.hook.settings.chat_retry_on_read_timeout:
                            raise
                        self.hook.chat_resends_after_timeout += 1
                    retry_after = err.retry_after
                else:
                    self.limiter.on_success(started)
                    return completion
            # Back off outside the slot, so waiting rows do not hold the batch's capacity.
            await asyncio.sleep(settings.policy.backoff(transient, retry_after))

    def _unexpected(self, row: int, err: Exception) -> RowResult:
        """A failed row for an error that is not one of ours, with the key masked out of its message."""
        log.warning("Row %d failed with an unexpected %s", row, type(err).__name__)
        # The settings were loaded before the first request, so this reads no connection on the loop.
        key = self.hook.settings.api_key.get_secret_value()
        message = f"{type(err).__name__}: {err}".replace(key, "***")
        code = err.code if isinstance(err, MiniMaxError) and err.code else UNEXPECTED_ERROR
        return failed_row(row, code, message)


def _with_usage(answer: GenerateResult, usage: Usage) -> GenerateResult:
    return answer.model_copy(update={"usage": usage})


def _failed(row: int, err: MiniMaxError, default_code: str, usage: Usage) -> RowResult:
    return failed_row(row, err.code or default_code, err.message, usage=usage)
