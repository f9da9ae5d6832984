"""Never pay twice: deterministic taskUUIDs per task instance, and the resume-or-submit decision.

A task instance's item ``i`` at generation ``g`` always has the same taskUUID: a version-4
shaped hash of the identity and of the request itself. A retried try asks ``getResponse``
first and submits only what is neither finished nor running; the server refuses a known UUID
with ``conflictTaskUUID``, so even a crash between "submit" and "remember" cannot make the
same work be paid twice. On Airflow >= 3.3 a marker written to the task-state store before
the first submit lets the first try skip that ``getResponse``: nothing can be known upstream
yet. The generation moves on only when a UUID's task has failed; Airflow 3.3's task-state
store remembers it so a later try starts there (without the store, the conflict walk finds
it). The same store keeps what a deferral's resume needs, for the runners that drop the
deferral's kwargs (``airflow dags test``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.exceptions import MiniMaxError
from airflow_provider_minimax.poll_cadence import DEFAULT_NOT_FOUND_GRACE, poll_delays
from airflow_provider_minimax.task_progress import (
    abbreviate,
    get_responses,
    group_batch,
    is_not_found,
    task_state,
)

if TYPE_CHECKING:
    from airflow_provider_minimax.hooks.minimax import MiniMaxHook
    from airflow_provider_minimax.models import ApiError, TaskResult, TextInferenceTask

log = logging.getLogger(__name__)

GENERATIONS_KEY = "minimax_generations"
WAITING_KEY = "minimax_waiting"
RESUME_KEY = "minimax_resume"
#: Written before a task instance's first submit: without it no try can have submitted anything.
SUBMITTED_KEY = "minimax_submitted"
#: A UUID's generation moves on only after its task failed; this bounds the walk.
MAX_GENERATIONS = 32
#: Rounds of one poll (and one submit) per resolve; with the default cadence, ~6 minutes of waiting
#: for conflicted UUIDs to show, past the default grace.
MAX_WALK_ROUNDS = 40


@dataclass(frozen=True)
class TaskIdentity:
    """Who is asking: the task instance, which the taskUUIDs are derived from.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the mapped index (-1 when not mapped).
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskIdentity:
        """The identity of the running task instance.

        :param context: the Airflow task context.
        """
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index))

    def task_uuid(self, item_index: int = 0, generation: int = 0, fingerprint: str = "") -> str:
        """The taskUUID of one item at one generation: a SHA-256 of the identity, shaped as UUID v4.

        :param item_index: the item (row, prompt, re-ask) within the task instance.
        :param generation: bumped each time the item's previous task failed.
        :param fingerprint: the request's :func:`request_fingerprint`, so an edited prompt
            (a cleared task re-run after a fix) never reuses the old prompt's answer.
        """
        parts: tuple[object, ...] = (
            self.dag_id,
            self.task_id,
            self.run_id,
            self.map_index,
            item_index,
            generation,
        )
        if fingerprint:
            parts = (*parts, fingerprint)
        digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:16]
        return str(uuid.UUID(bytes=digest, version=4))


def request_fingerprint(task: TextInferenceTask) -> str:
    """A short hash of everything a task asks for except its taskUUID.

    :param task: a built task.
    """
    wire = task.to_wire()
    wire.pop("taskUUID", None)
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Resolution:
    """What a try should do next, item by item.

    :param finished: items whose task already succeeded, with their results (not resubmitted).
    :param waiting: items accepted or still running, with the UUID to wait on.
    :param rejected: items the API refused at submit (or that failed too often), with the error.
    :param generations: the generation each item is at now.
    :param uuids: each item's current taskUUID.
    """

    finished: dict[int, list[TaskResult]] = field(default_factory=dict)
    waiting: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, ApiError] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    uuids: dict[int, str] = field(default_factory=dict)

    @property
    def all_finished(self) -> bool:
        """Whether every item already has its results (nothing to wait on, nothing refused)."""
        return not self.waiting and not self.rejected


