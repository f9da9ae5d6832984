"""Sharing the triggerer's event loop: how much work the shared poller does between two yields to it."""

from __future__ import annotations

import time

#: Resolve at most this many registrations per event-loop step, so waking many triggers at once
#: never stalls the loop (each woken trigger builds its event in the next step).
RESOLVE_SLICE = 16
#: CPU time the poller spends on the loop between two yields to it (building polls, reading
#: answers for thousands of waiters), so a 10,000-task tick never stalls the other triggers.
SLICE_SECONDS = 0.005


class Pacer:
    """Says when a loop of work on the event loop has run :data:`SLICE_SECONDS` and should yield."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = time.perf_counter() + SLICE_SECONDS

    def due(self) -> bool:
        """Whether the current slice is used up (then the next one starts)."""
        now = time.perf_counter()
        if now < self._until:
            return False
        self._until = now + SLICE_SECONDS
        return True
