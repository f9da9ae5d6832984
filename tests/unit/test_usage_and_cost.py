"""Every usage counter kept (null when the API does not send it), summed, and priced."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from chat_testlib import TaskReplies, context
from hook_testlib import CHAT_COMPLETIONS_URL, CONN_ID, TASK_URL, chat_body, set_connection
from pydantic import BaseModel

from airflow_provider_minimax.exceptions import MiniMaxConfigurationError
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.models import ChatUsage, TaskUsage
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.results import Prices, Usage, spend_summary

PRICES = {
    "price_per_million_input_tokens": 0.3,
    "price_per_million_cached_input_tokens": 0.03,
    "price_per_million_output_tokens": 1.2,
}


class City(BaseModel):
    name: str


def chat_usage(cached: int | None = None, reasoning: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


@pytest.mark.parametrize(
    ("left", "right", "total"),
    [(None, None, None), (None, 3, 3), (4, None, 4), (2, 3, 5), (0, None, 0)],
)
def test_optional_counters_sum_what_was_reported(
    left: int | None, right: int | None, total: int | None
) -> None:
    summed = Usage(cached_tokens=left, thinking_tokens=left) + Usage(
        cached_tokens=right, thinking_tokens=right
    )

    assert summed.cached_tokens == total and summed.thinking_tokens == total


@pytest.mark.parametrize(
    ("wire", "cached", "reasoning"),
    [
        (chat_usage(), None, None),
        (chat_usage(cached=0, reasoning=0), 0, 0),
        (chat_usage(cached=80, reasoning=30), 80, 30),
        (
            {**chat_usage(), "prompt_tokens_details": {}, "completion_tokens_details": {"audio_tokens": 0}},
            None,
            None,
        ),
    ],
)
def test_chat_usage_details_are_kept_or_null(
    wire: dict[str, Any], cached: int | None, reasoning: int | None
) -> None:
    usage = Usage.of_chat(ChatUsage.model_validate(wire))

    assert (usage.cached_tokens, usage.reasoning_tokens, usage.thinking_tokens) == (cached, reasoning, None)


def test_task_usage_keeps_thinking_tokens() -> None:
    wire = {"promptTokens": 3, "completionTokens": 5, "totalTokens": 8, "thinkingTokens": 2}

    assert Usage.of_task(TaskUsage.model_validate(wire)).thinking_tokens == 2
    assert Usage.of_task(None) == Usage()


@pytest.mark.parametrize(
    ("prices", "usage", "cost"),
    [
        (Prices(), Usage(prompt_tokens=1_000_000), None),
        (Prices(input=0.3), Usage(prompt_tokens=1_000_000), None),
        (Prices(input=0.3, output=1.2), Usage(prompt_tokens=1_000_000, completion_tokens=500_000), 0.9),
        # Cached tokens at the cached price; without one, at the input price.
        (
            Prices(input=0.3, cached_input=0.03, output=1.2),
            Usage(prompt_tokens=1_000_000, cached_tokens=500_000),
            0.165,
        ),
        (Prices(input=0.3, output=1.2), Usage(prompt_tokens=1_000_000, cached_tokens=500_000), 0.3),
    ],
)
def test_prices_estimate(prices: Prices, usage: Usage, cost: float | None) -> None:
    assert prices.estimate(usage) == (None if cost is None else pytest.approx(cost))


@pytest.mark.parametrize(
    ("api", "cost", "estimated", "label"),
    [
        ("chat", 0.0123, True, "cost ~$0.012300 (estimate from the connection's prices)"),
        ("task", 0.0123, False, "cost $0.012300 (reported by the API)"),
        ("chat", None, False, "cost n/a (set the connection's price_per_million_* extras)"),
        ("task", None, False, "cost n/a"),
    ],
)
def test_the_summary_line_shows_tokens_by_kind_and_where_the_cost_comes_from(
    api: str, cost: float | None, estimated: bool, label: str
) -> None:
    usage = Usage(
        prompt_tokens=100, completion_tokens=50, total_tokens=150, cached_tokens=80, reasoning_tokens=30
    )

    line = spend_summary(api, 2, usage, cost, estimated=estimated)

    tokens = "150 tokens = 100 prompt (80 cached) + 50 completion (30 reasoning)"
    assert line == f"MiniMax {api} API: 2 call(s), {tokens}, {label}"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"price_per_million_input_tokens": -1}, "price_per_million_input_tokens"),
        ({"price_per_million_output_tokens": "cheap"}, "price_per_million_output_tokens"),
    ],
)
def test_bad_prices_name_the_field(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], field: str
) -> None:
    set_connection(monkeypatch, api="chat", **extra)

    with pytest.raises(MiniMaxConfigurationError, match=field):
        _ = MiniMaxHook(minimax_conn_id=CONN_ID).settings


# ------------------------------------------------------------------------------ operators


@respx.mock
def test_chat_reasks_sum_every_counter_and_the_cost_is_an_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0, **PRICES)
    respx.post(CHAT_COMPLETIONS_URL).mock(
        side_effect=[
            httpx.Response(200, json=chat_body("not json", usage=chat_usage(reasoning=30))),
            httpx.Response(
                200, json=chat_body('{"name": "Lyon"}', usage=chat_usage(cached=80, reasoning=20))
            ),
        ]
    )
    ctx = context()
    op = MiniMaxChatOperator(task_id="ask", conn_id=CONN_ID, prompt="A city", output_type=City)

    op.execute(ctx)

    assert ctx["ti"].xcom["usage"] == {
        "prompt_tokens": 200,
        "completion_tokens": 100,
        "total_tokens": 300,
        "thinking_tokens": None,
        "cached_tokens": 80,
        "reasoning_tokens": 50,
    }
    # 120 uncached prompt tokens at 0.3, 80 cached at 0.03, 100 completion at 1.2 (per million).
    assert ctx["ti"].xcom["cost"] == pytest.approx((120 * 0.3 + 80 * 0.03 + 100 * 1.2) / 1e6)
    assert op.minimax_spend is not None and op.minimax_spend.cost_estimated
    assert "estimate from the connection's prices" in op.minimax_spend.summary()


@respx.mock
def test_chat_without_prices_pushes_no_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0)
    respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body("Lyon"))
    ctx = context()

    MiniMaxChatOperator(task_id="ask", conn_id=CONN_ID, prompt="A city").execute(ctx)

    assert "cost" not in ctx["ti"].xcom


@respx.mock
def test_task_api_cost_is_the_apis_and_thinking_tokens_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="task", max_retries=0, **PRICES)
    usage = {"promptTokens": 3, "completionTokens": 5, "totalTokens": 8, "thinkingTokens": 4}
    respx.post(TASK_URL).mock(side_effect=TaskReplies("Lyon", usage=usage))
    ctx = context()

    MiniMaxChatOperator(task_id="ask", conn_id=CONN_ID, prompt="A city").execute(ctx)

    assert ctx["ti"].xcom["usage"]["thinking_tokens"] == 4
    assert ctx["ti"].xcom["cost"] == 0.0012  # As reported, the connection's prices ignored.


@respx.mock
def test_chat_batch_rows_are_priced_and_the_manifest_sums_them(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, api="chat", max_retries=0, **PRICES)
    respx.post(CHAT_COMPLETIONS_URL).respond(json=chat_body("ok", usage=chat_usage(cached=100, reasoning=10)))
    op = MiniMaxBatchOperator(
        task_id="batch", conn_id=CONN_ID, rows=[{"n": 1}, {"n": 2}], prompt_template="Row {{ n }}"
    )

    rows = op.execute(context())  # type: ignore[arg-type]

    row_cost = (100 * 0.03 + 50 * 1.2) / 1e6
    assert [row["cost"] for row in rows] == [pytest.approx(row_cost)] * 2
    assert [row["usage"]["cached_tokens"] for row in rows] == [100, 100]
    assert op.minimax_spend is not None
    assert op.minimax_spend.cost == pytest.approx(2 * row_cost) and op.minimax_spend.cost_estimated
    assert op.minimax_spend.usage.reasoning_tokens == 20


@pytest.mark.parametrize(("resends", "shown"), [(0, False), (2, True)])
def test_the_summary_line_counts_chat_resends(resends: int, shown: bool) -> None:
    line = spend_summary("chat", 3, Usage(), None, estimated=False, resends=resends)
    assert ("2 chat request(s) resent after a lost answer" in line) is shown
