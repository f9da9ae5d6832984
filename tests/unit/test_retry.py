"""The retry policy against injected 429/5xx bursts and network failures, with a fake sleep."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import format_datetime
from types import SimpleNamespace

import httpx
import pytest
import respx
import tenacity.wait
from fake_sleep import FakeSleep
from hook_testlib import CHAT_COMPLETIONS_URL, TASK_URL, chat_body, make_hook, task_result, v4

from airflow_provider_minimax import retry as retry_module
from airflow_provider_minimax.exceptions import (
    MiniMaxConnectionError,
    MiniMaxError,
    MiniMaxRateLimitError,
    MiniMaxServerError,
)
from airflow_provider_minimax.retry import RetryPolicy, is_retryable_status, parse_retry_after

NOW = 1_800_000_000.0
OK = httpx.Response(200, json={"data": [task_result(v4(1))]})


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def _burst(*statuses: int, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    return [httpx.Response(s, headers=headers or {}, json={"errors": [{"code": "busy"}]}) for s in statuses]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_burst_of_transient_statuses_is_retried_until_success(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, status: int
) -> None:
    hook, sleeper = make_hook(monkeypatch, max_retries=4)
    route = router.post(TASK_URL).mock(side_effect=[*_burst(status, status, status), OK])
    assert hook.text_inference("hi", task_uuid=v4(1)).results[0].text == "hello"
    assert route.call_count == 4
    assert len(sleeper.waits) == 3


@pytest.mark.parametrize(("status", "error_cls"), [(429, MiniMaxRateLimitError), (503, MiniMaxServerError)])
def test_a_burst_longer_than_max_retries_raises_after_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, status: int, error_cls: type[MiniMaxError]
) -> None:
    hook, sleeper = make_hook(monkeypatch, max_retries=3)
    route = router.post(TASK_URL).mock(side_effect=_burst(*[status] * 10))
    with pytest.raises(error_cls) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert caught.value.status_code == status
    assert (route.call_count, len(sleeper.waits)) == (4, 3)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
def test_final_statuses_are_sent_exactly_once(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, status: int
) -> None:
    hook, sleeper = make_hook(monkeypatch, max_retries=5)
    route = router.post(TASK_URL).mock(side_effect=[*_burst(status), OK])
    with pytest.raises(MiniMaxError):
        hook.text_inference("hi", task_uuid=v4(1))
    assert (route.call_count, sleeper.waits) == (1, [])


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
def test_final_chat_statuses_are_sent_exactly_once(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, status: int
) -> None:
    hook, sleeper = make_hook(monkeypatch, api="chat", max_retries=5)
    route = router.post(CHAT_COMPLETIONS_URL).respond(status, json={"error": {"message": "no"}})
    with pytest.raises(MiniMaxError):
        hook.chat_completion("hi")
    assert (route.call_count, sleeper.waits) == (1, [])


# ------------------------------------------------------------------------ Retry-After


def test_retry_after_in_seconds_is_honoured(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, sleeper = make_hook(monkeypatch)
    router.post(TASK_URL).mock(side_effect=[*_burst(429, 503, headers={"Retry-After": "7"}), OK])
    hook.text_inference("hi", task_uuid=v4(1))
    assert sleeper.waits == [7.0, 7.0]


def test_retry_after_as_an_http_date_is_honoured(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(time=lambda: NOW))
    when = format_datetime(datetime.fromtimestamp(NOW + 12, tz=timezone.utc), usegmt=True)
    hook, sleeper = make_hook(monkeypatch)
    router.post(TASK_URL).mock(side_effect=[*_burst(429, headers={"Retry-After": when}), OK])
    hook.text_inference("hi", task_uuid=v4(1))
    assert sleeper.waits == [12.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("120", 120.0, id="seconds-at-the-cap"),
        pytest.param(
            format_datetime(datetime.fromtimestamp(NOW - 60, tz=timezone.utc), usegmt=True),
            0.0,
            id="date-in-the-past",
        ),
        pytest.param("0", 0.0, id="zero"),
    ],
)
def test_retry_after_up_to_the_cap_is_waited_and_never_negative(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, header: str, expected: float
) -> None:
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(time=lambda: NOW))
    hook, sleeper = make_hook(monkeypatch)
    router.post(CHAT_COMPLETIONS_URL)
    router.post(TASK_URL).mock(side_effect=[*_burst(429, headers={"Retry-After": header}), OK])
    hook.text_inference("hi", task_uuid=v4(1))
    assert sleeper.waits == [expected]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("3600", id="seconds"),
        pytest.param(
            format_datetime(datetime.fromtimestamp(NOW + 86400, tz=timezone.utc), usegmt=True), id="date"
        ),
    ],
)
def test_retry_after_beyond_the_cap_is_raised_at_once_saying_when(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, header: str
) -> None:
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(time=lambda: NOW))
    hook, sleeper = make_hook(monkeypatch)
    route = router.post(TASK_URL).mock(side_effect=[*_burst(429, headers={"Retry-After": header}), OK])
    with pytest.raises(MiniMaxRateLimitError, match="try again after") as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert caught.value.retry_after is not None and caught.value.retry_after > 120
    assert (route.call_count, sleeper.waits) == (1, [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("1.5", 1.5),
        (" 3 ", 3.0),
        ("-4", 0.0),
        ("Wed, 15 Jan 2027 08:00:10 GMT", 10.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: float | None
) -> None:
    now = datetime(2027, 1, 15, 8, 0, 0, tzinfo=timezone.utc).timestamp()
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(time=lambda: now))
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(408, True), (429, True), (500, True), (599, True), (400, False), (404, False), (499, False)],
)
def test_is_retryable_status(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


# ------------------------------------------------------------------------ full jitter


@pytest.mark.parametrize(
    ("pick", "expected"),
    [
        pytest.param(lambda low, high: high, [1.0, 2.0, 4.0, 5.0, 5.0, 5.0], id="upper-bounds"),
        pytest.param(lambda low, high: low, [0.0] * 6, id="lower-bounds"),
    ],
)
def test_full_jitter_window_is_zero_to_min_cap_base_times_two_to_the_n(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, pick: object, expected: list[float]
) -> None:
    monkeypatch.setattr(tenacity.wait.random, "uniform", pick)
    hook, sleeper = make_hook(monkeypatch, max_retries=6, retry_max_wait=5)
    router.post(TASK_URL).mock(side_effect=[*_burst(*[503] * 6), OK])
    hook.text_inference("hi", task_uuid=v4(1))
    assert sleeper.waits == expected


def test_real_jitter_stays_inside_its_window(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, sleeper = make_hook(monkeypatch, max_retries=8)
    router.post(TASK_URL).mock(side_effect=[*_burst(*[500] * 8), OK])
    hook.text_inference("hi", task_uuid=v4(1))
    assert len(sleeper.waits) == 8
    for n, wait in enumerate(sleeper.waits):
        assert 0.0 <= wait <= min(30.0, 1.0 * 2**n)


def test_concurrent_calls_keep_their_own_deadlines(fake_sleep: FakeSleep) -> None:
    """Controllers are lent again and again: a call in another thread leaves this one's deadline alone."""
    policy = RetryPolicy(max_retries=3)
    busy = MiniMaxServerError("busy", status_code=503, retry_after=5.0)
    attempts = {"short": 0, "long": 0}
    deadline_set, other_call_done = threading.Event(), threading.Event()

    def call(name: str, time_left: float, *, first: bool) -> None:
        with pytest.raises(MiniMaxServerError), policy.retrying(lambda: time_left) as retrying:
            if first:  # the other thread's call starts and ends between this call's start and its attempts
                deadline_set.set()
                other_call_done.wait(5)
            for attempt in retrying:
                with attempt:
                    attempts[name] += 1
                    raise busy
        other_call_done.set()

    short = threading.Thread(target=call, args=("short", 3.0), kwargs={"first": True})
    short.start()
    deadline_set.wait(5)
    call("long", 100.0, first=False)
    short.join(5)
    # A 5 s Retry-After reaches a 3 s deadline: stop at once; with 100 s left, all four attempts.
    assert attempts == {"short": 1, "long": 4}
    assert fake_sleep.waits == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_controller_lent_again_counts_each_call_afresh(fake_sleep: FakeSleep, is_async: bool) -> None:
    policy = RetryPolicy(max_retries=3)
    busy = MiniMaxServerError("busy", status_code=503, retry_after=1.0)

    def attempt_once(state: dict[str, int], failures: int) -> None:
        state["attempts"] += 1
        if state["attempts"] <= failures:
            raise busy

    async def acall(failures: int) -> int:
        state = {"attempts": 0}
        with policy.async_retrying(lambda: 100.0) as retrying:
            async for attempt in retrying:
                with attempt:
                    attempt_once(state, failures)
        return state["attempts"]

    def call(failures: int) -> int:
        if is_async:
            return asyncio.run(acall(failures))
        state = {"attempts": 0}
        with policy.retrying(lambda: 100.0) as retrying:
            for attempt in retrying:
                with attempt:
                    attempt_once(state, failures)
        return state["attempts"]

    assert [call(3), call(3), call(0)] == [4, 4, 1]
    with pytest.raises(MiniMaxServerError):
        call(4)  # the fourth attempt is still the last one
    assert call(1) == 2


