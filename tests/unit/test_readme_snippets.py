"""README.md against the code: its snippets, imports, parameter names and defaults, connection table, layout.

DAGs are written from the README, so a renamed parameter, a changed default or a moved import
must fail here rather than in a user's DAG.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator

from airflow_provider_minimax.connection import MiniMaxConnectionSettings
from airflow_provider_minimax.decorators.minimax import MiniMaxDecoratedOperator
from airflow_provider_minimax.hooks.minimax import MiniMaxHook
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.operators.text_inference import MiniMaxTextInferenceOperator
from airflow_provider_minimax.sensors.minimax import MiniMaxTaskSensor
from airflow_provider_minimax.triggers.minimax import MiniMaxTaskTrigger

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "airflow_provider_minimax"
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def _parse(snippet: str) -> ast.Module:
    """A snippet's syntax tree; top-level ``await`` / ``async for`` are allowed, as in a notebook."""
    tree = compile(snippet, "README.md", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    assert isinstance(tree, ast.Module)
    return tree


def _section(name: str) -> str:
    """The README text between ``<!-- SECTION:name -->`` and its closing marker."""
    match = re.search(rf"<!-- SECTION:{name} -->(.*?)<!-- /SECTION:{name} -->", README, flags=re.DOTALL)
    assert match, f"README has no section {name!r}"
    return match.group(1)


def _table(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table in ``text`` whose header starts so."""
    lines = text[text.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    """The backticked names of a table cell: ``prompt`` / ``messages`` gives both."""
    return re.findall(r"`([a-z_.]+)`", cell)


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The named parameters of ``cls``'s constructor (``**kwargs`` left out)."""
    return {
        name: param
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD
    }


def test_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 10


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.strip().splitlines()[0][:50])
def test_snippet_is_valid_python(snippet: str) -> None:
    _parse(snippet)


def _imports() -> list[tuple[str, str | None]]:
    """``(module, name)`` of every import of this package or ``airflow.sdk`` in the snippets."""
    found: list[tuple[str, str | None]] = []
    for snippet in SNIPPETS:
        for node in ast.walk(_parse(snippet)):
            if isinstance(node, ast.ImportFrom) and node.module:
                found += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(alias.name, None) for alias in node.names]
    return [
        (module, name)
        for module, name in found
        if module.startswith(("airflow_provider_minimax", "airflow.sdk"))
    ]


@pytest.mark.parametrize(("module", "name"), _imports())
def test_snippet_import_resolves(module: str, name: str | None) -> None:
    imported = importlib.import_module(module)
    if name is not None:
        assert hasattr(imported, name), f"README imports {name} from {module}, which has no such name"


#: What README snippets construct, and the keyword arguments each accepts.
_BASE_OPERATOR = set(inspect.signature(BaseOperator.__init__).parameters)
_BASE_SENSOR = _BASE_OPERATOR | set(inspect.signature(BaseSensorOperator.__init__).parameters)
ACCEPTED: dict[str, set[str]] = {
    "MiniMaxTextInferenceOperator": set(_parameters(MiniMaxTextInferenceOperator)) | _BASE_OPERATOR,
    "MiniMaxChatOperator": set(_parameters(MiniMaxChatOperator)) | _BASE_OPERATOR,
    "MiniMaxBatchOperator": set(_parameters(MiniMaxBatchOperator)) | _BASE_OPERATOR,
    "MiniMaxTaskSensor": set(_parameters(MiniMaxTaskSensor)) | _BASE_SENSOR,
    "MiniMaxHook": set(_parameters(MiniMaxHook)),
    "MiniMaxTaskTrigger": set(_parameters(MiniMaxTaskTrigger)),
    # @task.minimax(...): the chat operator's parameters but the prompt, which the function returns.
    "task.minimax": (set(_parameters(MiniMaxChatOperator)) - {"prompt", "messages"})
    | {"multiple_outputs"}
    | _BASE_OPERATOR,
}


