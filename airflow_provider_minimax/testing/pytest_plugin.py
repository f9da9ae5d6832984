"""Pytest fixtures for DAG tests against the local MiniMax emulator (loaded through ``pytest11``).

``minimax_emulator`` gives a running emulator (one loopback server per session, reset before
every test); ``minimax_connection`` also points ``minimax_default`` (task API) and
``minimax_chat`` (chat API) at it through ``AIRFLOW_CONN_*`` variables. Override
``minimax_emulator_config`` to change the knobs for a module or a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# The emulator (FastAPI, uvicorn) is imported inside the fixtures: pytest loads this plugin in every
# run wherever the provider is installed, and only tests that ask for the emulator should pay for it.
if TYPE_CHECKING:
    from airflow_provider_minimax.testing.emulator import EmulatorConfig, EmulatorHandle

TASK_CONN_ENV = "AIRFLOW_CONN_MINIMAX_DEFAULT"
CHAT_CONN_ENV = "AIRFLOW_CONN_MINIMAX_CHAT"


@pytest.fixture(scope="session")
def _minimax_emulator_server() -> Iterator[EmulatorHandle]:
    """One emulator server for the whole session; tests get it reset through ``minimax_emulator``."""
    from airflow_provider_minimax.testing.emulator import run_emulator_in_thread

    with run_emulator_in_thread() as handle:
        yield handle


@pytest.fixture
def minimax_emulator_config() -> EmulatorConfig:
    """The config each test starts with; override this fixture to change latency or concurrency."""
    from airflow_provider_minimax.testing.emulator import EmulatorConfig

    return EmulatorConfig()


@pytest.fixture
def minimax_emulator(
    _minimax_emulator_server: EmulatorHandle, minimax_emulator_config: EmulatorConfig
) -> Iterator[EmulatorHandle]:
    """A running emulator with fresh state, config and faults for this test.

    :param _minimax_emulator_server: the session's server
    :param minimax_emulator_config: the config to start the test with
    """
    handle = _minimax_emulator_server
    handle.reset(minimax_emulator_config)
    yield handle
    handle.reset()


@pytest.fixture
def minimax_connection(minimax_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """Point the ``minimax_default`` and ``minimax_chat`` Airflow connections at the emulator.

    :param minimax_emulator: the running emulator
    :param monkeypatch: restores the environment after the test
    """
    monkeypatch.setenv(TASK_CONN_ENV, minimax_emulator.connection_json("task"))
    monkeypatch.setenv(CHAT_CONN_ENV, minimax_emulator.connection_json("chat"))
    return minimax_emulator
