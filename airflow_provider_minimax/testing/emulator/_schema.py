"""Generate a deterministic JSON instance that satisfies a JSON schema (the subset LLM tools use)."""

from __future__ import annotations

from typing import Any

from airflow_provider_minimax.testing.emulator._text import digest

_MAX_DEPTH = 8
_FORMATS = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


class _Generator:
    """Walks a schema and builds an instance; ``hint`` seeds the strings and numbers."""

    def __init__(self, root: dict[str, Any], hint: str) -> None:
        """Keep the root for ``$ref`` lookups.

        :param root: the whole schema
        :param hint: text the generated strings derive from
        """
        self.root = root
        self.hint = hint

    def _pick(self, name: str, modulo: int) -> int:
        return int(digest(self.hint, name)[:8], 16) % max(1, modulo)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        # Sibling keywords (pydantic puts description/default next to $ref) refine the target.
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return self._resolve({**node, **extra}) if extra else self._resolve(node)

    def value(self, schema: Any, name: str, depth: int = 0) -> Any:
        """Build a value for ``schema``.

        :param schema: the (sub)schema
        :param name: the property path, which varies the generated values
        :param depth: recursion depth, bounded so recursive models terminate
        """
        if not isinstance(schema, dict):
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            options = schema["enum"]
            return options[self._pick(name, len(options))]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [s for s in schema[key] if self._resolve(s).get("type") != "null"] or schema[key]
                return self.value(options[0], name, depth)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged = _merge(merged, self._resolve(part))
            return self.value(merged, name, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        return getattr(self, f"_{kind}", self._null)(schema, name, depth)

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties", {})
        if depth >= _MAX_DEPTH:
            props = {k: v for k, v in props.items() if k in schema.get("required", [])}
        out = {key: self.value(sub, f"{name}.{key}", depth + 1) for key, sub in props.items()}
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict):
            out["key"] = self.value(extra, f"{name}.key", depth + 1)
        return out

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        if prefix:
            return [self.value(s, f"{name}[{i}]", depth + 1) for i, s in enumerate(prefix)]
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 2)))
        size = 0 if depth >= _MAX_DEPTH else min(max(low, 2), high)
        size = max(size, low)
        return [self.value(schema.get("items", {}), f"{name}[{i}]", depth + 1) for i in range(size)]

    def _string(self, schema: dict[str, Any], name: str, depth: int) -> str:
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        label = name.rsplit(".", 1)[-1] or "value"
        text = f"{label} {digest(self.hint, name)[:6]}"
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", max(len(text), low)))
        text = text.ljust(low, "x")
        return text[:high]

    def _integer(self, schema: dict[str, Any], name: str, depth: int) -> int:
        low, high = _bounds(schema, 0, 100, 1)
        return int(low) + self._pick(name, int(high) - int(low) + 1)

    def _number(self, schema: dict[str, Any], name: str, depth: int) -> float:
        low, high = _bounds(schema, 0.0, 100.0, 0.01)
        return round(low + (high - low) * self._pick(name, 100) / 100, 4)

    def _boolean(self, schema: dict[str, Any], name: str, depth: int) -> bool:
        return self._pick(name, 2) == 1

    def _null(self, schema: dict[str, Any], name: str, depth: int) -> None:
        return None


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Merge two object schemas of an ``allOf``: properties and required lists combine."""
    merged = {**left, **right}
    merged["properties"] = {**left.get("properties", {}), **right.get("properties", {})}
    merged["required"] = [*left.get("required", []), *right.get("required", [])]
    return merged


def _bounds(schema: dict[str, Any], low: float, high: float, step: float) -> tuple[float, float]:
    """Inclusive numeric range from minimum/maximum and their exclusive forms; defaults fill gaps."""
    has_low = "minimum" in schema or "exclusiveMinimum" in schema
    has_high = "maximum" in schema or "exclusiveMaximum" in schema
    if has_low:
        low = schema["minimum"] if "minimum" in schema else schema["exclusiveMinimum"] + step
    if has_high:
        high = schema["maximum"] if "maximum" in schema else schema["exclusiveMaximum"] - step
    if has_low and not has_high:
        high = low + 100
    if has_high and not has_low:
        low = min(low, high)
    return low, max(low, high)


def instance_for(schema: dict[str, Any], hint: str = "") -> Any:
    """A JSON value that satisfies ``schema``: object properties, enums, numbers in range, ``$ref``.

    :param schema: a JSON schema such as pydantic's ``model_json_schema()`` produces
    :param hint: text that varies the generated strings and numbers (the prompt)
    """
    return _Generator(schema, hint).value(schema, "")
