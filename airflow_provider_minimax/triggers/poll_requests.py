"""One tick's getResponse requests: chunked, a few in flight at once, and a refused request narrowed down.

The shared poller hands every due UUID to :func:`fetch_in_chunks`. A request the server refuses
as a whole (a 400 naming no task) is split by :func:`bisect` until the refused UUIDs are found,
so only their waiters fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from airflow_provider_minimax.exceptions import MiniMaxError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.models import GetResponseTask
from airflow_provider_minimax.results import TaskBatchResult
from airflow_provider_minimax.task_progress import TaskItems, group_batch, is_transient, lone_not_found

log = logging.getLogger(__name__)

#: getResponse requests in flight at once in one tick: enough to overlap round trips; few enough
#: that httpcore's pool (which re-scans every connection for each request) stays cheap.
REQUESTS_IN_FLIGHT = 4
#: getResponse requests one tick may spend narrowing a request refused as a whole (400) down to
#: the refused UUIDs: one per chunk, then about 2 x log2(k) per refused UUID in a chunk of k.
MAX_BISECT_REQUESTS = 32


@dataclass(frozen=True)
class Refusal:
    """Why a UUID's poll was refused: narrowed down to it alone, or still in a refused group."""

    error: MiniMaxError
    uuid_refused: bool


def is_refused_as_a_whole(err: MiniMaxError) -> bool:
    """A 400 for the whole request (bad UUIDs, a shape the server will not take): worth splitting.

    :param err: what the request raised.
    """
    return err.status_code == 400 and not is_transient(err)


async def request(hook: MiniMaxHook, task_uuids: Sequence[str]) -> TaskBatchResult:
    """One getResponse request for ``task_uuids`` (the hook chunks it past ``max_tasks_per_request``).

    :param hook: the hook to poll with.
    :param task_uuids: UUIDs checked at registration: not validated again, thousands per tick.
    """
    polls = [GetResponseTask.model_construct(task_uuid=u) for u in task_uuids]
    return await hook.asubmit_tasks(polls)


async def fetch_in_chunks(hook: MiniMaxHook, task_uuids: list[str]) -> dict[str, TaskItems]:
    """The answers for ``task_uuids``, indexed by UUID: one request per ``max_tasks_per_request``,
    at most :data:`REQUESTS_IN_FLIGHT` at once, each chunk built and read in its own loop step.

    :param hook: the hook to poll with.
    :param task_uuids: the UUIDs due in this tick.
    """
    size = (await hook.aget_settings()).max_tasks_per_request
    chunks = iter([task_uuids[start : start + size] for start in range(0, len(task_uuids), size)])
    grouped: dict[str, TaskItems] = {}

    async def fetch_chunks(chunks: Iterator[list[str]]) -> None:
        for chunk in chunks:  # a shared iterator: no chunk is taken twice
            grouped.update(group_batch(await request(hook, chunk), settled_only=True))

    workers = [
        asyncio.create_task(fetch_chunks(chunks)) for _ in range(min(REQUESTS_IN_FLIGHT, len(task_uuids)))
    ]
    try:
        await asyncio.gather(*workers)
    finally:
        for worker in workers:  # one chunk failed: stop the others, the tick is retried whole
            worker.cancel()
    return grouped


async def bisect(
    hook: MiniMaxHook, task_uuids: list[str], err: MiniMaxError
) -> tuple[TaskBatchResult, dict[str, Refusal]]:
    """Split a request refused as a whole until the refused UUIDs are found (bounded requests).

    A request larger than ``max_tasks_per_request`` is first asked chunk by chunk (as the hook
    sent it), then each refused chunk is halved. UUIDs left unresolved when
    :data:`MAX_BISECT_REQUESTS` is spent are suspects: their waiters count a failed poll, as for
    a transient error, and are split again on their next tick.

    :param hook: the hook to poll with.
    :param task_uuids: the UUIDs of the refused request.
    :param err: what the refused request raised.
    """
    batch = TaskBatchResult()
    refused: dict[str, Refusal] = {}
    groups: list[tuple[list[str], MiniMaxError]] = [(task_uuids, err)]
    budget = MAX_BISECT_REQUESTS
    chunk = (await hook.aget_settings()).max_tasks_per_request
    while groups:
        group, error = groups.pop()
        lone = lone_not_found(group, error)
        if lone is not None:
            batch.extend(lone)
            continue
        if len(group) == 1 or budget <= 0:
            refusal = Refusal(error, uuid_refused=len(group) == 1)
            refused.update(dict.fromkeys(group, refusal))
            continue
        # Beyond one request's size, the hook sent chunks: ask each on its own, then halve.
        size = chunk if len(group) > chunk else (len(group) + 1) // 2
        for part in (group[start : start + size] for start in range(0, len(group), size)):
            budget -= 1
            try:
                batch.extend(await request(hook, part))
            except MiniMaxError as part_err:
                if not is_refused_as_a_whole(part_err):
                    raise
                groups.append((part, part_err))
    log.warning(
        "MiniMax refused a getResponse request as a whole (%s); the refused taskUUID(s): %s",
        err,
        ", ".join(u for u, r in refused.items() if r.uuid_refused) or "(not narrowed down yet)",
    )
    return batch, refused
