"""Rows and opt-outs from lists and files: streamed, normalised, de-duplicated, every row placed once."""

from __future__ import annotations

import gzip

import pytest

from airflow_provider_juhe.sending.recipients import (
    NOT_A_NUMBER,
    RecipientsError,
    audience_from_mobiles,
    audience_from_rows,
    check_text,
    is_location,
    iter_rows,
    masked_view,
    read_suppressed,
)
from airflow_provider_juhe.sms_content import pack_values, packed_tpl_value, template_variables, unpack_values

REQUIRED = frozenset({"#name#", "#amount#"})


def read(recipients, *, tpl_value=None, required=REQUIRED, suppress=frozenset(), mobile_field="mobile"):
    return audience_from_rows(
        recipients, mobile_field=mobile_field, tpl_value=tpl_value, required=required, suppress=suppress
    )


def test_each_row_lands_in_exactly_one_place():
    rows = [
        {"mobile": "13800000001", "name": "王芳", "amount": 1},
        {"mobile": "+86 138 0000 0001", "name": "again", "amount": 2},  # duplicate: the first row wins
        {"mobile": "1380000000", "name": "short", "amount": 3},
        {"mobile": "13800000002", "name": "opted out", "amount": 4},
        {"mobile": "13800000003", "name": "no amount", "amount": ""},
        {"mobile": None, "name": "no number", "amount": 5},
    ]

    audience = read(rows, suppress=frozenset({"13800000002"}))

    assert list(audience.to_send) == ["13800000001"]
    assert unpack_values(audience.to_send["13800000001"]) == {"#amount#": "1", "#name#": "王芳"}
    assert audience.invalid == {
        "1380000000": NOT_A_NUMBER,
        "13800000003": "missing #amount#",
        "": NOT_A_NUMBER,
    }
    assert list(audience.suppressed) == ["13800000002"]
    assert audience.requested == 5


def test_row_values_override_the_operator_wide_ones_and_equal_rows_pack_equal():
    rows = [
        {"mobile": "13800000001", "#name#": "甲", "amount": "1"},
        {"mobile": "13800000002", "name": "甲", "#amount#": "1"},
        {"mobile": "13800000003", "name": "乙", "amount": ""},  # an empty cell keeps the default
    ]

    audience = read(rows, tpl_value="%23amount%23=9&%23date%23=12%E6%9C%881%E6%97%A5")

    first, second, third = audience.to_send.values()
    assert first == second
    assert unpack_values(third) == {"#amount#": "9", "#date#": "12月1日", "#name#": "乙"}
    assert packed_tpl_value(first) == "%23amount%23=1&%23date%23=12%E6%9C%881%E6%97%A5&%23name%23=%E7%94%B2"


def test_without_known_variables_no_row_is_invalid_for_a_missing_one():
    audience = read([{"mobile": "13800000001"}], required=None)

    assert audience.to_send == {"13800000001": b""}
    assert packed_tpl_value(b"") is None


