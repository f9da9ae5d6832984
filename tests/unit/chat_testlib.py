"""Helpers shared by the chat operator and decorator unit tests: XCom recorder, scripted API answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from hook_testlib import chat_body, task_result


class FakeTI:
    """Records ``xcom_push`` calls the way the task instance would store them.

    :param run_id: the DAG run; the same run means the same taskUUIDs (a retried try).
    """

    def __init__(self, run_id: str = "run-1") -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index = "dag", "ask", run_id, -1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        """Store one XCom value.

        :param key: the XCom key.
        :param value: the value.
        """
        self.xcom[key] = value


def context(run_id: str = "run-1") -> dict[str, Any]:
    """A minimal task context: only ``ti``.

    :param run_id: the DAG run of the task instance.
    """
    return {"ti": FakeTI(run_id)}


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """One assistant tool call.

    :param call_id: the tool_call id.
    :param name: the function name.
    :param arguments: the arguments, JSON-encoded unless already a string.
    """
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}


def tool_calls_body(*calls: dict[str, Any], content: str = "<think>need tools</think>") -> dict[str, Any]:
    """A chat completion that asks for tool calls.

    :param calls: the tool calls.
    :param content: the assistant content sent along.
    """
    body = chat_body(content)
    body["choices"][0]["message"]["tool_calls"] = list(calls)
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


class TaskReplies:
    """A task API answering each new sync textInference with the next scripted text.

    getResponse finds what was already answered (else ``taskFailedOrNotFound``), as the real
    API does, so a retried try can reuse a paid answer.

    :param texts: the answers, in order (the last one repeats).
    :param fields: further result fields.
    """

    def __init__(self, *texts: str, **fields: Any) -> None:
        self.texts = list(texts)
        self.fields = fields
        self.answered: dict[str, dict[str, Any]] = {}
        self.submitted: list[dict[str, Any]] = []

    @property
    def calls(self) -> int:
        """textInference tasks submitted (polls excluded)."""
        return len(self.submitted)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        task = json.loads(request.content)[0]
        task_uuid = task["taskUUID"]
        if task["taskType"] == "getResponse":
            if task_uuid in self.answered:
                return httpx.Response(200, json={"data": [{**self.answered[task_uuid], "status": "success"}]})
            missing = {"code": "taskFailedOrNotFound", "message": "not found", "taskUUID": task_uuid}
            return httpx.Response(400, json={"errors": [missing]})
        text = self.texts[min(self.calls, len(self.texts) - 1)]
        self.submitted.append(task)
        self.answered[task_uuid] = task_result(task_uuid, text, **self.fields)
        return httpx.Response(200, json={"data": [self.answered[task_uuid]]})


class BrokenStream(httpx.SyncByteStream):
    """An SSE body that sends some bytes, then fails like a dropped connection.

    :param head: the bytes sent before the failure.
    """

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
