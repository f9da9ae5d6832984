"""The ``minimax`` connection: its fields, defaults and validation into typed settings."""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from airflow_provider_minimax.models import CHAT_MODEL, TASK_MODEL, Count, NotABool, Number, problem_text
from airflow_provider_minimax.results import Prices

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

CONN_TYPE = "minimax"
DEFAULT_CONN_ID = "minimax_default"
Api = Literal["task", "chat"]
DEFAULT_BASE_URLS: dict[str, str] = {
    "task": "https://api.runware.ai/v1",
    "chat": "https://llm.bytespike.ai/v1",
}
DEFAULT_MODELS: dict[str, str] = {"task": TASK_MODEL, "chat": CHAT_MODEL}
#: Extra keys other connection types built on these settings read themselves (common.ai's
#: ``pydanticai_minimax`` keeps its fallback chain there).
OTHER_EXTRA_FIELDS: dict[str, frozenset[str]] = {"pydanticai_minimax": frozenset({"fallback_conn_ids"})}
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: A size limit (tasks in one request, connections open at once). The bounds come before the
#: validator: after it, the JSON schema (and so the form) would lose its minimum and maximum.
_Capacity = Annotated[int, Field(ge=1, le=1000), NotABool]


def _seconds(default: float, title: str, description: str) -> Any:
    """A duration setting: more than zero seconds, the unit named in its form label."""
    return Field(default=default, gt=0, title=f"{title} (seconds)", description=description)


def _price(kind: str, description: str) -> Any:
    """A chat-API price setting, for cost estimates: USD per million tokens, unset by default."""
    return Field(
        default=None,
        ge=0,
        title=f"{kind} price (USD per million tokens)",
        description=f"Chat API: {description}",
    )


class MiniMaxConnectionSettings(BaseModel):
    """Everything the hook needs from a ``minimax`` connection, validated once.

    Each field's title, description, default and bounds are also its entry in the connection
    form (:func:`conn_fields`), so the form and the validation cannot drift apart.

    :param conn_id: the Airflow connection id, named in every configuration error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    conn_id: str
    api: Api = Field(
        default="task",
        title="API",
        description="task: textInference/getResponse; chat: OpenAI chat completions",
    )
    base_url: str = Field(title="Base URL", description="The API's base URL, a full http(s) URL")
    api_key: SecretStr = Field(title="API key", description="Sent as Authorization: Bearer; never printed")
    model: str = Field(
        title="Model",
        description=f"Default: {DEFAULT_MODELS['task']} (task) or {DEFAULT_MODELS['chat']} (chat)",
    )
    timeout: Number = _seconds(
        120.0, "Timeout", "Seconds to wait for one read (or connect) of an HTTP response"
    )
    total_timeout: Number = _seconds(
        600.0,
        "Total timeout",
        "Seconds one API request may take in all: attempts, retry waits and the whole answer",
    )
    stream_idle_timeout: Number = _seconds(
        120.0,
        "Stream idle timeout",
        "Seconds a stream may go without an event (': ping' comments do not count)",
    )
    max_response_bytes: Count = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        title="Max response size (bytes)",
        description="The largest decoded answer body read",
    )
    max_retries: Count = Field(
        default=4, ge=0, le=20, title="Max retries", description="Retries on 408/429/5xx and network errors"
    )
    retry_max_wait: Number = _seconds(30.0, "Max backoff wait", "The cap of one backoff wait")
    chat_retry_on_read_timeout: bool = Field(
        default=True,
        title="Resend timed-out chat requests",
        description="Resend a chat request whose answer timed out or was cut after it was sent "
        "(it may be billed twice: the chat API has no idempotency key)",
    )
    max_tasks_per_request: _Capacity = Field(
        default=100,
        title="Tasks per request",
        description="How many tasks (or getResponse polls) one task-API request carries",
    )
    max_connections: _Capacity = Field(
        default=64, title="HTTP connection pool size", description="The most HTTP connections open at once"
    )
    price_per_million_input_tokens: Number | None = _price(
        "Input", "the price of prompt tokens, to estimate the cost (the gateway reports none)"
    )
    price_per_million_cached_input_tokens: Number | None = _price(
        "Cached input", "the price of cached prompt tokens; the input price when empty"
    )
    price_per_million_output_tokens: Number | None = _price(
        "Output", "the price of completion tokens, to estimate the cost"
    )

    @property
    def prices(self) -> Prices:
        """The chat-API prices set on the connection, for cost estimates."""
        return Prices(
            input=self.price_per_million_input_tokens,
            cached_input=self.price_per_million_cached_input_tokens,
            output=self.price_per_million_output_tokens,
        )

    @property
    def host(self) -> str:
        """The API's host (and port), for logs and lineage: never credentials or a path."""
        url = httpx.URL(self.base_url)
        return f"{url.host}:{url.port}" if url.port else url.host

    @property
    def chat_completions_url(self) -> str:
        """``POST`` target of the chat completions API."""
        return f"{self.base_url.rstrip('/')}/chat/completions"

    @classmethod
    def from_connection(cls, conn: Connection) -> MiniMaxConnectionSettings:
        """Read and validate a connection; errors name the connection and the field.

        :param conn: the Airflow connection (from the UI, a secrets backend or ``AIRFLOW_CONN_*``).
        """
        conn_id = conn.conn_id or DEFAULT_CONN_ID
        extra = _extra_dict(conn_id, conn.extra)
        api = str(extra.get("api") or "task").strip().lower()
        if api not in DEFAULT_BASE_URLS:
            raise _error(conn_id, f"field 'api' must be 'task' or 'chat', got {api!r}")
        api_key = _api_key(conn_id, conn.password)
        base_url = _base_url(conn_id, conn, api)
        tuning_fields = set(cls.model_fields) - {"conn_id", "api", "base_url", "api_key", "model"}
        others = OTHER_EXTRA_FIELDS.get(getattr(conn, "conn_type", None) or "", frozenset())
        _refuse_unknown(conn_id, extra, {"api", "model", *tuning_fields, *others})
        tuning = {
            key: value for key, value in extra.items() if key in tuning_fields and value not in (None, "")
        }
        try:
            return cls(
                conn_id=conn_id,
                api=api,
                base_url=base_url,
                api_key=SecretStr(api_key),
                model=str(extra.get("model") or DEFAULT_MODELS[api]),
                **tuning,
            )
        except ValidationError as err:
            problems = "; ".join(
                f"field {'.'.join(map(str, e['loc']))!r}: {problem_text(e)}" for e in err.errors()
            )
            raise _error(conn_id, problems) from None


