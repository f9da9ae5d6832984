"""One error tree for every failure the MiniMax provider reports.

Each error carries the HTTP status, the API's error code, the taskUUID where there is one and
a message a user can act on. None of them ever holds the API key.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.common.compat.sdk import AirflowException


class MiniMaxError(AirflowException):
    """Base class of every error raised by the MiniMax provider.

    :param message: what went wrong and what to do about it.
    :param status_code: the HTTP status, when the error came from a response.
    :param code: the API's error code (``invalidApiKey``, ``rateLimitExceeded``, ...).
    :param task_uuid: the taskUUID the error is scoped to, when there is one.
    :param parameter: the request parameter the API or the validator blamed.
    :param retry_after: seconds the server asked us to wait, when it said so.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        task_uuid: str | None = None,
        parameter: str | Sequence[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code  # type: ignore[assignment]  # AirflowException types it HTTPStatus
        self.code = code
        self.task_uuid = task_uuid
        self.parameter = parameter
        self.retry_after = retry_after
        super().__init__(self._render())

    def _render(self) -> str:
        tags = [
            f"{name}={value}"
            for name, value in (
                ("status", self.status_code),
                ("code", self.code),
                ("taskUUID", self.task_uuid),
                ("parameter", self.parameter),
            )
            if value is not None
        ]
        return f"{self.message} [{', '.join(tags)}]" if tags else self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields must survive pickling (Celery result backends, multiprocessing).
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[MiniMaxError], message: str, state: dict[str, object]) -> MiniMaxError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._render())
    return error


class MiniMaxConfigurationError(MiniMaxError):
    """The connection is unusable: a missing key, a bad URL, an unknown ``api`` value."""


class MiniMaxValidationError(MiniMaxError, ValueError):
    """A request was rejected before any HTTP call: the field, the value and the bound are named."""


class MiniMaxAuthError(MiniMaxError):
    """The API key is missing, invalid or lacks permission (401/403)."""


class MiniMaxCreditError(MiniMaxError):
    """The account has no credit left (402); top up before retrying."""


class MiniMaxInvalidRequestError(MiniMaxError):
    """The API refused the request as invalid (400/404/422 or an ``invalid*`` code)."""


class MiniMaxTransientError(MiniMaxError):
    """A failure worth retrying (408/429/5xx); raised to the caller only after the last attempt."""


class MiniMaxRateLimitError(MiniMaxTransientError):
    """Still rate-limited (429) after every retry."""


class MiniMaxServerError(MiniMaxTransientError):
    """The API kept failing on its side (408/5xx) after every retry."""


class MiniMaxConnectionError(MiniMaxTransientError):
    """The API could not be reached (connect/read error, reset connection) after every retry."""

    #: A chat request the server received but did not answer: resending it may be billed twice.
    maybe_billed: bool = False


class MiniMaxTaskFailedError(MiniMaxError):
    """An accepted task finished with ``status: error``; the API's code and message are kept."""


class MiniMaxTimeoutError(MiniMaxError):
    """Tasks did not finish before the deadline; the UUIDs are named so results can be fetched later.

    :param task_uuids: the UUIDs still running at the deadline.
    """

    def __init__(self, message: str, *, task_uuids: Sequence[str] = (), **kwargs: object) -> None:
        self.task_uuids = list(task_uuids)
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class MiniMaxOutputValidationError(MiniMaxError):
    """The model's answer never matched the requested ``output_type`` after every re-ask."""


class MiniMaxDeadlineError(MiniMaxTimeoutError):
    """One call ran past its ``total_timeout``, or a stream sent no event for ``stream_idle_timeout``.

    Not retried: the deadline bounds the whole call, retries included.
    """


class MiniMaxMalformedResponseError(MiniMaxError):
    """A 2xx answer whose body does not have the contract's shape (wrong types, no ``choices``, no result).

    Not retried: the request may have been processed and billed.
    """


class MiniMaxResponseTooLargeError(MiniMaxError):
    """An answer's decoded body passed the connection's ``max_response_bytes``."""


class MiniMaxRedirectError(MiniMaxConfigurationError):
    """The API answered with a redirect; the base URL is probably wrong (``location`` says where to).

    :param location: the ``Location`` header of the redirect.
    """

    def __init__(self, message: str, *, location: str | None = None, **kwargs: object) -> None:
        self.location = location
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