def test_csv_with_bom_short_and_long_lines(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(
        "\ufeffname,mobile,amount\n王芳,13800000001,1\n李伟,13800000002\n张敏,13800000003,3,extra\n\n",
        encoding="utf-8",
    )

    audience = read(str(path))

    assert list(audience.to_send) == ["13800000001", "13800000003"]
    assert audience.invalid == {"13800000002": "missing #amount#"}


def test_gzipped_json_lines_with_numbers_and_blank_lines(tmp_path):
    path = tmp_path / "customers.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write('{"mobile": 13800000001, "name": "王芳", "amount": 12.5}\n\n{"phone": "x"}\n')

    with pytest.raises(RecipientsError, match=r"customers\.jsonl\.gz, line 3: no 'mobile' field"):
        read(f"file://{path}")
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write('{"mobile": 13800000001, "name": "王芳", "amount": 12.5}\n\n')
    audience = read(f"file://{path}")
    assert {n: unpack_values(v) for n, v in audience.to_send.items()} == {
        "13800000001": {"#amount#": "12.5", "#name#": "王芳"}
    }


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("phone,name\n13800000001,a\n", "c.csv", r"c\.csv has no 'mobile' column \(header: phone, name\)"),
        ('{"mobile": "13800000001"}\n[1, 2]\n', "c.jsonl", r"c\.jsonl, line 2: expected a JSON object"),
        ('{"mobile": "13800000001"}\n{"mobile": \n', "c.jsonl", r"c\.jsonl, line 2: not valid JSON"),
        (
            '{"mobile": "13800000001"}\n{"mobile": "13800000002", "amount": ' + "9" * 5000 + "}\n",
            "c.jsonl",
            r"c\.jsonl, line 2: not valid JSON \(Exceeds the limit",
        ),
        ("mobile\n13800000001\n", "c.xlsx", r"expected a \.csv or \.jsonl file"),
        (b"mobile,name\n\xff\xfe\n", "c.csv", r"c\.csv, line 2: not UTF-8 text \(byte 0xff\)"),
    ],
)
def test_bad_files_are_named_with_the_line_and_no_number(tmp_path, content, name, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(RecipientsError, match=message) as raised:
        read(str(path), required=None)
    assert "13800000001" not in str(raised.value)


def test_a_missing_file_and_bad_rows_are_named():
    with pytest.raises(RecipientsError, match=r"recipients: cannot read /nowhere/c\.csv: no such file"):
        read("/nowhere/c.csv")
    with pytest.raises(RecipientsError, match=r"recipients\[1\]: expected a mapping, got str"):
        read([{"mobile": "13800000001"}, "13800000002"])
    with pytest.raises(RecipientsError, match=r"recipients\[0\]: no 'phone' field"):
        read([{"mobile": "13800000001"}], mobile_field="phone")
    with pytest.raises(RecipientsError, match="expected a list of rows"):
        read({"mobile": "13800000001"})


def test_opt_outs_from_a_list_a_text_file_and_a_csv(tmp_path):
    text = tmp_path / "opt_out.txt.gz"
    with gzip.open(text, "wt") as stream:
        stream.write("+86 138 0000 0001\n13800000002, 13800000003\n")
    table = tmp_path / "complaints.csv"
    table.write_text("date,mobile\n2026-11-01,0086 13800000004\n")

    assert read_suppressed(["13800000009", "+8613800000008"]) == {"13800000009", "13800000008"}
    assert read_suppressed("13800000009, +86 138 0000 0008") == {"13800000009", "13800000008"}  # not a path
    assert read_suppressed(str(text)) == {"13800000001", "13800000002", "13800000003"}
    assert read_suppressed(f"file://{table}") == {"13800000004"}
    assert read_suppressed(None) == frozenset()
    no_column = tmp_path / "x.csv"
    no_column.write_text("phone\n13800000001\n")
    with pytest.raises(RecipientsError, match=r"suppress: .*x\.csv has no 'mobile' column"):
        read_suppressed(str(no_column))


def test_mobiles_with_one_value_for_all():
    audience = audience_from_mobiles(
        "13800000001, 13800000001, 12, 13800000002", {"code": "1"}, {"13800000002"}
    )

    assert audience.to_send == {"13800000001": pack_values({"code": "1"})}
    assert audience.invalid == {"12": NOT_A_NUMBER}
    assert list(audience.suppressed) == ["13800000002"]


def test_template_variables():
    assert template_variables("尊敬的#name#，您尾号#card#的账单#amount#元，#name#") == {
        "#name#",
        "#card#",
        "#amount#",
    }


def test_packed_values_survive_any_text():
    values = {"#a#": "x=1&y=2#%", "#b#": "\x1e\x1f%1E", "#c#": "王 芳"}

    assert unpack_values(pack_values(values)) == values


def test_an_object_storage_path_is_read_like_a_uri(tmp_path):
    from airflow.sdk import ObjectStoragePath

    (tmp_path / "c.csv").write_text("mobile,name,amount\n13800000001,王芳,1\n", encoding="utf-8")

    audience = read(ObjectStoragePath(f"file://{tmp_path}/c.csv"))

    assert list(audience.to_send) == ["13800000001"]


# -- inputs nobody planned for ----------------------------------------------------------------------

FULL_WIDTH = "１３８００１３８０００"  # 13800138000 in full-width digits


def test_an_opt_out_matches_the_same_number_in_any_digit_form(tmp_path):
    arabic_indic = "+٨٦ ١٣٨ ٠٠١٣ ٨٠٠٠"
    opt_outs = tmp_path / "opt_out.txt"
    opt_outs.write_text(f"{FULL_WIDTH}\n", encoding="utf-8")

    assert read_suppressed("13800138000") == read_suppressed(str(opt_outs)) == {"13800138000"}
    for given, opted_out in [(FULL_WIDTH, "13800138000"), ("13800138000", str(opt_outs))]:
        audience = audience_from_mobiles(given, None, read_suppressed(opted_out))
        assert list(audience.suppressed) == ["13800138000"]
        assert audience.to_send == {}
    rows = read([{"mobile": FULL_WIDTH}, {"mobile": arabic_indic}], required=None, suppress=frozenset())
    assert list(rows.to_send) == ["13800138000"]  # one number: the second row is its duplicate
    suppressed = read([{"mobile": arabic_indic}], required=None, suppress=read_suppressed([FULL_WIDTH]))
    assert list(suppressed.suppressed) == ["13800138000"]


def test_numbers_joined_by_chinese_separators_are_numbers_never_a_path():
    joined = "13912345678、13912345679，13912345680；13912345681"

    assert not is_location(joined)
    assert read_suppressed(joined) == {"13912345678", "13912345679", "13912345680", "13912345681"}
    assert masked_view(joined) == "<4 entries: 139****5678, 139****5679, 139****5680 and 1 more>"
    assert list(audience_from_mobiles(joined, None, frozenset()).to_send) == [
        "13912345678",
        "13912345679",
        "13912345680",
        "13912345681",
    ]


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("suppress", "['13912345678', '13912345679']"),
        ("suppress", "13912345678/13912345679"),
        ("recipients", "[{'mobile': '13912345678', 'name': '王芳'}, {'mobile': '13912345679'}]"),
        ("recipients", '[{"mobile": "13912345678", "name": "王芳"}]'),
        ("mobiles", "[13912345678, 13800138000, 13912345679]"),  # the middle one alone looked valid
        ("mobiles", "('13912345678',)"),
    ],
)
def test_text_that_is_neither_numbers_rows_nor_a_path_is_refused_with_numbers_masked(field_name, value):
    readers = {
        "suppress": read_suppressed,
        "recipients": lambda text: read(text, required=None),
        "mobiles": lambda text: audience_from_mobiles(text, None, frozenset()),
    }

    with pytest.raises(RecipientsError, match=rf"^{field_name}: neither numbers, rows nor a path") as raised:
        readers[field_name](value)
    with pytest.raises(RecipientsError, match=rf"^{field_name}: neither numbers"):
        check_text(value, field_name)

    message = str(raised.value)
    assert "139****5678" in message
    assert not is_location(value)
    view = masked_view(value)
    assert "139****5678" in view
    for shown in (message, view):
        assert "13912345678" not in shown
        assert "王芳" not in shown
    if value.startswith(("[", "(")):
        assert "list rendered to its text form" in message


