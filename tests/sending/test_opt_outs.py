"""
Opt-outs fail closed: every spelling of a number is read as it, a spelling that lost digits never is,
and an entry that is not a number, or a source with no entry, fails the read (nothing is sent).
"""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.sending.recipients import RecipientsError, opt_out_number, read_suppressed

FAST = settings(max_examples=200, deadline=None)
numbers = st.from_regex(r"1[0-9]{10}", fullmatch=True)
FULL_WIDTH = str.maketrans("0123456789+-. ", "０１２３４５６７８９＋－．\u3000")


def spaced(number: str, separator: str) -> str:
    return separator.join((number[:3], number[3:7], number[7:]))


def scientific(digits: str, extra_zeros: int, marker: str) -> str:
    """``digits`` as a mantissa holding every one of them: ``1.3800138001E10``."""
    return f"{digits[0]}.{digits[1:]}{'0' * extra_zeros}{marker}{len(digits) - 1}"


def spellings(number: str, zeros: int) -> list[str]:
    with_86 = "86" + number
    plain = [
        number,
        "+86" + number,
        "0086" + number,
        with_86,
        spaced(number, " "),
        "+86 " + spaced(number, " "),
        spaced(number, "-"),
        f" {number}\t",
        number + "." + "0" * zeros,  # pandas and Excel: 13800138001.0
        number + ".",
        with_86 + "." + "0" * zeros,
        "+" + with_86 + ".0",
        scientific(number, zeros, "E"),
        scientific(number, zeros, "e+"),
        scientific(with_86, zeros, "E+"),
        f"{number}E0",
    ]
    return [*plain, *(spelling.translate(FULL_WIDTH) for spelling in plain)]


@FAST
@given(number=numbers, zeros=st.integers(0, 3))
def test_every_spelling_of_a_number_is_read_as_it(number, zeros):
    for spelling in spellings(number, zeros):
        assert opt_out_number(spelling) == number, spelling


@FAST
@given(number=numbers, prefix=st.sampled_from(("", "86")), data=st.data())
def test_every_spelling_that_left_digits_out_is_refused(number, prefix, data):
    digits = prefix + number
    kept = data.draw(st.integers(1, len(digits) - 1))  # significant digits written, fewer than there are
    mantissa = digits[:kept]
    marker = data.draw(st.sampled_from(("E", "E+", "e", "e+")))
    lossy = f"{mantissa[0]}{'.' if kept > 1 else ''}{mantissa[1:]}{marker}{len(digits) - 1}"
    assert opt_out_number(lossy) is None, lossy
    assert opt_out_number(lossy.translate(FULL_WIDTH)) is None


@pytest.mark.parametrize(
    "entry",
    [
        "8.6138E+12",  # Excel's display of 8613800138000
        "1.38E10",  # 13800000000 with its zeros left out: not written, not read
        "1.3800138E+10",
        "13800138001.5",  # a fraction that is not zero
        "13800138001.01",
        "1380013800",  # ten digits
        "138001380011",
        "+13800138001",
        "13800138001E1",
        "1.3800138001E11",
        "1.3800138001E-10",
        "E10",
        ".0",
        "1e999999",
        "abc",
        "",
    ],
)
def test_what_is_not_exactly_a_number_is_refused(entry):
    assert opt_out_number(entry) is None


def test_an_entry_that_is_not_a_number_fails_naming_the_source_and_line_masked(tmp_path):
    """Before: ``13800138001.0`` and ``8.6138E+12`` suppressed nobody, in silence."""
    path = tmp_path / "opt_outs.csv"
    path.write_text("mobile,date\n13800138001.0,2026-11-01\n8.6138E+12,2026-11-02\n8.6139E+12,x\n")

    with pytest.raises(RecipientsError) as raised:
        read_suppressed(str(path))

    message = str(raised.value)
    assert message.startswith(f"suppress: {path}, line 3: '8.6****E+12' is not a valid mobile number")
    assert "scientific notation that lost digits" in message
    assert "(2 such entries in all)" in message
    assert "nothing was sent" in message
    assert "13800138001" not in message


