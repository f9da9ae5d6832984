"""``make demo``'s report, read from the run's database: tasks, tokens, cost and time per DAG and per API."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_snake

from airflow_provider_minimax.results import Usage

TASK_CONN_ID = "minimax_default"
CHAT_CONN_ID = "minimax_chat"
#: Which API each demo connection speaks, to total the spend per API.
CONN_APIS = {TASK_CONN_ID: "task", CHAT_CONN_ID: "chat"}


def figures(value: Any) -> Iterator[tuple[dict[str, Any], float | None]]:
    """Each (usage, cost) reported in one XCom value (a result, a list of results or a manifest).

    A dict with ``usage`` is one reported figure and is not looked into further, so a manifest's
    totals are not added to its rows' figures. Usage keys come out in snake_case.

    :param value: the decoded XCom value
    """
    if isinstance(value, dict):
        if isinstance(value.get("usage"), dict):
            yield {to_snake(k): v for k, v in value["usage"].items()}, value.get("cost")
            return
        children: Iterable[Any] = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return
    for child in children:
        yield from figures(child)


def usage_of(value: Any) -> tuple[int, float]:
    """Total tokens and cost reported in one XCom value (see :func:`figures`).

    :param value: the decoded XCom value
    """
    found = list(figures(value))
    return sum(int(u.get("total_tokens") or 0) for u, _ in found), sum(c or 0.0 for _, c in found)


def _decoded(value: Any) -> Any:
    """An XCom value from SQLite: JSON text, except a bare number, which SQLite hands back as one."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _xcom_figure(key: str, value: Any) -> Any:
    """An XCom as :func:`usage_of` reads it: the chat operator pushes ``usage`` and ``cost`` apart."""
    if key == "usage":
        return {"usage": value}
    if key == "cost":
        return {"usage": {}, "cost": value}
    return value


def spend_by_api(db: Path) -> dict[str, tuple[Usage, float | None]]:
    """Tokens by kind and cost over every demo run, per API (the task's rendered ``conn_id`` says which).

    :param db: the SQLite metadata database
    """
    totals: dict[str, tuple[Usage, float | None]] = {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn_ids = {
            (dag_id, run_id, task_id, map_index): json.loads(fields).get("conn_id")
            for dag_id, run_id, task_id, map_index, fields in conn.execute(
                "SELECT dag_id, run_id, task_id, map_index, rendered_fields "
                "FROM rendered_task_instance_fields"
            )
        }
        rows = conn.execute(
            "SELECT dag_id, run_id, task_id, map_index, key, value FROM xcom WHERE key IN (?, ?, ?)",
            ("return_value", "usage", "cost"),
        )
        for dag_id, run_id, task_id, map_index, key, value in rows:
            api = CONN_APIS.get(conn_ids.get((dag_id, run_id, task_id, map_index)) or "")
            if api is None:
                continue
            with contextlib.suppress(TypeError, ValueError):
                for usage, cost in figures(_xcom_figure(key, _decoded(value))):
                    summed, spent = totals.get(api, (Usage(), None))
                    known = [c for c in (spent, cost) if c is not None]
                    totals[api] = summed + Usage.model_validate(usage), sum(known) if known else None
    return totals


def api_table(totals: Mapping[str, tuple[Usage, float | None]]) -> str:
    """Tokens by kind and cost per API; the chat API's cost is estimated from the connection's prices.

    :param totals: from :func:`spend_by_api`
    """

    def count(n: int | None) -> str:
        return "-" if n is None else f"{n:,}"

    rows = [["API", "prompt", "cached", "completion", "thinking", "reasoning", "total", "cost (USD)"]]
    for api, (u, cost) in sorted(totals.items()):
        kinds = (u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.thinking_tokens, u.reasoning_tokens)
        money = "n/a" if cost is None else f"{'~' if api == 'chat' else ''}{cost:.4f}"
        rows.append([api, *map(count, (*kinds, u.total_tokens)), money])
    return (
        aligned(rows, text_columns=1)
        + "\n(~: estimated from the chat connection's price_per_million_* extras)"
    )


@dataclass
class RunReport:
    """What one DAG run did, read back from the metadata database.

    :param dag_id: the DAG
    :param state: the run's final state (``missing`` when no run was recorded)
    :param tasks: task instance states and their counts
    :param tokens: total tokens reported in XCom
    :param cost: total cost in USD reported in XCom
    :param seconds: wall time of ``airflow dags test``
    """

    dag_id: str
    state: str
    tasks: Counter[str]
    tokens: int
    cost: float
    seconds: float

    @property
    def tasks_label(self) -> str:
        """``12`` when all succeeded, else ``12 (10 success, 2 failed)``."""
        total = sum(self.tasks.values())
        if set(self.tasks) <= {"success"}:
            return str(total)
        return f"{total} ({', '.join(f'{n} {s}' for s, n in self.tasks.most_common())})"


def read_run(db: Path, dag_id: str, seconds: float) -> RunReport:
    """Read the latest run of ``dag_id``: its state, task states and the tokens and cost in XCom.

    :param db: the SQLite metadata database
    :param dag_id: the DAG
    :param seconds: the measured wall time
    """
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return RunReport(dag_id, "missing", Counter(), 0, 0.0, seconds)
        run_id, state = row
        states = Counter(
            s or "none"
            for (s,) in conn.execute(
                "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            )
        )
        tokens, cost = 0, 0.0
        for key, value in conn.execute(
            "SELECT key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key IN (?, ?, ?)",
            (dag_id, run_id, "return_value", "usage", "cost"),
        ):
            with contextlib.suppress(TypeError, ValueError):
                t, c = usage_of(_xcom_figure(key, _decoded(value)))
                tokens, cost = tokens + t, cost + c
    return RunReport(dag_id, state or "none", states, tokens, cost, seconds)


def table(reports: Sequence[RunReport]) -> str:
    """The summary table the demo prints.

    :param reports: one per DAG run
    """
    rows = [("DAG", "state", "tasks", "tokens", "cost (USD)", "time (s)")]
    rows += [
        (r.dag_id, r.state, r.tasks_label, f"{r.tokens:,}", f"{r.cost:.4f}", f"{r.seconds:.1f}")
        for r in reports
    ]
    rows.append(
        (
            "total",
            "",
            str(sum(sum(r.tasks.values()) for r in reports)),
            f"{sum(r.tokens for r in reports):,}",
            f"{sum(r.cost for r in reports):.4f}",
            f"{sum(r.seconds for r in reports):.1f}",
        )
    )
    lines = aligned(rows, text_columns=2).splitlines()
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def aligned(rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """Rows as aligned columns under a rule: the first ``text_columns`` left-aligned, figures right.

    :param rows: the header row, then the data rows
    :param text_columns: how many leading columns hold text
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
