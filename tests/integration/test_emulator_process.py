"""The emulator served from its own process, as benchmarks and the docker deployment run it."""

from __future__ import annotations

import httpx

from airflow_provider_minimax.testing.emulator import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    run_emulator_in_process,
)


def test_process_freezes_its_start_up_heap_out_of_collections() -> None:
    # Unfrozen, each full collection walked Airflow's ~180,000 start-up objects: a 150 ms stall of
    # every request in flight, which no real API has.
    with run_emulator_in_process(EmulatorConfig(latency=0)) as url:
        health = httpx.get(f"{url}/_emulator/health").json()
    assert health["ok"] is True
    assert health["gc_frozen_objects"] > 10_000


def test_process_serves_the_apis_with_the_config_applied() -> None:
    with run_emulator_in_process(EmulatorConfig(latency=0, concurrency=3)) as url:
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"},
            json={"model": "minimax-m2.7", "messages": [{"role": "user", "content": "hi"}]},
        )
        config = httpx.get(f"{url}/_emulator/config").json()
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"]
    assert config["concurrency"] == 3
