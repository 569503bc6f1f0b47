"""
Who a send goes to: numbers or per-customer rows, from a list, an XCom value, or a file, and the
opt-out list. Files (CSV with a header row, or JSON Lines, optionally gzipped) are read through
``airflow.sdk.ObjectStoragePath`` as a stream: a row lives only while it is being read, and what is
kept per recipient is its normalised number and one shared, encoded ``tplValue`` string.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_provider_juhe.mobiles import is_valid_mobile, normalise_mobile, split_mobiles
from airflow_provider_juhe.sms_content import decode_tpl_value, encode_tpl_value, variable_name

#: Reasons a requested number is not sent, as the report gives them.
NOT_A_NUMBER = "not a valid mobile number"
_VARIABLE = re.compile(r"#[^#\s]+#")
_FILE_TYPES = (".csv", ".jsonl")


class RecipientsError(ValueError):
    """A recipients or opt-out source that cannot be used; the message names the file, field or line."""


@dataclass
class Audience:
    """
    The requested numbers, each in exactly one place.

    :param to_send: valid, not suppressed, every variable present: number -> encoded ``tplValue``
        (equal values share one string object).
    :param invalid: number as given (normalised) -> why it is not sent.
    :param suppressed: valid numbers found in the opt-out list, in order.
    """

    to_send: dict[str, str | None] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    suppressed: dict[str, None] = field(default_factory=dict)  # an ordered set

    @property
    def requested(self) -> int:
        return len(self.to_send) + len(self.invalid) + len(self.suppressed)


def template_variables(content: str) -> frozenset[str]:
    """The ``#name#`` variables a template's text uses."""
    return frozenset(_VARIABLE.findall(content))


def audience_from_mobiles(
    mobiles: str | int | Iterable[str | int] | None,
    tpl_value: str | None,
    suppress: frozenset[str] | set[str],
) -> Audience:
    """Every valid number with the one operator-wide ``tpl_value`` (already encoded)."""
    audience = Audience()
    for entry in split_mobiles(mobiles):
        _admit(audience, entry, tpl_value, suppress)
    return audience


def audience_from_rows(
    recipients: Any,
    *,
    mobile_field: str,
    tpl_value: Mapping[str, object] | str | None,
    required: frozenset[str] | None,
    suppress: frozenset[str] | set[str],
) -> Audience:
    """
    Per-customer rows: each row's variables over the operator-wide ``tpl_value``.

    :param recipients: a list of mappings, or a path/URI (``str`` or ``ObjectStoragePath``) of a
        ``.csv`` / ``.jsonl`` file, optionally ``.gz``.
    :param required: the variables the templates use (``None``: unknown, not checked); a row
        without one of them is invalid.
    :raises RecipientsError: the file cannot be read, lacks the mobile column, holds a malformed
        line, or a row is not a mapping or has no number field.
    """
    base = {variable_name(k): str(v) for k, v in _as_mapping(tpl_value).items()}
    shared: dict[str, str] = {}  # one string object per distinct set of values
    names: dict[Any, str] = {}
    audience = Audience()
    for where, row in _rows(recipients, mobile_field):
        if mobile_field not in row:
            raise RecipientsError(f"{where}: no {mobile_field!r} field")
        values = dict(base)
        for key, value in row.items():
            # None keys are cells beyond a CSV header; empty cells leave the variable unset
            if key != mobile_field and key is not None and value is not None and value != "":
                name = names.get(key) or names.setdefault(key, variable_name(key))
                values[name] = str(value)
        entry = str(row[mobile_field] if row[mobile_field] is not None else "")
        missing = sorted(required - values.keys()) if required else None
        if missing:
            _admit(audience, entry, None, suppress, f"missing {', '.join(missing)}")
            continue
        encoded = encode_tpl_value(dict(sorted(values.items()))) if values else None
        _admit(audience, entry, encoded and shared.setdefault(encoded, encoded), suppress)
    return audience


def _admit(
    audience: Audience,
    entry: str,
    values: str | None,
    suppress: frozenset[str] | set[str],
    missing: str | None = None,
) -> None:
    """Place one entry; the first row of a number wins."""
    clean = len(entry) == 11 and entry.isdigit()
    number = entry if clean else normalise_mobile(entry.strip())
    if number in audience.to_send or number in audience.invalid or number in audience.suppressed:
        return
    if not ((clean and entry[0] == "1") or is_valid_mobile(number)):
        audience.invalid[number] = NOT_A_NUMBER
    elif number in suppress:
        audience.suppressed[number] = None
    elif missing is not None:
        audience.invalid[number] = missing
    else:
        audience.to_send[number] = values


