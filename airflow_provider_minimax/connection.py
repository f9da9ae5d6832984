"""The ``minimax`` connection: its fields, defaults and validation into typed settings."""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from airflow_provider_minimax.exceptions import MiniMaxConfigurationError
from airflow_provider_minimax.models import CHAT_MODEL, TASK_MODEL, NotABool
from airflow_provider_minimax.results import Prices

if TYPE_CHECKING:
    from airflow.sdk import Connection

CONN_TYPE = "minimax"
DEFAULT_CONN_ID = "minimax_default"
Api = Literal["task", "chat"]
DEFAULT_BASE_URLS: dict[str, str] = {
    "task": "https://api.runware.ai/v1",
    "chat": "https://llm.bytespike.ai/v1",
}
DEFAULT_MODELS: dict[str, str] = {"task": TASK_MODEL, "chat": CHAT_MODEL}
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class MiniMaxConnectionSettings(BaseModel):
    """Everything the hook needs from a ``minimax`` connection, validated once.

    :param conn_id: the Airflow connection id, named in every configuration error.
    :param api: which API the connection speaks: ``task`` or ``chat``.
    :param base_url: the API's base URL (the connection's host).
    :param api_key: the API key (the connection's password), never printed.
    :param model: the default model for calls that name none.
    :param timeout: seconds to wait for one read (or connect) of an HTTP response.
    :param total_timeout: seconds one API request may take in all: every attempt, retry wait and
        byte of the answer (a whole stream included).
    :param stream_idle_timeout: seconds a stream may go without an event; ``: ping`` comments
        do not count.
    :param max_response_bytes: the largest decoded answer body read, in bytes.
    :param max_retries: retries after the first attempt for transient failures.
    :param retry_max_wait: the cap of one backoff wait, in seconds.
    :param chat_retry_on_read_timeout: resend a chat request whose answer timed out or was cut
        after it was sent (it may have been processed and billed: the chat API has no idempotency key).
    :param max_tasks_per_request: how many tasks one task-API request carries at most.
    :param max_connections: the size of the HTTP connection pool.
    :param price_per_million_input_tokens: chat API: USD per million prompt tokens, to estimate
        the cost (the gateway reports none).
    :param price_per_million_cached_input_tokens: chat API: USD per million cached prompt tokens
        (the input price when not set).
    :param price_per_million_output_tokens: chat API: USD per million completion tokens.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    conn_id: str
    api: Api = "task"
    base_url: str
    api_key: SecretStr
    model: str
    timeout: Annotated[float, NotABool] = Field(default=120.0, gt=0)
    total_timeout: Annotated[float, NotABool] = Field(default=600.0, gt=0)
    stream_idle_timeout: Annotated[float, NotABool] = Field(default=120.0, gt=0)
    max_response_bytes: Annotated[int, NotABool] = Field(default=32 * 1024 * 1024, ge=1024)
    max_retries: Annotated[int, NotABool] = Field(default=4, ge=0, le=20)
    retry_max_wait: Annotated[float, NotABool] = Field(default=30.0, gt=0)
    chat_retry_on_read_timeout: bool = True
    max_tasks_per_request: Annotated[int, NotABool] = Field(default=100, ge=1, le=1000)
    max_connections: Annotated[int, NotABool] = Field(default=64, ge=1, le=1000)
    price_per_million_input_tokens: Annotated[float, NotABool] | None = Field(default=None, ge=0)
    price_per_million_cached_input_tokens: Annotated[float, NotABool] | None = Field(default=None, ge=0)
    price_per_million_output_tokens: Annotated[float, NotABool] | None = Field(default=None, ge=0)

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
            raise MiniMaxConfigurationError(
                f"Connection {conn_id!r}: field 'api' must be 'task' or 'chat', got {api!r}"
            )
        api_key = _api_key(conn_id, conn.password)
        base_url = _base_url(conn_id, conn, api)
        tuning_fields = set(cls.model_fields) - {"conn_id", "api", "base_url", "api_key", "model"}
        _refuse_unknown(conn_id, extra, {"api", "model", *tuning_fields})
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
                f"field {'.'.join(map(str, e['loc']))!r}: {e['msg']} (got {e.get('input')!r})"
                for e in err.errors()
            )
            raise MiniMaxConfigurationError(f"Connection {conn_id!r}: {problems}") from None


def _extra_dict(conn_id: str, extra: str | dict[str, Any] | None) -> dict[str, Any]:
    if not extra:
        return {}
    if isinstance(extra, dict):
        return extra
    try:
        parsed = json.loads(extra)
    except json.JSONDecodeError:
        raise MiniMaxConfigurationError(f"Connection {conn_id!r}: field 'extra' is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise MiniMaxConfigurationError(f"Connection {conn_id!r}: field 'extra' must be a JSON object")
    return parsed


def _api_key(conn_id: str, password: str | None) -> str:
    """The key without the whitespace copy-paste adds; a key an HTTP header cannot carry is refused.

    The message never shows the key: a header-illegal key would otherwise surface in httpx's error.
    """
    key = (password or "").strip()
    if not key:
        raise MiniMaxConfigurationError(
            f"Connection {conn_id!r}: field 'password' (the MiniMax API key) is empty; "
            "set it in the connection or in AIRFLOW_CONN_" + conn_id.upper()
        )
    if not all("!" <= char <= "~" for char in key):
        raise MiniMaxConfigurationError(
            f"Connection {conn_id!r}: field 'password' (the MiniMax API key) contains whitespace, "
            "control or non-ASCII characters; paste the key again"
        )
    return key


def _refuse_unknown(conn_id: str, extra: dict[str, Any], known: set[str]) -> None:
    """Refuse an ``extra`` key no setting reads: a typo (``tiemout``) would otherwise be ignored."""
    for key in extra:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known fields: {', '.join(sorted(known))}"
            raise MiniMaxConfigurationError(
                f"Connection {conn_id!r}: field 'extra.{key}' is not a known setting; {hint}"
            )


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
        raise MiniMaxConfigurationError(f"Connection {conn_id!r}: field 'host' is not a URL: {err}") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise MiniMaxConfigurationError(
            f"Connection {conn_id!r}: field 'host' must be a full http(s) URL such as "
            f"{DEFAULT_BASE_URLS[api]!r}, got {host!r}"
        )
    return str(url).rstrip("/")


def _host_name(host: str) -> str:
    """The bare host name of ``host[:port][/path]``."""
    try:
        return httpx.URL(f"http://{host}").host
    except httpx.InvalidURL:
        return host