def _error(conn_id: str, problem: str) -> Exception:
    """A configuration error naming the connection.

    The import is deferred: Airflow reads this module's form (provider info) while it is still
    importing itself, and the error class derives from Airflow's.
    """
    from airflow_provider_minimax.exceptions import MiniMaxConfigurationError

    return MiniMaxConfigurationError(f"Connection {conn_id!r}: {problem}")


def _extra_dict(conn_id: str, extra: str | dict[str, Any] | None) -> dict[str, Any]:
    if not extra:
        return {}
    if isinstance(extra, dict):
        return extra
    try:
        parsed = json.loads(extra)
    except json.JSONDecodeError:
        raise _error(conn_id, "field 'extra' is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _error(conn_id, "field 'extra' must be a JSON object")
    return parsed


def _api_key(conn_id: str, password: str | None) -> str:
    """The key without the whitespace copy-paste adds; a key an HTTP header cannot carry is refused.

    The message never shows the key: a header-illegal key would otherwise surface in httpx's error.
    """
    key = (password or "").strip()
    if not key:
        raise _error(
            conn_id,
            "field 'password' (the MiniMax API key) is empty; "
            "set it in the connection or in AIRFLOW_CONN_" + conn_id.upper(),
        )
    if not all("!" <= char <= "~" for char in key):
        raise _error(
            conn_id,
            "field 'password' (the MiniMax API key) contains whitespace, "
            "control or non-ASCII characters; paste the key again",
        )
    return key


def _refuse_unknown(conn_id: str, extra: dict[str, Any], known: set[str]) -> None:
    """Refuse an ``extra`` key no setting reads: a typo (``tiemout``) would otherwise be ignored."""
    for key in extra:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known fields: {', '.join(sorted(known))}"
            raise _error(conn_id, f"field 'extra.{key}' is not a known setting; {hint}")


def _base_url(conn_id: str, conn: Connection, api: str) -> str:
    """The base URL from ``host``; a URI-form connection splits it into schema/host/port/path."""
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_BASE_URLS[api]
    if "://" not in host:
        # AIRFLOW_CONN_X='minimax://:KEY@api.example.com:8443/v1' arrives as host + port + schema;
        # the JSON form may carry them in host ("127.0.0.1:8080/v1"): one scheme rule for both.
        scheme = "http" if _host_name(host) in _LOOPBACK_HOSTS else "https"
        port = f":{conn.port}" if conn.port else ""
        path = f"/{conn.schema.strip('/')}" if conn.schema else ""
        host = f"{scheme}://{host}{port}{path}"
    try:
        url = httpx.URL(host)
    except httpx.InvalidURL as err:
        raise _error(conn_id, f"field 'host' is not a URL: {err}") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise _error(
            conn_id,
            f"field 'host' must be a full http(s) URL such as {DEFAULT_BASE_URLS[api]!r}, got {host!r}",
        )
    url_port = url.port or _DEFAULT_PORTS[url.scheme]
    if conn.port and conn.port != url_port:
        raise _error(
            conn_id,
            f"field 'port' ({conn.port}) must be the port of field 'host' {host!r} ({url_port}), or empty",
        )
    return str(url).rstrip("/")


def _host_name(host: str) -> str:
    """The bare host name of ``host[:port][/path]``."""
    try:
        return httpx.URL(f"http://{host}").host
    except httpx.InvalidURL:
        return host


# ---------------------------------------------------------------------------- the connection form

#: Settings read from the connection's ``extra`` (the form's Extra Fields): all but the id, host and key.
EXTRA_FIELDS = tuple(
    name for name in MiniMaxConnectionSettings.model_fields if name not in {"conn_id", "base_url", "api_key"}
)
#: Field constraints (annotated-types) as JSON-schema bounds.
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def conn_fields() -> dict[str, dict[str, Any]]:
    """The form's extra fields (provider info ``conn-fields``), each from its settings model field."""
    properties = MiniMaxConnectionSettings.model_json_schema()["properties"]
    return {
        name: _form_field(MiniMaxConnectionSettings.model_fields[name], properties[name])
        for name in EXTRA_FIELDS
    }


def _form_field(field: FieldInfo, json_schema: dict[str, Any]) -> dict[str, Any]:
    """One form field: title, help, default and bounds of the settings field, its JSON type and choices."""
    # An optional field's JSON schema is a union with null: the form field takes the other branch.
    value_schema = next(s for s in json_schema.get("anyOf", [json_schema]) if s.get("type") != "null")
    bounds = {
        key: getattr(constraint, attribute)
        for constraint in field.metadata
        for attribute, key in _BOUNDS.items()
        if hasattr(constraint, attribute)
    }
    choices = {"enum": value_schema["enum"]} if "enum" in value_schema else {}
    default = {"default": field.default} if field.default not in (None, PydanticUndefined) else {}
    return {
        "label": field.title,
        "description": field.description,
        # Every field may be left empty: the settings model then applies its default.
        "schema": {"type": [value_schema["type"], "null"], **choices, **default, **bounds},
    }


def ui_field_behaviour() -> dict[str, Any]:
    """How the form shows the standard fields (provider info ``ui-field-behaviour``)."""
    fields = MiniMaxConnectionSettings.model_fields
    return {
        "hidden-fields": ["login", "schema"],
        "relabeling": {"host": fields["base_url"].title, "password": fields["api_key"].title},
        "placeholders": {
            "host": " or ".join(f"{url} ({api})" for api, url in DEFAULT_BASE_URLS.items()),
            "password": "MiniMax API key",
            # Shown because Airflow 3.3.1-3.3.2's Test button refuses a saved connection without a port.
            "port": "Optional: the Base URL's port (443 for https)",
        },
    }


def connection_form_widgets() -> dict[str, Any]:
    """The extra fields as WTForms fields, for Airflow < 3.2 (it reads hook methods, not ``conn-fields``)."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, StringField
    from wtforms.validators import NumberRange, Optional, any_of

    widgets: dict[str, Any] = {}
    for name, field in conn_fields().items():
        schema = field["schema"]
        validators: list[Any] = [Optional()]
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        if "minimum" in schema or "maximum" in schema:
            validators.append(NumberRange(min=schema.get("minimum"), max=schema.get("maximum")))
        # Floats are typed as text: Airflow < 3.2 accepts no FloatField; the settings model parses them.
        kind = {"integer": IntegerField, "boolean": BooleanField}.get(schema["type"][0], StringField)
        widgets[name] = kind(
            lazy_gettext(field["label"]),
            description=field["description"],
            default=schema.get("default"),
            validators=validators,
            widget=BS3TextFieldWidget(),
        )
    return widgets


def legacy_ui_field_behaviour() -> dict[str, Any]:
    """:func:`ui_field_behaviour` with the snake_case keys of ``BaseHook.get_ui_field_behaviour``."""
    return {key.replace("-", "_"): value for key, value in ui_field_behaviour().items()}
