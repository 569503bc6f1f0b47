"""Number parsing searched with hypothesis: any digit form, prefix, spacing and separator of a number."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.mobiles import (
    ascii_digits,
    check_mobile,
    find_mobiles,
    is_valid_mobile,
    mask_mobile,
    mask_sample,
    normalise_mobile,
    parse_recipients,
    split_mobiles,
)
from airflow_provider_juhe.sending.recipients import masked_view

FAST = settings(max_examples=150, deadline=None)
#: Zero of each digit form a user may type or paste: ASCII, full-width, Arabic-Indic, Devanagari, Thai.
DIGIT_ZEROS = (0x30, 0xFF10, 0x660, 0x966, 0xE50)
PREFIXES = ("", "+86", "0086", "86", "+86 ", "+８６", "００８６")
#: Between numbers: never whitespace alone, which is also what may sit inside one number.
SEPARATORS = (",", ";", "，", "；", "、", "\n", "\r\n", " , ", "、 ", ",\n")

numbers = st.from_regex(r"1[0-9]{10}", fullmatch=True)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@st.composite
def written(draw: st.DrawFn, number: str) -> str:
    """``number`` as a person may write it: any prefix, digit form, spaces and dashes between digits."""
    digits = []
    for digit in number:
        zero = draw(st.sampled_from(DIGIT_ZEROS))
        digits.append(chr(zero + int(digit)) + draw(st.sampled_from(("", "", "", " ", "-", "－"))))
    return draw(st.sampled_from(PREFIXES)) + "".join(digits).rstrip(" -－")


@FAST
@given(st.data(), numbers)
def test_any_written_form_normalises_to_the_number(data, number):
    form = data.draw(written(number))

    assert normalise_mobile(form) == number
    assert check_mobile(form) == (number, True)
    assert len(split_mobiles(form)) == 1  # spaces inside one number keep it whole
    assert parse_recipients(form).valid == [number]


@settings(max_examples=60, deadline=None)
@given(st.data(), st.lists(numbers, min_size=1, max_size=8))
def test_numbers_joined_by_any_separator_are_found_once_each_in_order(data, chosen):
    forms = [data.draw(written(number)) for number in chosen]
    joined = forms[0] + "".join(data.draw(st.sampled_from(SEPARATORS)) + form for form in forms[1:])

    recipients = parse_recipients(joined)

    assert recipients.valid == list(dict.fromkeys(chosen))
    assert recipients.invalid == []
    assert parse_recipients(forms).valid == list(dict.fromkeys(chosen))  # a list: the same numbers


@FAST
@given(text)
def test_valid_means_eleven_ascii_digits_with_a_leading_one(entry):
    number, valid = check_mobile(entry)

    assert number == normalise_mobile(entry)
    assert valid == (len(number) == 11 and number.isascii() and number.isdigit() and number[0] == "1")
    assert valid == is_valid_mobile(number)
    if valid:
        assert parse_recipients([entry]).valid == [number]
    assert ascii_digits(ascii_digits(entry)) == ascii_digits(entry)


@FAST
@given(numbers, text)
def test_a_mask_shows_three_leading_and_four_trailing_characters_at_most(number, entry):
    assert mask_mobile(number) == f"{number[:3]}****{number[-4:]}"
    shown = mask_mobile(entry)
    folded = ascii_digits(entry)
    assert shown == "****" or (shown == f"{folded[:3]}****{folded[-4:]}" and len(folded) >= 8)


@FAST
@given(st.lists(st.one_of(numbers, text), max_size=12), st.integers(1, 6))
def test_masked_samples_and_views_never_hold_a_whole_number(entries, limit):
    assert find_mobiles(mask_sample(entries, limit)) == []
    assert find_mobiles(masked_view(entries)) == []
    for rendered in (str(entries), ", ".join(entries), "、".join(entries)):
        assert find_mobiles(masked_view(rendered)) == []


class Number(str):
    def __str__(self) -> str:
        return "not " + super().__str__()


def _parsed_item_by_item(entries: list) -> tuple[list[str], list[str]]:
    """parse_recipients' general path, one entry at a time: what its fast path must agree with."""
    seen: set[str] = set()
    valid: list[str] = []
    invalid: list[str] = []
    for entry in split_mobiles(entries):
        number, is_valid = check_mobile(entry)
        if number not in seen:
            seen.add(number)
            (valid if is_valid else invalid).append(number)
    return valid, invalid


@FAST
@given(
    st.lists(
        st.one_of(
            numbers,
            st.sampled_from(("13800138000", "13900139000", "13700137000")),  # clean repeats
            numbers.map(lambda n: n[:-1] + "١"),  # an Arabic-Indic digit: not clean
            st.sampled_from(("13800138000", "13800138000,13900139000", "23800138000", "", " ", "1380013800")),
            st.integers(min_value=10**10, max_value=2 * 10**10),
            numbers.map(Number),  # a str subclass: read through str(), whatever its value
            text,
        ),
        max_size=12,
    ).flatmap(lambda items: st.sampled_from((items, tuple(items))))
)
def test_a_list_of_clean_numbers_takes_the_fast_path_with_the_same_answer(entries):
    recipients = parse_recipients(entries)

    assert (recipients.valid, recipients.invalid) == _parsed_item_by_item(list(entries))
