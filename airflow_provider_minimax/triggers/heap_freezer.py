"""Short garbage collections: heap frozen in a triggerer as waiters grow, in a worker as a batch starts."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_gc_enabled() -> bool:
    """Whether ``[minimax] freeze_gc`` (default True) lets the provider freeze the heap."""
    from airflow.providers.common.compat.sdk import conf

    return conf.getboolean("minimax", "freeze_gc", fallback=True)


def freeze_heap() -> None:
    """Freeze the objects the process holds now out of garbage collections, once: a worker's batch.

    A worker's chat batch allocates enough to trigger a full collection every ~1,000 rows, and
    each one walked Airflow's heap (~180,000 objects) again: at 10,000 rows, 1.9-2.1 s of the
    client's CPU went to full collections, 0.5-0.9 s with the heap frozen. Frozen objects are
    still freed by reference counting; only a reference cycle among them stays until the
    process ends, so a heap frozen already (an earlier window of the batch, a poller in the same
    process) is not frozen again. ``[minimax] freeze_gc = False`` turns it off.
    """
    if not gc.get_freeze_count() and freeze_gc_enabled():
        gc.freeze()


class HeapFreezer:
    """Keeps full garbage collections short in a triggerer holding thousands of waiters.

    A full collection walks every tracked object and stalls the event loop meanwhile: Airflow's
    start-up heap alone is ~150,000 objects (~150 ms on a shared core), and each waiting trigger
    adds ~20 more (its task, coroutine, async generator, future, timer...), ~200,000 at 10,000
    waiters. Both are long-lived, which is what ``gc.freeze()`` is for (Airflow's scheduler-side
    processes freeze before forking): the poller freezes the heap at its first registration, and
    again each time its waiters reach a new high by :attr:`STEP`, so a full collection never
    walks more than the objects of ~:attr:`STEP` waiters, and the number of freezes is bounded by
    the largest count / :attr:`STEP`. Frozen objects are still freed by reference counting when
    a trigger ends; only a reference cycle among them stays until the process ends (measured:
    under one object per trigger). ``[minimax] freeze_gc = False``
    (``AIRFLOW__MINIMAX__FREEZE_GC=false``) turns it off.
    """

    #: New waiters (over the highest count frozen so far) that make the next freeze.
    STEP = 1000

    def __init__(self) -> None:
        self.enabled: bool | None = None  # read from the config on first use
        self.next_freeze_at = 0  # waiters; 0: freeze at the first registration

    def note_waiters(self, waiters: int) -> None:
        """Freeze when ``waiters`` reached the next step (otherwise one comparison: it is called
        on every registration, so a burst of new triggers is frozen as it grows).

        :param waiters: registrations the poller holds now.
        """
        if waiters < self.next_freeze_at:
            return
        if self.enabled is None:
            self.enabled = freeze_gc_enabled()
        self.next_freeze_at = waiters + self.STEP
        if self.enabled:
            gc.freeze()
            log.debug("%d objects frozen out of garbage collection", gc.get_freeze_count())


#: One per process: the heap is.
heap_freezer = HeapFreezer()
