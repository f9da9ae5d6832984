"""Tool schemas from type hints and docstrings, argument validation and invocation."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from airflow_provider_minimax.models import ChatToolCall
from airflow_provider_minimax.tools import MAX_RESULT_CHARS, Tool, ToolBox, parse_docstring, result_text


class Address(BaseModel):
    street: str
    zip_code: str


def book_table(
    restaurant: str,
    guests: int,
    *,
    when: Literal["lunch", "dinner"] = "dinner",
    address: Address | None = None,
    notes: Annotated[str, Field(max_length=20, description="from Field")] = "",
    tags=None,  # unannotated on purpose: any JSON value
) -> str:
    """Book a table at a restaurant.

    Longer explanation that is not the description.

    :param restaurant: the restaurant's name,
        exactly as listed.
    :param guests: how many people.
    :param when: the service.
    :param notes: from the docstring (Field wins).
    :return: the booking reference.
    """
    return f"{restaurant}/{guests}/{when}"


def call(tool: Tool, arguments: Any) -> tuple[dict[str, Any], str | None]:
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
    box = ToolBox([tool])
    return box.answer(ChatToolCall(id="c1", function={"name": tool.name, "arguments": encoded}))


def test_schema_comes_from_type_hints_and_docstring() -> None:
    tool = Tool.from_callable(book_table)
    params = tool.parameters

    assert tool.spec()["function"]["description"] == "Book a table at a restaurant."
    assert params["required"] == ["restaurant", "guests"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["restaurant"] == {
        "title": "Restaurant",
        "type": "string",
        "description": "the restaurant's name, exactly as listed.",
    }
    assert props["guests"]["type"] == "integer"
    assert props["when"]["enum"] == ["lunch", "dinner"]
    assert props["when"]["default"] == "dinner"
    assert props["notes"]["description"] == "from Field"
    assert props["notes"]["maxLength"] == 20
    assert params["$defs"]["Address"]["required"] == ["street", "zip_code"]
    assert "type" not in props["tags"]


def test_spec_is_an_openai_function_tool() -> None:
    spec = Tool.from_callable(book_table, name="book").spec()

    assert spec["type"] == "function"
    assert spec["function"]["name"] == "book"
    assert spec["function"]["parameters"]["type"] == "object"


def star_args(*cities: str) -> None:
    """Star args."""


def star_kwargs(**options: str) -> None:
    """Star kwargs."""


def positional_only(city: str, /) -> None:
    """Positional only."""


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (lambda city: city, "Tool name '<lambda>' is invalid"),
        (star_args, "parameter 'cities' is variadic positional"),
        (star_kwargs, "parameter 'options' is variadic keyword"),
        (positional_only, "parameter 'city' is positional-only"),
    ],
)
def test_callables_that_cannot_be_tools_are_refused(function: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Tool.from_callable(function)


def test_tool_names_must_be_unique() -> None:
    with pytest.raises(TypeError, match="Two tools are named 'book_table'"):
        ToolBox([book_table, Tool.from_callable(book_table)])


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"restaurant": "Chez Paul", "guests": "4"}, "Chez Paul/4/dinner"),
        ({"restaurant": "Chez Paul", "guests": 2, "when": "lunch"}, "Chez Paul/2/lunch"),
        (
            "",
            "error: invalid arguments: restaurant: Missing required argument; guests: Missing",
        ),
        ("{not json", "error: arguments are not valid JSON: Expecting property name"),
        ("[1, 2]", "error: arguments must be a JSON object, got list"),
        (
            {"restaurant": "X", "guests": "many"},
            "error: invalid arguments: guests: Input should be a valid integer",
        ),
        (
            {"restaurant": "X", "guests": 1, "when": "brunch"},
            "error: invalid arguments: when: Input should be",
        ),
        (
            {"restaurant": "X", "guests": 1, "extra": 1},
            "error: invalid arguments: extra: Unexpected keyword argument",
        ),
    ],
)
def test_arguments_are_validated_before_the_call(arguments: Any, expected: str) -> None:
    message, error = call(Tool.from_callable(book_table), arguments)

    assert message["role"] == "tool"
    assert message["tool_call_id"] == "c1"
    assert message["content"].startswith(expected)
    assert (error is None) == (not expected.startswith("error:"))


def test_nested_models_arrive_as_model_instances() -> None:
    seen: list[Any] = []

    def ship(address: Address) -> str:
        """Ship it."""
        seen.append(address)
        return "shipped"

    message, _ = call(Tool.from_callable(ship), {"address": {"street": "Rue X", "zip_code": "69001"}})

    assert message["content"] == "shipped"
    assert seen == [Address(street="Rue X", zip_code="69001")]


def test_an_exception_in_the_tool_becomes_an_error_result() -> None:
    def lookup(city: str) -> str:
        """Look up."""
        raise KeyError(city)

    message, error = call(Tool.from_callable(lookup), {"city": "Lyon"})

    assert message["content"] == "error: KeyError: 'Lyon'"
    assert error == "KeyError: 'Lyon'"


def test_async_tools_are_awaited() -> None:
    async def fetch(city: str) -> dict[str, str]:
        """Fetch."""
        return {"city": city}

    message, _ = call(Tool.from_callable(fetch), {"city": "Lyon"})

    assert json.loads(message["content"]) == {"city": "Lyon"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("", '""'),
        ({"a": 1, "b": [1, 2]}, '{"a": 1, "b": [1, 2]}'),
        (Address(street="s", zip_code="z"), '{"street":"s","zip_code":"z"}'),
        (None, "null"),
        ({"when": __import__("datetime").date(2025, 1, 2)}, '{"when": "2025-01-02"}'),
    ],
)
def test_results_are_sent_as_text_or_json(value: Any, expected: str) -> None:
    assert result_text(value) == expected


def test_long_results_are_truncated() -> None:
    text = result_text("x" * (MAX_RESULT_CHARS + 10))

    assert text.endswith("(truncated, 10 more characters)")
    assert len(text) < MAX_RESULT_CHARS + 50


def test_docstring_parser_reads_summary_and_params() -> None:
    summary, params = parse_docstring(book_table.__doc__)

    assert summary == "Book a table at a restaurant."
    assert params == {
        "restaurant": "the restaurant's name, exactly as listed.",
        "guests": "how many people.",
        "when": "the service.",
        "notes": "from the docstring (Field wins).",
    }