class GenerationStore:
    """Where an item's generation survives between tries, and a deferral's state until its resume.

    The store is scoped to the task instance (dag, run, task, map index), not to the try.

    :param context: the Airflow task context (``task_state_store`` exists from Airflow 3.3).
    """

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._store = context.get("task_state_store")
        self._known: dict[int, int] | None = None
        #: Whether the store held no submit marker when first asked (None: not asked yet).
        self._unmarked: bool | None = None
        self._marker_written = False

    def never_submitted(self) -> bool:
        """Whether nothing was submitted for this task instance before this object's own submits.

        True only with a store that held no :data:`SUBMITTED_KEY` marker when first asked; the
        answer is kept, so the marker this object writes before its first submit does not change
        it. Without a store (Airflow < 3.3) the answer is always False: anything may be known.
        """
        if self._unmarked is None:
            self._unmarked = self._store is not None and self._store.get(SUBMITTED_KEY) is None
        return self._unmarked

    def mark_submitting(self) -> None:
        """Write the submit marker, once, before this task instance's first submit (no-op without a store)."""
        # Only a store that held no marker needs it; that answer is kept, so a flag says "written".
        if self._store is not None and self.never_submitted() and not self._marker_written:
            self._store.set(SUBMITTED_KEY, True)
            self._marker_written = True

    def load(self) -> dict[int, int]:
        """The generations remembered by earlier tries (read once per try)."""
        if self._known is None:
            saved = self._store.get(GENERATIONS_KEY) if self._store is not None else None
            self._known = {int(item): int(gen) for item, gen in dict(saved or {}).items()}
        return dict(self._known)

    def save(self, generations: Mapping[int, int]) -> None:
        """Remember generations, merged with the other items' (zero is the default and not stored).

        :param generations: the generations of some items.
        """
        if self._store is None:
            return
        known = self.load()
        merged = {i: g for i, g in (known | dict(generations)).items() if g}
        if merged != {i: g for i, g in known.items() if g}:
            self._store.set(GENERATIONS_KEY, {str(i): g for i, g in sorted(merged.items())})
        self._known = merged

    def remember_waiting(self, task_uuids: list[str]) -> None:
        """Note the UUIDs a try waits on, so a timeout raised by Airflow itself can still name them.

        :param task_uuids: the UUIDs being waited on.
        """
        if self._store is not None:
            self._store.set(WAITING_KEY, list(task_uuids))

    def waiting(self) -> list[str]:
        """The UUIDs the last deferral waited on (empty without a store)."""
        saved = self._store.get(WAITING_KEY) if self._store is not None else None
        return [str(u) for u in saved or []]

    def save_resume(self, state: Mapping[str, Any]) -> None:
        """Keep what the resume after this deferral needs, in case the deferral's kwargs are dropped.

        ``airflow dags test`` resumes a task with the trigger's event only, unlike the triggerer,
        which passes the kwargs back; the latest deferral always overwrites this.

        :param state: the JSON values also passed as the deferral's ``kwargs``.
        """
        if self._store is not None:
            self._store.set(RESUME_KEY, dict(state))

    def load_resume(self, passed: Mapping[str, Any]) -> dict[str, Any]:
        """The resume state: the deferral's kwargs when Airflow passed them back, else the saved copy.

        :param passed: what ``execute_complete`` got besides the event (empty under ``dags test``).
        """
        if passed:
            return dict(passed)
        saved = self._store.get(RESUME_KEY) if self._store is not None else None
        if not isinstance(saved, dict):
            raise MiniMaxError(
                "Resumed after a deferral without its kwargs (airflow dags test drops them) and without "
                "a saved copy (the task-state store needs Airflow >= 3.3); run the DAG with a "
                "triggerer, or on Airflow >= 3.3, to resume it"
            )
        return saved


def request_fingerprints(
    identity: TaskIdentity, build_task: Callable[[int, str], TextInferenceTask], item_indexes: list[int]
) -> dict[int, str]:
    """Each item's :func:`request_fingerprint`, part of its taskUUID.

    :param identity: the task instance.
    :param build_task: builds an item's task for a given taskUUID.
    :param item_indexes: the items.
    """
    placeholder = identity.task_uuid(-1)
    return {i: request_fingerprint(build_task(i, placeholder)) for i in item_indexes}


