"""The shared poller: coalesced getResponse requests, lifecycle, failure rules (respx, tiny intervals)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from hook_testlib import CONN_ID, SECRET_KEY, TASK_URL, set_connection, v4
from poll_testlib import FAST, PollApi, mocked_poll_api

from airflow_provider_minimax import heap_freezer
from airflow_provider_minimax.task_progress import sample_of
from airflow_provider_minimax.triggers import poll_requests
from airflow_provider_minimax.triggers import poller as poller_module
from airflow_provider_minimax.triggers.poller import TaskPoller
from airflow_provider_minimax.triggers.registration import DEADLINE, expire


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[PollApi]:
    yield from mocked_poll_api(monkeypatch)


async def wait(poller: TaskPoller, uuids: list[str], **kwargs: Any) -> object:
    registration = poller.register(uuids, **{**FAST, **kwargs})
    try:
        return await asyncio.wait_for(registration.future, 5)
    finally:
        poller.unregister(registration)


async def test_triggers_on_one_connection_share_one_poller_per_loop(api):
    assert TaskPoller.shared(CONN_ID) is TaskPoller.shared(CONN_ID)
    assert TaskPoller.shared(CONN_ID) is not TaskPoller.shared("other_conn")


async def test_many_waiters_share_each_tick_request(api):
    poller = TaskPoller.shared(CONN_ID)
    uuids = [v4(i) for i in range(50)]
    endings = await asyncio.gather(*(wait(poller, [u]) for u in uuids))
    assert endings == [None] * 50
    assert len(api.requests) <= 4  # 2 polls per task, 50 tasks: 100 requests without sharing
    assert Counter(u for r in api.requests for u in r) == dict.fromkeys(uuids, 2)


async def test_request_size_is_bounded_by_max_tasks_per_request(api, monkeypatch):
    set_connection(monkeypatch, max_retries=0, max_tasks_per_request=10)
    poller = TaskPoller.shared(CONN_ID)
    await asyncio.gather(*(wait(poller, [v4(i)]) for i in range(25)))
    assert max(len(r) for r in api.requests) == 10


async def test_a_waiter_due_soon_joins_an_earlier_tick(api):
    api.finish_after = 1
    poller = TaskPoller.shared(CONN_ID)
    # B's first poll (0.12 s) is within a quarter of its wait of A's (0.1 s): one request for both.
    await asyncio.gather(
        wait(poller, [v4(1)], poll_interval=0.1, max_poll_interval=0.1),
        wait(poller, [v4(2)], poll_interval=0.12, max_poll_interval=0.12),
    )
    assert api.requests == [[v4(1), v4(2)]]


async def test_a_waiter_is_resolved_only_when_all_its_tasks_finished(api):
    poller = TaskPoller.shared(CONN_ID)
    first = poller.register([v4(1), v4(2)], **FAST)
    api.polls[v4(2)] = -3  # v4(2) needs three more polls than v4(1)
    assert await asyncio.wait_for(first.future, 5) is None
    assert set(first.progress.results) == {v4(1), v4(2)}
    assert api.requests[-1] == [v4(2)]  # a finished task is not polled again
    poller.unregister(first)


async def test_the_last_waiter_leaving_stops_the_poller_and_closes_its_client(api):
    poller = TaskPoller.shared(CONN_ID)
    api.finish_after = 1000
    registration = poller.register([v4(1)], **FAST)
    while not api.requests:
        await asyncio.sleep(0.01)
    assert poller.hook._async_client is not None
    poller.unregister(registration)
    with pytest.raises(asyncio.CancelledError):
        await poller.task  # type: ignore[misc]
    assert poller.hook._async_client is None
    assert TaskPoller.shared(CONN_ID) is not poller
    with pytest.raises(RuntimeError, match="stopped"):
        poller.register([v4(2)], **FAST)


async def test_the_poller_stops_by_itself_once_every_waiter_is_resolved(api):
    poller = TaskPoller.shared(CONN_ID)
    assert await wait(poller, [v4(1)]) is None
    await asyncio.wait_for(poller.task, 5)  # type: ignore[arg-type]
    assert poller.hook._async_client is None and poller.registrations == 0


async def test_a_transient_burst_within_the_budget_is_survived(api):
    api.fail_next = [httpx.Response(503), httpx.Response(503)]
    assert await wait(TaskPoller.shared(CONN_ID), [v4(1)], max_consecutive_failures=3) is None


@pytest.mark.parametrize(
    ("replies", "budget", "error_name", "requests"),
    [
        ([httpx.Response(503)] * 3, 3, "MiniMaxServerError", 3),
        # A 401 re-reads the connection once; refused again, the wait fails.
        ([httpx.Response(401, json={"errors": [{"code": "invalidApiKey"}]})] * 2, 5, "MiniMaxAuthError", 2),
    ],
)
async def test_polling_fails_after_the_budget_or_at_once_on_auth(api, replies, budget, error_name, requests):
    api.fail_next = list(replies)
    ending = await wait(TaskPoller.shared(CONN_ID), [v4(1)], max_consecutive_failures=budget)
    assert type(ending).__name__ == error_name
    assert len(replies) - len(api.fail_next) == requests


async def test_a_missing_connection_fails_the_wait_instead_of_hanging(api):
    ending = await wait(TaskPoller.shared("minimax_nowhere"), [v4(1)])
    assert isinstance(ending, Exception) and "minimax_nowhere" in str(ending)


async def test_a_deadline_timer_settles_a_wait_and_the_poller_ignores_it(api):
    api.finish_after = 1000
    poller = TaskPoller.shared(CONN_ID)
    registration = poller.register([v4(1)], **FAST)
    asyncio.get_running_loop().call_later(0.05, expire, registration.future)
    assert await registration.future is DEADLINE
    poller.unregister(registration)


async def test_a_wait_settled_before_its_trigger_unregisters_is_dropped_not_polled(api):
    api.finish_after = 1000
    poller = TaskPoller.shared(CONN_ID)
    registration = poller.register([v4(1)], **FAST)
    expire(registration.future)  # the deadline passed; the trigger has not run to unregister yet
    await asyncio.wait_for(poller.task, 5)  # the poller drops it and stops: no busy loop
    assert api.requests == []


async def test_a_large_tick_sends_a_few_requests_at_a_time_and_polls_each_task_once(monkeypatch):
    set_connection(monkeypatch, max_retries=0, max_tasks_per_request=10)
    api, in_flight, most = PollApi(finish_after=1), 0, 0

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return api(request)

    with respx.mock(assert_all_called=False) as router:
        router.post(TASK_URL).mock(side_effect=slow_answer)
        uuids = [v4(i) for i in range(95)]
        assert await wait(TaskPoller.shared(CONN_ID), uuids) is None
    assert most == poll_requests.REQUESTS_IN_FLIGHT  # 10 requests in the tick, 4 at a time
    assert sorted(u for r in api.requests for u in r) == sorted(uuids)


@pytest.mark.parametrize(
    ("registrations", "freezes"),
    [
        (1, 1),  # the first registration freezes the start-up heap
        (10, 1),  # then nothing until STEP more registrations
        (11, 2),
        (31, 4),  # registrations count, not new highs: waiters come and go, the new ones get frozen
    ],
)
def test_the_heap_is_frozen_at_start_and_per_step_of_registrations(monkeypatch, registrations, freezes):
    calls: list[str] = []
    monkeypatch.setattr(heap_freezer.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(heap_freezer.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(heap_freezer.HeapFreezer, "STEP", 10)
    freezer = heap_freezer.HeapFreezer()
    for _ in range(registrations):
        freezer.note_registration()
        freezer.freeze_if_due()
    # Every freeze but the first collects first, so no garbage of that moment becomes permanent.
    assert calls == ["freeze"] + ["collect", "freeze"] * (freezes - 1)


def test_a_due_freeze_waits_for_a_moment_without_requests_in_flight(monkeypatch):
    frozen: list[int] = []
    monkeypatch.setattr(heap_freezer.gc, "freeze", lambda: frozen.append(1))
    freezer = heap_freezer.HeapFreezer()
    for _ in range(5):
        freezer.note_registration()  # the poller is mid-tick: it only counts
    assert frozen == []
    freezer.freeze_if_due()
    freezer.freeze_if_due()
    assert frozen == [1]


async def test_the_poller_freezes_the_heap_while_it_sleeps(api, monkeypatch):
    freezer = heap_freezer.HeapFreezer()
    monkeypatch.setattr(poller_module, "heap_freezer", freezer)
    frozen: list[int] = []
    monkeypatch.setattr(heap_freezer.gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setattr(heap_freezer.gc, "collect", lambda: 0)
    monkeypatch.setattr(freezer, "STEP", 2)
    poller = TaskPoller.shared(CONN_ID)
    slow = {"poll_interval": 5.0, "max_poll_interval": 5.0}
    registrations = [poller.register([v4(0)], **slow)]
    await asyncio.sleep(0)  # the poller starts and sleeps: the start-up heap is frozen
    assert frozen == [1]
    registrations += [poller.register([v4(i)], **slow) for i in (1, 2, 3, 4)]
    assert frozen == [1, 1, 1]  # at registrations 3 and 5, the poller asleep
    for registration in registrations:
        poller.unregister(registration)


def test_freezing_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MINIMAX__FREEZE_GC", "false")
    monkeypatch.setattr(heap_freezer.gc, "freeze", lambda: pytest.fail("froze although turned off"))
    freezer = heap_freezer.HeapFreezer()
    freezer.note_registration()
    freezer.freeze_if_due()


@pytest.mark.parametrize(
    ("frozen_before", "setting", "freezes"),
    [
        (0, "true", 1),  # a batch freezes the heap it starts with
        (5000, "true", 0),  # once: a heap frozen already (an earlier window, a poller) is left as it is
        (0, "false", 0),  # [minimax] freeze_gc = False
    ],
)
def test_a_batch_freezes_the_heap_once(monkeypatch, frozen_before, setting, freezes):
    monkeypatch.setenv("AIRFLOW__MINIMAX__FREEZE_GC", setting)
    frozen: list[int] = []
    monkeypatch.setattr(heap_freezer.gc, "get_freeze_count", lambda: frozen_before)
    monkeypatch.setattr(heap_freezer.gc, "freeze", lambda: frozen.append(1))
    heap_freezer.freeze_heap()
    assert len(frozen) == freezes


async def test_a_401_re_reads_the_connection_and_polls_on_with_the_rotated_key(api, monkeypatch):
    api.valid_key = "sk-rotated"
    # The key is rotated in the connection while the poller still holds the old one.
    api.on_refused_key = lambda: set_connection(monkeypatch, max_retries=0, password="sk-rotated")
    assert await wait(TaskPoller.shared(CONN_ID), [v4(1)]) is None
    assert api.keys[0] == SECRET_KEY and set(api.keys[1:]) == {"sk-rotated"}


async def test_a_key_refused_again_later_is_re_read_again(api, monkeypatch):
    api.valid_key, api.finish_after = "sk-2", 3
    # Each refusal finds the server's current key already in the connection (a rotation).
    api.on_refused_key = lambda: set_connection(monkeypatch, max_retries=0, password=api.valid_key)
    poller = TaskPoller.shared(CONN_ID)
    registration = poller.register([v4(1)], **FAST)
    async with asyncio.timeout(5):
        while "sk-2" not in api.keys:
            await asyncio.sleep(0.005)
    api.valid_key = "sk-3"  # a second rotation after a successful poll: one more re-read
    assert await asyncio.wait_for(registration.future, 5) is None
    assert api.keys[-1] == "sk-3"


async def test_a_request_refused_as_a_whole_fails_only_the_waiters_of_the_refused_uuid(api):
    poller = TaskPoller.shared(CONN_ID)
    api.poison = {v4(5)}
    registrations = [poller.register([v4(i)], **FAST) for i in range(16)]  # all due in one tick
    endings = await asyncio.wait_for(asyncio.gather(*(r.future for r in registrations)), 5)
    assert [type(e).__name__ for e in endings] == ["NoneType"] * 5 + ["MiniMaxInvalidRequestError"] + [
        "NoneType"
    ] * 10
    assert "invalidTaskUUID" in str(endings[5])
    # First tick: the refused request, then 2 per halving (16 → 1: 4 levels); second tick: 1 request.
    assert len(api.requests) <= 1 + 2 * 4 + 1


async def test_splitting_a_refused_request_is_bounded_per_tick(api, monkeypatch):
    monkeypatch.setattr(poll_requests, "MAX_BISECT_REQUESTS", 2)
    api.poison = {v4(0), v4(1)}
    poller = TaskPoller.shared(CONN_ID)
    endings = await asyncio.gather(*(wait(poller, [v4(i)], max_consecutive_failures=3) for i in range(8)))
    # Waiters not narrowed down within a tick's budget count a failed poll and are split again
    # next tick: the innocent ones finish, only the refused UUIDs' waiters fail.
    assert [type(e).__name__ for e in endings] == ["MiniMaxInvalidRequestError"] * 2 + ["NoneType"] * 6
    assert len(api.requests) <= 4 * (1 + 2)  # at most 1 + MAX_BISECT_REQUESTS per tick


async def test_an_unscoped_not_found_for_one_uuid_is_that_tasks_answer_and_gets_the_grace(api):
    poller = TaskPoller.shared(CONN_ID)
    unscoped = {"errors": [{"code": "taskFailedOrNotFound", "message": "not found"}]}
    api.fail_next = [httpx.Response(400, json=unscoped)] * 2  # the whole request, then its half
    registration = poller.register([v4(1), v4(2)], **FAST, not_found_until=time.time() + 60)
    assert await asyncio.wait_for(registration.future, 5) is None
    assert set(registration.progress.results) == {v4(1), v4(2)}
    poller.unregister(registration)


async def test_a_refused_request_of_several_chunks_is_split_chunk_first(api, monkeypatch):
    set_connection(monkeypatch, max_retries=0, max_tasks_per_request=8)
    api.finish_after, api.poison = 1, {v4(21)}
    poller = TaskPoller.shared(CONN_ID)
    registrations = [poller.register([v4(i)], **FAST) for i in range(32)]  # all due in one tick
    endings = await asyncio.wait_for(asyncio.gather(*(r.future for r in registrations)), 5)
    assert [i for i, e in enumerate(endings) if e is not None] == [21]
    # 4 chunks refused as one call; then one request per chunk (4), then 8 → 1 in halves (2 x 3).
    assert len(api.requests) <= 4 + 4 + 6


async def test_a_large_registration_asks_one_sample_per_tick_while_most_tasks_run(api, monkeypatch):
    set_connection(monkeypatch, max_retries=0, max_tasks_per_request=10)
    api.finish_after = 1000
    uuids = [v4(i) for i in range(60)]
    poller = TaskPoller.shared(CONN_ID)
    registration = poller.register(uuids, **FAST)
    async with asyncio.timeout(5):
        while len(api.requests) < 3:
            await asyncio.sleep(0.005)
    assert api.requests[:3] == [uuids[::6]] * 3  # one request per tick: 10 of the 60, spread over them
    api.finish_after = 1  # the sample finishes: the rest is polled in the same tick
    assert await asyncio.wait_for(registration.future, 5) is None
    assert set(registration.progress.results) == set(uuids)
    assert api.requests[-6] == uuids[::6]
    assert sorted(u for r in api.requests[-5:] for u in r) == sorted(set(uuids) - set(uuids[::6]))
    poller.unregister(registration)


async def test_a_sample_mostly_still_running_leaves_the_rest_unasked(api, monkeypatch):
    set_connection(monkeypatch, max_retries=0, max_tasks_per_request=10)
    api.finish_after = 1
    uuids = [v4(i) for i in range(60)]
    for task_uuid in uuids[::12]:  # half of the sample finishes, the other half runs on
        api.polls[task_uuid] = -1000
    poller = TaskPoller.shared(CONN_ID)
    registration = poller.register(uuids, **FAST)
    async with asyncio.timeout(5):
        while len(api.requests) < 2:
            await asyncio.sleep(0.005)
    assert api.requests[0] == uuids[::6]
    # The next tick samples the 55 tasks not seen finished: the 50 unasked ones were left alone.
    running = [u for u in uuids if u not in uuids[6::12]]
    assert api.requests[1] == sample_of(running, 10)
    poller.unregister(registration)


async def test_a_refused_uuid_outside_the_sample_is_narrowed_down_when_the_rest_is_polled(api, monkeypatch):
    set_connection(monkeypatch, max_retries=0, max_tasks_per_request=10)
    api.finish_after, api.poison = 1, {v4(1)}  # not in the sample uuids[::6]
    uuids = [v4(i) for i in range(60)]
    registration = TaskPoller.shared(CONN_ID).register(uuids, **FAST)
    ending = await asyncio.wait_for(registration.future, 5)
    assert type(ending).__name__ == "MiniMaxInvalidRequestError"
    assert api.requests[0] == uuids[::6]  # the sample asked alone, answered in full