def test_default_policy_is_one_second_base_and_thirty_second_cap() -> None:
    policy = RetryPolicy()
    assert (policy.base_wait, policy.max_wait) == (1.0, 30.0)


# ------------------------------------------------------------------------ max_retries


@pytest.mark.parametrize(
    ("connection_value", "hook_value", "call_value", "attempts"),
    [
        pytest.param(None, None, None, 5, id="default-4"),
        pytest.param(1, None, None, 2, id="connection"),
        pytest.param(1, 3, None, 4, id="hook-overrides-connection"),
        pytest.param(1, 3, 0, 1, id="call-overrides-all"),
        pytest.param(6, None, 2, 3, id="call-overrides-connection"),
    ],
)
def test_max_retries_per_connection_hook_and_call(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    connection_value: int | None,
    hook_value: int | None,
    call_value: int | None,
    attempts: int,
) -> None:
    extra = {} if connection_value is None else {"max_retries": connection_value}
    hook_kwargs = {} if hook_value is None else {"max_retries": hook_value}
    hook, _ = make_hook(monkeypatch, hook_kwargs=hook_kwargs, **extra)
    route = router.post(TASK_URL).respond(503, json={"errors": [{"code": "providerUnavailable"}]})
    with pytest.raises(MiniMaxServerError):
        hook.text_inference("hi", task_uuid=v4(1), max_retries=call_value)
    assert route.call_count == attempts