def test_numbers_as_text_are_not_rows():
    with pytest.raises(RecipientsError, match=r"recipients: .*got numbers as text \(139\*\*\*\*5678\)"):
        read("13912345678", required=None)


def _gzip_cut(data: bytes, keep: int) -> bytes:
    return gzip.compress(data)[:keep]


def _gzip_corrupted(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data))
    packed[12:20] = b"\xff" * 8  # inside the deflate stream: a zlib.error, not a BadGzipFile
    return bytes(packed)


LINES = b"".join(b'{"mobile": "1391234%04d", "name": "x"}\n' % i for i in range(300))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.jsonl.gz", _gzip_corrupted(LINES), r"cannot read .*c\.jsonl\.gz: corrupted gzip data"),
        ("c.jsonl.gz", b"not gzip at all", r"cannot read .*c\.jsonl\.gz: corrupted gzip data"),
        ("c.jsonl.gz", _gzip_cut(LINES, 200), r"cannot read .*c\.jsonl\.gz.*: the file ends early"),
        ("c.jsonl", LINES[:100] + b"\xe7\x8e" + LINES[100:], r"c\.jsonl, line 3: not UTF-8 text"),
        ("c.jsonl", LINES[:-1] + b"\xe7\x8e", r"c\.jsonl, line 300: not UTF-8 text"),  # cut in a character
        ("c.jsonl", LINES[:-20], r"c\.jsonl, line 300: not valid JSON"),  # cut in a line
        (
            "c.csv",
            b"mobile,name\n" + b"13912345678,x\n" * 5 + b'13912345678,"x\n',
            r"c\.csv, line 7: malformed",
        ),
    ],
)
@pytest.mark.parametrize("field_name", ["recipients", "suppress"])
def test_an_unreadable_file_is_named_with_its_line(tmp_path, monkeypatch, name, content, message, field_name):
    from airflow_provider_juhe.sending import recipients

    monkeypatch.setattr(recipients, "READ_CHUNK", 64)  # lines across chunks: the line count must hold
    path = tmp_path / name
    path.write_bytes(content)
    if field_name == "suppress" and ".jsonl" in name:
        path = path.rename(tmp_path / name.replace(".jsonl", ".txt"))
        message = message.replace("jsonl", "txt")
    if field_name == "suppress" and "JSON" in message:
        return  # an opt-out text file is not JSON: a cut line is just a short number

    with pytest.raises(RecipientsError, match=message) as raised:
        read_suppressed(str(path)) if field_name == "suppress" else read(str(path), required=None)

    assert str(raised.value).startswith(f"{field_name}: ")
    assert "1391234" not in str(raised.value)


def test_a_bare_carriage_return_ends_a_line_as_for_the_csv_module(tmp_path):
    # Found by test_csv_rows_read_as_the_csv_module_reads_them: csv.writer(lineterminator="\n") does
    # not quote a cell holding "\r", and the csv module reads it as a line end; this reader failed.
    path = tmp_path / "c.csv"
    path.write_bytes(b'mobile,name\n13800000001,\r13800000002,b\n13800000003,"x\ry"\r\n')

    rows = list(iter_rows(str(path), "mobile"))

    assert rows == [
        ("13800000001", ("name",), ("",)),
        ("13800000002", ("name",), ("b",)),
        ("13800000003", ("name",), ("x\ry",)),
    ]


def test_a_json_line_nested_too_deeply_is_named_with_its_line(tmp_path):
    """Found by review: a RecursionError escaped bare (retried, no file named)."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"mobile": "13800000001"}\n' + "[" * 100_000 + "\n")

    with pytest.raises(ValueError, match=r"rows\.jsonl, line 2: JSON nested too deeply"):
        list(iter_rows(str(path), "mobile"))
