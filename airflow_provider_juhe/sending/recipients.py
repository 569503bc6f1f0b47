"""
Who a send goes to: numbers or per-customer rows, from a list, an XCom value, or a file, and the
opt-out list. Files (CSV with a header row, or JSON Lines, optionally gzipped) are read through
``airflow.sdk.ObjectStoragePath`` as a stream: a row lives only while it is being read, and what is
kept per recipient is its normalised number and its variables, packed
(:func:`~airflow_provider_juhe.sms_content.pack_values`).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import operator
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_provider_juhe.mobiles import (
    ascii_digits,
    check_mobile,
    find_mobiles,
    is_numbers_text,
    mask_in_text,
    mask_mobile,
    mask_sample,
    split_mobiles,
)
from airflow_provider_juhe.sms_content import decode_tpl_value, pack_values, variable_name

#: Reasons a requested number is not sent, as the report gives them.
NOT_A_NUMBER = "not a valid mobile number"
_FILE_TYPES = (".csv", ".jsonl")
READ_CHUNK = 1 << 20
#: What can go wrong reading a file's bytes: a missing or unreadable file, a corrupted or truncated
#: gzip stream (BadGzipFile is an OSError, a bad deflate block a zlib.error, a cut one an EOFError),
#: bytes that are not UTF-8.
_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)
#: Line ends as Python's csv module reads a file opened with newline="": CRLF, LF, and a bare CR.
_LINE_END = re.compile(r"(\r\n|\r|\n)")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")


#: A row as read: ``(position, number as given, variable names, values)``.
Row = tuple[int, str, tuple[Any, ...], tuple[Any, ...]]


class RecipientsError(ValueError):
    """A recipients or opt-out source that cannot be used; the message names the file, field or line."""


@dataclass
class Audience:
    """
    The requested numbers, each in exactly one place.

    :param to_send: valid, not suppressed, every variable present: number -> its variables, packed
        (:func:`~airflow_provider_juhe.sms_content.pack_values`; ``b""`` for none).
    :param invalid: number as given (normalised) -> why it is not sent.
    :param suppressed: valid numbers found in the opt-out list, in order.
    :param duplicates: each entry whose number came earlier: ``(number, why)``, the reason naming
        the entry kept (its line, for a file). Not counted in :attr:`requested`.
    """

    to_send: dict[str, bytes] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    suppressed: dict[str, None] = field(default_factory=dict)  # an ordered set
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    #: A CSV file's header row as written in the file (before ``columns``), for messages.
    header: list[str] | None = None

    @property
    def requested(self) -> int:
        return len(self.to_send) + len(self.invalid) + len(self.suppressed)

    def invalid_reasons(self) -> dict[str, int]:
        """How many invalid entries for each reason: ``{"not a valid mobile number": 2, ...}``."""
        return dict(Counter(self.invalid.values()))

    def name_kept(self, entries: Callable[[], Iterable[tuple[int, str]]] | None, where: str) -> None:
        """
        Name in each duplicate's reason the entry that was kept: a second look at the source (only
        when there are duplicates), up to the last first occurrence needed.

        :param entries: the source's ``(position, entry)`` again; None where it cannot be read twice.
        :param where: how a position reads, e.g. ``"line {}"``.
        """
        if not self.duplicates:
            return
        wanted = {number for number, _ in self.duplicates}
        first: dict[str, int] = {}
        for position, entry in entries() if entries is not None else ():
            number = check_mobile(entry)[0]
            if number in wanted and number not in first:
                first[number] = position
                if len(first) == len(wanted):
                    break
        self.duplicates = [
            (number, f"duplicate of {where.format(first[number])}, the entry kept")
            if number in first
            else (number, "duplicate of an earlier entry, the one kept")
            for number, _ in self.duplicates
        ]


def audience_from_mobiles(
    mobiles: str | int | Iterable[str | int] | None,
    tpl_value: Mapping[str, object] | str | None,
    suppress: frozenset[str] | set[str],
) -> Audience:
    """
    Every valid number with the one operator-wide ``tpl_value``.

    :raises RecipientsError: ``mobiles`` is text that is not numbers (:func:`check_text`).
    """
    check_text(mobiles, "mobiles")
    values = pack_values(_as_mapping(tpl_value))
    audience = Audience()
    entries = split_mobiles(mobiles)
    for entry in entries:
        _admit(audience, entry, values, suppress)
    audience.name_kept(lambda: enumerate(entries, start=1), "entry {} of mobiles")
    return audience


def audience_from_rows(
    recipients: Any,
    *,
    mobile_field: str,
    tpl_value: Mapping[str, object] | str | None,
    required: frozenset[str] | None,
    suppress: frozenset[str] | set[str],
    columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> Audience:
    """
    Per-customer rows: each row's variables over the operator-wide ``tpl_value``.

    :param recipients: a list of mappings, or a path/URI (``str`` or ``ObjectStoragePath``) of a
        ``.csv`` / ``.jsonl`` file, optionally ``.gz``.
    :param required: the variables the templates use (``None``: unknown, not checked); a row
        without one of them is invalid.
    :param columns: renames a row's keys (a file's columns), see :func:`iter_rows`.
    :param encoding: the codec of a file, see :func:`iter_rows`.
    :raises RecipientsError: the file cannot be read, lacks the mobile column, holds a malformed
        line, or a row is not a mapping or has no number field.
    """
    encode = RowValues(tpl_value, required)
    audience = Audience()
    reader = _RowReader(mobile_field, columns, encoding)
    for _, entry, names, values in reader.rows(recipients):
        encoded, missing = encode(names, values)
        _admit(audience, entry, encoded, suppress, missing)
    audience.header = reader.header
    again = is_location(recipients) or isinstance(recipients, Sequence)  # a generator is read once
    audience.name_kept(
        (lambda: ((at, entry) for at, entry, _, _ in reader.rows(recipients))) if again else None,
        "line {}" if is_location(recipients) else "recipients[{}]",
    )
    return audience


class RowValues:
    """
    A row's variables over the operator-wide ones, packed with names sorted (equal values, equal
    bytes). Repeated rows (a campaign's few distinct value sets) are answered from a bounded memory
    instead of being packed again.
    """

    ROWS_REMEMBERED = 4_096

    def __init__(self, tpl_value: Mapping[str, object] | str | None, required: frozenset[str] | None) -> None:
        self.base = {variable_name(k): str(v) for k, v in _as_mapping(tpl_value).items()}
        self.required = required or frozenset()
        self._rows: dict[tuple[Any, ...], tuple[bytes, str | None]] = {}
        self._names: dict[Any, str] = {}

    def __call__(self, names: tuple[Any, ...], values: tuple[Any, ...]) -> tuple[bytes, str | None]:
        """``(packed values, None)``, or ``(b"", "missing #name#")``."""
        key = (names, values)
        try:
            known = self._rows.get(key)
        except TypeError:  # a value that cannot be hashed (a nested JSON list): packed every time
            return self._pack(names, values)
        if known is None:
            known = self._pack(names, values)
            if len(self._rows) < self.ROWS_REMEMBERED:
                self._rows[key] = known
        return known

    def _pack(self, names: tuple[Any, ...], values: tuple[Any, ...]) -> tuple[bytes, str | None]:
        merged = dict(self.base)
        for key, value in zip(names, values, strict=True):
            # None keys are cells beyond a CSV header; empty cells leave the variable unset
            if key is not None and value is not None and value != "":
                name = self._names.get(key) or self._names.setdefault(key, variable_name(key))
                merged[name] = value if isinstance(value, str) else str(value)
        missing = self.required - merged.keys()
        if missing:
            return b"", f"missing {', '.join(sorted(missing))}"
        return pack_values(dict(sorted(merged.items()))), None


def _admit(
    audience: Audience,
    entry: str,
    values: bytes,
    suppress: frozenset[str] | set[str],
    missing: str | None = None,
) -> None:
    """Place one entry; the first row of a number wins, the others are duplicates."""
    number, is_valid = check_mobile(entry)
    if number in audience.to_send or number in audience.invalid or number in audience.suppressed:
        audience.duplicates.append((number, ""))
        return
    if not is_valid:
        audience.invalid[number] = NOT_A_NUMBER
    elif number in suppress:
        audience.suppressed[number] = None
    elif missing is not None:
        audience.invalid[number] = missing
    else:
        audience.to_send[number] = values


def masked_view(value: Any, mobile_field: str = "mobile") -> str:
    """Numbers or rows described without personal data: a count and the first numbers, masked."""
    if isinstance(value, str) and _is_garbled(value):
        return f"<{_describe_text(value)}>"
    if isinstance(value, (str, int)):
        numbers = split_mobiles(value)
    elif isinstance(value, Sequence):
        shown = [row.get(mobile_field, "") if isinstance(row, Mapping) else row for row in value[:3]]
        numbers = [str(number) for number in shown] + [""] * (len(value) - len(shown))
    else:
        return f"<{type(value).__name__}, not shown>"
    return f"<{len(numbers)} entries: {mask_sample(numbers, limit=3)}>"


def read_suppressed(suppress: Any, *, encoding: str = "utf-8", allow_empty: bool = False) -> frozenset[str]:
    """
    The opt-out numbers, normalised: a list (or numbers as text), or a path/URI of a text file (one
    number a line; blank lines and lines starting with ``#`` skipped) or of a CSV with a ``mobile``
    column (optionally ``.gz``).

    Opt-outs fail closed: every entry must be a number (:func:`opt_out_number`: any spelling of a
    valid number, a spreadsheet's float included when it keeps every digit); a single other entry
    fails the whole read, since a number that cannot be read is a customer who could get an SMS
    they refused.

    :param encoding: the codec of a file (a UTF-8 byte-order mark is always accepted).
    :param allow_empty: a source with no entry at all is accepted (else it fails: a failed export
        must not pass for "nobody opted out").
    :raises RecipientsError: text that is not numbers (:func:`check_text`), a file that cannot be
        read, a CSV without a ``mobile`` column, an entry that is not a valid number (naming its
        line, masked), or a source with no entry.
    """
    if suppress is None:
        return frozenset()
    check_text(suppress, "suppress")
    entries: Iterable[tuple[str, str]]  # (where, entry)
    if not is_location(suppress):
        if isinstance(suppress, (str, int, float)):
            pieces = split_mobiles(_plain_number(suppress))
            entries = ((f"suppress: entry {index}", piece) for index, piece in enumerate(pieces, start=1))
        else:
            entries = (
                (f"suppress[{index}]", piece)
                for index, item in enumerate(suppress)
                for piece in split_mobiles(_plain_number(item))
            )
        return _opt_outs(entries, "suppress", allow_empty)
    encoding = check_encoding(encoding)
    name = _file_name(suppress)
    with _open_text(suppress, "suppress", encoding) as stream:
        if name.endswith(".csv"):
            rows = _csv_rows(stream, suppress, "mobile", "suppress")
            entries = (
                (f"suppress: {suppress}, line {line}", entry)
                for line, entry, _, values in rows
                if entry.strip() or any(str(value).strip() for value in values)  # a blank row is no entry
            )
        else:
            entries = (
                (f"suppress: {suppress}, line {line}", entry)
                for line, text in enumerate(stream, start=1)
                if not text.lstrip().startswith("#")  # a comment line
                for entry in split_mobiles(text)
            )
        return _opt_outs(entries, str(suppress), allow_empty)


def _plain_number(item: Any) -> str:
    """
    An item as text. A float of 11 digits is written out (``13800138001.0``); any other float is
    written as the rounded value it may be (``8.6138e+12``, refused): a float carries no trace of
    digits lost before it got here, and an 11-digit number is what a spreadsheet keeps whole.
    """
    if isinstance(item, float):
        return repr(item) if 1e10 <= item < 2e10 else format(item, ".6g")
    return item if isinstance(item, str) else str(item)


def _opt_outs(entries: Iterable[tuple[str, str]], source: str, allow_empty: bool) -> frozenset[str]:
    numbers: set[str] = set()
    bad: list[tuple[str, str]] = []
    for where, entry in entries:
        number = opt_out_number(entry)
        if number is None:
            bad.append((where, entry))
        else:
            numbers.add(number)
    if bad:
        where, entry = bad[0]
        more = f" ({len(bad)} such entries in all)" if len(bad) > 1 else ""
        raise RecipientsError(
            f"{where}: {_mask_entry(entry)} is not a valid mobile number{_lossy_hint(entry)}{more}. An opt-out "
            "that cannot be read would let a customer get an SMS they refused: nothing was sent"
        )
    if not numbers and not allow_empty:
        raise RecipientsError(
            f"suppress: {source} holds no opt-out entry at all (a failed export?); nothing was sent. Pass "
            "allow_empty_suppress=True when an empty opt-out list is expected"
        )
    return frozenset(numbers)


#: A decimal or scientific spelling of a whole number, as spreadsheets and pandas write numbers.
_DECIMAL = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]*))?(?:[eE](?P<exponent>[+-]?[0-9]{1,6}))?")


def opt_out_number(entry: str) -> str | None:
    """
    The valid number an opt-out entry spells, or ``None``.

    Every spelling of a valid number is read as it: spaces, dashes, ``+86``/``0086``/``86``,
    full-width or other Unicode digits (:func:`~airflow_provider_juhe.mobiles.check_mobile`); and
    a spreadsheet's float spelling when every digit of the number is written in it: a fraction of
    zeros (``13800138001.0``, ``13800138001.00``), or a mantissa that holds all the digits
    (``1.3800138001E10``, ``1.38001380010E+10``). A spelling that leaves digits out is never read,
    even where the missing digits would be zeros: ``8.6138E+12`` (Excel's display of
    ``8613800138000``) and ``1.38E10`` are refused, as are a non-zero fraction and a negative number.
    """
    number, is_valid = check_mobile(entry)
    if is_valid:
        return number
    mantissa, e, exponent_text = ascii_digits(entry).strip().replace("E", "e").partition("e")
    text = _NOISE_IN_NUMBER.sub("", mantissa) + e + exponent_text  # a dash after the e is a sign
    plus = "+" if text.startswith("+") else ""
    match = _DECIMAL.fullmatch(text[len(plus) :])
    if match is None or (match["fraction"] is None and match["exponent"] is None):
        return None
    whole, fraction, exponent = match["whole"], match["fraction"] or "", match["exponent"]
    if exponent is None:
        if fraction.strip("0"):
            return None
        digits = whole
    else:
        digits = (whole + fraction).lstrip("0")
        shift = int(exponent) - len(fraction)
        if shift > 0 or not digits:  # digits left out: Excel's 8.6138E+12
            return None
        if shift < 0:
            if digits[shift:].strip("0"):
                return None
            digits = digits[:shift]
    number, is_valid = check_mobile(plus + digits)
    return number if is_valid else None


_NOISE_IN_NUMBER = re.compile(r"[\s\-()]")


def _mask_entry(entry: str) -> str:
    """An entry for a message: a number-like one masked as numbers are, other text cut short."""
    shown = mask_mobile(entry.strip()) if any(char.isdigit() for char in entry) else entry.strip()[:20]
    return repr(shown)


def _lossy_hint(entry: str) -> str:
    if re.search(r"[0-9][eE][+-]?[0-9]", ascii_digits(entry)):
        return (
            " (scientific notation that lost digits: Excel shows long numbers so; format the column as "
            "Text, or write the numbers out in full)"
        )
    return ""


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
    """
    A path or URI (``str`` or ``ObjectStoragePath``), as opposed to numbers (also as text), rows, or
    text that is neither (:func:`check_text`).
    """
    if isinstance(value, str):
        return not is_numbers_text(value) and not _is_garbled(value)
    return type(value).__name__ == "ObjectStoragePath"


def check_text(value: Any, field_name: str) -> None:
    """
    Refuse text that is neither numbers nor a path: a list (or rows) rendered to its text form, or
    numbers joined by something that is not a separator. Such text is never opened as a path, and
    the message shows its numbers masked.

    :param value: a field's rendered value; only text is checked.
    :param field_name: ``mobiles``, ``recipients`` or ``suppress``, for the message.
    :raises RecipientsError: naming the field.
    """
    if not isinstance(value, str) or not _is_garbled(value):
        return
    message = f"{field_name}: neither numbers, rows nor a path/URI ({_describe_text(value)})"
    if _looks_rendered(value):
        message += (
            ". It looks like a list rendered to its text form, e.g. \"['139…', '159…']\": pass the "
            f"XComArg itself ({field_name}=load.output), or set render_template_as_native_obj=True on "
            f"the DAG when {field_name} is a Jinja string such as \"{{{{ ti.xcom_pull('load') }}}}\""
        )
    raise RecipientsError(message)


def _is_garbled(text: str) -> bool:
    """Neither numbers nor a path: rendered Python/JSON, or text with a mobile number inside."""
    if is_numbers_text(text):
        return False
    return _looks_rendered(text) or bool(find_mobiles(text))


def _looks_rendered(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "(", "{")


def _describe_text(text: str) -> str:
    numbers = find_mobiles(text)
    return f"text of {len(text)} characters with {len(numbers)} number(s) in it: {mask_sample(numbers, 3)}"


def iter_rows(
    recipients: Any,
    mobile_field: str,
    *,
    columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> Iterator[tuple[str, tuple[Any, ...], tuple[Any, ...]]]:
    """
    ``(number as given, variable names, values)`` per row, from a list of mappings or a file.

    :param columns: renames a row's keys (a CSV file's header, a JSON line's keys) before anything
        else, as ``pandas.DataFrame.rename(columns=...)`` does: ``{"手机号": "mobile", "姓名": "name"}``.
        Keys it does not name stay as they are.
    :param encoding: the codec of a file (``"gbk"``, ``"gb18030"``: Excel's CSV on Chinese Windows);
        a UTF-8 byte-order mark is always accepted, whatever the codec.
    :raises RecipientsError: see :func:`audience_from_rows`; ``columns`` or ``encoding`` unusable.
    """
    for _, entry, names, values in _RowReader(mobile_field, columns, encoding).rows(recipients):
        yield entry, names, values


class _RowReader:
    """Rows with their positions (index in a list, line in a file), keys renamed by ``columns``."""

    def __init__(self, mobile_field: str, columns: Mapping[str, str] | None, encoding: str) -> None:
        self.mobile_field = mobile_field
        self.columns = check_columns(columns)
        self.encoding = check_encoding(encoding)
        self.header: list[str] | None = None

    def rows(self, recipients: Any) -> Iterator[Row]:
        check_text(recipients, "recipients")
        if is_location(recipients):
            yield from self._file_rows(recipients)
            return
        if isinstance(recipients, str):  # numbers as text: they carry no variables
            raise RecipientsError(
                f"recipients: expected rows or a path/URI of a .csv or .jsonl file, got numbers as text "
                f"({mask_sample(split_mobiles(recipients), 3)}): pass numbers as mobiles"
            )
        if isinstance(recipients, Mapping) or not isinstance(recipients, Iterable):
            raise RecipientsError(
                f"recipients: expected a list of rows (mappings), or a path/URI of a .csv or .jsonl file, "
                f"got {type(recipients).__name__}"
            )
        for index, row in enumerate(recipients):
            if not isinstance(row, Mapping):
                raise RecipientsError(f"recipients[{index}]: expected a mapping, got {type(row).__name__}")
            yield index, *self._mapping_row(row, f"recipients[{index}]")

    def _mapping_row(
        self, row: Mapping[str, Any], where: str
    ) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
        if self.columns:
            row = {self.columns.get(key, key): value for key, value in row.items()}
        mobile_field = self.mobile_field
        if mobile_field not in row:
            raise RecipientsError(f"{where}: no {mobile_field!r} field{_renamed(self.columns)}")
        names = tuple(key for key in row if key != mobile_field)
        number = row[mobile_field]
        return ("" if number is None else str(number)), names, tuple(row[key] for key in names)

    def _file_rows(self, location: Any) -> Iterator[Row]:
        name = _file_name(location)
        if not name.endswith(_FILE_TYPES):
            raise RecipientsError(f"recipients: {location}: expected a .csv or .jsonl file (optionally .gz)")
        with _open_text(location, "recipients", self.encoding) as stream:
            if name.endswith(".csv"):
                yield from _csv_rows(stream, location, self.mobile_field, "recipients", self.columns, self)
            else:
                yield from self._json_lines_rows(stream, location)

    def _json_lines_rows(self, stream: Iterator[str], location: Any) -> Iterator[Row]:
        for line, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            where = f"recipients: {location}, line {line}"
            try:
                row = json.loads(text)
            except ValueError as error:  # also a plain ValueError: an integer of more than 4300 digits
                reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
                raise RecipientsError(f"{where}: not valid JSON ({reason})") from None
            except RecursionError:
                raise RecipientsError(f"{where}: JSON nested too deeply") from None
            if not isinstance(row, Mapping):
                raise RecipientsError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield line, *self._mapping_row(row, where)


def check_columns(columns: Any) -> dict[str, str]:
    """``columns`` as a plain dict of names to names (empty for ``None``); names the field when wrong."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) and value for key, value in columns.items()
    ):
        raise RecipientsError(
            'columns: expected a mapping of column names to names, e.g. {"手机号": "mobile", "姓名": "name"}, '
            f"got {columns!r:.100}"
        )
    return dict(columns)


def check_encoding(encoding: Any) -> str:
    """A codec Python knows, by its name as given (``"gbk"``, ``"utf-8"``); names the field when not."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise RecipientsError(
            f'encoding: {encoding!r:.60} is not a known text codec (e.g. "utf-8", "gbk", "gb18030")'
        ) from None
    return str(encoding)


def _renamed(columns: Mapping[str, str]) -> str:
    return f" (after columns={columns!r:.200})" if columns else ""


def _csv_rows(
    stream: Iterator[str],
    location: Any,
    column: str,
    field_name: str,
    columns: Mapping[str, str] | None = None,
    reader_state: _RowReader | None = None,
) -> Iterator[Row]:
    """
    Rows of a CSV with a header row (with their lines): the number in ``column``, the others as
    variables; the header renamed by ``columns``, and kept as written on ``reader_state``.
    """
    # strict: a file cut inside a quoted field, or a stray quote, fails naming its line instead of
    # silently running the rest of the file into one cell
    reader = csv.reader(stream, strict=True)
    try:
        written = next(reader, None)
        if reader_state is not None:
            reader_state.header = written
        header = [columns.get(name, name) for name in written] if columns and written else written
        if not header or column not in header:
            raise RecipientsError(
                f"{field_name}: {location} has no {column!r} column (header: {mask_in_text(', '.join(written or []))})"
                f"{_renamed(columns or {})}"
            )
        at = header.index(column)
        others = [index for index in range(len(header)) if index != at]
        names = tuple(header[index] for index in others)
        width = len(header)
        pick = operator.itemgetter(*others) if len(others) > 1 else lambda row: tuple(row[i] for i in others)
        for row in reader:
            if not row:
                continue
            if len(row) < width:  # missing cells leave their variables unset
                row = row + [""] * (width - len(row))
            yield reader.line_num, row[at], names, pick(row)
    except csv.Error as error:
        raise RecipientsError(
            f"{field_name}: {location}, line {reader.line_num}: malformed CSV ({error})"
        ) from None


@contextmanager
def _open_text(location: Any, field_name: str, encoding: str = "utf-8") -> Iterator[Iterator[str]]:
    """
    The file's lines (``\\n`` kept), decoded from ``encoding``, read in large chunks.

    :raises RecipientsError: the file cannot be opened or read (see :func:`_lines`).
    """
    from airflow.sdk import ObjectStoragePath

    try:
        path = location if isinstance(location, ObjectStoragePath) else ObjectStoragePath(location)
        raw = path.open("rb")
    except Exception as error:  # fsspec raises many kinds: a missing file, a missing filesystem, ...
        raise RecipientsError(f"{field_name}: cannot read {location}: {_reason(error)}") from None
    with raw:
        binary = gzip.GzipFile(fileobj=raw) if str(location).lower().endswith(".gz") else raw
        yield _lines(binary, location, field_name, encoding)


def _lines(
    binary: IO[bytes] | gzip.GzipFile, location: Any, field_name: str, encoding: str = "utf-8"
) -> Iterator[str]:
    """
    Lines with their ends (CRLF, LF or a bare CR, as the csv module splits them; not the other
    separators ``str.splitlines`` knows, which a CSV field may hold), a leading BOM dropped.

    Read in chunks and decoded incrementally: iterating a text stream checks the file wrapper's
    state once per line (a third of the reading time), and a chunk's decoding error still gives the
    line of the bad byte. A file that begins with a UTF-8 byte-order mark is UTF-8, whatever
    ``encoding`` says (Excel's "CSV UTF-8" writes one).

    :raises RecipientsError: naming the file, and the line of an undecodable byte (a corrupted or cut
        gzip stream names the last line read whole).
    """
    decoder: codecs.IncrementalDecoder | None = None
    rest = ""
    done = 0  # lines read whole
    chunk = b"."
    while chunk:
        try:
            chunk = binary.read(READ_CHUNK)
            if decoder is None:
                utf8 = chunk.startswith(codecs.BOM_UTF8) or codecs.lookup(encoding).name == "utf-8"
                decoder = codecs.getincrementaldecoder("utf-8-sig" if utf8 else encoding)()
                codec = "UTF-8" if utf8 else encoding
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as error:
            line = done + 1 + len(_LINE_END_BYTES.findall(error.object[: error.start]))
            byte = error.object[error.start : error.start + 1].hex()
            raise RecipientsError(
                f"{field_name}: {location}, line {line}: not {codec} text (byte 0x{byte}); {_save_as(codec)}"
            ) from None
        except _READ_ERRORS as error:
            where = f" after line {done}" if done else ""
            raise RecipientsError(f"{field_name}: cannot read {location}{where}: {_reason(error)}") from None
        block = rest + text
        if "\r" not in block:  # the fast path: LF or no line end at all
            lines = block.split("\n")
            rest = lines.pop()
            lines = [line + "\n" for line in lines]
        else:
            pieces = _LINE_END.split(block[:-1] if chunk and block.endswith("\r") else block)
            rest = pieces.pop() + ("\r" if chunk and block.endswith("\r") else "")  # maybe half a CRLF
            lines = [pieces[i] + pieces[i + 1] for i in range(0, len(pieces), 2)]
        done += len(lines)
        yield from lines
    if rest:
        yield rest


def _save_as(codec: str) -> str:
    """How to make a file readable, for a decoding error's message."""
    excel = 'in Excel, save it as "CSV UTF-8 (Comma delimited)"'
    if codec == "UTF-8":
        return (
            f"{excel}, or pass encoding=\"gbk\" (Excel's default CSV on Chinese Windows) or the file's codec"
        )
    return f'pass the file\'s codec as encoding= (e.g. "utf-8", "gb18030"), or {excel} and drop encoding='


def _file_name(location: Any) -> str:
    name = str(location).rsplit("/", 1)[-1].lower()
    return name[: -len(".gz")] if name.endswith(".gz") else name


def _reason(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, (gzip.BadGzipFile, zlib.error)):
        return f"corrupted gzip data ({error})"
    if isinstance(error, EOFError):
        return f"the file ends early, truncated ({error})"
    return f"{type(error).__name__}: {error}"
