"""Short garbage collections: heap frozen in a triggerer as waiters come, in a worker as a batch starts."""

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
    processes freeze before forking). The poller freezes the heap at its first registration and
    then once per :attr:`STEP` registrations, counted since the last freeze rather than as new
    highs, so a triggerer whose waiters come and go keeps freezing the new ones. A full
    collection then never walks more than the objects of ~:attr:`STEP` waiters.

    Frozen objects are still freed by reference counting when a trigger ends; only garbage in
    reference cycles among them would stay until the process ends. So each freeze after the first
    collects first (walking only what is not frozen yet: ~:attr:`STEP` waiters, a few ms) and the
    poller freezes only while it sleeps (:meth:`freeze_if_due`), never with a request in flight,
    whose objects form cycles once it ends. The first freeze does not collect: that would walk
    the whole start-up heap once. ``[minimax] freeze_gc = False``
    (``AIRFLOW__MINIMAX__FREEZE_GC=false``) turns it off.
    """

    #: Registrations between two freezes.
    STEP = 500

    def __init__(self) -> None:
        self.enabled: bool | None = None  # read from the config on first use
        self.frozen = False
        self.due = True  # the first registration freezes
        self._until_due = 0

    def note_registration(self) -> None:
        """Count one registration (one comparison: it is called for each of a burst of triggers)."""
        if self._until_due > 0:
            self._until_due -= 1
            return
        self.due = True
        self._until_due = self.STEP - 1

    def freeze_if_due(self) -> None:
        """Freeze the heap if :attr:`STEP` registrations arrived since the last freeze.

        Call it only where no request is in flight.
        """
        if not self.due:
            return
        self.due = False
        if self.enabled is None:
            self.enabled = freeze_gc_enabled()
        if not self.enabled:
            return
        if self.frozen:
            gc.collect()  # what is not frozen yet: no garbage of this moment becomes permanent
        gc.freeze()
        self.frozen = True
        # Not gc.get_freeze_count(): it walks every frozen object, ~30 ms at 10,000 waiters.
        log.debug("Heap frozen out of garbage collection after %d registrations", self.STEP)


#: One per process: the heap is.
heap_freezer = HeapFreezer()
