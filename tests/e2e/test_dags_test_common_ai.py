"""``airflow dags test`` of common.ai's own operators on ``pydanticai_minimax`` connections (emulator)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from airflow_provider_minimax.common_ai.batch import BatchRef
from airflow_provider_minimax.testing.emulator import EmulatorConfig, EmulatorHandle
from tests.e2e.test_dags_test_decorator import DAGS, airflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    # Async tasks finish at once, so the batch's first status check already sees them done
    # (LLMBatchOperator polls at most every 30 s).
    return EmulatorConfig(async_latency=0.0)


def pydanticai_connection(emulator: EmulatorHandle, api: str) -> str:
    """A ``pydanticai_minimax`` connection to the emulator, as ``AIRFLOW_CONN_*`` JSON."""
    return json.dumps({**json.loads(emulator.connection_json(api)), "conn_type": "pydanticai_minimax"})


def test_common_ai_operators_run_on_minimax(minimax_emulator: EmulatorHandle, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW_CONN_MM_TASK": pydanticai_connection(minimax_emulator, "task"),
        "AIRFLOW_CONN_MM_CHAT": pydanticai_connection(minimax_emulator, "chat"),
        "MINIMAX_E2E_RESULT_PATH": f"file://{tmp_path / 'results'}",
    }
    airflow(env, "db", "migrate")

    done = airflow(env, "dags", "test", "minimax_common_ai_e2e")

    output = done.stdout + done.stderr
    assert "E2E-OK" in output, output[-4000:]
    assert "SimulatedCrash" in output  # the batch's first try did die after its submit
    stats = minimax_emulator.stats()
    ref = BatchRef.parse(re.search(r"BATCH_ID=(\S+)", output).group(1))  # type: ignore[union-attr]
    batch_uuids = set(ref.uuids().values())
    assert len(batch_uuids) == 200
    assert {u: stats["submissions"].get(u) for u in batch_uuids} == dict.fromkeys(batch_uuids, 1)
    assert stats["duplicate_submissions"] == {}
    # The follow-up agent sent the first conversation back with every think block as received.
    replayed = [
        m["content"]
        for entry in stats["log"]
        if entry["route"] == "chat"
        for m in entry["body"]["messages"]
        if m["role"] == "assistant" and "And in Bergen?" in json.dumps(entry["body"])
    ]
    assert replayed and all(
        re.fullmatch(r"<think>The user wrote .*?</think>(\n\n\S.*)?", c) for c in replayed
    )
    assert re.search(r"Following branch \['(long|short)_river'\]|Branch.*(long|short)_river", output)
