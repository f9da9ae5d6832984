"""The operators' own knobs, read by name after templating and checked before any HTTP call."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from airflow_provider_minimax.hooks.request_building import build
from airflow_provider_minimax.poll_cadence import seconds

OptionsT = TypeVar("OptionsT", bound=BaseModel)
#: Knobs given in seconds or as a timedelta.
DURATIONS = ("wait_timeout", "not_found_grace")


def checked_options(options_type: type[OptionsT], operator: Any) -> OptionsT:
    """``options_type`` filled from the operator's attributes of the same names, checked.

    A bad value raises :class:`~airflow_provider_minimax.exceptions.MiniMaxValidationError`
    naming the parameter and the bound.

    :param options_type: the options model; each of its fields is an operator parameter.
    :param operator: the operator, after templating.
    """
    values = {name: getattr(operator, name) for name in options_type.model_fields}
    for name in DURATIONS:
        if name in values:
            values[name] = seconds(values[name])
    options: OptionsT = build(options_type, f"{type(operator).__name__} parameters", **values)
    return options


def check_output_type(output_type: Any, task_id: str) -> None:
    """Refuse an ``output_type`` that is not a pydantic model class, when the DAG is parsed.

    :param output_type: the operator's ``output_type``.
    :param task_id: the task, for the message.
    """
    if output_type is not None and not (isinstance(output_type, type) and issubclass(output_type, BaseModel)):
        raise TypeError(
            f"{task_id}: 'output_type' must be a pydantic BaseModel subclass, got {output_type!r}"
        )
