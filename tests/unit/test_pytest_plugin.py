"""The pytest11 plugin loads in every pytest run where the provider is installed: it must cost nothing."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_plugin_imports_no_emulator_fastapi_or_uvicorn() -> None:
    # A fresh interpreter: this test session has long since imported the emulator.
    code = (
        "import sys, pytest\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_minimax.testing.pytest_plugin\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for heavy in ("fastapi", "uvicorn", "starlette", "emulator", "airflow.sdk", "httpx"):
        assert heavy not in loaded
