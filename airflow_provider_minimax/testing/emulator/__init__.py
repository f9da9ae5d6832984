"""Local emulator of the MiniMax task API and chat completions API, for tests and demos.

Start it with ``python -m airflow_provider_minimax.testing.emulator --port 8765``, in-process
with ``create_app()`` (for httpx's ASGI transport), or on a loopback port in a background thread
with ``run_emulator_in_thread()`` or a child process with ``run_emulator_in_process()``. Answers
are deterministic functions of the request.
"""

from airflow_provider_minimax.testing.emulator._app import (
    EmulatorHandle,
    create_app,
    main,
    run_emulator_in_process,
    run_emulator_in_thread,
)
from airflow_provider_minimax.testing.emulator._faults import Fault, FaultKind, FaultQueue
from airflow_provider_minimax.testing.emulator._schema import instance_for
from airflow_provider_minimax.testing.emulator._state import (
    EMULATOR_API_KEY,
    NO_CREDIT_API_KEY,
    EmulatorConfig,
    EmulatorState,
)
from airflow_provider_minimax.testing.emulator._text import (
    CONTENT_FILTER_MARKER,
    FAIL_MARKER,
    REPLY_PREFIX,
    count_tokens,
    reply_text,
)

__all__ = [
    "CONTENT_FILTER_MARKER",
    "EMULATOR_API_KEY",
    "FAIL_MARKER",
    "NO_CREDIT_API_KEY",
    "REPLY_PREFIX",
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorState",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "count_tokens",
    "create_app",
    "instance_for",
    "main",
    "reply_text",
    "run_emulator_in_process",
    "run_emulator_in_thread",
]
