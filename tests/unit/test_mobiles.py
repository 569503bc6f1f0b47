from __future__ import annotations

import pytest

from airflow_provider_juhe.mobiles import (
    carrier_of,
    check_mobile,
    find_mobiles,
    group_by_carrier,
    is_numbers_text,
    is_valid_mobile,
    mask_mobile,
    normalise_mobile,
    parse_recipients,
    split_mobiles,
)


def test_split_string_on_commas_whitespace_and_newlines():
    assert split_mobiles("138,131 ; 133\n\n134\t135，136") == ["138", "131", "133", "134", "135", "136"]


def test_spaces_inside_one_number_keep_it_whole():
    assert split_mobiles(["+86 138 0013 8000", 13100001111, "133,134"]) == [
        "+86 138 0013 8000",
        "13100001111",
        "133",
        "134",
    ]
    assert split_mobiles("+86 138 0013 8000, 13100001111 13300001111") == [
        "+86 138 0013 8000",
        "13100001111",
        "13300001111",
    ]


@pytest.mark.parametrize(
    ("entry", "number"),
    [
        ("+8613800138000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("13800138000", "13800138000"),
        ("861380013800", "861380013800"),  # 12 digits: not a prefixed number, left for validation
    ],
)
def test_normalise(entry, number):
    assert normalise_mobile(entry) == number


def test_parse_dedupes_in_order_and_separates_invalid():
    recipients = parse_recipients("13800138000, +86 13100001111\n13800138000,abc,1380013800,23800138000,abc")

    assert recipients.valid == ["13800138000", "13100001111"]
    assert recipients.invalid == ["abc", "1380013800", "23800138000"]
    assert recipients.requested == 5


def test_parse_none_and_empty():
    assert parse_recipients(None).requested == 0
    assert parse_recipients("  ,\n").requested == 0


@pytest.mark.parametrize(
    ("number", "masked"), [("13812341234", "138****1234"), ("12345678", "123****5678"), ("123", "****")]
)
def test_mask(number, masked):
    assert mask_mobile(number) == masked


@pytest.mark.parametrize(
    ("number", "carrier"),
    [
        ("13400000000", "mobile"),
        ("13490000000", "telecom"),
        ("17000000000", "telecom"),
        ("17030000000", "mobile"),
        ("17040000000", "unicom"),
        ("17400000000", "telecom"),
        ("17406000000", "unknown"),
        ("16200000000", "telecom"),
        ("16500000000", "mobile"),
        ("16700000000", "unicom"),
        ("19200000000", "broadnet"),
        ("14900000000", "telecom"),
        ("14500000000", "unicom"),
        ("14700000000", "mobile"),
        ("19900000000", "telecom"),
        ("15400000000", "unknown"),
    ],
)
def test_carrier_of(number, carrier):
    assert carrier_of(number) == carrier


def test_group_by_carrier_counts_broadnet_as_unknown():
    assert group_by_carrier(["13800138000", "13100001111", "18900001111", "19200001111", "15400001111"]) == {
        "mobile": ["13800138000"],
        "unicom": ["13100001111"],
        "telecom": ["18900001111"],
        "unknown": ["19200001111", "15400001111"],
    }


@pytest.mark.parametrize(
    "entry",
    [
        "１３８００１３８０００",  # full-width
        "+８６ １３８ ００１３ ８０００",
        "１３８－００１３－８０００",  # full-width dashes
        "١٣٨٠٠١٣٨٠٠٠",  # Arabic-Indic digits: NFKC leaves them, they are still digits
        "१३८००१३८०००",  # Devanagari
    ],
)
def test_any_form_of_the_digits_is_the_same_ascii_number(entry):
    assert normalise_mobile(entry) == "13800138000"
    assert check_mobile(entry) == ("13800138000", True)
    assert parse_recipients([entry, "13800138000"]).valid == ["13800138000"]  # one number, not two
    assert mask_mobile(entry) in ("138****8000", "+86****8000")


def test_digits_of_other_scripts_never_pass_as_they_are():
    # \d matches every script's digits: validation must see (and Juhe must get) ASCII only
    assert not is_valid_mobile("1٣٨٠٠١٣٨٠٠٠")
    assert split_mobiles("١٣٨٠٠١٣٨٠٠٠") == ["13800138000"]


def test_chinese_separators_split_numbers():
    assert split_mobiles("13912345678、13912345679，13912345680；13912345681") == [
        "13912345678",
        "13912345679",
        "13912345680",
        "13912345681",
    ]
    assert is_numbers_text("13912345678、１３９１２３４５６７９")
    assert not is_numbers_text("['13912345678']")
    assert find_mobiles("s3://x/+8613912345678_13800138000.csv, 1391234567") == ["13912345678", "13800138000"]
