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
