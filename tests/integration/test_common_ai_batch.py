"""The ``minimax`` batch adapter of common.ai's LLMBatchOperator against the emulator."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from airflow.providers.common.ai.batch.dispatch import get_adapter_class
from airflow.providers.common.ai.batch.output_schema import build_output_spec
from airflow.providers.common.ai.batch.results import build_result_row
from airflow.providers.common.ai.exceptions import LLMBatchInputError, LLMBatchLimitExceededError
from pydantic import BaseModel

from airflow_provider_minimax.common_ai.batch import BatchRef, MiniMaxBatchAdapter
from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    FAIL_MARKER,
    EmulatorConfig,
    EmulatorHandle,
)

KEY = "0123456789abcdef"
FINGERPRINT = "f" * 64
MODEL = "m2.7@highspeed"  # what LLMBatchOperator passes: model_id without its "minimax:" prefix


class Label(BaseModel):
    label: str
    score: int


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(async_latency=0.0)


@pytest.fixture
def adapter(minimax_emulator: EmulatorHandle) -> Any:
    made = MiniMaxBatchAdapter(api_key=EMULATOR_API_KEY, base_url=minimax_emulator.base_url)
    yield made
    made.close()


def submit(adapter: MiniMaxBatchAdapter, prompts: list[str], output_type: type = str, **kwargs: Any) -> str:
    requests: list[Any] = [{"prompt": p} for p in prompts]
    return adapter.submit(
        requests,
        model=MODEL,
        idempotency_key=KEY,
        input_fingerprint=kwargs.pop("fingerprint", FINGERPRINT),
        output_spec=build_output_spec(output_type),
        **kwargs,
    ).batch_id


def text_submissions(emulator: EmulatorHandle) -> dict[str, int]:
    return emulator.stats()["submissions"]


def test_model_id_minimax_routes_to_this_adapter_through_the_entry_point() -> None:
    assert get_adapter_class("pydanticai_minimax", "minimax:m2.7@highspeed") is MiniMaxBatchAdapter


def test_batch_completes_and_results_come_in_request_order_with_usage_and_cost(
    adapter: MiniMaxBatchAdapter,
) -> None:
    batch_id = submit(adapter, [f"Item {i}" for i in range(5)])

    state = adapter.get_batch(batch_id)
    items = list(adapter.iter_results(batch_id))

    assert state.status == "completed" and state.counts == {
        "succeeded": 5,
        "errored": 0,
        "expired": 0,
        "cancelled": 0,
    }
    assert [item.index for item in items] == [0, 1, 2, 3, 4]
    assert [item.custom_id for item in items] == [f"{KEY}-{i}" for i in range(5)]
    assert all(
        item.usage and item.usage["cost_usd"] > 0 and item.usage["thinking_tokens"] > 0 for item in items
    )
    spec = build_output_spec(str)
    assert build_result_row(items[2], adapter, spec)["output"].startswith(
        '[minimax-emulator] You said: "Item 2"'
    )


def test_task_uuids_are_v4_shaped_and_rebuilt_from_the_batch_id_alone(
    adapter: MiniMaxBatchAdapter, minimax_emulator: EmulatorHandle
) -> None:
    batch_id = submit(adapter, ["a", "b", "c"])

    uuids = BatchRef.parse(batch_id).uuids()

    assert set(uuids.values()) == set(text_submissions(minimax_emulator))
    assert all(u[14] == "4" and u[19] in "89ab" for u in uuids.values())


def test_a_repeated_submit_pays_nothing_twice(
    adapter: MiniMaxBatchAdapter, minimax_emulator: EmulatorHandle
) -> None:
    first = submit(adapter, [f"Item {i}" for i in range(150)])
    # A lost response, a crash before the state was recorded, a cleared task: the same input again.
    second = submit(adapter, [f"Item {i}" for i in range(150)])

    assert first == second
    assert set(text_submissions(minimax_emulator).values()) == {1}
    assert len(text_submissions(minimax_emulator)) == 150


def test_a_lost_submit_response_is_re_attached(
    adapter: MiniMaxBatchAdapter, minimax_emulator: EmulatorHandle
) -> None:
    minimax_emulator.faults.drop_connection(api="task", task_type="textInference", after_processing=True)

    batch_id = submit(adapter, ["a", "b"])

    # The hook's retry of the lost request is refused with conflictTaskUUID: two tasks, each paid once.
    assert adapter.get_batch(batch_id).status == "completed"
    assert minimax_emulator.stats()["tasks"] == {"success": 2}


def test_a_failed_task_is_an_errored_row_and_a_new_submission_gets_a_new_generation(
    adapter: MiniMaxBatchAdapter, minimax_emulator: EmulatorHandle
) -> None:
    prompts = ["fine", f"please fail {FAIL_MARKER}"]
    batch_id = submit(adapter, prompts)
    items = list(adapter.iter_results(batch_id))
    assert [item.provider_status for item in items] == ["success", "errored"]
    assert items[1].error and items[1].error["message"]

    # LLMBatchOperator clears its state only when nothing ran; a resubmit of the same input then
    # reuses the finished task and tries the failed one under its next generation.
    again = submit(adapter, prompts)

    assert BatchRef.parse(again).generations == {1: 1}
    assert len(text_submissions(minimax_emulator)) == 3 and set(
        text_submissions(minimax_emulator).values()
    ) == {1}


def test_cancel_says_running_tasks_will_be_billed(
    minimax_emulator: EmulatorHandle, adapter: MiniMaxBatchAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    minimax_emulator.config = EmulatorConfig(async_latency=60.0)
    batch_id = submit(adapter, ["slow"])

    with caplog.at_level(logging.WARNING):
        adapter.cancel_batch(batch_id)

    assert adapter.get_batch(batch_id).status == "in_progress"
    assert "has no cancel: 1 task(s)" in caplog.text and "billed" in caplog.text


def test_structured_output_goes_in_the_system_prompt_and_is_validated(
    adapter: MiniMaxBatchAdapter, minimax_emulator: EmulatorHandle
) -> None:
    spec = build_output_spec(Label)
    batch_id = submit(adapter, ["Rate this."], output_type=Label, system_prompt="You label things.")

    task = next(
        e["body"][0] for e in minimax_emulator.stats()["log"] if e["body"][0]["taskType"] == "textInference"
    )
    row = build_result_row(next(adapter.iter_results(batch_id)), adapter, spec)

    assert task["settings"]["systemPrompt"].startswith("You label things.\n\nAnswer with one JSON object")
    assert row["status"] == "success" and Label.model_validate(row["output"])


@pytest.mark.parametrize(
    ("answer", "kind"),
    [('<think>hm</think>\n\n{"label": "x", "score": 1}', "json_text"), ("no json here", "absent")],
)
def test_extract_output(adapter: MiniMaxBatchAdapter, answer: str, kind: str) -> None:
    from airflow.providers.common.ai.batch.base import RawResultItem

    raw = RawResultItem("k-0", 0, "success", None, None, "stop", None, answer)

    assert adapter.extract_output(raw, build_output_spec(Label)).kind == kind


@pytest.mark.parametrize(
    ("requests", "kwargs", "error", "message"),
    [
        ([{"prompt": "x"}] * 10_001, {}, LLMBatchLimitExceededError, "at most 10000 requests"),
        (
            [{"prompt": "x", "max_tokens": 196_609}],
            {},
            LLMBatchInputError,
            r"Request 0: .*max_tokens.*196608",
        ),
        ([{"prompt": ""}], {}, LLMBatchInputError, r"Request 0: .*content"),
        ([{"prompt": "x"}], {"request_params": {"temperature": 2}}, LLMBatchInputError, "temperature"),
        ([{"prompt": "x"}], {"request_params": {"stop": ["."]}}, LLMBatchInputError, r"params \['stop'\]"),
        ([{"prompt": "x", "model": "openai:gpt-5"}], {}, LLMBatchInputError, "'minimax:<model>'"),
        ([{"prompt": "x" * 100}], {"system_prompt": "s" * 200_001}, LLMBatchInputError, "system_prompt"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    adapter: MiniMaxBatchAdapter,
    minimax_emulator: EmulatorHandle,
    requests: list[Any],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        adapter.validate_requests(
            requests, model=MODEL, output_spec=build_output_spec(str), idempotency_key=KEY, **kwargs
        )
    assert sum(minimax_emulator.stats()["requests"].values()) == 0


def test_orphaned_intent_needs_no_lookup(adapter: MiniMaxBatchAdapter) -> None:
    assert adapter.find_orphaned_batch(KEY, FINGERPRINT, "2025-01-01T00:00:00+00:00") is None


@pytest.mark.parametrize(
    "ref",
    [
        BatchRef(KEY, FINGERPRINT, 3),
        BatchRef(KEY, FINGERPRINT, 3, {1: 2}, frozenset({0})),
    ],
)
def test_batch_id_round_trip(ref: BatchRef) -> None:
    assert BatchRef.parse(ref.to_id()) == ref


@pytest.mark.parametrize("batch_id", ["msgbatch_123", "minimax-batch/k/f/x", "minimax-batch/k/f/3/z1"])
def test_foreign_batch_ids_are_refused(batch_id: str) -> None:
    with pytest.raises(ValueError, match="is not a MiniMax batch id"):
        BatchRef.parse(batch_id)
