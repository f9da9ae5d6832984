"""The shared poller: one getResponse loop per connection and event loop, for every waiting trigger.

A triggerer runs all its triggers in one event loop. Instead of each trigger sending its own
getResponse requests, triggers on the same connection register their taskUUIDs with one
:class:`TaskPoller`. Each tick it polls every outstanding UUID that is due, in as few
requests as the connection's ``max_tasks_per_request`` allows (:mod:`.poll_requests`), and
resolves each registration when all its tasks have finished. A registration with more pending
tasks than one request carries is asked a sample of them, and the rest once most of the sample
finished, as :func:`~airflow_provider_minimax.polling.wait_for_tasks` does. Polling is free and
has no side effect, so sharing changes nothing but the number of requests.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import ClassVar

from airflow_provider_minimax.connection import DEFAULT_CONN_ID
from airflow_provider_minimax.exceptions import MiniMaxAuthError, MiniMaxError
from airflow_provider_minimax.heap_freezer import heap_freezer
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.poll_cadence import check_cadence
from airflow_provider_minimax.task_progress import (
    TaskItems,
    TaskProgress,
    group_batch,
    is_transient,
    pending_estimate,
    sample_of,
)
from airflow_provider_minimax.triggers.pacing import RESOLVE_SLICE, Pacer
from airflow_provider_minimax.triggers.poll_requests import (
    REQUESTS_IN_FLIGHT,
    Refusal,
    bisect,
    fetch_in_chunks,
    is_refused_as_a_whole,
)
from airflow_provider_minimax.triggers.registration import Registration

log = logging.getLogger(__name__)

#: A registration due within this fraction of its current wait joins an earlier tick, so waiters
#: that started at different moments converge on shared requests (polled up to 25 % early).
COALESCE_FRACTION = 0.25


def _is_key_refused(err: MiniMaxError) -> bool:
    return isinstance(err, MiniMaxAuthError) and err.status_code == 401


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
        heap_freezer.note_registration()
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name=f"minimax-poller-{self.conn_id}")
        elif self._waiter is not None:  # asleep: no request in flight
            heap_freezer.freeze_if_due()
            if registration.due < self._sleep_until:
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
                await self._poll(
                    [r for r in self._registrations if r.due - now <= COALESCE_FRACTION * r.wait]
                )
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
        heap_freezer.freeze_if_due()  # between ticks: no request in flight
        waiter: asyncio.Future[None] = self._loop.create_future()
        handle = self._loop.call_later(until - now, _wake, waiter)
        self._waiter, self._sleep_until = waiter, until
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter, self._sleep_until = None, math.inf

    async def _poll(self, due: list[Registration]) -> None:
        """Poll the due registrations a group at a time, each group as many tasks as one round of
        requests in flight asks for: a group's answers are read, handed to its waiters and those
        woken before the next group is asked, so a tick for 10,000 tasks never holds 10,000
        answers at once (every full collection meanwhile would walk them)."""
        try:
            per_request = (await self.hook.aget_settings()).max_tasks_per_request
        except Exception as err:
            self._failed(due, err)
            return
        size = REQUESTS_IN_FLIGHT * per_request
        group: list[Registration] = []
        tasks = 0
        due.reverse()  # taken from the end, so that no list holds a settled group's answers
        while due:
            registration = due.pop()
            if registration.future.done():  # its wait ended (deadline, cancelled): not polled again
                self._registrations.pop(registration, None)
                continue
            group.append(registration)
            tasks += min(len(registration.progress.pending), per_request)  # a larger one is sampled
            if tasks >= size:
                await self._poll_group(group, per_request)
                group, tasks = [], 0
        if group:
            await self._poll_group(group, per_request)

    async def _poll_group(self, due: list[Registration], per_request: int, since: int | None = None) -> None:
        """Poll the pending tasks of these registrations at once and settle them.

        A registration with more pending tasks than one request carries is asked a
        :func:`~airflow_provider_minimax.task_progress.sample_of` them; one whose sample mostly
        finished (:func:`pending_estimate`) is polled whole right after, in the same tick, on its
        own: a tick holds no more answers at once than without sampling.

        :param due: the registrations.
        :param per_request: the connection's ``max_tasks_per_request``.
        :param since: polling one whole (``due`` is that one): its pending count at the tick's start.
        """
        sampled = {  # registration -> (its pending count, its sample)
            r: (len(r.progress.pending), sample_of(r.progress.pending, per_request))
            for r in due
            if since is None and len(r.progress.pending) > per_request
        }
        task_uuids = list(
            dict.fromkeys(u for r in due for u in (sampled[r][1] if r in sampled else r.progress.pending))
        )
        try:
            grouped, refused = await self._fetch(task_uuids)
        except Exception as err:
            self._failed(due, err)
            return
        now, wall = self._loop.time(), time.time()
        finished: list[Registration] = []
        suspects: list[Registration] = []
        whole: dict[Registration, int] = {}  # sampled, and most of the sample finished
        pause = Pacer()
        for registration in due:
            if registration.future.done():  # left while the request was in flight
                continue
            culprit = (  # only after a refused request: else a walk over every pending UUID for nothing
                next((refused[u] for u in registration.progress.pending if u in refused), None)
                if refused
                else None
            )
            if culprit is not None:
                if culprit.uuid_refused:
                    self._resolve(registration, culprit.error)
                else:
                    suspects.append(registration)
                continue
            registration.failures = 0
            progress = registration.progress
            progress.update(grouped, wall, since)
            estimate = None
            if registration in sampled:
                pending, sample = sampled[registration]
                estimate = pending_estimate(progress, pending, len(sample))
                if estimate is None:
                    whole[registration] = pending
                    continue
            if progress.done:
                finished.append(registration)
            else:
                registration.reschedule(now, pending=estimate)
            if pause.due():
                await asyncio.sleep(0)
        if suspects:  # in a refused group not narrowed down this tick: a failed poll, not a verdict
            self._failed(suspects, next(iter(refused.values())).error, transient=True)
        for count, registration in enumerate(finished, start=1):
            self._resolve(registration, None)
            if count % RESOLVE_SLICE == 0:
                await asyncio.sleep(0)  # let the woken triggers run before waking more
        for registration, pending in whole.items():
            await self._poll_group([registration], per_request, pending)

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

    async def _fetch(self, task_uuids: list[str]) -> tuple[dict[str, TaskItems], dict[str, Refusal]]:
        """One tick's answer by UUID; a 401 re-reads the connection once, a 400 is narrowed to its UUIDs."""
        try:
            grouped = await fetch_in_chunks(self.hook, task_uuids)
        except MiniMaxError as err:
            if _is_key_refused(err) and not self._reread:
                return await self._reread_connection(task_uuids, err)
            if is_refused_as_a_whole(err):
                batch, refused = await bisect(self.hook, task_uuids, err)
                return group_batch(batch, settled_only=True), refused
            raise
        self._reread = False  # a later rotation gets its own re-read
        return grouped, {}

    async def _reread_connection(
        self, task_uuids: list[str], err: MiniMaxError
    ) -> tuple[dict[str, TaskItems], dict[str, Refusal]]:
        """The key was refused: read the connection again (a rotated key) and poll once more."""
        log.warning("MiniMax refused the key of %r (%s); reading the connection again", self.conn_id, err)
        self._reread = True
        stale, self.hook = self.hook, MiniMaxHook(minimax_conn_id=self.conn_id)
        await stale.aclose()
        await self.hook.aget_settings()  # the async lookup: never blocks the loop
        return await self._fetch(task_uuids)

    def _resolve(self, registration: Registration, error: BaseException | None) -> None:
        self._registrations.pop(registration, None)
        if not registration.future.done():
            registration.future.set_result(error)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
