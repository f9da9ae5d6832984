"""MiniMaxChatOperator against the emulator on a loopback port: both APIs, re-asks, tools, streams."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import BaseModel, Field

from airflow_provider_minimax.exceptions import MiniMaxConnectionError, MiniMaxOutputValidationError
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.testing.emulator import REPLY_PREFIX, EmulatorHandle

CONN = {"task": "minimax_default", "chat": "minimax_chat"}
_runs = itertools.count()


class Ticket(BaseModel):
    title: str
    priority: int = Field(ge=1, le=5)
    labels: list[str]


class RecordingTI:
    """Keeps what the operator pushes to XCom; the run id sets the task-API taskUUIDs."""

    def __init__(self, run_id: str) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index = "dag", "ask", run_id, -1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(api: str, run_id: str | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Execute a chat operator on ``api``'s emulator connection; the result and its XComs."""
    kwargs.setdefault("prompt", "Summarise the incident in one line")
    ti = RecordingTI(run_id or f"run-{next(_runs)}")
    result = MiniMaxChatOperator(task_id="ask", conn_id=CONN[api], **kwargs).execute({"ti": ti})
    return result, ti.xcom


def chat_bodies(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    return [entry["body"] for entry in emulator.state.log if entry["route"] == "chat"]


def text_inferences(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    bodies = [entry["body"] for entry in emulator.state.log if entry["route"] == "task"]
    return [task for body in bodies for task in body if task["taskType"] == "textInference"]


@pytest.mark.parametrize("api", ["task", "chat"])
def test_answer_usage_and_cost_over_each_api(minimax_connection: EmulatorHandle, api: str) -> None:
    answer, xcom = run(api, include_reasoning=True)

    assert answer.startswith(REPLY_PREFIX)
    assert "<think>" not in answer
    assert xcom["usage"]["total_tokens"] > 0
    assert ("cost" in xcom) == (api == "task")
    assert xcom["reasoning"]


@pytest.mark.parametrize("api", ["task", "chat"])
def test_streamed_answer_equals_the_plain_one(minimax_connection: EmulatorHandle, api: str) -> None:
    plain, plain_xcom = run(api)
    streamed, streamed_xcom = run(api, stream=True)

    assert streamed == plain
    assert streamed_xcom["usage"] == plain_xcom["usage"]


@pytest.mark.parametrize("api", ["task", "chat"])
def test_stream_cut_midway_fails_clearly(minimax_connection: EmulatorHandle, api: str) -> None:
    minimax_connection.faults.stream_cut(after_chunks=3, api=api)

    with pytest.raises(MiniMaxConnectionError, match="stream was cut after"):
        run(api, stream=True)


def test_a_retried_try_reuses_the_answer_it_already_paid_for(minimax_connection: EmulatorHandle) -> None:
    first, first_xcom = run("task", run_id="run-retried")
    second, second_xcom = run("task", run_id="run-retried")

    assert (second, second_xcom) == (first, first_xcom)
    assert len(text_inferences(minimax_connection)) == 1
    assert minimax_connection.stats()["duplicate_submissions"] == {}


def test_invalid_json_is_reasked_until_valid(minimax_connection: EmulatorHandle) -> None:
    minimax_connection.faults.invalid_json_content(count=1, variant="not_json")
    minimax_connection.faults.invalid_json_content(count=1, variant="wrong_shape")

    ticket, xcom = run("chat", output_type=Ticket, max_output_retries=2)

    assert Ticket.model_validate(ticket)
    bodies = chat_bodies(minimax_connection)
    assert len(bodies) == 3
    # Each re-ask replays the previous answer unchanged, think block included.
    replayed = [m["content"] for m in bodies[2]["messages"] if m["role"] == "assistant"]
    assert len(replayed) == 2
    assert all(content.startswith("<think>") for content in replayed)
    assert "Answer again with one corrected JSON object only" in bodies[2]["messages"][-1]["content"]
    assert xcom["usage"]["prompt_tokens"] > 0


def test_output_never_valid_fails_after_max_output_retries(minimax_connection: EmulatorHandle) -> None:
    minimax_connection.faults.invalid_json_content(count=5)

    with pytest.raises(MiniMaxOutputValidationError, match="after 1 re-ask"):
        run("chat", output_type=Ticket, max_output_retries=1)

    assert len(chat_bodies(minimax_connection)) == 2


def test_task_api_structured_output_sends_the_schema_as_instructions(
    minimax_connection: EmulatorHandle,
) -> None:
    ticket, _ = run("task", output_type=Ticket)

    assert Ticket.model_validate(ticket)
    tasks = text_inferences(minimax_connection)
    assert len(tasks) == 1
    assert '"priority"' in tasks[0]["settings"]["systemPrompt"]


def lookup_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
    """Current weather of a city.

    :param city: the city.
    :param unit: celsius or fahrenheit.
    """
    return {"city": city, "temperature": 21, "unit": unit}


def lookup_owner(service: str) -> str:
    """Who owns a service.

    :param service: the service name.
    """
    raise LookupError(f"no owner recorded for {service}")


def test_tool_loop_runs_parallel_calls_and_feeds_results_back(minimax_connection: EmulatorHandle) -> None:
    answer, xcom = run("chat", tools=[lookup_weather, lookup_owner])

    assert "lookup_weather returned" in answer
    assert 'lookup_owner returned "error: LookupError: no owner recorded for' in answer
    bodies = chat_bodies(minimax_connection)
    assert len(bodies) == 2
    assistant, *results = bodies[1]["messages"][-3:]
    assert assistant["content"].startswith("<think>")
    assert {r["tool_call_id"] for r in results} == {c["id"] for c in assistant["tool_calls"]}
    assert xcom["usage"]["total_tokens"] > 0


def test_multi_turn_sends_earlier_assistant_content_unchanged(minimax_connection: EmulatorHandle) -> None:
    first, _ = run("chat")
    earlier = chat_bodies(minimax_connection)  # the first request
    assert len(earlier) == 1
    previous = f"<think>They want a summary.</think>\n\n{first}"

    history = [{"role": "user", "content": "Summarise"}, {"role": "assistant", "content": previous}]

    run("chat", messages=history)

    assert chat_bodies(minimax_connection)[-1]["messages"][:2] == history
