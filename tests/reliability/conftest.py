"""Fixtures of the reliability campaign, and the summary table it prints at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from campaign_figures import summary_lines
from campaign_paths import connection_json
from fake_sleep import FakeSleep
from hostile_server import HostileServer

#: Retries wait at most this long in the campaign; whether Retry-After is honoured is a unit test's job.
MAX_TEST_SLEEP = 0.05


@pytest.fixture(scope="session")
def _hostile_server() -> Iterator[HostileServer]:
    with HostileServer().serve() as server:
        yield server


@pytest.fixture
def hostile(_hostile_server: HostileServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """The hostile server, reset, with ``minimax_default`` (task) and ``minimax_chat`` pointed at it."""
    server = _hostile_server
    server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_MINIMAX_DEFAULT", connection_json(server.base_url, "task"))
    monkeypatch.setenv("AIRFLOW_CONN_MINIMAX_CHAT", connection_json(server.base_url, "chat"))
    yield server
    server.reset()


@pytest.fixture
def short_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cap the retry waits of the code under test (the hostile server's own sleeps are left alone)."""
    FakeSleep(cap=MAX_TEST_SLEEP).install(monkeypatch)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines()
    if lines:
        terminalreporter.section("MiniMax reliability campaign")
        for line in lines:
            terminalreporter.write_line(line)
