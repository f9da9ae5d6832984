"""OpenLineage facets of every operator, run against the emulator; and the operators without the provider."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.extractors.base import DefaultExtractor
from openlineage.client.serde import Serde
from pydantic import BaseModel

from airflow_provider_minimax import lineage_facets
from airflow_provider_minimax.decorators.minimax import MiniMaxDecoratedOperator
from airflow_provider_minimax.exceptions import MiniMaxOutputValidationError
from airflow_provider_minimax.lineage import LineageMixin, prompt_hash
from airflow_provider_minimax.lineage_facets import MAX_TASK_UUIDS, MiniMaxRunFacet, run_facet
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.results import Spend, Usage
from airflow_provider_minimax.sensors.minimax import MiniMaxTaskSensor
from airflow_provider_minimax.testing.emulator import EMULATOR_API_KEY, EmulatorHandle

SECRET_PROMPT = "Summarise the medical record of Jane Doe"


class City(BaseModel):
    name: str


class RecordingTI:
    """Keeps XComs; identifies the task instance for the task API's taskUUIDs."""

    def __init__(self) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number = "dag", "t", "run", -1, 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(operator: Any) -> Any:
    return operator.execute({"ti": RecordingTI()})


def facet_of(lineage: OperatorLineage) -> dict[str, Any]:
    """The ``minimax`` run facet as it goes on the wire (checked for secrets and the prompt)."""
    wire = Serde.to_json(lineage.run_facets["minimax"])
    assert EMULATOR_API_KEY not in wire and SECRET_PROMPT not in wire
    return json.loads(wire)


def host(emulator: EmulatorHandle) -> str:
    return f"127.0.0.1:{emulator.port}"


def test_chat_operator_facet(minimax_connection: EmulatorHandle) -> None:
    op = MiniMaxChatOperator(
        task_id="t", conn_id="minimax_chat", prompt=SECRET_PROMPT, system_prompt="Be brief"
    )
    run(op)

    lineage = op.get_openlineage_facets_on_complete(None)
    facet = facet_of(lineage)

    assert facet["api"] == "chat" and facet["model"] == "minimax-m2.7"
    assert facet["host"] == host(minimax_connection)
    assert facet["calls"] == 1
    assert facet["usage"]["total_tokens"] > 0 and facet["usage"]["reasoning_tokens"] > 0
    # OpenLineage's serialiser leaves nulls out: a counter the API did not send is absent.
    assert facet["usage"]["cached_tokens"] == 0 and "thinking_tokens" not in facet["usage"]
    assert "cost" not in facet and facet["costEstimated"] is False
    assert facet["taskUUIDs"] == [] and facet["taskUUIDCount"] == 0
    assert facet["promptTemplateHash"] == prompt_hash("Be brief", SECRET_PROMPT, None)
    assert facet["_schemaURL"].endswith("#/$defs/MiniMaxRunFacet")
    assert lineage.inputs == [] and lineage.outputs == []


def test_the_openlineage_providers_extractor_picks_the_facet_up(minimax_connection: EmulatorHandle) -> None:
    op = MiniMaxChatOperator(task_id="t", conn_id="minimax_chat", prompt=SECRET_PROMPT)
    run(op)

    extractor = DefaultExtractor(op)

    assert facet_of(extractor.extract_on_complete(None))["calls"] == 1
    assert facet_of(extractor.extract_on_failure(None))["calls"] == 1


def test_chat_operator_on_the_task_api_reports_the_task_uuid_and_cost(
    minimax_connection: EmulatorHandle,
) -> None:
    op = MiniMaxChatOperator(task_id="t", conn_id="minimax_default", prompt=SECRET_PROMPT)
    run(op)

    facet = facet_of(op.get_openlineage_facets_on_complete(None))

    assert facet["api"] == "task" and facet["model"] == "minimax:m2.7@highspeed"
    assert facet["cost"] > 0 and facet["costEstimated"] is False
    assert len(facet["taskUUIDs"]) == 1 and facet["usage"]["thinking_tokens"] > 0


def test_decorated_task_facet_hashes_the_prompt_the_function_built(
    minimax_connection: EmulatorHandle,
) -> None:
    op = MiniMaxDecoratedOperator(
        task_id="t", conn_id="minimax_chat", python_callable=lambda: SECRET_PROMPT, op_args=[], op_kwargs={}
    )
    run(op)

    facet = facet_of(op.get_openlineage_facets_on_complete(None))

    assert facet["calls"] == 1 and facet["promptTemplateHash"] == prompt_hash(None, SECRET_PROMPT, None)


