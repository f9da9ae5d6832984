"""The fault matrix: every fault of a hostile server through every path a user takes.

Each case judges what the user gets (a result or one of our typed errors) and what the server
saw: results it completed that never reached the caller (lost), generations paid more than once
(duplicates), how many requests the case needed (bounded), errors that escaped as raw library
errors, and endless answers the client never hung up on. The figures land in the summary table.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout
from campaign_figures import FIGURES, CaseRecord
from campaign_paths import (
    CAMPAIGN_KEY,
    CHAT_PATHS,
    CONTEXTS,
    STREAM_PATHS,
    TASK_PATHS,
    Path,
    _chat_operator,
    connection_json,
    sensor,
    set_tries,
)
from hostile_server import MALFORMED_BODIES, Fault, HostileServer
from pydantic import BaseModel

from airflow_provider_minimax.exceptions import MiniMaxError

#: What a user may get instead of a result: our errors, and a sensor's own timeout (the sensor contract).
TYPED_ERRORS = (MiniMaxError, AirflowSensorTimeout)
#: No case may need more requests than this, whatever the server answers.
REQUEST_BOUND = 60
#: A safety net so a hole cannot hang the suite; a case that reaches it is recorded as HANG.
CASE_CAP = 45.0
RESULT, ERROR, EITHER = "result", "error", "either"
#: Connection settings where the server stalls: a short deadline, one retry.
STALL = {"timeout": 0.3, "total_timeout": 0.8, "stream_idle_timeout": 0.3, "max_retries": 1}
TASK, CHAT, STREAM, STRUCTURED = "task", "chat", "stream", "structured"


class Answer(BaseModel):
    answer: str


STRUCTURED_PATHS: dict[str, Path] = {"chat operator output_type": _chat_operator(output_type=Answer)}
PATHS = {TASK: TASK_PATHS, CHAT: CHAT_PATHS, STREAM: STREAM_PATHS, STRUCTURED: STRUCTURED_PATHS}
ALL = (TASK, CHAT, STREAM)


@dataclass
class FaultCase:
    """A fault, where it applies and what the user must get.

    :param name: shown in the summary.
    :param fault: builds a fresh fault for each case.
    :param expect: ``result``, ``error`` (one of ours) or ``either``.
    :param apis: the path groups it runs through.
    :param reasks: paid re-asks the fault itself calls for (an answer that is not JSON).
    :param extra: connection settings for the case (short timeouts where the server stalls).
    :param max_requests: a tighter bound than :data:`REQUEST_BOUND` where the answer is final.
    """

    name: str
    fault: Callable[[], Fault]
    expect: str
    apis: tuple[str, ...] = ALL
    reasks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    max_requests: int = REQUEST_BOUND


def retry_after(times: int | None = 1, **params: Any) -> Callable[[], Fault]:
    return lambda: Fault("http_error", times, params={"status": 429, **params})


FAULTS = [
    # The emulator's faults (airflow_provider_minimax/testing/emulator/_faults.py), met anew.
    FaultCase("http 503 twice", lambda: Fault("http_error", times=2, params={"status": 503}), RESULT),
    FaultCase("http 502 once", lambda: Fault("http_error", params={"status": 502}), RESULT),
    FaultCase("429 Retry-After seconds", retry_after(retry_after=1), RESULT),
    FaultCase("429 Retry-After HTTP date", retry_after(retry_after_date=2), RESULT),
    # "Come back in 10 minutes" is final: one request per call (a batch has two rows), no retry.
    FaultCase("429 Retry-After 600 s", retry_after(None, retry_after=600), ERROR, max_requests=2),
    FaultCase("drop connection", lambda: Fault("drop_connection"), RESULT),
    FaultCase("delay 0.3 s", lambda: Fault("delay", params={"seconds": 0.3}), RESULT),
    FaultCase("stream cut before [DONE]", lambda: Fault("stream_cut", None, on="stream"), EITHER, (STREAM,)),
    FaultCase(
        "stream cut mid-answer",
        lambda: Fault("stream_cut", None, on="stream", params={"mid_answer": True}),
        ERROR,
        (STREAM,),
    ),
    FaultCase("not-JSON content", lambda: Fault("invalid_json_content", on="chat"), RESULT, (STRUCTURED,), 1),
    FaultCase("base_resp 1002", lambda: Fault("base_resp", on="chat"), RESULT, (CHAT,)),
    # Beyond the emulator.
    FaultCase("lost submit response", lambda: Fault("lost_submit", on="submit"), RESULT, (TASK,)),
    FaultCase(
        "503 after the submit ran", lambda: Fault("error_after_processing", on="submit"), RESULT, (TASK,)
    ),
    FaultCase("late visibility", lambda: Fault("late_visibility", times=2, on="poll"), RESULT, (TASK,)),
    FaultCase("omitted UUIDs", lambda: Fault("omit_uuid", times=3, on="poll"), RESULT, (TASK,)),
    FaultCase(
        "lost submit + omitted UUID",
        lambda: Fault("lost_submit_then_omit", on="submit", params={"omit": 5}),
        RESULT,
        (TASK,),
    ),
    *(
        FaultCase(
            f"malformed {shape}", lambda shape=shape: Fault("malformed", None, params={"shape": shape}), ERROR
        )
        for shape in MALFORMED_BODIES
    ),
    FaultCase("revoked key", lambda: Fault("revoked", None), ERROR, max_requests=2),
    # The key rotates (and the connection with it) right after the first poll was served: the
    # next poll meets 401 with the old key, and must read the connection again.
    FaultCase("rotated key mid-poll", lambda: Fault("rotate_key", on="poll"), RESULT, (TASK,)),
    FaultCase("rotated key", lambda: Fault("rotate_key"), RESULT, (CHAT,)),
    FaultCase("slow drip past timeout", lambda: Fault("slow_drip", None), ERROR, extra=STALL),
    FaultCase("50 MB body", lambda: Fault("huge_body", None), ERROR, (TASK, CHAT)),
    FaultCase(
        "SSE never ends", lambda: Fault("sse_endless", None, on="stream"), ERROR, (STREAM,), extra=STALL
    ),
    FaultCase("SSE no final chunk", lambda: Fault("sse_no_final", None, on="stream"), ERROR, (STREAM,)),
    FaultCase("redirect to another host", lambda: Fault("redirect", None), ERROR, max_requests=2),
]

CASES = [
    pytest.param(case, path_name, path, id=f"{case.name} | {path_name}")
    for case in FAULTS
    for api in case.apis
    for path_name, path in PATHS[api].items()
]
_numbers = itertools.count()


async def run_case(
    server: HostileServer, case: FaultCase, path_name: str, path: Path
) -> tuple[CaseRecord, Any]:
    """Run one path under one fault and measure it."""
    prompt = f"q{next(_numbers)}"
    CONTEXTS.clear()
    fault = case.fault()
    # A retry only tells something when the server recovers; under an endless fault it doubles the wait.
    set_tries(2 if fault.times is not None else 1)
    if path is sensor:  # the sensor waits on a task submitted before the fault strikes
        run = sensor(prompt, prompt, arm=lambda: setattr(server, "fault", fault))
    else:
        server.fault = fault
        run = path(prompt, prompt)
    error: BaseException | None = None
    result: Any = None
    try:
        result = await asyncio.wait_for(run, CASE_CAP)
        outcome = RESULT
    except asyncio.TimeoutError:
        outcome = "HANG"
    except Exception as err:
        error = err
        typed = isinstance(err, TYPED_ERRORS)
        outcome = type(err).__name__ if typed else f"RAW {type(err).__name__}"
    delivered = json.dumps([result, [ctx["ti"].xcom for ctx in CONTEXTS]], default=str)
    # Under a fault that never ends no answer can be read; a result is lost when the server
    # recovered (the fault was used up) and the caller still did not get it.
    recovered = fault.times is not None
    lost = sum(1 for p, n in server.paid.items() if recovered and n and f"answer to {p}" not in delivered)
    record = CaseRecord(
        fault=case.name,
        path=path_name,
        outcome=outcome,
        lost=lost,
        duplicates=sum(max(0, n - 1 - case.reasks) for n in server.paid.values()),
        requests=server.requests,
        raw_errors=int(outcome.startswith("RAW")),
        unbounded=server.gave_up,
    )
    FIGURES.cases.append(record)
    return record, error


@pytest.mark.parametrize(("case", "path_name", "path"), CASES)
async def test_fault(
    hostile: HostileServer,
    short_sleeps: None,
    monkeypatch: pytest.MonkeyPatch,
    case: FaultCase,
    path_name: str,
    path: Path,
) -> None:
    def point_connections(key: str = CAMPAIGN_KEY) -> None:
        for conn, api in (("MINIMAX_DEFAULT", "task"), ("MINIMAX_CHAT", "chat")):
            monkeypatch.setenv(
                f"AIRFLOW_CONN_{conn}", connection_json(hostile.base_url, api, key, **case.extra)
            )

    point_connections()
    hostile.on_rotate = point_connections
    record, error = await run_case(hostile, case, path_name, path)
    if case.name == "rotated key mid-poll" and path_name in ("deferrable operator", "batch (task)"):
        assert hostile.refused_keys, "the old key was never refused: the rotation was not exercised"
    assert record.raw_errors == 0, f"a raw library error escaped: {error!r}"
    assert record.outcome != "HANG", "the path did not end"
    assert record.unbounded == 0, "the client kept reading an endless answer until the server gave up"
    assert record.lost == 0, f"results completed on the server never reached the caller ({record.outcome})"
    assert record.duplicates == 0, f"paid twice: {dict(hostile.paid)}"
    assert record.requests <= case.max_requests
    if case.expect == RESULT:
        assert record.outcome == RESULT, f"expected a result, got {error!r}"
    elif case.expect == ERROR:
        assert record.outcome != RESULT, "a hostile answer was taken for a result"
