"""The file readers searched with hypothesis: whatever csv.writer or json.dumps wrote is read back."""

from __future__ import annotations

import csv
import gzip
import io
import json
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.sending import recipients
from airflow_provider_juhe.sending.recipients import iter_rows

FAST = settings(max_examples=60, deadline=None)
#: Cells with what CSV quotes (commas, quotes, CR, LF), Chinese, emoji, anything UTF-8 carries.
cells = st.text(
    st.one_of(st.sampled_from(',"\r\n 王芳😀\t'), st.characters(exclude_categories=("Cs",))), max_size=12
)
#: Chunks of a few bytes put lines, quoted line breaks and UTF-8 characters across chunk boundaries.
chunks = st.sampled_from((1, 3, 64, recipients.READ_CHUNK))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("rows")


def write(folder, name: str, data: bytes, gzipped: bool) -> str:
    path = folder / (name + (".gz" if gzipped else ""))
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return str(path)


@FAST
@given(
    names=st.lists(
        # A column name holding a bare CR is no name: written unquoted (lineterminator "\n"), the csv
        # module itself reads it as two lines.
        cells.filter(lambda c: c != "mobile" and not c.startswith("\ufeff") and "\r" not in c),
        max_size=4,
        unique=True,
    ),
    data=st.data(),
    at=st.integers(0, 4),
    terminator=st.sampled_from(("\r\n", "\n")),
    gzipped=st.booleans(),
    chunk=chunks,
)
def test_csv_rows_read_as_the_csv_module_reads_them(folder, names, data, at, terminator, gzipped, chunk):
    header = [*names]
    header.insert(min(at, len(names)), "mobile")
    rows = data.draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=8))
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator=terminator).writerows([header, *rows])
    path = write(folder, "c.csv", text.getvalue().encode(), gzipped)

    with mock.patch.object(recipients, "READ_CHUNK", chunk):
        read = list(iter_rows(path, "mobile"))

    # Short rows are padded (a missing cell leaves its variable unset), cells beyond the header dropped
    width = len(header)
    expected = [
        (row + [""] * width)[:width] for row in csv.reader(io.StringIO(text.getvalue(), newline="")) if row
    ][1:]
    position = header.index("mobile")
    others = tuple(name for name in header if name != "mobile")
    assert read == [
        (row[position], others, tuple(cell for i, cell in enumerate(row) if i != position))
        for row in expected
    ]


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), cells),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(cells, inner, max_size=3),
    max_leaves=6,
)


@FAST
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(cells, st.integers(), st.none()), st.dictionaries(cells, json_values, max_size=4)
        ),
        max_size=8,
    ),
    ascii_only=st.booleans(),
    blank=st.sampled_from(("", "\n", "  \r\n")),
    gzipped=st.booleans(),
    chunk=chunks,
)
def test_json_lines_read_as_the_json_module_reads_them(folder, rows, ascii_only, blank, gzipped, chunk):
    objects = [{**values, "mobile": number} for number, values in rows]
    lines = "".join(json.dumps(row, ensure_ascii=ascii_only) + "\n" + blank for row in objects)
    path = write(folder, "c.jsonl", lines.encode(), gzipped)

    with mock.patch.object(recipients, "READ_CHUNK", chunk):
        read = list(iter_rows(path, "mobile"))

    expected = [json.loads(line) for line in lines.split("\n") if line.strip()]
    assert read == [
        (
            "" if row["mobile"] is None else str(row["mobile"]),
            tuple(key for key in row if key != "mobile"),
            tuple(value for key, value in row.items() if key != "mobile"),
        )
        for row in expected
    ]