def test_max_retries_per_call_on_the_chat_api(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat", max_retries=5)
    route = router.post(CHAT_COMPLETIONS_URL).respond(429, json={"error": {"message": "slow"}})
    with pytest.raises(MiniMaxRateLimitError):
        hook.chat_completion("hi", max_retries=1)
    assert route.call_count == 2


# ------------------------------------------------------------------------ network failures


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ConnectError("Connection refused"), id="connect-error"),
        pytest.param(httpx.ConnectTimeout("connect timed out"), id="connect-timeout"),
        pytest.param(httpx.ReadTimeout("read timed out"), id="read-timeout"),
        pytest.param(httpx.ReadError("Connection reset by peer"), id="read-error-reset"),
        pytest.param(
            httpx.RemoteProtocolError("Server disconnected without sending a response."), id="dropped"
        ),
    ],
)
def test_network_failures_are_retried_then_raised_as_connection_errors(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, failure: Exception
) -> None:
    hook, sleeper = make_hook(monkeypatch, max_retries=2)
    route = router.post(TASK_URL).mock(side_effect=failure)
    with pytest.raises(MiniMaxConnectionError) as caught:
        hook.text_inference("hi", task_uuid=v4(1))
    assert TASK_URL in str(caught.value)
    assert (route.call_count, len(sleeper.waits)) == (3, 2)


