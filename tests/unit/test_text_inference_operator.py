"""MiniMaxTextInferenceOperator at the wire level: deferral, resume, results, errors, re-asks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import respx
from airflow.providers.common.compat.sdk import DAG, AirflowException, TaskDeferred
from fake_sleep import FakeSleep
from hook_testlib import CONN_ID, SECRET_KEY, TASK_URL, set_connection, task_result, v4
from pydantic import BaseModel
from task_api_fake import FakeTaskApi, MemoryStore

from airflow_provider_minimax.exceptions import (
    MiniMaxAuthError,
    MiniMaxConfigurationError,
    MiniMaxError,
    MiniMaxOutputValidationError,
    MiniMaxTaskFailedError,
    MiniMaxTimeoutError,
    MiniMaxValidationError,
)
from airflow_provider_minimax.idempotency import RESUME_KEY, WAITING_KEY
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.results import TasksOutcome
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

#: The usage counters the fake API does not send: null, never 0.
NO_DETAILS = {"thinking_tokens": None, "cached_tokens": None, "reasoning_tokens": None}


class City(BaseModel):
    name: str
    population: int


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep) -> None:
    set_connection(monkeypatch, max_retries=1)


@pytest.fixture
def api() -> Iterator[FakeTaskApi]:
    fake = FakeTaskApi()
    with respx.mock(assert_all_called=False) as router:
        router.post(TASK_URL).mock(side_effect=fake)
        yield fake


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def context(store: MemoryStore) -> dict[str, Any]:
    ti = type("TI", (), {"dag_id": "dag", "task_id": "ask", "run_id": "run-1", "map_index": -1})()
    return {"ti": ti, "task_state_store": store}


#: The kwargs of a first deferral, for resumes that do not start from a real one.
FIRST = {"attempt": 0, "end_time": time.time() + 600}


def operator(**kwargs: Any) -> MiniMaxTextInferenceOperator:
    params: dict[str, Any] = {"task_id": "ask", "conn_id": CONN_ID, "deferrable": True, "prompt": "Hi"}
    return MiniMaxTextInferenceOperator(**{**params, **kwargs})


def deferral(op: MiniMaxTextInferenceOperator, context: dict[str, Any], **kwargs: Any) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        if kwargs:
            op.execute_complete(context, **kwargs)
        else:
            op.execute(context)
    return info.value


def success_event(task_uuid: str, *texts: str, **fields: Any) -> dict[str, Any]:
    items = [
        {**task_result(task_uuid, text, resultIndex=i, **fields), "status": "success"}
        for i, text in enumerate(texts or ("hello",))
    ]
    return TasksOutcome(status="success", task_uuids=[task_uuid], results={task_uuid: items}).to_event()


# ------------------------------------------------------------------ construction and templating


@pytest.mark.parametrize("kwargs", [{}, {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}])
def test_needs_exactly_one_of_prompt_or_messages(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one of 'prompt' or 'messages'"):
        MiniMaxTextInferenceOperator(task_id="t", **kwargs)


def test_output_type_must_be_a_pydantic_model() -> None:
    with pytest.raises(TypeError, match="output_type"):
        MiniMaxTextInferenceOperator(task_id="t", prompt="p", output_type=dict)  # type: ignore[arg-type]


def test_every_parameter_is_templated_and_prompt_files_render() -> None:
    fields = set(MiniMaxTextInferenceOperator.template_fields)
    assert {
        "prompt",
        "messages",
        "system_prompt",
        "model",
        "temperature",
        "wait_timeout",
        "conn_id",
    } <= fields
    assert set(MiniMaxTextInferenceOperator.template_ext) == {".txt", ".md", ".j2"}


@pytest.mark.parametrize("suffix", [".txt", ".md", ".j2"])
def test_prompt_and_system_prompt_files_are_rendered(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"prompt{suffix}").write_text("Describe {{ params.city }}")
    (tmp_path / f"system{suffix}").write_text("You write for {{ params.who }}")
    with DAG("templated", template_searchpath=[str(tmp_path)], schedule=None):
        op = MiniMaxTextInferenceOperator(
            task_id="t", prompt=f"prompt{suffix}", system_prompt=f"system{suffix}", temperature="{{ 0.25 }}"
        )
    op.render_template_fields({"params": {"city": "Oslo", "who": "kids"}})
    assert (op.prompt, op.system_prompt, op.temperature) == ("Describe Oslo", "You write for kids", "0.25")


def test_a_sentence_ending_in_md_is_a_prompt_not_a_file(tmp_path: Path) -> None:
    with DAG("sentence", template_searchpath=[str(tmp_path)], schedule=None):
        op = MiniMaxTextInferenceOperator(task_id="t", prompt="Summarise {{ params.f }} README.md")
    op.render_template_fields({"params": {"f": "the"}})
    assert op.prompt == "Summarise the README.md"


# ------------------------------------------------------------------ deferral


def test_execute_defers_with_the_trigger_and_resume_kwargs(api: FakeTaskApi, context: dict[str, Any]) -> None:
    op = operator(wait_timeout=timedelta(minutes=5), poll_interval=2, max_poll_interval=8, number_results=2)
    before = time.time()
    deferred = deferral(op, context)
    (task_uuid,) = api.submitted
    assert isinstance(deferred.trigger, MiniMaxTaskTrigger) and deferred.method_name == "execute_complete"
    path, kwargs = deferred.trigger.serialize()
    assert path == "airflow_provider_minimax.triggers.minimax.MiniMaxTaskTrigger"
    assert kwargs["task_uuids"] == [task_uuid] and kwargs["conn_id"] == CONN_ID
    assert (kwargs["poll_interval"], kwargs["max_poll_interval"], kwargs["number_results"]) == (2, 8, 2)
    assert before + 300 <= kwargs["end_time"] <= time.time() + 300
    assert deferred.kwargs == {"attempt": 0, "end_time": kwargs["end_time"], "spent": mock.ANY}
    assert op.task_uuids == [task_uuid] and context["task_state_store"].values[WAITING_KEY] == [task_uuid]
    submitted = api.bodies[-1][0]
    assert submitted["deliveryMethod"] == "async" and submitted["messages"][0]["content"] == "Hi"


def test_no_key_in_trigger_kwargs_or_resume_kwargs(api: FakeTaskApi, context: dict[str, Any]) -> None:
    deferred = deferral(operator(), context)
    assert SECRET_KEY not in json.dumps([deferred.trigger.serialize(), deferred.kwargs])
    assert "Hi" not in json.dumps(deferred.trigger.serialize())  # nor the prompt


def test_already_finished_task_returns_without_deferring_or_submitting(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    op = operator()
    deferral(op, context)  # try 1 submits, then the worker dies
    api.set(op.task_uuids[0], "success", "paid once")
    result = operator().execute(context)  # try 2
    assert result["text"] == "paid once" and sum(api.submissions.values()) == 1


def test_running_task_is_re_attached_by_a_retry(api: FakeTaskApi, context: dict[str, Any]) -> None:
    first = deferral(operator(), context)
    second = deferral(operator(), context)
    assert second.trigger.serialize()[1]["task_uuids"] == first.trigger.serialize()[1]["task_uuids"]
    assert sum(api.submissions.values()) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"temperature": 3}, "temperature"),
        ({"number_results": 9}, "number_results"),
        ({"wait_timeout": 0}, "wait_timeout"),
        ({"poll_interval": 5, "max_poll_interval": 1}, "max_poll_interval"),
        ({"delivery": "stream"}, "delivery"),
        ({"messages": [{"role": "assistant", "content": "x"}], "prompt": None}, "messages"),
        ({"output_type": City, "number_results": 2}, "number_results"),
        ({"not_found_grace": -1}, "not_found_grace"),
        ({"poll_interval": True}, "poll_interval: .*not a boolean"),
        ({"number_results": True}, "number_results: .*not a boolean"),
        ({"prompt": " \n\t "}, "prompt"),
        ({"messages": [{"role": "user", "content": "  "}], "prompt": None}, r"messages\[0\]\.content"),
    ],
)
def test_bad_parameters_fail_before_any_http_call(
    api: FakeTaskApi, context: dict[str, Any], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(MiniMaxValidationError, match=field):
        operator(**kwargs).execute(context)
    assert not api.bodies


@pytest.mark.parametrize("deferrable", [True, False])
def test_a_chat_connection_is_refused_naming_the_api_needed(
    api: FakeTaskApi, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    set_connection(monkeypatch, api="chat")
    with pytest.raises(MiniMaxConfigurationError, match=r"needs a connection on the task API.*chat API"):
        operator(deferrable=deferrable).execute(context)
    assert not api.bodies


def test_the_trigger_carries_the_not_found_grace_as_an_epoch(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    before = time.time()
    kwargs = deferral(operator(not_found_grace=timedelta(seconds=30)), context).trigger.serialize()[1]
    assert before + 30 <= kwargs["not_found_until"] <= time.time() + 30
    default = deferral(operator(), context).trigger.serialize()[1]["not_found_until"]
    assert before + 120 <= default <= time.time() + 120


@pytest.mark.parametrize("deferrable", [True, False])
def test_a_lost_submit_and_an_omitted_uuid_cost_a_bounded_number_of_requests(
    api: FakeTaskApi, context: dict[str, Any], deferrable: bool
) -> None:
    # The loop: the submit's answer is lost, the hook's retry meets conflictTaskUUID and
    # getResponse leaves the UUID out: once ~1,460 requests in 1.5 s, 713 of them refused submits.
    learn = operator()
    deferral(learn, context)  # learn the UUID, then forget the task upstream
    api.tasks.clear(), api.submissions.clear(), api.bodies.clear()
    api.lose_next_submit_response, api.finish_after_polls = True, 8
    api.omit.update(dict.fromkeys(learn.task_uuids, 6))
    op = operator(deferrable=deferrable)
    if deferrable:
        deferral(op, context)
    else:
        assert op.execute(context)["text"].startswith("answer")
    assert sum(api.submissions.values()) == 2  # the lost attempt and the hook's retry
    assert len(api.bodies) <= (4 if deferrable else 4 + 8)  # poll, submit + its retry, poll; then waits


def test_not_found_right_after_the_accepted_submit_is_pending_in_the_worker(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    api.invisible_for, api.finish_after_polls = 2, 3  # eventual consistency, then the answer
    result = operator(deferrable=False).execute(context)
    assert result["text"].startswith("answer") and sum(api.submissions.values()) == 1


def test_not_found_past_the_grace_fails_the_task(api: FakeTaskApi, context: dict[str, Any]) -> None:
    api.invisible_for = 10_000
    with pytest.raises(MiniMaxTaskFailedError, match="taskFailedOrNotFound"):
        operator(deferrable=False, not_found_grace=0).execute(context)
    assert sum(api.submissions.values()) == 1


def test_refused_submit_raises_the_api_error_naming_the_uuid(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    op = operator()
    deferral(op, context)  # learn the UUID, then forget the task upstream
    (task_uuid,) = op.task_uuids
    api.tasks.clear()
    api.refuse[task_uuid] = {"code": "invalidSeed", "message": "seed too big"}
    with pytest.raises(MiniMaxError, match="invalidSeed") as info:
        operator().execute(context)
    assert info.value.task_uuid == task_uuid


# ------------------------------------------------------------------ resuming


@pytest.mark.parametrize("event", [None, {}, {"status": "done"}, {"status": "success"}, {"foo": 1}])
def test_execute_complete_rejects_an_unknown_event_shape(context: dict[str, Any], event: Any) -> None:
    with pytest.raises(MiniMaxError, match="Unexpected trigger event"):
        operator().execute_complete(context, event)


def test_success_event_becomes_plain_json_xcom(context: dict[str, Any]) -> None:
    task_uuid = v4(1)
    result = operator().execute_complete(context, success_event(task_uuid, "Bonjour"), **FIRST)
    assert result == {
        "text": "Bonjour",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, **NO_DETAILS},
        "cost": 0.0012,
        "task_uuid": task_uuid,
    }
    assert json.loads(json.dumps(result)) == result and SECRET_KEY not in json.dumps(result)


def test_number_results_gives_a_list_and_summed_usage(context: dict[str, Any]) -> None:
    result = operator(number_results=2).execute_complete(context, success_event(v4(1), "a", "b"), **FIRST)
    assert result["text"] == ["a", "b"] and result["finish_reason"] == ["stop", "stop"]
    assert result["usage"]["total_tokens"] == 16 and result["cost"] == pytest.approx(0.0024)


def test_timeout_event_names_the_pending_uuids(context: dict[str, Any]) -> None:
    event = TasksOutcome(status="timeout", task_uuids=[v4(1)], pending=[v4(1)], message="deadline").to_event()
    with pytest.raises(MiniMaxTimeoutError, match=v4(1)) as info:
        operator().execute_complete(context, event)
    assert info.value.task_uuids == [v4(1)]


def test_task_failed_event_names_uuid_code_and_message(context: dict[str, Any]) -> None:
    event = TasksOutcome(
        status="success",
        task_uuids=[v4(1)],
        errors={v4(1): {"code": "contentPolicyViolation", "message": "refused"}},  # type: ignore[dict-item]
    ).to_event()
    with pytest.raises(MiniMaxTaskFailedError, match="contentPolicyViolation: refused") as info:
        operator().execute_complete(context, event)
    assert (info.value.task_uuid, info.value.code) == (v4(1), "contentPolicyViolation")


def test_error_event_raises_the_typed_error(context: dict[str, Any]) -> None:
    event = TasksOutcome(
        status="error", task_uuids=[v4(1)], message="key revoked", code="invalidApiKey", status_code=401
    ).to_event()
    with pytest.raises(MiniMaxAuthError, match="key revoked") as info:
        operator().execute_complete(context, event)
    assert info.value.task_uuid == v4(1)


def test_airflow_deferral_timeout_names_the_waited_uuids(context: dict[str, Any], store: MemoryStore) -> None:
    store.set(WAITING_KEY, [v4(7)])
    with pytest.raises(MiniMaxTimeoutError, match=v4(7)):
        # What the task runner passes when the triggerer gives up at the deferral's timeout.
        operator().resume_execution("__fail__", {"error": "Trigger timeout"}, context)


def test_other_trigger_failures_are_left_to_airflow(context: dict[str, Any]) -> None:
    with pytest.raises(AirflowException, match="Trigger failure") as info:
        operator().resume_execution("__fail__", {"error": "Trigger failure"}, context)
    assert not isinstance(info.value, MiniMaxError)


# ------------------------------------------------------------------ other delivery paths


def test_sync_delivery_answers_in_one_call(api: FakeTaskApi, context: dict[str, Any]) -> None:
    api.answers = ["quick"]
    result = operator(delivery="sync").execute(context)
    assert result["text"] == "quick"
    # A first try with a task-state store has nothing to poll for: one request in all.
    assert api.bodies[-1][0]["deliveryMethod"] == "sync" and len(api.bodies) == 1


def test_not_deferrable_waits_in_the_worker_at_the_trigger_cadence(
    api: FakeTaskApi, context: dict[str, Any], fake_sleep: FakeSleep
) -> None:
    api.finish_after_polls = 2  # three waits (the last one capped); a first try has no resume poll
    op = operator(deferrable=False, poll_interval=1, max_poll_interval=2)
    result = op.execute(context)
    assert result["text"].startswith("answer") and sum(api.submissions.values()) == 1
    assert fake_sleep.waits == [1, 1.5, 2]


# ------------------------------------------------------------------ structured output


def test_output_type_valid_answer_lands_in_xcom(api: FakeTaskApi, context: dict[str, Any]) -> None:
    api.accept_as = "success"
    api.answers = ['{"name": "Oslo", "population": 700000}']
    result = operator(deferrable=False, output_type=City).execute(context)
    assert result["output"] == {"name": "Oslo", "population": 700000}
    assert "JSON schema" in api.bodies[0][0]["settings"]["systemPrompt"]


def test_output_mismatch_re_asks_as_a_new_item_with_the_feedback(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    op = operator(output_type=City, system_prompt="Be brief")
    first = deferral(op, context)
    event = success_event(op.task_uuids[0], '{"name": "Oslo"}')
    second = deferral(op, context, event=event, **first.kwargs)
    assert second.kwargs["attempt"] == 1 and second.kwargs["end_time"] == first.kwargs["end_time"]
    assert second.kwargs["spent"]["usage"]["total_tokens"] == 8
    reask = api.bodies[-1][0]
    assert reask["taskUUID"] != event["task_uuids"][0]
    roles = [m["role"] for m in reask["messages"]]
    assert roles == ["user", "assistant", "user"] and reask["messages"][1]["content"] == '{"name": "Oslo"}'
    assert "population" in reask["messages"][2]["content"]
    assert reask["settings"]["systemPrompt"].startswith("Be brief")
    good = success_event(second.trigger.serialize()[1]["task_uuids"][0], '{"name": "Oslo", "population": 1}')
    result = op.execute_complete(context, good, **second.kwargs)
    assert result["output"]["population"] == 1 and result["usage"]["total_tokens"] == 16


def test_a_resume_without_kwargs_continues_from_the_stored_state(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    # airflow dags test resumes with {"event": ...} only: attempt, deadline and spend come from the store.
    op = operator(output_type=City)
    first = deferral(op, context)
    second = deferral(op, context, event=success_event(op.task_uuids[0], '{"name": "Oslo"}'))
    assert second.kwargs["attempt"] == 1 and second.kwargs["end_time"] == first.kwargs["end_time"]
    good = success_event(op.task_uuids[0], '{"name": "Oslo", "population": 1}')
    result = op.execute_complete(context, good)
    assert result["output"]["population"] == 1 and result["usage"]["total_tokens"] == 16
    assert sum(api.submissions.values()) == 2


def test_re_asks_stay_bounded_when_resumed_without_kwargs(api: FakeTaskApi, context: dict[str, Any]) -> None:
    op = operator(output_type=City, max_output_retries=1)
    deferral(op, context)
    deferral(op, context, event=success_event(op.task_uuids[0], "not json"))
    with pytest.raises(MiniMaxOutputValidationError, match="after 2 answer"):
        op.execute_complete(context, success_event(op.task_uuids[0], "still not json"))
    assert sum(api.submissions.values()) == 2


def test_the_deferral_kwargs_win_over_the_stored_state(context: dict[str, Any], store: MemoryStore) -> None:
    store.set(RESUME_KEY, {"attempt": 5, "end_time": 1.0, "spent": {"cost": 9.0}})
    result = operator().execute_complete(context, success_event(v4(1)), **FIRST)
    assert result["cost"] == pytest.approx(0.0012)


def test_a_resume_without_kwargs_or_store_says_why_it_cannot_go_on() -> None:
    ti = type("TI", (), {"dag_id": "dag", "task_id": "ask", "run_id": "run-1", "map_index": -1})()
    with pytest.raises(MiniMaxError, match=r"without its kwargs .* Airflow >= 3\.3"):
        operator().execute_complete({"ti": ti}, success_event(v4(1)))


def test_a_retry_walks_the_re_asks_already_paid_for(api: FakeTaskApi, context: dict[str, Any]) -> None:
    api.accept_as = "success"
    api.answers = ["not json", '{"name": "Oslo", "population": 2}']
    operator(deferrable=False, output_type=City).execute(context)
    result = operator(deferrable=False, output_type=City).execute(context)  # a second try
    assert result["output"]["population"] == 2 and sum(api.submissions.values()) == 2


def test_output_retries_exhausted_shows_the_last_answer(api: FakeTaskApi, context: dict[str, Any]) -> None:
    api.accept_as = "success"
    api.answers = ["nope " * 300, "still nope"]
    with pytest.raises(MiniMaxOutputValidationError, match="after 2 answer") as info:
        operator(deferrable=False, output_type=City, max_output_retries=1).execute(context)
    assert "still nope" in str(info.value) and len(str(info.value)) < 2000


# ------------------------------------------------------------------ kill


def test_on_kill_logs_the_uuids_and_that_nothing_is_cancelled(
    api: FakeTaskApi, context: dict[str, Any]
) -> None:
    op = operator()
    deferral(op, context)
    with mock.patch.object(type(op), "log", new_callable=mock.PropertyMock) as log:
        op.on_kill()
    message = log.return_value.warning.call_args.args
    assert op.task_uuids[0] in message and "no cancel call" in message[0]