def resolve_and_submit(
    hook: MiniMaxHook,
    identity: TaskIdentity,
    build_task: Callable[[int, str], TextInferenceTask],
    item_indexes: list[int],
    store: GenerationStore,
    number_results: int = 1,
    *,
    not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
    poll_interval: float = 1.0,
    max_poll_interval: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Resolution:
    """Reuse what earlier tries paid for and submit only the rest, in as few requests as possible.

    Decision per item, on its current UUID: finished → reuse; running → wait on it; unknown →
    submit that same UUID; failed → next generation (saved to the store before the submit).
    When the store says no try submitted anything yet (:meth:`GenerationStore.never_submitted`),
    every item is unknown and the first poll is skipped; a UUID known upstream after all (a lost
    store, a concurrent try) draws ``conflictTaskUUID`` and takes the path below.
    A ``conflictTaskUUID`` answer means the UUID was accepted meanwhile: it is never submitted
    again. It is polled again after a back-off; left out of the answer, it is waited on (the
    trigger's grace applies); answered ``taskFailedOrNotFound`` for ``not_found_grace`` seconds
    in a row, it counts as failed and the next generation is submitted. Every task is built
    (validated) before the first HTTP call, so bad input costs nothing. At most
    :data:`MAX_WALK_ROUNDS` rounds of one poll and one submit each.

    :param hook: the hook to poll and submit with.
    :param identity: the task instance.
    :param build_task: builds the textInference task of an item for a given taskUUID; it must
        give the same request for the same item on every try.
    :param item_indexes: the items of this task instance.
    :param store: where generations are remembered between tries; the same object for every call
        of one execution (a later call's items must be new to it), so only the first call reads
        the submit marker.
    :param number_results: results per task, to tell a finished task from a partial one.
    :param not_found_grace: seconds a UUID the API says it knows may read as not found.
    :param poll_interval: the wait before polling a conflicted UUID again; then x1.5.
    :param max_poll_interval: the cap of that wait.
    :param clock: a monotonic clock (tests pass a fake one).
    """
    wanted = set(item_indexes)
    generations = {i: 0 for i in item_indexes} | {i: g for i, g in store.load().items() if i in wanted}
    fingerprints = request_fingerprints(identity, build_task, item_indexes)
    walk = _Walk(hook, identity, build_task, store, number_results, fingerprints, not_found_grace, clock)
    walk.resolution.generations = generations
    pending = list(item_indexes)
    delays = poll_delays(poll_interval, max_poll_interval)
    poll = not store.never_submitted()
    for round_number in range(MAX_WALK_ROUNDS):
        if not pending:
            break
        if round_number:
            time.sleep(next(delays))  # only conflicted UUIDs come back: give them time to show
        pending = walk.round(pending, poll=poll or round_number > 0)
    if pending:
        # Still invisible after every round (a grace longer than the rounds last): known upstream,
        # so wait on them; the trigger's grace decides when not-found becomes a failure.
        log.warning(
            "MiniMax task(s) not visible yet, waiting on them: %s",
            abbreviate([walk.uuid_of(i) for i in pending]),
        )
        walk.resolution.waiting.update({i: walk.uuid_of(i) for i in pending})
    return walk.resolution


@dataclass
class _Walk:
    """One call of :func:`resolve_and_submit`: rounds of poll-then-submit until every item is placed."""

    hook: MiniMaxHook
    identity: TaskIdentity
    build_task: Callable[[int, str], TextInferenceTask]
    store: GenerationStore
    number_results: int
    fingerprints: dict[int, str]
    not_found_grace: float
    clock: Callable[[], float]
    resolution: Resolution = field(default_factory=Resolution)
    #: Items whose current UUID drew ``conflictTaskUUID`` (known upstream), with when it first did.
    conflicted: dict[int, float] = field(default_factory=dict)

    def uuid_of(self, item: int) -> str:
        uuid_ = self.identity.task_uuid(item, self.resolution.generations[item], self.fingerprints[item])
        self.resolution.uuids[item] = uuid_
        return uuid_

    def round(self, items: list[int], poll: bool = True) -> list[int]:
        """Poll the items' UUIDs, submit those unknown or failed; return the ones to poll again.

        :param items: the items to place.
        :param poll: False when nothing can be known upstream yet: every item counts as unknown.
        """
        gens = self.resolution.generations
        for item in [i for i in items if gens[i] >= MAX_GENERATIONS]:
            self.resolution.rejected[item] = self._too_many_generations(item)
        items = [i for i in items if gens[i] < MAX_GENERATIONS]
        if not items:
            return []
        uuids = {self.uuid_of(i): i for i in items}
        polled = group_batch(get_responses(self.hook, list(uuids))) if poll else {}
        to_submit: list[int] = []
        poll_again: list[int] = []
        reused: list[str] = []
        attached: list[str] = []
        renewed: list[str] = []
        for task_uuid, item in uuids.items():
            found = polled.get(task_uuid)
            results, error = task_state(task_uuid, found, self.number_results)
            known_since = self.conflicted.get(item)
            not_found = error is not None and is_not_found(error)
            if results is not None:
                reused.append(task_uuid)
                self.resolution.finished[item] = results
            elif error is None and ((found is not None and found[0]) or known_since is not None):
                # Running, or known upstream yet left out of the answer: wait on it, never pay again.
                attached.append(task_uuid)
                self.resolution.waiting[item] = task_uuid
            elif known_since is None and (error is None or not_found):
                # Unknown upstream: nothing was paid under this UUID yet, so submit this very UUID.
                to_submit.append(item)
            elif not_found and known_since is not None and self.clock() - known_since < self.not_found_grace:
                poll_again.append(item)  # accepted moments ago, not visible yet
            else:
                # It ran and failed (or stayed not found past the grace): only a new UUID gets a new attempt.
                renewed.append(f"{task_uuid} ({error.code if error else 'unknown'})")
                gens[item] += 1
                self.conflicted.pop(item, None)
                to_submit.append(item)
        for what, found_uuids in (
            ("finished earlier, reused without paying again", reused),
            ("still running, re-attached", attached),
            ("failed earlier, submitted anew under a new UUID", renewed),
        ):
            if found_uuids:
                log.info("%d MiniMax task(s) %s: %s", len(found_uuids), what, abbreviate(found_uuids))
        return poll_again + (self._submit(to_submit) if to_submit else [])

    def _submit(self, items: list[int]) -> list[int]:
        # Saved before submitting, so a crash right after the submit still finds these UUIDs.
        self.store.mark_submitting()
        self.store.save({i: self.resolution.generations[i] for i in items})
        tasks = [self.build_task(i, self.uuid_of(i)) for i in items]
        outcome = self.hook.submit_tasks(tasks)
        answers, accepted = group_batch(outcome), set(outcome.already_accepted)
        poll_again: list[int] = []
        for task, item in zip(tasks, items, strict=True):
            task_uuid = task.task_uuid
            results, error = task_state(task_uuid, answers.get(task_uuid), self.number_results)
            if results is not None:  # sync delivery answers at once
                self.resolution.finished[item] = results
            elif task_uuid in accepted:
                # Accepted earlier (a lost response, a concurrent try): poll it rather than pay again.
                self.conflicted.setdefault(item, self.clock())
                poll_again.append(item)
            elif error is not None:
                self.resolution.rejected[item] = error
            else:
                self.resolution.waiting[item] = task_uuid
        return poll_again

    def _too_many_generations(self, item: int) -> ApiError:
        from airflow_provider_minimax.models import ApiError

        return ApiError(
            code="tooManyGenerations",
            message=f"item {item} of {self.identity.task_id} failed {MAX_GENERATIONS} times; giving up",
            taskUUID=self.uuid_of(item),
        )
