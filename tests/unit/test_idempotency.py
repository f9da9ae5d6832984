"""Never pay twice: deterministic taskUUIDs and the resume-or-submit decision, at the wire level."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import respx
from fake_sleep import FakeSleep
from hook_testlib import TASK_URL, make_hook
from task_api_fake import FakeTaskApi, MemoryStore

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.idempotency import (
    GENERATIONS_KEY,
    MAX_GENERATIONS,
    SUBMITTED_KEY,
    GenerationStore,
    TaskIdentity,
    request_fingerprint,
    resolve_and_submit,
)
from airflow_provider_minimax.models import TextInferenceTask

IDENTITY = TaskIdentity("dag", "task", "manual__2026-01-01", -1)


@pytest.fixture
def api() -> Iterator[FakeTaskApi]:
    fake = FakeTaskApi()
    with respx.mock(assert_all_called=False) as router:
        router.post(TASK_URL).mock(side_effect=fake)
        yield fake


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> MiniMaxHook:
    return make_hook(monkeypatch, max_retries=2)[0]


def builder(hook: MiniMaxHook, prompt: str = "hi", **params: Any) -> Any:
    def build(item: int, task_uuid: str) -> TextInferenceTask:
        return hook.new_text_inference(
            f"{prompt} #{item}", task_uuid=task_uuid, delivery_method="async", **params
        )

    return build


def uuid_of(hook: MiniMaxHook, item: int = 0, generation: int = 0, **params: Any) -> str:
    """The UUID resolve_and_submit uses for an item (identity + generation + request)."""
    task = builder(hook, **params)(item, IDENTITY.task_uuid())
    return IDENTITY.task_uuid(item, generation, request_fingerprint(task))


def resolve(
    hook: MiniMaxHook, store: GenerationStore | None = None, items: list[int] | None = None, **kw: Any
):
    return resolve_and_submit(hook, IDENTITY, builder(hook), items or [0], store or GenerationStore({}), **kw)


def store_context(store: MemoryStore) -> dict[str, Any]:
    return {"task_state_store": store}


def retried_store(**values: Any) -> MemoryStore:
    """The store of a task instance that an earlier try submitted for (its submit marker written)."""
    store = MemoryStore()
    store.values = {SUBMITTED_KEY: True, **values}
    return store


def request_kinds(api: FakeTaskApi) -> list[str]:
    """The task type of each request the API got, in order."""
    return [body[0]["taskType"] for body in api.bodies]


# ------------------------------------------------------------------ the UUID


def test_uuid_is_deterministic() -> None:
    assert IDENTITY.task_uuid(3, 1, "abc") == TaskIdentity(*dataclasses.astuple(IDENTITY)).task_uuid(
        3, 1, "abc"
    )


@pytest.mark.parametrize("args", [(0, 0, ""), (1, 0, ""), (0, 5, "f00d"), (7, 2, "beef")])
def test_uuid_is_version_4_shaped(args: tuple[int, int, str]) -> None:
    parsed = uuid.UUID(IDENTITY.task_uuid(*args))
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


@pytest.mark.parametrize(
    "changed",
    [
        {"dag_id": "dag2"},
        {"task_id": "task2"},
        {"run_id": "manual__2026-01-02"},
        {"map_index": 0},
    ],
)
def test_uuid_differs_for_every_identity_field(changed: dict[str, Any]) -> None:
    assert dataclasses.replace(IDENTITY, **changed).task_uuid() != IDENTITY.task_uuid()


@pytest.mark.parametrize("args", [(1, 0, ""), (0, 1, ""), (0, 0, "fp")])
def test_uuid_differs_for_item_generation_and_request(args: tuple[int, int, str]) -> None:
    assert IDENTITY.task_uuid(*args) != IDENTITY.task_uuid(0, 0, "")


def test_fields_cannot_collide_by_concatenation() -> None:
    assert TaskIdentity("a", "bc", "r").task_uuid() != TaskIdentity("ab", "c", "r").task_uuid()


def test_from_context_reads_the_task_instance() -> None:
    ti = type("TI", (), {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": 4})()
    assert TaskIdentity.from_context({"ti": ti}) == TaskIdentity("d", "t", "r", 4)


def test_fingerprint_ignores_the_uuid_but_not_the_request(hook: MiniMaxHook) -> None:
    build = builder(hook)
    assert request_fingerprint(build(0, IDENTITY.task_uuid(0))) == request_fingerprint(
        build(0, IDENTITY.task_uuid(1))
    )
    assert request_fingerprint(build(0, IDENTITY.task_uuid())) != request_fingerprint(
        builder(hook, prompt="edited")(0, IDENTITY.task_uuid())
    )


# ------------------------------------------------------------------ the decision table


def test_fresh_item_is_submitted_once_under_its_uuid(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    resolution = resolve(hook)
    expected = uuid_of(hook)
    assert api.submitted == [expected]
    assert resolution.waiting == {0: expected} and resolution.uuids == {0: expected}
    assert api.bodies[0] == [{"taskType": "getResponse", "taskUUID": expected}]  # asks first


def test_success_is_reused_without_submitting(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    api.set(uuid_of(hook), "success", "paid before")
    resolution = resolve(hook)
    assert not api.submissions
    assert resolution.finished[0][0].text == "paid before" and resolution.all_finished


def test_processing_is_re_attached_without_submitting(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    api.set(uuid_of(hook), "processing")
    assert resolve(hook).waiting == {0: uuid_of(hook)}
    assert not api.submissions


def test_partial_results_count_as_running(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    task_uuid = uuid_of(hook, number_results=2)
    api.set(task_uuid, "success")  # one item only, numberResults 2 asked
    resolution = resolve_and_submit(
        hook, IDENTITY, builder(hook, number_results=2), [0], GenerationStore({}), number_results=2
    )
    assert resolution.waiting == {0: task_uuid} and not api.submissions


def test_error_moves_to_a_new_generation_saved_before_the_submit(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    api.set(uuid_of(hook), "error")
    store = retried_store()
    next_uuid = uuid_of(hook, generation=1)
    saved_before_submit = []
    original_set = store.set

    def spy(key: str, value: Any, **kw: Any) -> None:
        saved_before_submit.append(next_uuid not in api.submissions)
        original_set(key, value, **kw)

    store.set = spy  # type: ignore[method-assign]
    resolution = resolve(hook, GenerationStore(store_context(store)))
    assert resolution.waiting == {0: next_uuid} and resolution.generations == {0: 1}
    assert api.submitted == [next_uuid]
    assert store.values[GENERATIONS_KEY] == {"0": 1} and saved_before_submit == [True]


def test_unknown_uuid_is_submitted_as_is(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    store = retried_store()
    resolve(hook, GenerationStore(store_context(store)))
    assert api.submitted == [uuid_of(hook)]
    assert not store.writes  # generation 0 costs no store write


def test_conflict_means_accepted_and_is_polled_not_paid_again(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    # The first submit attempt was accepted but its answer lost (503): the hook's retry of the
    # same request draws conflictTaskUUID, which must be read as "accepted", not "resubmit".
    api.lose_next_submit_response = True
    resolution = resolve(hook)
    assert resolution.waiting == {0: uuid_of(hook)}
    assert api.submissions == {uuid_of(hook): 2}  # the hook's retry; no second UUID paid for


def test_stored_generation_is_where_the_next_try_starts(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    store = retried_store(**{GENERATIONS_KEY: {"0": 2}})
    api.set(uuid_of(hook, generation=2), "processing")
    resolution = resolve(hook, GenerationStore(store_context(store)))
    assert resolution.waiting == {0: uuid_of(hook, generation=2)}
    assert list(api.polls) == [uuid_of(hook, generation=2)] and not api.submissions


def test_without_a_store_the_conflict_walk_finds_the_running_generation(
    hook: MiniMaxHook, api: FakeTaskApi
) -> None:
    # Airflow < 3.3: generation 0 failed, try 2 submitted generation 1, try 3 starts from 0 again.
    api.set(uuid_of(hook), "error")
    api.set(uuid_of(hook, generation=1), "processing")
    resolution = resolve(hook, GenerationStore({}))
    assert resolution.waiting == {0: uuid_of(hook, generation=1)}
    assert api.submissions == {uuid_of(hook, generation=1): 1}  # a refused attempt, nothing paid


def test_without_a_store_the_walk_reuses_a_later_success(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    api.set(uuid_of(hook), "error")
    api.set(uuid_of(hook, generation=1), "error")
    api.set(uuid_of(hook, generation=2), "success", "third time")
    resolution = resolve(hook, GenerationStore({}))
    assert resolution.finished[0][0].text == "third time"
    assert sum(api.submissions.values()) == 2 and len(api.tasks) == 3  # two conflicts, no new task


def test_an_edited_prompt_never_reuses_the_old_answer(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    api.set(uuid_of(hook), "success", "answer to the old prompt")
    resolution = resolve_and_submit(hook, IDENTITY, builder(hook, prompt="edited"), [0], GenerationStore({}))
    assert 0 in resolution.waiting and len(api.submissions) == 1


def test_items_are_decided_independently_in_one_poll_and_one_submit(
    hook: MiniMaxHook, api: FakeTaskApi
) -> None:
    api.set(uuid_of(hook, item=0), "success")
    api.set(uuid_of(hook, item=1), "processing")
    api.set(uuid_of(hook, item=2), "error")
    resolution = resolve(hook, items=[0, 1, 2, 3])
    assert set(resolution.finished) == {0} and set(resolution.waiting) == {1, 2, 3}
    assert resolution.generations == {0: 0, 1: 0, 2: 1, 3: 0}
    assert [len(body) for body in api.bodies] == [4, 2]  # one poll of 4, one submit of 2


def test_store_keeps_other_items_generations(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    store = retried_store(**{GENERATIONS_KEY: {"0": 1}})
    api.set(uuid_of(hook, item=1), "error")
    resolve(hook, GenerationStore(store_context(store)), items=[1])
    assert store.values[GENERATIONS_KEY] == {"0": 1, "1": 1}


def test_sync_delivery_results_are_finished_at_submit(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    def build(item: int, task_uuid: str) -> TextInferenceTask:
        return hook.new_text_inference("hi", task_uuid=task_uuid, delivery_method="sync")

    resolution = resolve_and_submit(hook, IDENTITY, build, [0], GenerationStore({}))
    assert resolution.finished[0][0].text and not resolution.waiting


def test_a_refused_submit_is_rejected_with_the_api_error(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    api.refuse[uuid_of(hook)] = {"code": "invalidSeed", "message": "bad"}
    resolution = resolve(hook)
    assert resolution.rejected[0].code == "invalidSeed" and not resolution.waiting


def test_gives_up_after_max_generations(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    store = retried_store(**{GENERATIONS_KEY: {"0": MAX_GENERATIONS}})
    resolution = resolve(hook, GenerationStore(store_context(store)))
    assert resolution.rejected[0].code == "tooManyGenerations"
    assert not api.bodies


def test_bad_input_makes_no_http_call(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    with pytest.raises(MiniMaxValidationError, match="temperature"):
        resolve_and_submit(hook, IDENTITY, builder(hook, temperature=7), [0], GenerationStore({}))
    assert not api.bodies


# ------------------------------------------------------------------ the submit marker


class OrderedStore(MemoryStore):
    """A task-state store that notes, for each write, how many requests the API had been sent."""

    def __init__(self, api: FakeTaskApi) -> None:
        super().__init__()
        self.api = api
        self.requests_before: list[tuple[str, int]] = []

    def set(self, key: str, value: Any, **kw: Any) -> None:
        self.requests_before.append((key, len(self.api.bodies)))
        super().set(key, value, **kw)


class Crash(BaseException):
    """The worker killed mid-try."""


class CrashAfterWrite(MemoryStore):
    """A task-state store whose worker dies right after a write has landed."""

    def set(self, key: str, value: Any, **kw: Any) -> None:
        super().set(key, value, **kw)
        raise Crash


def test_a_first_try_writes_the_marker_then_submits_without_polling(
    hook: MiniMaxHook, api: FakeTaskApi
) -> None:
    store = OrderedStore(api)
    resolution = resolve(hook, GenerationStore(store_context(store)), items=[0, 1])
    assert request_kinds(api) == ["textInference"] and len(api.bodies[0]) == 2
    assert store.requests_before == [(SUBMITTED_KEY, 0)]  # written before the first request
    assert resolution.waiting == {0: uuid_of(hook), 1: uuid_of(hook, item=1)}


@pytest.mark.parametrize(
    "context",
    [store_context(retried_store()), {}],
    ids=["marker present", "no store (Airflow < 3.3)"],
)
def test_polls_before_submitting_unless_the_store_says_nothing_was_submitted(
    hook: MiniMaxHook, api: FakeTaskApi, context: dict[str, Any]
) -> None:
    resolve(hook, GenerationStore(context))
    assert request_kinds(api) == ["getResponse", "textInference"]
    assert api.submitted == [uuid_of(hook)]


def test_later_calls_on_the_same_store_skip_the_poll_and_the_next_try_polls(
    hook: MiniMaxHook, api: FakeTaskApi
) -> None:
    # One execution's windows (or re-asks) share one store object: only a new try reads the marker again.
    store = MemoryStore()
    this_try = GenerationStore(store_context(store))
    resolve(hook, this_try, items=[0])
    resolve(hook, this_try, items=[1])
    resolve(hook, GenerationStore(store_context(store)), items=[2])
    assert request_kinds(api) == ["textInference", "textInference", "getResponse", "textInference"]
    assert [key for key, _ in store.writes] == [SUBMITTED_KEY]


@pytest.mark.parametrize(
    ("upstream", "placed"),
    [("success", "finished"), ("processing", "waiting")],
    ids=["reused", "re-attached"],
)
def test_a_lost_marker_meets_a_conflict_and_never_pays_twice(
    hook: MiniMaxHook, api: FakeTaskApi, fake_sleep: FakeSleep, upstream: str, placed: str
) -> None:
    # The UUID is known upstream but the store has no marker (cleared state, a concurrent try):
    # the submit skipped the poll, the API refused the known UUID, and the walk polled instead.
    api.set(uuid_of(hook), upstream)
    resolution = resolve(hook, GenerationStore(store_context(MemoryStore())), clock=FakeClock(fake_sleep))
    assert 0 in getattr(resolution, placed) and resolution.generations == {0: 0}
    assert request_kinds(api) == ["textInference", "getResponse"]
    assert api.submissions == {uuid_of(hook): 1} and len(api.tasks) == 1  # one refused attempt, no new task


def test_a_crash_between_the_marker_and_the_submit_polls_then_submits_once(
    hook: MiniMaxHook, api: FakeTaskApi
) -> None:
    crashed = CrashAfterWrite()
    with pytest.raises(Crash):
        resolve(hook, GenerationStore(store_context(crashed)))
    assert crashed.values == {SUBMITTED_KEY: True} and not api.bodies
    store = MemoryStore()
    store.values = crashed.values
    resolution = resolve(hook, GenerationStore(store_context(store)))
    assert request_kinds(api) == ["getResponse", "textInference"]  # not found, so submitted
    assert api.submissions == {uuid_of(hook): 1} and resolution.waiting == {0: uuid_of(hook)}


# ------------------------------------------------------------------ bounded walk, not-found grace


class FakeClock:
    """A monotonic clock that the fake sleep moves forward."""

    def __init__(self, sleeps: FakeSleep) -> None:
        self.sleeps = sleeps

    def __call__(self) -> float:
        return float(sum(self.sleeps.waits))


def test_a_lost_submit_then_an_omitted_uuid_is_waited_on_not_resubmitted(
    hook: MiniMaxHook, api: FakeTaskApi, fake_sleep: FakeSleep
) -> None:
    # The submit's answer is lost (503, the hook retries and meets conflictTaskUUID), then
    # getResponse leaves the UUID out of its answers: it is pending, never a reason to pay again.
    task_uuid = uuid_of(hook)
    api.lose_next_submit_response = True
    api.omit[task_uuid] = 10_000
    resolution = resolve(hook, clock=FakeClock(fake_sleep))
    assert resolution.waiting == {0: task_uuid}
    assert api.submissions == {task_uuid: 2}  # the lost one and the hook's retry: one task paid
    assert len(api.bodies) <= 4


def test_not_found_after_a_conflict_is_pending_within_the_grace(
    hook: MiniMaxHook, api: FakeTaskApi, fake_sleep: FakeSleep
) -> None:
    # Accepted (the answer was lost), then invisible for a few polls: eventual consistency.
    task_uuid = uuid_of(hook)
    api.lose_next_submit_response = True
    api.hide[task_uuid] = 3
    resolution = resolve(hook, clock=FakeClock(fake_sleep))
    assert resolution.waiting == {0: task_uuid} and resolution.generations == {0: 0}
    assert api.submissions == {task_uuid: 2}
    assert all(wait > 0 for wait in fake_sleep.waits[1:])


def test_not_found_past_the_grace_after_a_conflict_moves_on_with_bounded_requests(
    hook: MiniMaxHook, api: FakeTaskApi, fake_sleep: FakeSleep
) -> None:
    api.set(uuid_of(hook), "ghost")  # known upstream, yet getResponse says not found (expired)
    clock = FakeClock(fake_sleep)
    resolution = resolve(hook, clock=clock, not_found_grace=60)
    assert resolution.waiting == {0: uuid_of(hook, generation=1)}
    assert api.submitted == [uuid_of(hook), uuid_of(hook, generation=1)]
    assert clock() >= 60  # waited out the grace before paying for generation 1
    assert len(api.bodies) <= 20  # 1 s growing x1.5 to 10 s: about a dozen polls in 60 s


def test_an_unscoped_not_found_for_a_lone_uuid_reads_as_unknown(hook: MiniMaxHook, api: FakeTaskApi) -> None:
    # A server may answer a one-UUID getResponse with a whole-request 400 that names no task.
    api.unscoped_not_found = True
    resolution = resolve(hook)
    assert resolution.waiting == {0: uuid_of(hook)} and api.submitted == [uuid_of(hook)]
