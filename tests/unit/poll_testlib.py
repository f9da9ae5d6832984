"""A scripted getResponse API for trigger and poller tests (respx, retry sleeps removed)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from hook_testlib import TASK_URL, set_connection, task_result

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.02}


class PollApi:
    """getResponse answers: each task is ``processing`` until polled ``finish_after`` times.

    :param finish_after: polls after which a task answers success.
    """

    def __init__(self, finish_after: int = 2) -> None:
        self.finish_after = finish_after
        self.polls: Counter[str] = Counter()
        self.requests: list[list[str]] = []
        self.fail_next: list[httpx.Response] = []
        #: UUID → error code the task fails with.
        self.task_errors: dict[str, str] = {}
        #: UUIDs that make the server refuse the whole request (400, no taskUUID in the error).
        self.poison: set[str] = set()
        #: When set, only this Bearer key is accepted (401 otherwise); ``keys`` records each one seen.
        self.valid_key: str | None = None
        self.keys: list[str] = []
        #: Called when a key is refused (a test rotates the connection's key there).
        self.on_refused_key: Callable[[], None] | None = None
        #: UUIDs left out of every answer (no data, no error).
        self.omit: set[str] = set()
        #: UUIDs answered ``taskFailedOrNotFound`` for their first ``not_found_polls`` polls.
        self.not_found_polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_next:
            return self.fail_next.pop(0)
        uuids = [task["taskUUID"] for task in json.loads(request.content)]
        self.requests.append(uuids)
        key = request.headers["authorization"].removeprefix("Bearer ")
        self.keys.append(key)
        if self.valid_key is not None and key != self.valid_key:
            if self.on_refused_key is not None:
                self.on_refused_key()
            return httpx.Response(401, json={"errors": [{"code": "invalidApiKey", "message": "bad key"}]})
        if self.poison & set(uuids):
            return httpx.Response(400, json={"errors": [{"code": "invalidTaskUUID", "message": "refused"}]})
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for task_uuid in uuids:
            self.polls[task_uuid] += 1
            if task_uuid in self.omit:
                continue
            if 0 < self.polls[task_uuid] <= self.not_found_polls:
                errors.append({"code": "taskFailedOrNotFound", "message": "not found", "taskUUID": task_uuid})
            elif task_uuid in self.task_errors:
                error = {"code": self.task_errors[task_uuid], "message": "failed"}
                data.append(
                    {"taskType": "textInference", "taskUUID": task_uuid, "status": "error", "error": error}
                )
            elif self.polls[task_uuid] >= self.finish_after:
                data.append(task_result(task_uuid, status="success"))
            else:
                data.append({"taskType": "textInference", "taskUUID": task_uuid, "status": "processing"})
        return httpx.Response(200, json={"data": data, "errors": errors} if errors else {"data": data})


def mocked_poll_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[PollApi]:
    """A mocked task API on a fresh connection without retries, so nothing waits (yield from a fixture)."""
    set_connection(monkeypatch, max_retries=0)
    fake = PollApi()
    with respx.mock(assert_all_called=False) as router:
        router.post(TASK_URL).mock(side_effect=fake)
        yield fake