def read_suppressed(suppress: Any) -> frozenset[str]:
    """
    The opt-out numbers, normalised: a list, or a path/URI of a text file (one number a line) or of a
    CSV with a ``mobile`` column (optionally ``.gz``).

    :raises RecipientsError: the file cannot be read or its CSV has no ``mobile`` column.
    """
    if suppress is None:
        return frozenset()
    if not is_location(suppress):
        return frozenset(normalise_mobile(entry) for entry in split_mobiles(suppress))
    numbers: set[str] = set()
    name = _file_name(suppress)
    with _open_text(suppress, "suppress") as stream:
        if name.endswith(".csv"):
            for _, row in _csv_rows(stream, suppress, "mobile", "suppress"):
                numbers.add(normalise_mobile(str(row["mobile"] or "")))
        else:
            for line in _lines(stream, suppress, "suppress"):
                numbers.update(normalise_mobile(entry) for entry in split_mobiles(line))
    return frozenset(numbers)


# -- sources ----------------------------------------------------------------------------------------


def _as_mapping(tpl_value: Mapping[str, object] | str | None) -> Mapping[str, object]:
    if tpl_value is None:
        return {}
    if isinstance(tpl_value, str):
        return decode_tpl_value(tpl_value)
    if not isinstance(tpl_value, Mapping):
        raise TypeError(f"tpl_value: expected a mapping or a string, got {type(tpl_value).__name__}")
    return tpl_value


def is_location(value: Any) -> bool:
    """A path or URI (``str`` or ``ObjectStoragePath``), as opposed to numbers or rows."""
    return isinstance(value, str) or type(value).__name__ == "ObjectStoragePath"


def _rows(recipients: Any, mobile_field: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(where, row)`` pairs; ``where`` names the row in error messages."""
    if is_location(recipients):
        yield from _file_rows(recipients, mobile_field)
        return
    if isinstance(recipients, Mapping) or not isinstance(recipients, Iterable):
        raise RecipientsError(
            f"recipients: expected a list of rows (mappings), or a path/URI of a .csv or .jsonl file, "
            f"got {type(recipients).__name__}"
        )
    for index, row in enumerate(recipients):
        if not isinstance(row, Mapping):
            raise RecipientsError(f"recipients[{index}]: expected a mapping, got {type(row).__name__}")
        yield f"recipients[{index}]", row


def _file_rows(location: Any, mobile_field: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    name = _file_name(location)
    if not name.endswith(_FILE_TYPES):
        raise RecipientsError(f"recipients: {location}: expected a .csv or .jsonl file (optionally .gz)")
    with _open_text(location, "recipients") as stream:
        if name.endswith(".csv"):
            yield from _csv_rows(stream, location, mobile_field, "recipients")
            return
        for number, line in enumerate(_lines(stream, location, "recipients"), start=1):
            if not line.strip():
                continue
            where = f"recipients: {location}, line {number}"
            try:
                row = json.loads(line)
            except ValueError as error:
                raise RecipientsError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(row, Mapping):
                raise RecipientsError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _csv_rows(
    stream: IO[str], location: Any, column: str, field_name: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    reader = csv.DictReader(_lines(stream, location, field_name))
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise RecipientsError(f"{field_name}: {location}: unreadable CSV header ({error})") from None
    if not header or column not in header:
        raise RecipientsError(
            f"{field_name}: {location} has no {column!r} column (header: {', '.join(header or [])})"
        )
    where = f"{field_name}: {location}"
    try:
        for row in reader:
            yield where, row
    except csv.Error as error:
        raise RecipientsError(f"{where}, line {reader.line_num}: malformed CSV ({error})") from None


def _lines(stream: IO[str], location: Any, field_name: str) -> Iterator[str]:
    number = 0
    try:
        for number, line in enumerate(stream, start=1):  # noqa: B007
            yield line
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise RecipientsError(
            f"{field_name}: cannot read {location} after line {number}: {_reason(error)}"
        ) from None


@contextmanager
def _open_text(location: Any, field_name: str) -> Iterator[IO[str]]:
    from airflow.sdk import ObjectStoragePath

    try:
        path = location if isinstance(location, ObjectStoragePath) else ObjectStoragePath(location)
        raw = path.open("rb")
    except Exception as error:  # fsspec raises many kinds: a missing file, a missing filesystem, ...
        raise RecipientsError(f"{field_name}: cannot read {location}: {_reason(error)}") from None
    with raw:
        binary = gzip.GzipFile(fileobj=raw) if str(location).lower().endswith(".gz") else raw
        yield io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def _file_name(location: Any) -> str:
    name = str(location).rsplit("/", 1)[-1].lower()
    return name[: -len(".gz")] if name.endswith(".gz") else name


def _reason(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    return f"{type(error).__name__}: {error}"
