"""Fixtures for every test directory (this file also puts ``tests/`` on the path, for :mod:`fake_sleep`)."""

from __future__ import annotations

import pytest
from fake_sleep import FakeSleep


@pytest.fixture
def fake_sleep(monkeypatch: pytest.MonkeyPatch) -> FakeSleep:
    """``time.sleep`` and ``asyncio.sleep`` record the waits asked for instead of waiting."""
    return FakeSleep.installed(monkeypatch)
