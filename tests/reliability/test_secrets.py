"""The key never leaves the Authorization header: every path and error path, scanned for a recognisable key.

Each case runs every path (hook sync/async, both streams, every operator, the sensor, both batch
modes) with a key nobody could mistake, then scans what a user or an operator of Airflow can see:
task logs, stdout/stderr, XCom, template fields, serialized trigger kwargs, trigger events,
return values, exception messages, reprs and full tracebacks (causes included).
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import pytest
from campaign_figures import FIGURES
from campaign_paths import CHAT_PATHS, CONTEXTS, SEEN, STREAM_PATHS, TASK_PATHS, connection_json
from hostile_server import Fault, HostileServer

from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.hooks.minimax import MiniMaxHook

SECRET = "sk-CAMPAIGN-SECRET-7f3a9c1e5b2d4086"
#: What a leak would show: the key, its distinctive middle, or its tail (a cut-off key still leaks).
NEEDLES = (SECRET, "CAMPAIGN-SECRET", SECRET[-12:])
PATHS = {**TASK_PATHS, **CHAT_PATHS, **STREAM_PATHS}

FAULTS = {
    "no fault": None,
    "revoked key": lambda: Fault("revoked", None),
    "malformed answers": lambda: Fault("malformed", None, params={"shape": "wrong_types"}),
    "redirect": lambda: Fault("redirect", None),
    "503 forever": lambda: Fault("http_error", None, params={"status": 503}),
    "dropped connections": lambda: Fault("drop_connection", None),
}


def exception_texts(err: BaseException) -> list[str]:
    """The message, the repr and the full traceback (chained causes and contexts included)."""
    return [str(err), repr(err), "".join(traceback.format_exception(err))]


def seen_texts(value: Any) -> list[str]:
    """Text forms of what the run left behind: reprs, JSON, template fields."""
    texts = [repr(value)]
    if isinstance(value, (dict, list, tuple)):
        texts.append(json.dumps(value, default=repr))
    for field in getattr(value, "template_fields", ()):
        texts.append(repr(getattr(value, field, None)))
    if hasattr(value, "hook") and "hook" in getattr(value, "__dict__", {}):
        texts.append(repr(value.hook))
    return texts


def assert_no_leak(texts: list[str]) -> None:
    """Scan, count the scan in the summary, and fail on any hit (showing where, never the key)."""
    hits = [text[:200] for text in texts if any(needle in text for needle in NEEDLES)]
    section = FIGURES.sections["Secrets"]
    section["cases"] = str(int(section.get("cases", "0")) + 1)
    section["texts scanned"] = str(int(section.get("texts scanned", "0")) + len(texts))
    section["hits"] = str(int(section.get("hits", "0")) + len(hits))
    assert not hits, f"{len(hits)} text(s) show the key"


def point_connections(monkeypatch: pytest.MonkeyPatch, server: HostileServer, key: str) -> None:
    for conn, api in (("MINIMAX_DEFAULT", "task"), ("MINIMAX_CHAT", "chat")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn}", connection_json(server.base_url, api, key))


@pytest.mark.parametrize("fault_name", list(FAULTS))
async def test_no_path_shows_the_key(
    hostile: HostileServer,
    short_sleeps: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    fault_name: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile.valid_keys = {SECRET}
    point_connections(monkeypatch, hostile, SECRET)
    texts: list[str] = []
    failed = []
    SEEN.clear()
    CONTEXTS.clear()
    for name, path in PATHS.items():
        make_fault = FAULTS[fault_name]
        hostile.fault = make_fault() if make_fault else None
        try:
            texts.append(
                json.dumps(await path(f"secret-{name}", f"secret-{fault_name}-{name}"), default=repr)
            )
        except Exception as err:
            failed.append(name)
            texts.extend(exception_texts(err))
    if make_fault is None:
        assert not failed, "with no fault every path must succeed, so the key surely travelled"
    for value in SEEN:
        texts.extend(seen_texts(value))
    texts.extend(json.dumps(ctx["ti"].xcom, default=repr) for ctx in CONTEXTS)
    texts.extend(json.dumps(ctx["task_state_store"].values) for ctx in CONTEXTS)
    captured = capfd.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    texts.extend(entry.getMessage() for entry in caplog.records)
    assert_no_leak(texts)


@pytest.mark.parametrize(
    "password",
    [f"{SECRET}\n", f" {SECRET} ", f"{SECRET[:10]} {SECRET[10:]}", f"{SECRET}\x00", f"{SECRET}é"],
    ids=["trailing newline", "surrounding spaces", "inner space", "control char", "non-ascii"],
)
def test_a_mistyped_key_is_used_or_refused_without_showing_it(
    hostile: HostileServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    password: str,
) -> None:
    hostile.valid_keys = {SECRET}
    point_connections(monkeypatch, hostile, password)
    texts: list[str] = []
    for conn_id in ("minimax_default", "minimax_chat"):
        hook = MiniMaxHook(conn_id)
        ok, message = hook.test_connection()
        texts += [message, repr(hook)]
        try:
            texts.append(repr(hook.settings))
            texts.append(str(hook.settings.model_dump()))
            hook.generate("hello")
        except Exception as err:
            texts.extend(exception_texts(err))
        hook.close()
        if password.strip() == SECRET:
            assert ok, message  # whitespace around a pasted key is stripped
    texts.append(caplog.text)
    assert_no_leak(texts)


@pytest.mark.parametrize("fault_name", ["revoked key", "503 forever", "redirect", "dropped connections"])
def test_test_connection_never_shows_the_key(
    hostile: HostileServer,
    short_sleeps: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault_name: str,
) -> None:
    hostile.valid_keys = {SECRET}
    point_connections(monkeypatch, hostile, SECRET)
    texts = []
    for conn_id in ("minimax_default", "minimax_chat"):
        hostile.fault = FAULTS[fault_name]()  # type: ignore[misc]
        ok, message = MiniMaxHook(conn_id).test_connection()
        assert not ok
        texts.append(message)
    texts.append(caplog.text)
    assert_no_leak(texts)


def test_unreachable_server_errors_do_not_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MINIMAX_DEFAULT", connection_json("http://127.0.0.1:9/v1", "task", SECRET)
    )
    hook = MiniMaxHook("minimax_default", max_retries=0)
    with pytest.raises(Exception) as info:
        hook.text_inference("hello")
    texts = [*exception_texts(info.value), repr(MiniMaxConnectionSettings.model_fields)]
    assert_no_leak(texts)
