"""Rows through the chat API from the worker: rows checkpointed by earlier tries are reused, the rest
asked concurrently behind the adaptive limiter (:mod:`.chat`) and checkpointed as they finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.batch.chat import ChatBatchRunner, ChatRunSettings
from airflow_provider_minimax.batch.checkpoint import RowCheckpoint, fingerprint
from airflow_provider_minimax.batch.options import RowRequests
from airflow_provider_minimax.batch.progress import Progress
from airflow_provider_minimax.batch.publish import priced
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.rate_control import AdaptiveLimiter
from airflow_provider_minimax.retry import RetryPolicy
from airflow_provider_minimax.structured import response_format

if TYPE_CHECKING:
    from airflow_provider_minimax.batch.prompts import RowPrompts
    from airflow_provider_minimax.batch.rows import Manifest, RowResult


@dataclass
class ChatRows(RowRequests):
    """Ask a batch's rows over the chat API, reusing the rows earlier tries checkpointed.

    Each request in flight goes through a hook of its own on the batch's connection (see :mod:`.chat`).
    """

    #: The limiter of the last run, for logs and tests.
    limiter: AdaptiveLimiter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        #: The request parameters every row shares (system prompt, sampling, ``response_format``).
        self.params: dict[str, Any] = {"system_prompt": self.system_prompt or None, **self.sampling}
        if self.output_type is not None:
            self.params["response_format"] = response_format(self.output_type)

    def fingerprints(self, prompts: Mapping[int, str], images: Mapping[int, Any]) -> dict[int, str]:
        """Each row's request fingerprint; building the request validates it (before any HTTP call).

        :param prompts: the rows' prompts by row index.
        :param images: the rows' image sources, by row index.
        """
        fingerprints = {}
        for row, prompt in prompts.items():
            try:
                request = self.hook.new_chat_request(prompt, **self.params)
            except MiniMaxValidationError as err:
                raise MiniMaxValidationError(f"row {row}: {err.message}", parameter=f"rows[{row}]") from None
            # The image's source, not its bytes: a row is not read whole before its turn.
            image = {"image": str(images[row])} if row in images else {}
            fingerprints[row] = fingerprint({**request.to_wire(), **image})
        return fingerprints

    def run(
        self,
        checkpoint: RowCheckpoint,
        prompts: Mapping[int, str],
        total: int,
        before: tuple[int, int] = (0, 0),
        images: Mapping[int, Any] | None = None,
    ) -> dict[int, RowResult]:
        """Every row's result: reused from the checkpoint, or asked concurrently and checkpointed.

        :param checkpoint: earlier tries' rows, and where this try's go.
        :param prompts: the rows' prompts by row index (all of them, or a streamed window).
        :param total: rows in the whole batch, for the progress line.
        :param before: rows of the batch done and failed before these (earlier windows).
        :param images: the rows' image sources (``image_field``), by row index.
        """
        images = images or {}
        fingerprints = self.fingerprints(prompts, images)
        results: dict[int, RowResult] = checkpoint.load(fingerprints)
        if results:
            self.log.info("Reusing %d row(s) answered by earlier tries", len(results))
        elif not checkpoint.enabled:
            self.log.warning("No task-state store (Airflow < 3.3): a retry of this task redoes every row")
        todo = {row: prompt for row, prompt in prompts.items() if row not in results}
        policy = RetryPolicy.for_connection(self.hook.settings)
        self.limiter = AdaptiveLimiter(
            self.options.max_concurrency,
            self.options.requests_per_minute,
            policy=policy,
        )
        recorder = _Recorder(results, total, checkpoint, fingerprints, self.log, before)
        runner = ChatBatchRunner(
            self.hook,
            self.limiter,
            ChatRunSettings(
                params=self.params,
                images=images,
                output_type=self.output_type,
                output_retries=self.options.max_output_retries,
                policy=policy,
            ),
            on_row=recorder.record,
        )
        try:
            asyncio.run(self._run(runner, recorder, todo))
        finally:
            stats = self.limiter.stats
            if stats.rate_limited:
                self.log.warning(
                    "Rate control: %d answer(s) 429; concurrency %d, lowest %d, at the end %d",
                    stats.rate_limited,
                    self.limiter.max_concurrency,
                    stats.lowest_limit,
                    self.limiter.limit,
                )
        return results

    async def _run(self, runner: ChatBatchRunner, recorder: _Recorder, todo: dict[int, str]) -> None:
        try:
            await runner.run(todo)
        finally:
            await recorder.flush()

    def windows(
        self,
        checkpoint: RowCheckpoint,
        record_windows: Iterable[tuple[int, list[dict[str, Any]]]],
        prompts: RowPrompts,
        total: int,
        manifest: Manifest,
    ) -> Iterator[list[RowResult]]:
        """The results of a streamed batch, window after window, priced.

        :param checkpoint: earlier tries' rows, and where this try's go.
        :param record_windows: the input's windows, each with the index of its first row.
        :param prompts: renders each row's prompt and finds its image.
        :param total: rows in the batch.
        :param manifest: the rows written so far (for the progress lines).
        """
        for offset, records in record_windows:
            window = prompts.window(offset, records)
            images = prompts.images(records, offset)
            del records
            answered = self.run(checkpoint, window, total, (manifest.rows, manifest.failed), images)
            yield priced([answered[row] for row in window], self.hook.settings)


class _Recorder:
    """Collect finished chat rows: progress lines, and checkpoint parts every 10 % or 10 s."""

    def __init__(
        self,
        results: dict[int, RowResult],
        total: int,
        checkpoint: RowCheckpoint,
        fingerprints: Mapping[int, str],
        logger: Any,
        before: tuple[int, int] = (0, 0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.results = results
        self.checkpoint = checkpoint
        self.fingerprints = fingerprints
        #: Rows done and failed in earlier windows of a streamed batch.
        self.done_before, self.failed = before
        self.progress = Progress(
            total, already_done=self.done_before + len(results), logger=logger, clock=clock
        )
        self._unsaved: list[RowResult] = []
        # One save at a time: two parts written at once would get the same part number, and
        # Airflow's task-state client serves one request at a time.
        self._saving = asyncio.Lock()
        self._clock = clock
        self._saved_at = clock()
        self._every = max(1, total // 10)

    async def record(self, result: RowResult) -> None:
        """Take one finished row.

        :param result: the row's result.
        """
        self.results[result.row] = result
        self.failed += not result.ok
        self._unsaved.append(result)
        self.progress.update(self.done_before + len(self.results), self.failed)
        due = len(self._unsaved) >= self._every or self._clock() - self._saved_at >= 10.0
        # While a save runs, rows wait for the next one (or the final flush) instead of queueing.
        if due and not self._saving.locked():
            await self.flush()

    async def flush(self) -> None:
        """Checkpoint the rows finished since the last flush (off the event loop: it is blocking IPC)."""
        async with self._saving:
            unsaved, self._unsaved = self._unsaved, []
            self._saved_at = self._clock()
            if unsaved and self.checkpoint.enabled:
                await asyncio.to_thread(self.checkpoint.save, unsaved, self.fingerprints)
