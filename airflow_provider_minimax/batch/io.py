"""Reading a batch's rows (records, JSONL or CSV, local or object storage) and writing JSONL results."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal

from airflow_provider_minimax.exceptions import MiniMaxValidationError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

InputFormat = Literal["jsonl", "csv"]
_SUFFIXES: dict[str, InputFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def storage_path(path: str | ObjectStoragePath) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URI (``s3://...``, ``file://...``) or a plain local path.

    :param path: the path or URI.
    """
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(path, ObjectStoragePath):
        return path
    text = str(path)
    return ObjectStoragePath(text if "://" in text else f"file://{text}")


def input_format(path: ObjectStoragePath, declared: InputFormat | None) -> InputFormat:
    """The format of an input file: as declared, or from its suffix.

    :param path: the input file.
    :param declared: the operator's ``input_format``, if set.
    """
    if declared is not None:
        return declared
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise MiniMaxValidationError(
            f"input_path {str(path)!r}: cannot tell the format from the suffix {path.suffix!r}; "
            "use .jsonl or .csv, or set input_format='jsonl' or 'csv'",
            parameter="input_path",
        )
    return found


def read_rows(path: str | ObjectStoragePath, declared: InputFormat | None = None) -> list[dict[str, Any]]:
    """Every row of a JSONL (one JSON object per line) or CSV (with a header line) file.

    :param path: the file, local or on object storage.
    :param declared: the format, when the suffix does not say it.
    """
    return list(iter_rows(path, declared))


def iter_rows(path: str | ObjectStoragePath, declared: InputFormat | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL or CSV file one at a time, read as a stream (the file stays open meanwhile).

    :param path: the file, local or on object storage.
    :param declared: the format, when the suffix does not say it.
    """
    source = storage_path(path)
    fmt = input_format(source, declared)
    # utf-8-sig: spreadsheet tools save "CSV UTF-8" with a byte-order mark; it must not join the first field.
    with source.open("r", encoding="utf-8-sig", newline="") as handle:
        # readline, not iter(handle): Airflow 3.0's ObjectStoragePath file wrapper is not iterable.
        lines = iter(handle.readline, "")
        if fmt == "csv":
            yield from (dict(record) for record in csv.DictReader(lines))
        else:
            yield from _jsonl_records(lines, str(source))


def windows(rows: Iterable[dict[str, Any]], size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Consecutive slices of at most ``size`` rows, each with the index of its first row.

    :param rows: the rows, e.g. from :func:`iter_rows`.
    :param size: rows per slice.
    """
    source, offset = iter(rows), 0
    while window := list(itertools.islice(source, size)):
        yield offset, window
        offset += len(window)


def _jsonl_records(lines: Iterable[str], name: str) -> Iterable[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MiniMaxValidationError(
                f"input_path {name!r}, line {number}: not valid JSON ({err.msg})", parameter="input_path"
            ) from None
        if not isinstance(record, dict):
            raise MiniMaxValidationError(
                f"input_path {name!r}, line {number}: expected a JSON object, got {type(record).__name__}",
                parameter="input_path",
            )
        yield record


def check_records(rows: Any) -> list[dict[str, Any]]:
    """The ``rows`` argument as a list of dicts; raises naming the first row that is not a mapping.

    :param rows: what the operator was given (after templating or XCom resolution); text is read
        as JSON (a template rendered as text).
    """
    if isinstance(rows, str):
        try:
            rows = json.loads(rows)
        except json.JSONDecodeError:
            raise MiniMaxValidationError(
                "rows rendered to text that is not a JSON list of records; pass the list itself "
                "(e.g. rows=upstream.output) or render_template_as_native_obj=True",
                parameter="rows",
            ) from None
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise MiniMaxValidationError(
            f"rows must be a list of records (dicts), got {type(rows).__name__}", parameter="rows"
        )
    records = []
    for index, record in enumerate(rows):
        if not isinstance(record, Mapping):
            raise MiniMaxValidationError(
                f"rows[{index}] must be a record (dict), got {type(record).__name__}",
                parameter=f"rows[{index}]",
            )
        records.append(dict(record))
    return records


def write_jsonl(path: str | ObjectStoragePath, records: Iterable[Mapping[str, Any]]) -> str:
    """Write records as JSONL, one object per line, and return the path's URI.

    :param path: where to write (parent folders are created for local paths).
    :param records: the records, written in order.
    """
    with JsonlWriter(path) as writer:
        for record in records:
            writer.write(record)
    return writer.uri


class JsonlWriter:
    """Write records as JSONL as they come, in one stream (``with JsonlWriter(path) as w: w.write(r)``).

    :param path: where to write (parent folders are created for local paths).
    """

    def __init__(self, path: str | ObjectStoragePath) -> None:
        self._target = storage_path(path)
        self.uri = str(self._target)
        self._handle: IO[str] | None = None

    def __enter__(self) -> JsonlWriter:
        if self._target.protocol in ("", "file", "local"):
            self._target.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self._target.open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record.

        :param record: a JSON-ready mapping.
        """
        assert self._handle is not None, "use JsonlWriter in a with block"
        self._handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        self._handle.write("\n")
