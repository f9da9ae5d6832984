"""The ``pydanticai_minimax`` connection type as Airflow sees it, with and without the ``common-ai`` extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_minimax.common_ai.hook import PydanticAIMiniMaxHook
from airflow_provider_minimax.get_provider_info import get_provider_info

COMMON_AI = "airflow_provider_minimax.common_ai"
#: Makes pydantic-ai and common.ai's hooks unimportable, as they are without the extra.
WITHOUT_EXTRA = """
import importlib.abc, sys

class WithoutCommonAI(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pydantic_ai" or name.startswith(("pydantic_ai.", "airflow.providers.common.ai.hooks")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, WithoutCommonAI())
"""

RUN_CLI = """
from airflow.__main__ import main
sys.argv = ["airflow", ARGS]
main()
"""


def run_python(home: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))
    }
    # Log level ERROR: Airflow 3.0 logs plugin set-up lines to stdout, before the JSON.
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="ERROR",
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def hooks_by_type(home: Path, *, without_extra: bool) -> dict[str, str]:
    """``airflow providers hooks -o json`` as {connection type: hook class}."""
    code = (WITHOUT_EXTRA if without_extra else "import sys\n") + RUN_CLI.replace(
        "ARGS", '"providers", "hooks", "-o", "json"'
    )
    done = run_python(home, code)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout[re.search(r"^\[\s*[{\]]", done.stdout, re.MULTILINE).start() :])
    return {row["connection_type"]: row["class"] for row in rows if row.get("connection_type")}


@pytest.mark.parametrize("without_extra", [False, True])
def test_providers_hooks_works_with_and_without_the_extra(tmp_path: Path, without_extra: bool) -> None:
    hooks = hooks_by_type(tmp_path, without_extra=without_extra)

    assert hooks["minimax"] == "airflow_provider_minimax.hooks.minimax.MiniMaxHook"
    # Declared either way; without the extra the CLI reports the class as not importable.
    expected = "Error when importing hook!" if without_extra else f"{COMMON_AI}.hook.PydanticAIMiniMaxHook"
    assert hooks["pydanticai_minimax"] == expected


def test_without_the_extra_the_core_imports_and_common_ai_names_the_extra(tmp_path: Path) -> None:
    done = run_python(
        tmp_path,
        WITHOUT_EXTRA
        + """
import airflow_provider_minimax.hooks.minimax, airflow_provider_minimax.operators.text_inference
try:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Providers
except ImportError:  # Airflow < 3.2
    from airflow.providers_manager import ProvidersManager as Providers
hooks = Providers().hooks
print("resolved:", hooks.get("minimax") is not None, hooks.get("pydanticai_minimax"))
try:
    import airflow_provider_minimax.common_ai.hook
except Exception as err:
    print(type(err).__name__, err)
""",
    )

    assert done.returncode == 0, done.stderr[-3000:]
    # Resolving the type is a disabled optional feature, not an error.
    assert "resolved: True None" in done.stdout
    assert "AirflowOptionalProviderFeatureException" in done.stdout
    assert "pip install 'airflow-provider-minimax[common-ai]'" in done.stdout


def test_provider_info_declares_the_hook_with_the_minimax_form_and_a_fallback_chain() -> None:
    minimax, declared = get_provider_info()["connection-types"]

    assert declared["hook-class-name"] == f"{COMMON_AI}.hook.PydanticAIMiniMaxHook"
    assert (declared["connection-type"], declared["hook-name"]) == (
        PydanticAIMiniMaxHook.conn_type,
        PydanticAIMiniMaxHook.hook_name,
    )
    assert declared["ui-field-behaviour"] == minimax["ui-field-behaviour"]
    assert set(declared["conn-fields"]) == {*minimax["conn-fields"], "fallback_conn_ids"}
