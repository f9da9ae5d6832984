"""The shared poller: one getResponse loop per connection and event loop, for every waiting trigger.

A triggerer runs all its triggers in one event loop. Instead of each trigger sending its own
getResponse requests, triggers on the same connection register their taskUUIDs with one
:class:`TaskPoller`. Each tick it polls every outstanding UUID that is due, in as few
requests as the connection's ``max_tasks_per_request`` allows (the hook chunks them), and
resolves each registration when all its tasks have finished. Polling is free and has no side
effect, so sharing changes nothing but the number of requests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import MiniMaxAuthError, MiniMaxError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.models import GetResponseTask
from airflow_provider_minimax.polling import (
    TaskItems,
    TaskProgress,
    check_cadence,
    group_batch,
    is_transient,
    lone_not_found,
    next_interval,
    progress_delay,
)
from airflow_provider_minimax.results import TaskBatchResult

log = logging.getLogger(__name__)

#: A registration due within this fraction of its current wait joins an earlier tick, so waiters
#: that started at different moments converge on shared requests (polled up to 25 % early).
COALESCE_FRACTION = 0.25
#: Resolve at most this many registrations per event-loop step, so waking many triggers at once
#: never stalls the loop (each woken trigger builds its event in the next step).
RESOLVE_SLICE = 16
#: CPU time the poller spends on the loop between two yields to it (building polls, reading
#: answers for thousands of waiters), so a 10,000-task tick never stalls the other triggers.
SLICE_SECONDS = 0.005
#: getResponse requests in flight at once in one tick: enough to overlap round trips; few enough
#: that httpcore's pool (which re-scans every connection for each request) stays cheap.
REQUESTS_IN_FLIGHT = 4
#: getResponse requests one tick may spend narrowing a request refused as a whole (400) down to
#: the refused UUIDs: one per chunk, then about 2 x log2(k) per refused UUID in a chunk of k.
MAX_BISECT_REQUESTS = 32
#: What a registration's future holds when its deadline passed first.
DEADLINE = object()


@dataclass(frozen=True)
class _Refusal:
    """Why a UUID's poll was refused: narrowed down to it alone, or still in a refused group."""

    error: MiniMaxError
    uuid_refused: bool


def _is_refused_as_a_whole(err: MiniMaxError) -> bool:
    """A 400 for the whole request (bad UUIDs, a shape the server will not take): worth splitting."""
    return err.status_code == 400 and not is_transient(err)


def _is_key_refused(err: MiniMaxError) -> bool:
    return isinstance(err, MiniMaxAuthError) and err.status_code == 401


class Registration:
    """One waiter's tasks, cadence and failure budget inside a :class:`TaskPoller`.

    ``future`` resolves to None when every task finished, to the error that ended polling, or
    to :data:`DEADLINE` (set by the waiter's own timer, see :func:`expire`).

    :param progress: the tasks and what is known about them.
    :param future: resolved by the poller.
    :param started: loop time of the registration.
    :param poll_interval: the first (and shortest) wait.
    :param max_poll_interval: the cap of the wait.
    :param max_consecutive_failures: transient poll failures in a row tolerated.
    """

    __slots__ = (
        "due",
        "failures",
        "future",
        "max_consecutive_failures",
        "max_poll_interval",
        "poll_interval",
        "progress",
        "started",
        "wait",
    )

    def __init__(
        self,
        progress: TaskProgress,
        future: asyncio.Future[object],
        started: float,
        poll_interval: float,
        max_poll_interval: float,
        max_consecutive_failures: int,
    ) -> None:
        self.progress = progress
        self.future = future
        self.started = started
        self.poll_interval = self.wait = poll_interval
        self.due = started + poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_consecutive_failures = max_consecutive_failures
        self.failures = 0

    def reschedule(self, now: float, failed: bool = False) -> None:
        """Plan the next poll: when progress predicts the rest done, or one grown wait after a failure.

        :param now: loop time the last poll ended.
        :param failed: whether the last poll failed (nothing new was learnt).
        """
        if failed:
            self.wait = next_interval(self.wait, self.max_poll_interval)
        else:
            self.wait = progress_delay(
                self.progress, now - self.started, self.wait, self.poll_interval, self.max_poll_interval
            )
        self.due = now + self.wait


