"""Never pay twice: deterministic taskUUIDs per task instance, and the resume-or-submit decision.

A task instance's item ``i`` at generation ``g`` always has the same taskUUID (a version-4
shaped hash of the identity). A retried try asks ``getResponse`` first and submits only what
is neither finished nor running; the server refuses a known UUID with ``conflictTaskUUID``,
so even a crash between "submit" and "remember" cannot make the same work be paid twice.
The generation moves on only when a UUID's task has failed; Airflow 3.3's task-state store
remembers it so a later try starts there (without the store, the conflict walk finds it).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.hooks.responses import NOT_FOUND_CODE

if TYPE_CHECKING:
    from airflow_provider_minimax.hooks.minimax import MiniMaxHook
    from airflow_provider_minimax.models import ApiError, TaskResult, TextInferenceTask

log = logging.getLogger(__name__)

GENERATIONS_KEY = "minimax_generations"
#: A UUID's generation moves on only after its task failed; this bounds the conflict walk.
MAX_GENERATIONS = 32


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

    def task_uuid(self, item_index: int = 0, generation: int = 0) -> str:
        """The taskUUID of one item at one generation: a SHA-256 of the identity, shaped as UUID v4.

        :param item_index: the item (row, prompt) within the task instance.
        :param generation: bumped each time the item's previous task failed.
        """
        key = "\x1f".join(
            map(str, (self.dag_id, self.task_id, self.run_id, self.map_index, item_index, generation))
        )
        digest = hashlib.sha256(key.encode()).digest()[:16]
        return str(uuid.UUID(bytes=digest, version=4))


@dataclass
class Resolution:
    """What a try should do next, item by item.

    :param finished: items whose task already succeeded, with their results (not resubmitted).
    :param waiting: items accepted or still running, with the UUID to wait on.
    :param rejected: items the API refused at submit, with its error.
    :param generations: the generation each item is at now.
    """

    finished: dict[int, list[TaskResult]] = field(default_factory=dict)
    waiting: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, ApiError] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)

    @property
    def submitted_nothing_new(self) -> bool:
        """Whether every item was found finished or running."""
        return not self.waiting and not self.rejected

    def uuid_to_item(self, identity: TaskIdentity) -> dict[str, int]:
        """Map each item's current UUID back to its index."""
        return {identity.task_uuid(i, g): i for i, g in self.generations.items()}


class GenerationStore:
    """Where an item's generation survives between tries: the task-state store, when there is one.

    :param context: the Airflow task context (``task_state_store`` exists from Airflow 3.3).
    """

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._store = context.get("task_state_store")

    def load(self) -> dict[int, int]:
        """The generations remembered by earlier tries."""
        if self._store is None:
            return {}
        saved = self._store.get(GENERATIONS_KEY) or {}
        return {int(item): int(gen) for item, gen in dict(saved).items()}

    def save(self, generations: Mapping[int, int]) -> None:
        """Remember generations above zero (zero is the default, so it costs no space)."""
        if self._store is not None:
            self._store.set(GENERATIONS_KEY, {str(i): g for i, g in generations.items() if g})


def _is_complete(items: list[TaskResult], number_results: int) -> bool:
    succeeded = {item.result_index or 0 for item in items if item.status == "success"}
    return len(succeeded) >= number_results


def resolve_and_submit(
    hook: MiniMaxHook,
    identity: TaskIdentity,
    build_task: Callable[[int, str], TextInferenceTask],
    item_indexes: list[int],
    store: GenerationStore,
    number_results: int = 1,
) -> Resolution:
    """Reuse what earlier tries paid for and submit only the rest, in as few requests as possible.

    Every task is built (validated) before the first HTTP call, so bad input costs nothing.

    :param hook: the hook to poll and submit with.
    :param identity: the task instance.
    :param build_task: builds the async textInference task of an item for a given taskUUID.
    :param item_indexes: the items of this task instance.
    :param store: where generations are remembered between tries.
    :param number_results: results per task, to tell a finished task from a partial one.
    """
    generations = {i: 0 for i in item_indexes} | {
        i: g for i, g in store.load().items() if i in set(item_indexes)
    }
    for item in item_indexes:
        build_task(item, identity.task_uuid(item, generations[item]))
    resolution = Resolution(generations=generations)
    pending = list(item_indexes)
    for _ in range(MAX_GENERATIONS):
        if not pending:
            break
        pending = _round(hook, identity, build_task, pending, resolution, store, number_results)
    for item in pending:
        resolution.rejected[item] = _too_many_generations(identity, item)
    return resolution


def _round(
    hook: MiniMaxHook,
    identity: TaskIdentity,
    build_task: Callable[[int, str], TextInferenceTask],
    items: list[int],
    resolution: Resolution,
    store: GenerationStore,
    number_results: int,
) -> list[int]:
    """Poll the items' current UUIDs, submit those not running, and return the ones to walk on."""
    gens = resolution.generations
    uuids = {identity.task_uuid(i, gens[i]): i for i in items}
    polled = hook.get_responses(list(uuids))
    to_submit: list[int] = []
    for task_uuid, item in uuids.items():
        found = polled.results_for(task_uuid)
        error = polled.error_for(task_uuid)
        if _is_complete(found, number_results):
            resolution.finished[item] = found
        elif error is None and found:
            resolution.waiting[item] = task_uuid
            log.info("Item %d: task %s is still running; re-attaching", item, task_uuid)
        else:
            if error is not None and error.code != NOT_FOUND_CODE:
                # The task ran and failed: only a new UUID gets a new attempt.
                log.info("Item %d: task %s failed (%s); submitting anew", item, task_uuid, error.code)
                gens[item] += 1
            to_submit.append(item)
    if not to_submit:
        return []
    store.save(gens)  # Before submitting, so a crash right after still finds these UUIDs.
    tasks = [build_task(i, identity.task_uuid(i, gens[i])) for i in to_submit]
    outcome = hook.submit_tasks(tasks)
    by_uuid = {task.task_uuid: i for task, i in zip(tasks, to_submit, strict=True)}
    walk_on: list[int] = []
    for task_uuid, item in by_uuid.items():
        error = outcome.error_for(task_uuid)
        if task_uuid in outcome.already_accepted:
            # Known to the API but not running or finished when polled: look at the next generation.
            gens[item] += 1
            walk_on.append(item)
        elif error is not None:
            resolution.rejected[item] = error
        else:
            resolution.waiting[item] = task_uuid
    return walk_on


def _too_many_generations(identity: TaskIdentity, item: int) -> ApiError:
    from airflow_provider_minimax.models import ApiError

    return ApiError(
        code="tooManyGenerations",
        message=f"item {item} of {identity.task_id} failed {MAX_GENERATIONS} times; giving up",
    )
