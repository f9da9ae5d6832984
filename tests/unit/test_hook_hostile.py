"""MiniMaxHook against a hostile server: wrong shapes, slow drips, endless streams, huge bodies."""

from __future__ import annotations

import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from fake_sleep import FakeSleep
from hook_testlib import (
    CHAT_COMPLETIONS_URL,
    CONN_ID,
    SECRET_KEY,
    TASK_URL,
    chat_body,
    make_hook,
    sent_json,
    sse_response,
    task_result,
    v4,
)

from airflow_provider_minimax.exceptions import (
    MiniMaxConnectionError,
    MiniMaxDeadlineError,
    MiniMaxError,
    MiniMaxMalformedResponseError,
    MiniMaxRateLimitError,
    MiniMaxRedirectError,
    MiniMaxResponseTooLargeError,
    MiniMaxTaskFailedError,
)
from airflow_provider_minimax.hooks import call_budget
from airflow_provider_minimax.hooks.accepted_task import NOT_FOUND_GRACE
from airflow_provider_minimax.hooks.minimax import MiniMaxHook


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


class FakeClock:
    """A monotonic clock that moves only when the server under test says time passed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (what the hook's sleeps do here)."""
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(call_budget, "monotonic", fake)
    return fake


class Drip(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends ``pieces`` forever (or ``limit`` times), one second of fake time apart.

    :param clock: the fake clock to advance.
    :param pieces: the byte pieces, cycled.
    :param limit: how many pieces at most (a safety net: the hook must stop much earlier).
    """

    def __init__(self, clock: FakeClock, pieces: list[bytes], limit: int = 10_000) -> None:
        self.clock = clock
        self.pieces = pieces
        self.limit = limit
        self.sent = 0

    def _next(self) -> bytes:
        piece = self.pieces[self.sent % len(self.pieces)]
        self.sent += 1
        self.clock.now += 1.0
        return piece

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.limit:
            yield self._next()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.limit:
            yield self._next()


async def _drain(chunks: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in chunks]


def _call(hook: MiniMaxHook, name: str, is_async: bool, *args: Any, **kwargs: Any) -> Any:
    """Run ``hook.<name>`` or its async twin to the end (streams drained)."""
    import asyncio

    if not is_async:
        result = getattr(hook, name)(*args, **kwargs)
        return list(result) if name.startswith("stream") else result
    method = getattr(hook, f"a{name}")
    if name.startswith("stream"):
        return asyncio.run(_drain(method(*args, **kwargs)))
    return asyncio.run(method(*args, **kwargs))


sync_and_async = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


# ------------------------------------------------------------------------ malformed answers (§3)

MALFORMED_CHAT_BODIES = [
    pytest.param({"choices": "oops"}, id="choices-a-string"),
    pytest.param({}, id="empty-object"),
    pytest.param({"id": "x", "object": "chat.completion"}, id="no-choices"),
    pytest.param({"choices": []}, id="empty-choices"),
    pytest.param({"choices": [{"index": 0}]}, id="choice-without-message"),
]


@sync_and_async
@pytest.mark.parametrize("body", MALFORMED_CHAT_BODIES)
def test_malformed_chat_answer_is_a_typed_error_and_not_retried(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, body: dict[str, Any], is_async: bool
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat", max_retries=2)
    route = router.post(CHAT_COMPLETIONS_URL).respond(200, json=body)
    with pytest.raises(MiniMaxMalformedResponseError):
        _call(hook, "generate", is_async, "hi")
    assert route.call_count == 1  # a 200 may have been billed: never resent


MALFORMED_CHAT_CHUNKS = [
    pytest.param({"choices": "oops"}, id="choices-a-string"),
    pytest.param({"choices": [{"delta": "x"}]}, id="delta-a-string"),
    pytest.param("{not json", id="not-json"),
]


@sync_and_async
@pytest.mark.parametrize("chunk", MALFORMED_CHAT_CHUNKS)
def test_malformed_chat_chunk_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, chunk: Any, is_async: bool
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    raw = chunk if isinstance(chunk, str) else json.dumps(chunk)
    body = f"data: {raw}\n\n".encode()
    router.post(CHAT_COMPLETIONS_URL).respond(
        200, headers={"content-type": "text/event-stream"}, content=body
    )
    with pytest.raises(MiniMaxMalformedResponseError):
        _call(hook, "stream_chat_completion", is_async, "hi")


@sync_and_async
def test_malformed_task_chunk_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, is_async: bool
) -> None:
    hook, _ = make_hook(monkeypatch)
    router.post(TASK_URL).mock(return_value=sse_response({"delta": "oops"}))
    with pytest.raises(MiniMaxMalformedResponseError):
        _call(hook, "stream_text_inference", is_async, "hi")


RAW_TRANSPORT_ERRORS = [
    pytest.param(httpx.ProxyError("407 from proxy"), id="proxy"),
    pytest.param(httpx.DecodingError("bad gzip"), id="decoding"),
    pytest.param(
        httpx.LocalProtocolError(f"Illegal header value b'Bearer {SECRET_KEY} '"), id="local-protocol"
    ),
    pytest.param(httpx.UnsupportedProtocol("no scheme"), id="unsupported-protocol"),
    pytest.param(
        UnicodeEncodeError("ascii", f"Bearer {SECRET_KEY}\u00e9", 20, 21, "ordinal not in range"),
        id="unicode-header",
    ),
]


@sync_and_async
@pytest.mark.parametrize("failure", RAW_TRANSPORT_ERRORS)
def test_non_retryable_transport_errors_are_typed_without_the_key(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, failure: Exception, is_async: bool
) -> None:
    hook, sleeper = make_hook(monkeypatch, api="chat", max_retries=2)
    route = router.post(CHAT_COMPLETIONS_URL).mock(side_effect=failure)
    with pytest.raises(MiniMaxError) as caught:
        _call(hook, "chat_completion", is_async, "hi")
    assert (route.call_count, sleeper.waits) == (1, [])
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for link in chain:
        assert SECRET_KEY not in str(link) and "Bearer" not in str(link)
        assert SECRET_KEY not in repr(vars(link))


def test_ssl_cause_stays_chained(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = make_hook(monkeypatch, max_retries=0)
    failure = httpx.ConnectError("certificate verify failed")
    failure.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise failure

    # A MockTransport, not respx: respx replaces the cause of what a side effect raises.
    hook.__dict__["client"] = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(MiniMaxConnectionError) as caught:
        hook.text_inference("hi")
    assert caught.value.__cause__ is failure
    assert isinstance(failure.__cause__, ssl.SSLCertVerificationError)


# ------------------------------------------------------------------------ hollow answers (§7)


@sync_and_async
@pytest.mark.parametrize("answer", [[], {"data": []}], ids=["bare-array", "empty-data"])
def test_task_answer_without_our_result_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, answer: Any, is_async: bool
) -> None:
    hook, _ = make_hook(monkeypatch, max_retries=0)
    router.post(TASK_URL).respond(200, json=answer)
    with pytest.raises(MiniMaxMalformedResponseError) as caught:
        _call(hook, "text_inference", is_async, "hi", task_uuid=v4(1))
    assert v4(1) in str(caught.value)


SYNC_ANSWERS_WITHOUT_A_RESULT = [
    pytest.param({"data": [{"taskType": "textInference", "taskUUID": v4(1)}]}, id="placeholder"),
    pytest.param(
        {"data": [{"taskType": "textInference", "taskUUID": v4(1), "status": "processing"}]}, id="processing"
    ),
    pytest.param({"data": [{"taskType": "textInference", "taskUUID": v4(2), "text": "x"}]}, id="other-uuid"),
]


@sync_and_async
@pytest.mark.parametrize("answer", SYNC_ANSWERS_WITHOUT_A_RESULT)
def test_sync_answer_without_a_result_is_malformed_not_bad_input(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, answer: Any, is_async: bool
) -> None:
    hook, _ = make_hook(monkeypatch, max_retries=3)
    route = router.post(TASK_URL).respond(200, json=answer)
    with pytest.raises(MiniMaxMalformedResponseError) as caught:
        _call(hook, "text_inference", is_async, "hi", task_uuid=v4(1))
    assert v4(1) in str(caught.value)
    assert route.call_count == 1  # not resent: the task may have been paid for


def test_async_submit_placeholder_is_the_acknowledgement(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch)
    router.post(TASK_URL).respond(200, json={"data": [{"taskType": "textInference", "taskUUID": v4(1)}]})
    task = hook.new_text_inference("hi", task_uuid=v4(1), delivery_method="async")
    outcome = hook.submit_tasks([task])
    assert ([r.task_uuid for r in outcome.results], outcome.errors) == ([v4(1)], [])


def test_sync_answer_with_an_error_item_is_the_task_failure(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch)
    failed = {**task_result(v4(1)), "status": "error", "error": {"code": "inferenceError", "message": "m"}}
    router.post(TASK_URL).respond(200, json={"data": [failed]})
    with pytest.raises(MiniMaxTaskFailedError) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert (caught.value.code, caught.value.task_uuid) == ("inferenceError", v4(1))


# ------------------------------------------------------------------------ a lost answer, then a conflict

CONFLICT = {"errors": [{"code": "conflictTaskUUID", "taskUUID": v4(1)}]}
POLL = [{"taskType": "getResponse", "taskUUID": v4(1)}]
PENDING_ITEM = {"taskType": "textInference", "taskUUID": v4(1), "status": "processing"}
PENDING_POLLS = {
    "omitted": {"data": []},
    "processing": {"data": [PENDING_ITEM]},
    "not-found": {"errors": [{"code": "taskFailedOrNotFound", "taskUUID": v4(1)}]},
    "unscoped-not-found": {"errors": [{"code": "taskFailedOrNotFound", "message": "not found"}]},
    "conflict-again": CONFLICT,
}


def _timed_hook(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, total_timeout: float
) -> tuple[MiniMaxHook, list[float]]:
    """A task hook whose sleeps move the fake clock instead of waiting, and the waits it asked for."""
    hook, _ = make_hook(monkeypatch, total_timeout=total_timeout, max_retries=0)
    return hook, FakeSleep(on_wait=clock.advance).install(monkeypatch).waits


@pytest.fixture
def timed_hook(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> tuple[MiniMaxHook, list[float]]:
    return _timed_hook(monkeypatch, clock, total_timeout=60)


def _answers(*bodies: dict[str, Any]) -> list[httpx.Response]:
    return [httpx.Response(400 if body is CONFLICT else 200, json=body) for body in bodies]


@sync_and_async
@pytest.mark.parametrize("pending", PENDING_POLLS)
def test_conflict_polls_until_the_result_arrives(
    router: respx.MockRouter, timed_hook: tuple[MiniMaxHook, list[float]], pending: str, is_async: bool
) -> None:
    hook, waits = timed_hook
    done = {"data": [{**task_result(v4(1), text="paid once"), "status": "success"}]}
    route = router.post(TASK_URL).mock(side_effect=_answers(CONFLICT, *[PENDING_POLLS[pending]] * 3, done))
    outcome = _call(hook, "text_inference", is_async, "hi", task_uuid=v4(1))
    assert [r.text for r in outcome.results] == ["paid once"]
    assert [sent_json(call.request) for call in route.calls[1:]] == [POLL] * 4
    assert waits == [1.0, 1.5, 2.25]  # the contract's cadence: ~1 s, then x1.5


@sync_and_async
def test_conflict_without_a_result_times_out_naming_the_uuid(
    router: respx.MockRouter, timed_hook: tuple[MiniMaxHook, list[float]], is_async: bool
) -> None:
    hook, waits = timed_hook
    route = router.post(TASK_URL).mock(side_effect=_answers(CONFLICT, *[PENDING_POLLS["omitted"]] * 100))
    with pytest.raises(MiniMaxDeadlineError) as caught:
        _call(hook, "text_inference", is_async, "hi", task_uuid=v4(1))
    error = caught.value
    assert (error.task_uuid, error.task_uuids) == (v4(1), [v4(1)])
    assert f"get_responses('{v4(1)}')" in str(error) and "total_timeout of 60 s" in str(error)
    assert max(waits) == 10.0 and sum(waits) < 60  # capped back-off, never sleeping past the deadline
    assert route.call_count == 1 + len(waits) + 1


@sync_and_async
@pytest.mark.parametrize(
    ("poll", "code"),
    [
        pytest.param(PENDING_POLLS["not-found"], "taskFailedOrNotFound", id="not-found-past-the-grace"),
        pytest.param(
            {"data": [{**PENDING_ITEM, "status": "error", "error": {"code": "inferenceError"}}]},
            "inferenceError",
            id="failed",
        ),
    ],
)
def test_conflict_then_a_failure_is_the_task_failure(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    clock: FakeClock,
    poll: dict[str, Any],
    code: str,
    is_async: bool,
) -> None:
    hook, waits = _timed_hook(monkeypatch, clock, total_timeout=1000)
    router.post(TASK_URL).mock(side_effect=_answers(CONFLICT, *[poll] * 100))
    with pytest.raises(MiniMaxTaskFailedError) as caught:
        _call(hook, "text_inference", is_async, "hi", task_uuid=v4(1))
    assert (caught.value.code, caught.value.task_uuid) == (code, v4(1))
    if code == "taskFailedOrNotFound":
        assert sum(waits) >= NOT_FOUND_GRACE > sum(waits[:-1])  # pending for the grace, no longer


@pytest.mark.parametrize(
    ("api", "url", "answer"),
    [
        ("task", TASK_URL, []),
        ("task", TASK_URL, {"data": []}),
        ("chat", CHAT_COMPLETIONS_URL, {}),
        ("chat", CHAT_COMPLETIONS_URL, []),
    ],
)
def test_test_connection_refuses_a_server_that_answers_empty(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, api: str, url: str, answer: Any
) -> None:
    hook, _ = make_hook(monkeypatch, api=api)
    router.post(url).respond(200, json=answer)
    ok, message = hook.test_connection()
    assert not ok, message


def _gzip_bomb(size: int) -> bytes:
    return gzip.compress(b" " * size, compresslevel=9)


@sync_and_async
@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(b"[" + b" " * 5000 + b"]", {}, id="plain"),
        pytest.param(_gzip_bomb(200_000), {"content-encoding": "gzip"}, id="gzip-bomb"),
    ],
)
def test_body_past_the_cap_is_a_typed_error_and_not_retried(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    content: bytes,
    headers: dict[str, str],
    is_async: bool,
) -> None:
    hook, _ = make_hook(monkeypatch, max_retries=2, max_response_bytes=4096)
    route = router.post(TASK_URL).respond(200, content=content, headers=headers)
    with pytest.raises(MiniMaxResponseTooLargeError) as caught:
        _call(hook, "text_inference", is_async, "hi")
    assert "max_response_bytes" in str(caught.value)
    assert route.call_count == 1


@sync_and_async
@pytest.mark.parametrize("headers", [{}, {"content-encoding": "identity"}], ids=["plain", "identity"])
def test_an_endless_body_stops_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    clock: FakeClock,
    headers: dict[str, str],
    is_async: bool,
) -> None:
    hook, _ = make_hook(monkeypatch, max_response_bytes=4096, total_timeout=100_000)
    drip = Drip(clock, [b" " * 1024])
    router.post(TASK_URL).mock(side_effect=lambda request: httpx.Response(200, headers=headers, stream=drip))
    with pytest.raises(MiniMaxResponseTooLargeError):
        _call(hook, "text_inference", is_async, "hi")
    assert drip.sent == 5  # the piece that crossed the cap is the last one read


@sync_and_async
def test_body_under_the_cap_is_read(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, is_async: bool
) -> None:
    hook, _ = make_hook(monkeypatch, max_response_bytes=4096)
    body = gzip.compress(json.dumps({"data": [task_result(v4(1))]}).encode())
    router.post(TASK_URL).respond(200, content=body, headers={"content-encoding": "gzip"})
    assert _call(hook, "text_inference", is_async, "hi", task_uuid=v4(1)).results[0].text == "hello"


# ------------------------------------------------------------------------ deadlines (§7)


@sync_and_async
@pytest.mark.parametrize(
    ("api", "method", "url"),
    [("task", "text_inference", TASK_URL), ("chat", "chat_completion", CHAT_COMPLETIONS_URL)],
)
def test_slow_drip_body_fails_at_the_total_deadline(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    clock: FakeClock,
    api: str,
    method: str,
    url: str,
    is_async: bool,
) -> None:
    hook, _ = make_hook(monkeypatch, api=api, timeout=5, total_timeout=30)
    drip = Drip(clock, [b" "])
    router.post(url).mock(side_effect=lambda request: httpx.Response(200, stream=drip))
    with pytest.raises(MiniMaxDeadlineError) as caught:
        _call(hook, method, is_async, "hi")
    assert 30 <= drip.sent <= 31  # one second of fake time per byte: stopped at the deadline
    assert "total_timeout" in str(caught.value)


@sync_and_async
@pytest.mark.parametrize(
    ("api", "method", "url"),
    [("task", "stream_text_inference", TASK_URL), ("chat", "stream_chat_completion", CHAT_COMPLETIONS_URL)],
)
def test_stream_of_pings_fails_at_the_idle_limit(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    clock: FakeClock,
    api: str,
    method: str,
    url: str,
    is_async: bool,
) -> None:
    hook, _ = make_hook(monkeypatch, api=api, stream_idle_timeout=20, total_timeout=1000)
    drip = Drip(clock, [b": ping\n\n"])
    headers = {"content-type": "text/event-stream"}
    router.post(url).mock(side_effect=lambda request: httpx.Response(200, headers=headers, stream=drip))
    with pytest.raises(MiniMaxDeadlineError) as caught:
        _call(hook, method, is_async, "hi")
    assert 20 <= drip.sent <= 21
    assert "stream_idle_timeout" in str(caught.value)


def test_retry_waits_never_run_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, clock: FakeClock
) -> None:
    hook, _ = make_hook(monkeypatch, max_retries=5, total_timeout=10)
    sleeper = FakeSleep(on_wait=clock.advance).install(monkeypatch)
    route = router.post(TASK_URL).respond(
        503, headers={"retry-after": "8"}, json={"errors": [{"code": "busy"}]}
    )
    with pytest.raises(MiniMaxError):
        hook.text_inference("hi")
    assert (route.call_count, sleeper.waits) == (2, [8.0])


# ------------------------------------------------------------------------ streams without their end (§7)

CHAT_CHUNK = {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}
TASK_CHUNK = {"taskType": "textInference", "taskUUID": v4(1), "delta": {"text": "Hi"}}


@sync_and_async
@pytest.mark.parametrize(
    ("api", "method", "url", "events"),
    [
        ("chat", "stream_chat_completion", CHAT_COMPLETIONS_URL, [CHAT_CHUNK]),
        ("chat", "stream_chat_completion", CHAT_COMPLETIONS_URL, [CHAT_CHUNK, "[DONE]"]),
        ("task", "stream_text_inference", TASK_URL, [TASK_CHUNK]),
        ("task", "stream_text_inference", TASK_URL, [TASK_CHUNK, "[DONE]"]),
    ],
    ids=["chat-eof", "chat-done", "task-eof", "task-done"],
)
def test_stream_without_its_final_chunk_raises(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    api: str,
    method: str,
    url: str,
    events: list[Any],
    is_async: bool,
) -> None:
    hook, _ = make_hook(monkeypatch, api=api)
    router.post(url).mock(return_value=sse_response(*events))
    with pytest.raises(MiniMaxConnectionError, match="no final chunk"):
        _call(hook, method, is_async, "hi")


# ------------------------------------------------------------------------ Retry-After and resends (§8)


@sync_and_async
def test_retry_after_beyond_the_cap_raises_at_once_saying_when(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, is_async: bool
) -> None:
    hook, sleeper = make_hook(monkeypatch, api="chat", max_retries=3)
    route = router.post(CHAT_COMPLETIONS_URL).respond(
        429, headers={"retry-after": "600"}, json={"error": {"message": "slow down"}}
    )
    with pytest.raises(MiniMaxRateLimitError) as caught:
        _call(hook, "chat_completion", is_async, "hi")
    assert (route.call_count, sleeper.waits) == (1, [])
    assert caught.value.retry_after == 600
    assert "600" in str(caught.value) and "UTC" in str(caught.value)


def test_chat_post_after_a_read_timeout_is_resent_and_counted(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat", max_retries=2)
    route = router.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[httpx.ReadTimeout("read timed out"), httpx.Response(200, json=chat_body())]
    )
    assert hook.chat_completion("hi").answer == "Hello!"
    assert (route.call_count, hook.chat_resends_after_timeout) == (2, 1)


def test_chat_post_after_a_read_timeout_is_not_resent_when_the_connection_says_so(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat", max_retries=2, chat_retry_on_read_timeout=False)
    route = router.post(CHAT_COMPLETIONS_URL).mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(MiniMaxConnectionError, match="may have been billed"):
        hook.chat_completion("hi")
    assert (route.call_count, hook.chat_resends_after_timeout) == (1, 0)


def test_chat_connect_errors_are_retried_even_without_resends(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat", max_retries=2, chat_retry_on_read_timeout=False)
    route = router.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=chat_body())]
    )
    assert hook.chat_completion("hi").answer == "Hello!"
    assert (route.call_count, hook.chat_resends_after_timeout) == (2, 0)


# ------------------------------------------------------------------------ redirects (§6)


@sync_and_async
@pytest.mark.parametrize(
    ("api", "method", "url"),
    [
        ("task", "text_inference", TASK_URL),
        ("chat", "chat_completion", CHAT_COMPLETIONS_URL),
        ("chat", "stream_chat_completion", CHAT_COMPLETIONS_URL),
    ],
)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_one_error_with_the_location_not_retried(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    api: str,
    method: str,
    url: str,
    status: int,
    is_async: bool,
) -> None:
    hook, _ = make_hook(monkeypatch, api=api, max_retries=2)
    route = router.post(url).respond(status, headers={"location": "https://elsewhere.test/v1"}, text="moved")
    with pytest.raises(MiniMaxRedirectError) as caught:
        _call(hook, method, is_async, "hi")
    assert route.call_count == 1
    assert "https://elsewhere.test/v1" in str(caught.value)
    assert caught.value.status_code == status


# ------------------------------------------------------------------------ resources (§9)


def test_hook_as_a_context_manager_closes_its_client(monkeypatch: pytest.MonkeyPatch) -> None:
    make_hook(monkeypatch)
    with MiniMaxHook(CONN_ID) as hook:
        client = hook.client
    assert client.is_closed


async def test_hook_as_an_async_context_manager_closes_its_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    make_hook(monkeypatch)
    async with MiniMaxHook(CONN_ID) as hook:
        client = await hook.aclient()
        sync_client = hook.client
    assert client.is_closed and sync_client.is_closed


# ------------------------------------------------------------------------ any body ends typed (§3)

ODD_BODIES: list[bytes] = [
    json.dumps(value).encode()
    for value in (
        None,
        0,
        "text",
        [],
        [None],
        [{}],
        {},
        {"data": None},
        {"data": "oops"},
        {"data": [None]},
        {"data": [{"taskUUID": 5}]},
        {"errors": "oops"},
        {"errors": [None]},
        {"error": "oops"},
        {"error": {"message": {"nested": True}, "code": []}},
        {"choices": [None]},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"content": 5}}]},
        {"choices": [{"message": {"tool_calls": "x"}}]},
        {"choices": [], "base_resp": "oops"},
        {"base_resp": {"status_code": "x"}},
        {"usage": "lots"},
    )
] + [b"", b"{", b"\xff\xfe\x00", b"<html>502</html>"]


@pytest.mark.parametrize("status", [200, 400, 429, 500])
@pytest.mark.parametrize("body", ODD_BODIES)
@pytest.mark.parametrize(
    ("api", "method", "url"),
    [("task", "text_inference", TASK_URL), ("chat", "chat_completion", CHAT_COMPLETIONS_URL)],
)
def test_any_answer_ends_as_a_result_or_a_typed_error(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    api: str,
    method: str,
    url: str,
    body: bytes,
    status: int,
) -> None:
    hook, _ = make_hook(monkeypatch, api=api, max_retries=1)
    router.post(url).respond(status, content=body, headers={"content-type": "application/json"})
    kwargs = {"task_uuid": v4(1)} if api == "task" else {}
    with contextlib.suppress(MiniMaxError):  # anything else (pydantic, httpx, KeyError...) fails the test
        getattr(hook, method)("hi", **kwargs)


@pytest.mark.parametrize("body", ODD_BODIES)
@pytest.mark.parametrize(
    ("api", "method", "url"),
    [("task", "stream_text_inference", TASK_URL), ("chat", "stream_chat_completion", CHAT_COMPLETIONS_URL)],
)
def test_any_stream_chunk_ends_as_a_chunk_or_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, api: str, method: str, url: str, body: bytes
) -> None:
    hook, _ = make_hook(monkeypatch, api=api)
    content = b"data: " + body.replace(b"\n", b"") + b"\n\ndata: [DONE]\n\n"
    router.post(url).respond(200, content=content, headers={"content-type": "text/event-stream"})
    with pytest.raises(MiniMaxError):  # no odd chunk is a final chunk: each ends in an error
        list(getattr(hook, method)("hi"))
