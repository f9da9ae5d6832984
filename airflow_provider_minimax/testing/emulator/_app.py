"""The emulator app factory, a background-thread server for tests, and the command line."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from airflow_provider_minimax.testing.emulator import _chat_api, _control, _task_api
from airflow_provider_minimax.testing.emulator._faults import FaultQueue
from airflow_provider_minimax.testing.emulator._http import SEND_SCOPE_KEY
from airflow_provider_minimax.testing.emulator._state import (
    EMULATOR_API_KEY,
    EmulatorConfig,
    EmulatorState,
)


class _EmulatorApp(FastAPI):
    """FastAPI that hands the server's raw ``send`` to the routes, so a fault can drop the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Remember the server's own ``send`` before Starlette's middleware wraps it."""
        if scope["type"] == "http":
            scope[SEND_SCOPE_KEY] = send
        await super().__call__(scope, receive, send)


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """Build the emulator: task API at ``POST /v1``, chat at ``POST /v1/chat/completions``, ``/_emulator``.

    :param config: the run's knobs; the state is ``app.state.emulator``
    """
    app = _EmulatorApp(title="MiniMax emulator", docs_url=None, redoc_url=None)
    app.state.emulator = EmulatorState(config)
    app.state.gc_frozen_objects = 0  # what main() froze, for the health probe
    for module in (_task_api, _chat_api, _control):
        app.include_router(module.router)
    return app


class EmulatorHandle:
    """A running emulator: its URLs, state, config and faults, as tests and demos use them."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        """Wrap a served app.

        :param app: the emulator app
        :param host: the address it listens on
        :param port: the port it listens on
        """
        self.app = app
        self.host = host
        self.port = port
        self._initial_config = self.state.config.model_copy()

    @property
    def url(self) -> str:
        """Root URL of the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Task API base URL (``POST`` here)."""
        return f"{self.url}/v1"

    @property
    def chat_base_url(self) -> str:
        """Chat API base URL (the client appends ``/chat/completions``)."""
        return f"{self.url}/v1"

    @property
    def state(self) -> EmulatorState:
        """The live emulator state."""
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def config(self) -> EmulatorConfig:
        """The live config; change its fields, or assign a new one."""
        return self.state.config

    @config.setter
    def config(self, value: EmulatorConfig) -> None:
        self.state.config = value

    @property
    def faults(self) -> FaultQueue:
        """The fault queue (``handle.faults.rate_limit(retry_after=1)``)."""
        return self.state.faults

    def stats(self) -> dict[str, Any]:
        """The same snapshot as ``GET /_emulator/stats``."""
        return self.state.stats()

    def reset(self, config: EmulatorConfig | None = None) -> None:
        """Forget tasks, counters and faults, and restore the starting config (or use ``config``).

        :param config: the config to use from now on
        """
        self.state.reset(config or self._initial_config.model_copy())

    def client(self, api_key: str | None = EMULATOR_API_KEY, **kwargs: Any) -> httpx.Client:
        """An httpx client for this emulator with the Bearer key set (relative URLs allowed).

        :param api_key: key to send; None sends no Authorization header
        :param kwargs: more ``httpx.Client`` arguments (timeout, ...)
        """
        headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def connection_json(self, api: Literal["task", "chat"] = "task") -> str:
        """An Airflow connection in JSON form pointing at this emulator, for ``AIRFLOW_CONN_*``.

        :param api: which API the connection talks to
        """
        host = self.base_url if api == "task" else self.chat_base_url
        extra = {"api": api}
        return json.dumps(
            {"conn_type": "minimax", "host": host, "password": EMULATOR_API_KEY, "extra": extra}
        )


@contextlib.contextmanager
def run_emulator_in_thread(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[EmulatorHandle]:
    """Serve the emulator with uvicorn in a daemon thread for the duration of a ``with`` block.

    :param config: the run's knobs
    :param host: address to bind (loopback by default)
    :param port: port to bind; 0 picks a free one (read it from ``handle.port``)
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the MiniMax emulator did not start")
        time.sleep(0.005)
    try:
        yield EmulatorHandle(app, host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@contextlib.contextmanager
def run_emulator_in_process(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve the emulator from a child process for the duration of a ``with`` block; yields its root URL.

    Unlike :func:`run_emulator_in_thread`, its request handling does not share the caller's GIL,
    as a real API's would not (benchmarks). Control it over HTTP at ``/_emulator``.

    :param config: the run's knobs, applied through ``POST /_emulator/reset`` once it is up
    :param host: address to bind (loopback by default)
    :param port: port to bind; 0 picks a free one
    """
    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    command = [sys.executable, "-m", "airflow_provider_minimax.testing.emulator"]
    child = subprocess.Popen([*command, "--host", host, "--port", str(port), "--log-level", "warning"])
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/_emulator/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the MiniMax emulator did not start") from None
                time.sleep(0.1)
        if config is not None:
            reset = httpx.post(f"{url}/_emulator/reset", json=config.model_dump(), timeout=30)
            reset.raise_for_status()
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator in the foreground: ``python -m airflow_provider_minimax.testing.emulator``.

    :param argv: command-line arguments (``sys.argv`` when omitted)
    """
    parser = argparse.ArgumentParser(description="Local emulator of the MiniMax task and chat APIs.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (default 8765)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per sync task / chat call")
    parser.add_argument("--async-latency", type=float, default=1.0, help="seconds an async task runs")
    parser.add_argument("--concurrency", type=int, default=None, help="lanes serving work (unlimited)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        latency=args.latency, async_latency=args.async_latency, concurrency=args.concurrency
    )
    app = create_app(config)
    # Importing the emulator imports Airflow (the provider's errors derive from its exceptions):
    # ~180,000 long-lived objects that every full collection walked again, a 140-160 ms pause of
    # the event loop with every request in flight held (a real API serves without such pauses;
    # at 1,000 chat calls/s, eight of them made a 10,000-row batch 1.37x the limit with a bare
    # httpx client). Frozen, the start-up heap is left out of every collection.
    gc.collect()
    gc.freeze()
    # Counted once: gc.get_freeze_count() walks every frozen object (~18 ms here), which a health
    # probe would otherwise do on the event loop every time it is called.
    app.state.gc_frozen_objects = gc.get_freeze_count()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