def test_text_inference_operator_facet(minimax_connection: EmulatorHandle) -> None:
    op = MiniMaxTextInferenceOperator(
        task_id="t", prompt=SECRET_PROMPT, poll_interval=0.05, max_poll_interval=0.1
    )
    value = run(op)

    facet = facet_of(op.get_openlineage_facets_on_complete(None))

    assert facet["api"] == "task" and facet["calls"] == 1
    assert facet["taskUUIDs"] == [value["task_uuid"]]
    assert facet["cost"] == pytest.approx(value["cost"])
    assert facet["usage"] == {kind: n for kind, n in value["usage"].items() if n is not None}


@pytest.mark.parametrize("conn_id", ["minimax_default", "minimax_chat"])
def test_batch_operator_facet_and_datasets(
    minimax_connection: EmulatorHandle, tmp_path: Path, conn_id: str
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(3)))
    op = MiniMaxBatchOperator(
        task_id="t",
        conn_id=conn_id,
        input_path=str(source),
        output_path=f"file://{target}",
        prompt_template="Row {{ n }}",
        poll_interval=0.05,
        max_poll_interval=0.1,
    )
    run(op)

    lineage = op.get_openlineage_facets_on_complete(None)
    facet = facet_of(lineage)

    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(source))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(target))]
    assert facet["calls"] == 3
    assert facet["taskUUIDCount"] == (3 if conn_id == "minimax_default" else 0)
    assert facet["promptTemplateHash"] == prompt_hash(None, "Row {{ n }}")


def test_sensor_facet_reports_what_the_awaited_tasks_spent(minimax_connection: EmulatorHandle) -> None:
    first = MiniMaxTextInferenceOperator(task_id="t", prompt="one", poll_interval=0.05, max_poll_interval=0.1)
    value = run(first)
    sensor = MiniMaxTaskSensor(task_id="s", task_uuids=[value["task_uuid"]])
    run(sensor)

    facet = facet_of(sensor.get_openlineage_facets_on_complete(None))

    assert facet["taskUUIDs"] == [value["task_uuid"]] and facet["calls"] == 0
    assert facet["usage"]["total_tokens"] == value["usage"]["total_tokens"]


def test_a_failed_task_reports_what_it_already_paid_for(minimax_connection: EmulatorHandle) -> None:
    minimax_connection.faults.invalid_json_content(count=2, variant="not_json")
    op = MiniMaxChatOperator(
        task_id="t", conn_id="minimax_chat", prompt=SECRET_PROMPT, output_type=City, max_output_retries=1
    )
    with pytest.raises(MiniMaxOutputValidationError):
        run(op)

    facet = facet_of(op.get_openlineage_facets_on_failure(None))
    assert facet["calls"] == 2 and facet["usage"]["total_tokens"] > 0


def test_task_uuids_past_the_cap_are_only_counted() -> None:
    spend = Spend(
        api="task", host="h", task_uuids=[f"u{i}" for i in range(MAX_TASK_UUIDS + 1)], usage=Usage()
    )

    facet = run_facet(spend)

    assert isinstance(facet, MiniMaxRunFacet)
    assert facet.taskUUIDs is None and facet.taskUUIDCount == MAX_TASK_UUIDS + 1


def test_before_execute_there_is_lineage_without_a_run_facet() -> None:
    op = MiniMaxChatOperator(task_id="t", prompt="x")

    assert op.get_openlineage_facets_on_failure(None).run_facets == {}


# --- without apache-airflow-providers-openlineage -------------------------------------------------


def test_without_the_openlineage_provider_operators_run_and_report_nothing(
    minimax_connection: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes "import airflow.providers.openlineage..." raise ImportError.
    for name in [m for m in sys.modules if m.startswith(("airflow.providers.openlineage", "openlineage"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)
    monkeypatch.setitem(sys.modules, "openlineage", None)
    monkeypatch.delitem(sys.modules, "airflow_provider_minimax.lineage_facets")
    op = MiniMaxChatOperator(task_id="t", conn_id="minimax_chat", prompt="hello")

    assert run(op)
    assert isinstance(op, LineageMixin)
    assert op.get_openlineage_facets_on_complete(None) is None
    assert op.get_openlineage_facets_on_failure(None) is None


def test_the_shipped_schema_describes_every_field_of_the_facet() -> None:
    schema = json.loads(
        (Path(lineage_facets.__file__).parent / "schemas" / "MiniMaxRunFacet.json").read_text()
    )
    properties = schema["$defs"]["MiniMaxRunFacet"]["allOf"][1]["properties"]

    assert set(properties) == {f.name for f in attrs.fields(MiniMaxRunFacet) if not f.name.startswith("_")}
    assert lineage_facets.SCHEMA_URL.startswith(schema["$id"])
    assert set(properties["usage"]["properties"]) == set(Usage.model_fields)