def test_a_network_failure_then_success_returns_the_result(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, _ = make_hook(monkeypatch, api="chat")
    route = router.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[httpx.ReadError("Connection reset by peer"), httpx.Response(200, json=chat_body())]
    )
    assert hook.chat_completion("hi").answer == "Hello!"
    assert route.call_count == 2


async def test_async_network_failures_are_retried_then_raised(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, sleeper = make_hook(monkeypatch, api="chat", max_retries=2)
    route = router.post(CHAT_COMPLETIONS_URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(MiniMaxConnectionError):
        await hook.achat_completion("hi")
    assert (route.call_count, len(sleeper.waits)) == (3, 2)
    await hook.aclose()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(
            httpx.Response(429, json={"error": {"message": "slow"}}), MiniMaxRateLimitError, id="429"
        ),
        pytest.param(httpx.Response(503, json={"error": {"message": "busy"}}), MiniMaxServerError, id="503"),
        pytest.param(httpx.ConnectError("refused"), MiniMaxConnectionError, id="network"),
    ],
)
async def test_async_call_without_retries_sends_once_and_raises_the_typed_error(
    monkeypatch: pytest.MonkeyPatch,
    router: respx.MockRouter,
    answer: httpx.Response | Exception,
    error: type[MiniMaxError],
) -> None:
    # The batch runner's calls (max_retries=0) skip the retry controller: still one typed error, no wait.
    hook, sleeper = make_hook(monkeypatch, api="chat", max_retries=3)
    route = router.post(CHAT_COMPLETIONS_URL).mock(side_effect=[answer])
    with pytest.raises(error):
        await hook.achat_completion("hi", max_retries=0)
    assert (route.call_count, sleeper.waits) == (1, [])
    await hook.aclose()


async def test_async_burst_uses_the_async_sleep_and_honours_retry_after(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    hook, sleeper = make_hook(monkeypatch)
    router.post(TASK_URL).mock(side_effect=[*_burst(429, 429, headers={"Retry-After": "3"}), OK])
    outcome = await hook.atext_inference("hi", task_uuid=v4(1))
    assert outcome.results[0].text == "hello"
    assert (sleeper.waits, sleeper.blocking) == ([3.0, 3.0], [])  # the blocking sleep is never called
    await hook.aclose()


# ------------------------------------------------------------------------ logging


def test_every_retry_is_logged_with_its_status_and_wait(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    hook, _ = make_hook(monkeypatch)
    router.post(TASK_URL).mock(
        side_effect=[
            *_burst(429, headers={"Retry-After": "4"}),
            *_burst(503, headers={"Retry-After": "2"}),
            OK,
        ]
    )
    with caplog.at_level(logging.WARNING, logger="airflow_provider_minimax"):
        hook.text_inference("hi", task_uuid=v4(1))
    retries = [r.getMessage() for r in caplog.records if r.name.startswith("airflow_provider_minimax")]
    assert len(retries) == 2
    assert "429" in retries[0] and "4.00 s" in retries[0]
    assert "503" in retries[1] and "2.00 s" in retries[1]


def test_a_network_retry_is_logged_with_the_failure_name(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    hook, sleeper = make_hook(monkeypatch)
    router.post(TASK_URL).mock(side_effect=[httpx.ConnectError("refused"), OK])
    with caplog.at_level(logging.WARNING, logger="airflow_provider_minimax"):
        hook.text_inference("hi", task_uuid=v4(1))
    (record,) = [r for r in caplog.records if r.name.startswith("airflow_provider_minimax")]
    assert "ConnectError" in record.getMessage()
    assert f"{sleeper.waits[0]:.2f} s" in record.getMessage()