@pytest.mark.parametrize(
    ("suppress", "where"),
    [
        (["13800138001", "138001380"], r"^suppress\[1\]: '138\*\*\*\*1380' is not"),
        (
            ["13800138001", "8.6138E+12"],
            r"^suppress\[1\]: '8.6\*\*\*\*E\+12' is not a valid mobile number \(scien",
        ),
        ("13800138001 1380013800", r"^suppress: entry 2: '138\*\*\*\*3800' is not"),
        (
            [13800138001.0, 8.6138e12],
            r"^suppress\[1\]: '8.6\*\*\*\*e\+12' is not a valid mobile number \(scien",
        ),
        ([13800138001.0, 13800138002], None),  # an 11-digit float is a spreadsheet's whole number
    ],
)
def test_entries_of_a_list_or_text_are_named_by_position(suppress, where):
    if where is None:
        assert read_suppressed(suppress) == {"13800138001", "13800138002"}
        return
    with pytest.raises(RecipientsError, match=where):
        read_suppressed(suppress)


def test_text_file_floats_read_and_a_bad_line_named(tmp_path):
    path = tmp_path / "opt_outs.txt.gz"
    path.write_bytes(
        gzip.compress(b"# opted out\n13800138001.0\n\n1.3800138002E10\n  # 13800138004\n+86 138 0013 8003\n")
    )
    assert read_suppressed(str(path)) == {"13800138001", "13800138002", "13800138003"}

    path.write_bytes(gzip.compress(b"13800138001\n\nmobile\n"))
    with pytest.raises(RecipientsError, match=r"opt_outs\.txt\.gz, line 3: 'mobile' is not a valid"):
        read_suppressed(str(path))


@pytest.mark.parametrize("content", ["", "\n\n", "mobile\n", "mobile,date\n,\n"])
def test_a_source_with_no_entry_fails_unless_allowed(tmp_path, content):
    """Before: an empty opt-out file (a failed export) passed without a word."""
    path = tmp_path / ("opt_outs.csv" if content.startswith("mobile") else "opt_outs.txt")
    path.write_text(content)

    with pytest.raises(RecipientsError, match=r"holds no opt-out entry at all .*allow_empty_suppress=True"):
        read_suppressed(str(path))
    assert read_suppressed(str(path), allow_empty=True) == frozenset()


@pytest.mark.parametrize("suppress", [[], ""])
def test_an_empty_list_fails_unless_allowed_and_none_means_no_source(suppress):
    with pytest.raises(RecipientsError, match=r"^suppress: .* holds no opt-out entry"):
        read_suppressed(suppress)
    assert read_suppressed(suppress, allow_empty=True) == frozenset()
    assert read_suppressed(None) == frozenset()


def test_a_csv_row_with_data_but_no_number_is_refused(tmp_path):
    path = tmp_path / "opt_outs.csv"
    path.write_text("mobile,date\n13800138001,x\n,2026-11-02\n")

    with pytest.raises(RecipientsError, match=r"opt_outs\.csv, line 3: '' is not a valid mobile number"):
        read_suppressed(str(path))


@pytest.mark.parametrize("field", ["suppress", "recipients"])
def test_a_csv_without_a_header_row_names_its_first_row_masked(tmp_path, field):
    """Before: "has no 'mobile' column (header: 13800138001, 张三)", the first row's number unmasked."""
    from airflow_provider_juhe.sending.recipients import audience_from_rows

    path = tmp_path / "no-header.csv"
    path.write_text("13800138001,张三\r\n+86 139-0013-9002,李四\r\n", encoding="utf-8")
    read = {
        "suppress": lambda: read_suppressed(str(path)),
        "recipients": lambda: audience_from_rows(
            str(path), mobile_field="mobile", tpl_value=None, required=None, suppress=frozenset()
        ),
    }[field]

    with pytest.raises(RecipientsError, match=r"no 'mobile' column \(header: 138\*\*\*\*8001, 张三\)"):
        read()
