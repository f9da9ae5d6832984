"""The connection form: provider info and the Airflow < 3.2 hook methods agree with the settings model."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from airflow_provider_minimax.connection import EXTRA_FIELDS, MiniMaxConnectionSettings, conn_fields
from airflow_provider_minimax.get_provider_info import get_provider_info
from airflow_provider_minimax.hooks.minimax import MiniMaxHook

REQUIRED = {"conn_id": "c", "base_url": "https://x.test/v1", "api_key": "k", "model": "m"}
FORM = conn_fields()


def _bound_cases() -> list[Any]:
    """(field, bound keyword, a value the bound allows, one it refuses), from the form's schema."""
    cases = []
    for name, spec in FORM.items():
        step = 1 if spec["schema"]["type"][0] == "integer" else 0.001
        schema = spec["schema"]
        for key, allowed, refused in (
            ("minimum", schema.get("minimum"), schema.get("minimum", 0) - step),
            ("exclusiveMinimum", schema.get("exclusiveMinimum", 0) + step, schema.get("exclusiveMinimum")),
            ("maximum", schema.get("maximum"), schema.get("maximum", 0) + step),
            ("exclusiveMaximum", schema.get("exclusiveMaximum", 0) - step, schema.get("exclusiveMaximum")),
        ):
            if key in schema:
                cases.append(pytest.param(name, allowed, refused, id=f"{name}-{key}"))
    return cases


def _settings(**extra: Any) -> MiniMaxConnectionSettings:
    return MiniMaxConnectionSettings(**REQUIRED, **extra)


# ------------------------------------------------------------------ provider info (Airflow >= 3.2)


def test_provider_info_declares_the_connection_type_and_its_hook() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-minimax"
    # The second type is common.ai's pydanticai_minimax (tests/integration/test_common_ai_provider.py).
    conn_type, _ = info["connection-types"]
    assert conn_type["connection-type"] == MiniMaxHook.conn_type == "minimax"
    assert conn_type["hook-class-name"] == f"{MiniMaxHook.__module__}.{MiniMaxHook.__qualname__}"
    assert (MiniMaxHook.default_conn_name, MiniMaxHook.conn_name_attr) == (
        "minimax_default",
        "minimax_conn_id",
    )
    assert conn_type["conn-fields"] == FORM


def test_every_form_field_is_read_from_extra() -> None:
    values = {
        "api": "chat",
        "model": "m-x",
        "timeout": 7.5,
        "total_timeout": 70.0,
        "stream_idle_timeout": 17.5,
        "max_response_bytes": 4096,
        "max_retries": 2,
        "retry_max_wait": 3.5,
        "chat_retry_on_read_timeout": False,
        "max_tasks_per_request": 9,
        "max_connections": 5,
        "price_per_million_input_tokens": 0.3,
        "price_per_million_cached_input_tokens": 0.03,
        "price_per_million_output_tokens": 1.2,
    }
    assert set(values) == set(FORM)
    conn = types.SimpleNamespace(conn_id="c", extra=json.dumps(values), password="k", host=None, port=None)
    settings = MiniMaxConnectionSettings.from_connection(conn)  # type: ignore[arg-type]
    assert {name: getattr(settings, name) for name in values} == values


@pytest.mark.parametrize("name", EXTRA_FIELDS)
def test_form_field_shows_the_models_title_and_help(name: str) -> None:
    model_field = MiniMaxConnectionSettings.model_fields[name]
    assert (FORM[name]["label"], FORM[name]["description"]) == (model_field.title, model_field.description)
    assert model_field.description


@pytest.mark.parametrize("name", [n for n in EXTRA_FIELDS if "default" in FORM[n]["schema"]])
def test_form_default_is_what_the_model_uses_when_the_field_is_empty(name: str) -> None:
    assert getattr(_settings(), name) == FORM[name]["schema"]["default"]


@pytest.mark.parametrize(("name", "allowed", "refused"), _bound_cases())
def test_form_bound_is_the_models_bound(name: str, allowed: float, refused: float) -> None:
    assert getattr(_settings(**{name: allowed}), name) == allowed
    with pytest.raises(ValidationError, match=name):
        _settings(**{name: refused})


def test_api_dropdown_offers_exactly_the_apis_the_model_accepts() -> None:
    assert FORM["api"]["schema"]["enum"] == ["task", "chat"]
    for api in FORM["api"]["schema"]["enum"]:
        assert _settings(api=api).api == api
    with pytest.raises(ValidationError):
        _settings(api="voice")


def test_standard_fields_are_relabelled_with_the_models_titles() -> None:
    conn_type = get_provider_info()["connection-types"][0]
    behaviour = conn_type["ui-field-behaviour"]
    fields = MiniMaxConnectionSettings.model_fields
    assert behaviour["relabeling"] == {"host": fields["base_url"].title, "password": fields["api_key"].title}
    # The port stays visible: Airflow 3.3.1-3.3.2's Test button refuses a saved connection without one.
    assert behaviour["hidden-fields"] == ["login", "schema"]
    assert "port" in behaviour["placeholders"]


# ---------------------------------------------------------------- hook methods (Airflow < 3.2)


def test_legacy_field_behaviour_is_valid_for_airflow() -> None:
    schema_file = files("airflow").joinpath("customized_form_field_behaviours.schema.json")
    behaviour = MiniMaxHook.get_ui_field_behaviour()
    jsonschema.validate(behaviour, json.loads(schema_file.read_text()))
    conn_type = get_provider_info()["connection-types"][0]
    assert behaviour == {
        key.replace("-", "_"): value for key, value in conn_type["ui-field-behaviour"].items()
    }


@dataclass
class _Field:
    """Records what the hook builds a WTForms field with."""

    label: str
    description: str = ""
    default: Any = None
    validators: list[Any] = field(default_factory=list)
    widget: Any = None


class _IntegerField(_Field):
    pass


class _BooleanField(_Field):
    pass


class _StringField(_Field):
    pass


@dataclass
class _NumberRange:
    min: float | None = None
    max: float | None = None


@dataclass
class _AnyOf:
    values: list[Any]


@pytest.fixture
def fake_wtforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """WTForms, Flask-Babel and Flask-AppBuilder stand-ins (the hook imports them only when called)."""
    modules = {
        "wtforms": {
            "BooleanField": _BooleanField,
            "IntegerField": _IntegerField,
            "StringField": _StringField,
        },
        "wtforms.validators": {"NumberRange": _NumberRange, "Optional": lambda: "optional", "any_of": _AnyOf},
        "flask_babel": {"lazy_gettext": str},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": lambda: "text-widget"},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.usefixtures("fake_wtforms")
@pytest.mark.parametrize("name", EXTRA_FIELDS)
def test_legacy_widget_is_the_form_field(name: str) -> None:
    widget = MiniMaxHook.get_connection_form_widgets()[name]
    schema = FORM[name]["schema"]
    assert (widget.label, widget.description, widget.default) == (
        FORM[name]["label"],
        FORM[name]["description"],
        schema.get("default"),
    )
    kinds = {"integer": _IntegerField, "boolean": _BooleanField}
    assert isinstance(widget, kinds.get(schema["type"][0], _StringField))
    assert "optional" in widget.validators
    if "enum" in schema:
        assert _AnyOf(schema["enum"]) in widget.validators
    if "minimum" in schema or "maximum" in schema:
        assert _NumberRange(schema.get("minimum"), schema.get("maximum")) in widget.validators