class TaskPoller:
    """Polls getResponse for every registration on one connection in one event loop.

    Get the process-wide instance with :meth:`shared`; a poller made directly is private to its
    caller. The poller's task starts with the first registration and stops, closing its HTTP
    client, when the last one leaves.

    :param conn_id: the ``minimax`` connection; credentials are read inside the loop, never stored.
    """

    _shared: ClassVar[dict[tuple[str, asyncio.AbstractEventLoop], TaskPoller]] = {}

    def __init__(self, conn_id: str = DEFAULT_CONN_ID) -> None:
        self.conn_id = conn_id
        self.hook = MiniMaxHook(minimax_conn_id=conn_id)
        self._loop = asyncio.get_running_loop()
        self._registrations: dict[Registration, None] = {}  # an ordered set
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._sleep_until = math.inf
        self._closed = False
        #: Whether the connection was read again after a 401 since the last successful poll.
        self._reread = False

    @classmethod
    def shared(cls, conn_id: str = DEFAULT_CONN_ID) -> TaskPoller:
        """The poller of ``conn_id`` in the running event loop, created on first use.

        :param conn_id: the ``minimax`` connection.
        """
        loop = asyncio.get_running_loop()
        for key in [k for k in cls._shared if k[1].is_closed()]:
            del cls._shared[key]  # left behind by a loop that was closed under it (tests)
        poller = cls._shared.get((conn_id, loop))
        if poller is None:
            poller = cls._shared[(conn_id, loop)] = cls(conn_id)
        return poller

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The polling task, while it runs (tests await it to see the poller stop)."""
        return self._task

    @property
    def registrations(self) -> int:
        """How many waiters are registered."""
        return len(self._registrations)

    def register(
        self,
        task_uuids: Sequence[str],
        *,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        number_results: int = 1,
        max_consecutive_failures: int = 5,
        not_found_until: float | None = None,
    ) -> Registration:
        """Start waiting on tasks; the first poll is ``poll_interval`` from now.

        :param task_uuids: the tasks.
        :param poll_interval: seconds before the first poll.
        :param max_poll_interval: the cap of the wait between polls.
        :param number_results: results each task was submitted with.
        :param max_consecutive_failures: transient poll failures in a row tolerated.
        :param not_found_until: epoch until which ``taskFailedOrNotFound`` means still running.
        """
        if self._closed:
            raise RuntimeError(f"the MiniMax poller of {self.conn_id!r} has stopped; get a new one")
        check_cadence(poll_interval, max_poll_interval, number_results)
        now = self._loop.time()
        registration = Registration(
            TaskProgress(task_uuids, number_results, not_found_until),
            self._loop.create_future(),
            started=now,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            max_consecutive_failures=max_consecutive_failures,
        )
        self._registrations[registration] = None
        heap_freezer.note_waiters(len(self._registrations))
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name=f"minimax-poller-{self.conn_id}")
        elif registration.due < self._sleep_until and self._waiter is not None:
            _wake(self._waiter)  # it sleeps past this one's first poll: recompute
        return registration

    def unregister(self, registration: Registration) -> None:
        """Stop waiting (finished, timed out or cancelled); the last one out stops the poller.

        :param registration: what :meth:`register` returned.
        """
        self._registrations.pop(registration, None)
        if not registration.future.done():
            registration.future.cancel()
        if not self._registrations and not self._closed:  # once closed, the task is ending by itself
            self._retire()
            if self._task is not None:
                self._task.cancel()

    def _retire(self) -> None:
        """Leave the registry (synchronously, so a newcomer never joins a stopping poller)."""
        self._closed = True
        key = (self.conn_id, self._loop)
        if self._shared.get(key) is self:
            del self._shared[key]

    async def _run(self) -> None:
        try:
            while self._registrations:
                now = self._loop.time()
                wake_at = min(r.due for r in self._registrations)
                if wake_at > now:
                    await self._sleep(wake_at, now)
                    continue
                due = [r for r in self._registrations if r.due - now <= COALESCE_FRACTION * r.wait]
                await self._poll(due)
            self._retire()
        except Exception as err:  # a bug must not leave triggers waiting forever
            log.exception("The MiniMax poller of %r failed", self.conn_id)
            self._retire()
            for registration in list(self._registrations):
                self._resolve(registration, err)
        finally:
            await self.hook.aclose()

    async def _sleep(self, until: float, now: float) -> None:
        """Sleep until ``until`` unless a new registration is due earlier."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        handle = self._loop.call_later(until - now, _wake, waiter)
        self._waiter, self._sleep_until = waiter, until
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter, self._sleep_until = None, math.inf

    async def _poll(self, due: list[Registration]) -> None:
        """Poll every pending task of the due registrations at once and settle them."""
        task_uuids = list(dict.fromkeys(u for r in due for u in r.progress.pending))
        try:
            grouped, refused = await self._fetch(task_uuids)
        except Exception as err:
            self._failed(due, err)
            return
        now, wall = self._loop.time(), time.time()
        finished: list[Registration] = []
        suspects: list[Registration] = []
        pause = _Pacer()
        for registration in due:
            if registration.future.done():  # left while the request was in flight
                continue
            culprit = next((refused[u] for u in registration.progress.pending if u in refused), None)
            if culprit is not None:
                if culprit.uuid_refused:
                    self._resolve(registration, culprit.error)
                else:
                    suspects.append(registration)
                continue
            registration.failures = 0
            registration.progress.update(grouped, wall)
            if registration.progress.done:
                finished.append(registration)
            else:
                registration.reschedule(now)
            if pause.due():
                await asyncio.sleep(0)
        if suspects:  # in a refused group not narrowed down this tick: a failed poll, not a verdict
            self._failed(suspects, next(iter(refused.values())).error, transient=True)
        for count, registration in enumerate(finished, start=1):
            self._resolve(registration, None)
            if count % RESOLVE_SLICE == 0:
                await asyncio.sleep(0)  # let the woken triggers run before waking more

    def _failed(
        self, registrations: list[Registration], err: BaseException, *, transient: bool | None = None
    ) -> None:
        """A poll failed for these waiters: transient ones count against each budget, others end them.

        :param registrations: the waiters whose poll failed.
        :param err: the error; it ends a waiter's wait when not transient or past its budget.
        :param transient: whether to count it as transient (default: by its type).
        """
        now = self._loop.time()
        transient = is_transient(err) if transient is None else transient
        if transient:
            log.warning("Polling MiniMax task(s) of %d waiter(s) failed: %s", len(registrations), err)
        for registration in registrations:
            registration.failures += 1
            if not transient or registration.failures >= registration.max_consecutive_failures:
                self._resolve(registration, err)
            else:
                registration.reschedule(now, failed=True)

    async def _request(self, task_uuids: Sequence[str]) -> TaskBatchResult:
        # UUIDs were checked once, at registration: skip re-validating thousands of them per tick.
        polls = [GetResponseTask.model_construct(task_uuid=u) for u in task_uuids]
        return await self.hook.asubmit_tasks(polls)

    async def _fetch(self, task_uuids: list[str]) -> tuple[dict[str, TaskItems], dict[str, _Refusal]]:
        """One tick's answer by UUID; a 401 re-reads the connection once, a 400 is narrowed to its UUIDs."""
        try:
            grouped = await self._fetch_chunks(task_uuids)
        except MiniMaxError as err:
            if _is_key_refused(err) and not self._reread:
                return await self._reread_connection(task_uuids, err)
            if _is_refused_as_a_whole(err):
                batch, refused = await self._bisect(task_uuids, err)
                return group_batch(batch), refused
            raise
        self._reread = False  # a later rotation gets its own re-read
        return grouped, {}

    async def _reread_connection(
        self, task_uuids: list[str], err: MiniMaxError
    ) -> tuple[dict[str, TaskItems], dict[str, _Refusal]]:
        """The key was refused: read the connection again (a rotated key) and poll once more."""
        log.warning("MiniMax refused the key of %r (%s); reading the connection again", self.conn_id, err)
        self._reread = True
        stale, self.hook = self.hook, MiniMaxHook(minimax_conn_id=self.conn_id)
        await stale.aclose()
        await self.hook.aget_settings()  # the async lookup: never blocks the loop
        return await self._fetch(task_uuids)

    async def _bisect(
        self, task_uuids: list[str], err: MiniMaxError
    ) -> tuple[TaskBatchResult, dict[str, _Refusal]]:
        """Split a request refused as a whole until the refused UUIDs are found (bounded requests).

        A request larger than ``max_tasks_per_request`` is first asked chunk by chunk (as the hook
        sent it), then each refused chunk is halved. UUIDs left unresolved when
        :data:`MAX_BISECT_REQUESTS` is spent are suspects: their waiters count a failed poll, as for
        a transient error, and are split again on their next tick.
        """
        batch = TaskBatchResult()
        refused: dict[str, _Refusal] = {}
        groups: list[tuple[list[str], MiniMaxError]] = [(task_uuids, err)]
        budget = MAX_BISECT_REQUESTS
        chunk = (await self.hook.aget_settings()).max_tasks_per_request
        while groups:
            group, error = groups.pop()
            lone = lone_not_found(group, error)
            if lone is not None:
                batch.extend(lone)
                continue
            if len(group) == 1 or budget <= 0:
                refusal = _Refusal(error, uuid_refused=len(group) == 1)
                refused.update(dict.fromkeys(group, refusal))
                continue
            # Beyond one request's size, the hook sent chunks: ask each on its own, then halve.
            size = chunk if len(group) > chunk else (len(group) + 1) // 2
            for part in (group[start : start + size] for start in range(0, len(group), size)):
                budget -= 1
                try:
                    batch.extend(await self._request(part))
                except MiniMaxError as part_err:
                    if not _is_refused_as_a_whole(part_err):
                        raise
                    groups.append((part, part_err))
        log.warning(
            "MiniMax refused a getResponse request as a whole (%s); the refused taskUUID(s): %s",
            err,
            ", ".join(u for u, r in refused.items() if r.uuid_refused) or "(not narrowed down yet)",
        )
        return batch, refused

    async def _fetch_chunks(self, task_uuids: list[str]) -> dict[str, TaskItems]:
        """The answers for ``task_uuids``, indexed by UUID: one request per ``max_tasks_per_request``,
        at most :data:`REQUESTS_IN_FLIGHT` at once, each chunk built and read in its own loop step."""
        size = (await self.hook.aget_settings()).max_tasks_per_request
        chunks = iter([task_uuids[start : start + size] for start in range(0, len(task_uuids), size)])
        grouped: dict[str, TaskItems] = {}

        async def fetch_chunks(chunks: Iterator[list[str]]) -> None:
            for chunk in chunks:  # a shared iterator: no chunk is taken twice
                # UUIDs were checked once, at registration: skip re-validating them every tick.
                polls = [GetResponseTask.model_construct(task_uuid=u) for u in chunk]
                grouped.update(group_batch(await self.hook.asubmit_tasks(polls)))

        workers = [
            self._loop.create_task(fetch_chunks(chunks))
            for _ in range(min(REQUESTS_IN_FLIGHT, len(task_uuids)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:  # one chunk failed: stop the others, the tick is retried whole
                worker.cancel()
        return grouped

    def _resolve(self, registration: Registration, error: BaseException | None) -> None:
        self._registrations.pop(registration, None)
        if not registration.future.done():
            registration.future.set_result(error)


def expire(future: asyncio.Future[object]) -> None:
    """End a wait at its deadline (a loop timer calls this); a settled wait is left alone.

    :param future: a registration's future.
    """
    if not future.done():
        future.set_result(DEADLINE)


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
            from airflow.providers.common.compat.sdk import conf

            self.enabled = conf.getboolean("minimax", "freeze_gc", fallback=True)
        self.next_freeze_at = waiters + self.STEP
        if self.enabled:
            gc.freeze()
            log.debug("%d objects frozen out of garbage collection", gc.get_freeze_count())


#: One per process: the heap is.
heap_freezer = HeapFreezer()


class _Pacer:
    """Says when a loop of work on the event loop has run :data:`SLICE_SECONDS` and should yield."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = time.perf_counter() + SLICE_SECONDS

    def due(self) -> bool:
        now = time.perf_counter()
        if now < self._until:
            return False
        self._until = now + SLICE_SECONDS
        return True


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
