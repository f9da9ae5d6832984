"""A scripted, stateful task API for wire-level tests of the resume-or-submit decision.

Mount it with respx (``router.post(TASK_URL).mock(side_effect=fake)``): it answers getResponse
from ``tasks``, refuses a known UUID with ``conflictTaskUUID`` and counts every submit attempt.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
from hook_testlib import task_result


class FakeTaskApi:
    """The task API's idempotency-relevant behaviour, scripted per UUID.

    :param accept_as: the status a newly submitted async task takes: ``processing`` or ``success``.
    """

    def __init__(self, accept_as: str = "processing") -> None:
        self.accept_as = accept_as
        #: UUID → getResponse answer: ``processing``, ``success``, ``error`` or ``ghost``
        #: (known, so submits conflict, but getResponse says not found: an expired task).
        self.tasks: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self.submissions: Counter[str] = Counter()
        self.numbers: dict[str, int] = {}
        self.polls: Counter[str] = Counter()
        self.bodies: list[list[dict[str, Any]]] = []
        #: Requests refused as a whole with this status before being handled (transient faults).
        self.fail_next: list[int] = []
        #: Accept the next submit but answer it with a 503 (a response lost on the way back).
        self.lose_next_submit_response = False
        #: UUID → error entry a submit of that UUID is refused with (validation errors).
        self.refuse: dict[str, dict[str, Any]] = {}
        #: Answers given to newly submitted tasks, in order (then a default answer).
        self.answers: list[str] = []
        #: A ``processing`` task turns ``success`` once polled more than this many times (0: never).
        self.finish_after_polls = 0
        #: UUID → how many more getResponse answers leave it out entirely (no data, no error).
        self.omit: Counter[str] = Counter()
        #: UUID → how many more getResponse answers say ``taskFailedOrNotFound`` although it is known.
        self.hide: Counter[str] = Counter()
        #: A newly accepted task answers ``taskFailedOrNotFound`` to its first this many polls.
        self.invisible_for = 0
        #: Answer "not found" without the taskUUID (a whole-request 400) when it is the only error.
        self.unscoped_not_found = False
        #: Refuse to answer past this many requests, so a runaway loop fails its test instead of hanging.
        self.max_requests = 500

    def set(self, task_uuid: str, status: str, text: str = "hello") -> None:
        """Script a UUID's state."""
        self.tasks[task_uuid] = status
        self.texts[task_uuid] = text

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_next:
            return httpx.Response(self.fail_next.pop(0), json={"errors": [{"code": "providerUnavailable"}]})
        body = json.loads(request.content)
        self.bodies.append(body)
        if len(self.bodies) > self.max_requests:
            raise AssertionError(f"runaway client: more than {self.max_requests} requests")
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        lose = False
        for task in body:
            task_uuid = task["taskUUID"]
            if task["taskType"] == "getResponse":
                self.polls[task_uuid] += 1
                self._poll(task_uuid, data, errors)
                continue
            self.submissions[task_uuid] += 1
            if task_uuid in self.refuse:
                errors.append({**self.refuse[task_uuid], "taskUUID": task_uuid})
                continue
            if task_uuid in self.tasks:
                errors.append({"code": "conflictTaskUUID", "message": "known", "taskUUID": task_uuid})
                continue
            n = task.get("numberResults") or 1
            self.numbers[task_uuid] = n
            answer = self.answers.pop(0) if self.answers else f"answer {task_uuid[:8]}"
            if task.get("deliveryMethod") == "sync":
                self.set(task_uuid, "success", answer)
                data += [task_result(task_uuid, answer, resultIndex=i) for i in range(n)]
            else:
                self.set(task_uuid, self.accept_as, answer)
                self.hide[task_uuid] = self.invisible_for
                data.append({"taskType": "textInference", "taskUUID": task_uuid})
            lose = lose or self.lose_next_submit_response
        if lose:
            self.lose_next_submit_response = False
            return httpx.Response(503, json={"errors": [{"code": "providerUnavailable"}]})
        if errors and not data:
            if self.unscoped_not_found and len(errors) == 1:
                errors = [{key: value for key, value in errors[0].items() if key != "taskUUID"}]
            return httpx.Response(400, json={"errors": errors})
        return httpx.Response(200, json={"data": data, "errors": errors} if errors else {"data": data})

    def _poll(self, task_uuid: str, data: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
        if self.omit[task_uuid] > 0:
            self.omit[task_uuid] -= 1
            return
        status = self.tasks.get(task_uuid, "ghost")
        if self.hide[task_uuid] > 0:
            self.hide[task_uuid] -= 1
            status = "ghost"
        if status == "processing" and 0 < self.finish_after_polls < self.polls[task_uuid]:
            status = self.tasks[task_uuid] = "success"
        head = {"taskType": "textInference", "taskUUID": task_uuid}
        if status == "ghost":
            errors.append({"code": "taskFailedOrNotFound", "message": "not found", "taskUUID": task_uuid})
        elif status == "processing":
            data.append({**head, "status": "processing"})
        elif status == "error":
            data.append({**head, "status": "error", "error": {"code": "inferenceError", "message": "boom"}})
        else:
            text = self.texts[task_uuid]
            data += [
                {**task_result(task_uuid, text, resultIndex=i), "status": "success"}
                for i in range(self.numbers.get(task_uuid, 1))
            ]

    @property
    def submitted(self) -> list[str]:
        """UUIDs in the order of their first submit attempt."""
        return list(self.submissions)


class MemoryStore:
    """A stand-in for Airflow 3.3's ``task_state_store`` (JSON values, per task instance)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes: list[tuple[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))
        self.writes.append((key, value))
