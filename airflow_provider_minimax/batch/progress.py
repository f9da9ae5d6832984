"""The batch's progress line: ``340/1000 done, 3 failed, 41 rows/s, ETA 16 s``, every 10 % or 10 s."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def progress_line(done: int, total: int, failed: int, elapsed: float, already_done: int = 0) -> str:
    """One progress line; the rate counts only the rows done in this try.

    :param done: rows finished (successes and failures, earlier tries included).
    :param total: rows in the batch.
    :param failed: rows that failed.
    :param elapsed: seconds since this try started working.
    :param already_done: rows finished by earlier tries, left out of the rate.
    """
    line = f"{done}/{total} done, {failed} failed"
    rate = (done - already_done) / elapsed if elapsed > 0 else 0.0
    if rate > 0:
        line += f", {rate:.0f} rows/s"
        if done < total:
            line += f", ETA {(total - done) / rate:.0f} s"
    return line


class Progress:
    """Log the progress line when another ``every_fraction`` of the rows is done or ``every_seconds`` passed.

    :param total: rows in the batch.
    :param already_done: rows finished by earlier tries.
    :param started: when this try started working (the clock's time).
    :param every_fraction: log at least this often, as a fraction of ``total``.
    :param every_seconds: log at least this often, in seconds.
    :param clock: monotonic clock (tests pass a fake one).
    :param logger: where the lines go (anything with ``info``).
    """

    def __init__(
        self,
        total: int,
        *,
        already_done: int = 0,
        started: float | None = None,
        every_fraction: float = 0.1,
        every_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        logger: Any = log,
    ) -> None:
        self.total = total
        self.already_done = already_done
        self._clock = clock
        self.started = clock() if started is None else started
        self._step = max(1, int(total * every_fraction))
        self._every_seconds = every_seconds
        self._logger = logger
        self._last_time = self.started
        self._last_done = already_done
        self.lines: list[str] = []

    def update(self, done: int, failed: int) -> None:
        """Log the line if it is due.

        :param done: rows finished so far.
        :param failed: rows failed so far.
        """
        now = self._clock()
        if (
            done >= self.total
            or done - self._last_done >= self._step
            or now - self._last_time >= self._every_seconds
        ):
            self._emit(done, failed, now)

    def finish(self, done: int, failed: int) -> None:
        """Log the final line unless the last one already said the same.

        :param done: rows finished.
        :param failed: rows failed.
        """
        if not self.lines or self._last_done != done:
            self._emit(done, failed, self._clock())

    def _emit(self, done: int, failed: int, now: float) -> None:
        line = progress_line(done, self.total, failed, now - self.started, self.already_done)
        self.lines.append(line)
        self._logger.info("%s", line)
        self._last_time, self._last_done = now, done
