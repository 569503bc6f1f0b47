"""Rows and opt-outs from lists and files: streamed, normalised, de-duplicated, every row placed once."""

from __future__ import annotations

import gzip

import pytest

from airflow_provider_juhe.sending.recipients import (
    NOT_A_NUMBER,
    RecipientsError,
    audience_from_mobiles,
    audience_from_rows,
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
        ("mobile\n13800000001\n", "c.xlsx", r"expected a \.csv or \.jsonl file"),
        (b"mobile,name\n\xff\xfe\n", "c.csv", r"cannot read .*c\.csv after line \d+: not UTF-8 text"),
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
