"""A stand-in for ``time.sleep`` and ``asyncio.sleep``: the waits the provider asks for, without the wait.

The hook sleeps through tenacity (``time.sleep``, ``asyncio.sleep``), the batch runner, the
idempotent submit and ``wait_for_tasks`` through the same two functions; :meth:`FakeSleep.install`
stands in for both.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import pytest

_SLEEP = time.sleep
_ASLEEP = asyncio.sleep


def _asked_by_the_provider(caller: FrameType | None) -> bool:
    """Whether the provider (or tenacity) asked for a sleep, not a server under test or the test itself."""
    module = caller.f_globals.get("__name__", "") if caller is not None else ""
    return module.startswith(("tenacity", "airflow_provider_minimax.")) and not module.startswith(
        "airflow_provider_minimax.testing"
    )


class FakeSleep:
    """Records the waits the provider asks for; other callers (servers under test, the test) really sleep.

    A zero-second ``asyncio.sleep`` is a yield to the event loop, not a wait: it yields and is not recorded.

    :param cap: wait for real, but at most this long; None: do not wait.
    :param on_wait: called with each recorded wait, e.g. to move a fake clock.
    """

    def __init__(self, cap: float | None = None, on_wait: Callable[[float], None] | None = None) -> None:
        self.waits: list[float] = []
        #: The waits asked of the blocking ``time.sleep``, also in :attr:`waits`.
        self.blocking: list[float] = []
        self._cap = cap
        self._on_wait = on_wait

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeSleep:
        """Stand in for ``time.sleep`` and ``asyncio.sleep`` for the test."""
        monkeypatch.setattr(time, "sleep", self)
        monkeypatch.setattr(asyncio, "sleep", self.asleep)
        return self

    @classmethod
    def installed(cls, monkeypatch: pytest.MonkeyPatch) -> FakeSleep:
        """The recorder standing in for the sleeps: the one installed already, else a new one."""
        current = time.sleep
        return current if isinstance(current, FakeSleep) else cls().install(monkeypatch)

    def _record(self, seconds: float) -> float:
        """Record a wait; the seconds to really wait."""
        self.waits.append(seconds)
        if self._on_wait is not None:
            self._on_wait(seconds)
        return 0.0 if self._cap is None else min(seconds, self._cap)

    def __call__(self, seconds: float) -> None:
        if not _asked_by_the_provider(sys._getframe(1)):
            _SLEEP(seconds)
            return
        self.blocking.append(seconds)
        real = self._record(seconds)
        if real:
            _SLEEP(real)

    def asleep(self, seconds: float, result: Any = None) -> Awaitable[Any]:
        """The stand-in for ``asyncio.sleep``."""
        if seconds <= 0 or not _asked_by_the_provider(sys._getframe(1)):
            return _ASLEEP(seconds, result)
        return _ASLEEP(self._record(seconds), result)