def _callee(node: ast.Call) -> str | None:
    """``Cls(...)``, ``Cls.partial(...)`` and ``task.minimax(...)`` as a key of :data:`ACCEPTED`."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.attr == "partial":
            return func.value.id
        return f"{func.value.id}.{func.attr}"
    return None


def _calls() -> list[tuple[str, str]]:
    """``(callee, keyword)`` of every keyword argument the snippets pass to a class of :data:`ACCEPTED`."""
    calls = []
    for snippet in SNIPPETS:
        for node in ast.walk(_parse(snippet)):
            if isinstance(node, ast.Call) and _callee(node) in ACCEPTED:
                calls += [(str(_callee(node)), kw.arg) for kw in node.keywords if kw.arg is not None]
    return calls


def test_snippets_construct_every_public_class() -> None:
    assert {callee for callee, _ in _calls()} >= {
        "MiniMaxTextInferenceOperator",
        "MiniMaxChatOperator",
        "MiniMaxBatchOperator",
        "MiniMaxTaskSensor",
        "task.minimax",
    }


@pytest.mark.parametrize(("callee", "keyword"), sorted(set(_calls())))
def test_snippet_keyword_is_a_parameter(callee: str, keyword: str) -> None:
    assert keyword in ACCEPTED[callee], f"README passes {keyword}= to {callee}, which takes no such parameter"


# --------------------------------------------------------------------------- parameter tables


def _default(cell: str) -> Any:
    """The Python value of a default cell such as ``1.0``, ``"async"``, ``None`` or ``timedelta(hours=1)``."""
    literal = re.match(r"`([^`]+)`", cell)
    if literal is None:
        return inspect.Parameter.empty  # prose ("the connection's", "required"): not compared
    try:
        return eval(literal.group(1), {"timedelta": timedelta})  # our own README's text
    except (NameError, SyntaxError):
        return inspect.Parameter.empty


OPERATOR_TABLES = [
    ("text-inference", MiniMaxTextInferenceOperator),
    ("chat", MiniMaxChatOperator),
    ("batch", MiniMaxBatchOperator),
]


@pytest.mark.parametrize(("section", "cls"), OPERATOR_TABLES, ids=lambda v: getattr(v, "__name__", v))
def test_parameter_table_lists_every_parameter(section: str, cls: type) -> None:
    rows = _table(_section(section), "| parameter | default |")
    documented = {name for row in rows for name in _names(row[0])}
    assert documented == set(_parameters(cls))


@pytest.mark.parametrize(("section", "cls"), OPERATOR_TABLES, ids=lambda v: getattr(v, "__name__", v))
def test_parameter_table_defaults_match_the_signature(section: str, cls: type) -> None:
    parameters = _parameters(cls)
    for row in _table(_section(section), "| parameter | default |"):
        names, defaults = _names(row[0]), [_default(part) for part in row[1].split(", ")]
        if len(defaults) != len(names):  # one default for every name of the row
            defaults = defaults[:1] * len(names)
        for name, default in zip(names, defaults, strict=True):
            if default is inspect.Parameter.empty or name == "deferrable":  # deferrable: from the config
                continue
            assert parameters[name].default == default, (name, parameters[name].default, default)


# --------------------------------------------------------------------------- connection


def _connection_rows() -> dict[str, list[str]]:
    """The connection table's rows by setting name (``extra.timeout`` as ``timeout``)."""
    rows = _table(_section("connection"), "| field | meaning | default |")
    return {row[0].strip("`").removeprefix("extra."): row for row in rows}


def test_connection_table_lists_every_setting() -> None:
    documented = set(_connection_rows()) - {"host", "password", "port"}
    settings = set(MiniMaxConnectionSettings.model_fields) - {"conn_id", "base_url", "api_key"}
    assert documented == settings


@pytest.mark.parametrize(
    "field",
    [
        name
        for name, info in MiniMaxConnectionSettings.model_fields.items()
        if info.default is not None and not info.is_required()
    ],
)
def test_connection_table_default_matches_the_settings(field: str) -> None:
    documented = _connection_rows()[field][2].split()[0].strip("`")
    default = MiniMaxConnectionSettings.model_fields[field].default
    if isinstance(default, bool):
        expected = str(default).lower()
    elif isinstance(default, float):
        expected = f"{default:g}"
    else:
        expected = str(default)
    assert documented == expected, (field, documented, default)


def _bounds(field: str) -> str:
    """The field's numeric bounds written as the README table writes them."""
    metadata = MiniMaxConnectionSettings.model_fields[field].metadata
    found = {key: getattr(m, key) for m in metadata for key in ("ge", "gt", "le") if hasattr(m, key)}
    if "ge" in found and "le" in found:
        return f"{found['ge']}..{found['le']}"
    if "gt" in found:
        return f"> {found['gt']}"
    if "ge" in found:
        return f"≥ {found['ge']}"
    return ""


@pytest.mark.parametrize("field", [name for name in MiniMaxConnectionSettings.model_fields if _bounds(name)])
def test_connection_table_bounds_match_the_settings(field: str) -> None:
    assert _connection_rows()[field][3] == _bounds(field)


# --------------------------------------------------------------------------- layout


def test_layout_table_lists_every_module() -> None:
    listed = {row[0].strip("`") for row in _table(_section("development"), "| module (")}
    modules = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"} and "testing/emulator" not in path.as_posix()
    }
    assert modules - listed == set()
    assert {m for m in listed if m.endswith(".py")} - modules == set()


@pytest.mark.parametrize("name", ["prompt", "messages"])
def test_decorator_refuses_the_prompt_as_the_readme_says(name: str) -> None:
    # "@task.minimax takes every MiniMaxChatOperator parameter but prompt and messages (a TypeError)".
    with pytest.raises(TypeError, match=name):
        MiniMaxDecoratedOperator(task_id="t", python_callable=lambda: "Hi", **{name: "Hi"})
