"""Pure functions on mainland-China mobile numbers: parse, normalise, validate, mask, carrier."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

MOBILE = "mobile"
UNICOM = "unicom"
TELECOM = "telecom"
BROADNET = "broadnet"
UNKNOWN = "unknown"

# Separators between numbers in text. ASCII only after ascii_digits (NFKC makes full-width ，； ASCII)
# but the ideographic comma 、, which Chinese users type between items of a list.
_SEPARATORS = re.compile(r"[\r\n,;，；、]+")
_WHITESPACE = re.compile(r"\s+")
_NOISE = re.compile(r"[\s\-()]")
_VALID = re.compile(r"1[0-9]{10}")  # [0-9], not \d: \d matches every script's digits
#: Valid numbers joined by commas: a batch the send engine already checked, re-checked in one look.
_CLEAN_LIST = re.compile(r"(?:1[0-9]{10},)*1[0-9]{10}")
#: Text that holds only numbers and what may sit around them: a list of numbers, not a path.
_NUMBERS_TEXT = re.compile(r"[0-9\s+,;、()\-]*")
#: A mobile number inside any text (a path, a list rendered to text), with its country prefix.
_MOBILE_IN_TEXT = re.compile(r"(?<![0-9])(?:0086|86)?(1[0-9]{10})(?![0-9])")
_COUNTRY_PREFIXES = ("+86", "0086", "86")
#: A mobile number in free text however it is spelled (``+86 139-0013-9002``), for masking.
_SPELLED_MOBILE = re.compile(r"(?<![0-9])(?:\+?(?:00)?86[\s\-]?)?(1(?:[\s\-]?[0-9]){10})(?![0-9])")

# Number blocks by carrier, from the MIIT allocations (电信网码号资源) as published up to 2025-06.
# Longer prefixes win over shorter ones. MVNO blocks (162, 165, 167, 170x, 171) are listed under the
# carrier whose network carries them. Data-only and IoT blocks (145/147/149, 1440/1410) are kept
# because Juhe groups them too. Number portability means a prefix is a guess, never a fact: the
# API's mobileGroup (source="api") is the authoritative route.
# Checked against phonenumbers 9.0.43 on 1,000,000 random numbers (benchmarks/carrier_grouping.py):
# wherever both name a carrier they agree. Where they differ: phonenumbers rejects the data/IoT
# blocks 146, 148, 149, 1410, 1440 as invalid 11-digit numbers; it has no carrier for 1349
# (satellite), 162 and 165 (MVNO blocks); it names 1610 China Broadnet, which this table leaves
# unknown for want of a published allocation. MVNO blocks 170x/167/171 it reports under their host,
# as this table does.
_CARRIER_PREFIXES: dict[str, tuple[str, ...]] = {
    MOBILE: (
        *("1340", "1341", "1342", "1343", "1344", "1345", "1346", "1347", "1348"),
        *("135", "136", "137", "138", "139", "1440", "147", "148", "150", "151", "152", "157"),
        *("158", "159", "165", "1703", "1705", "1706", "172", "178", "182", "183", "184"),
        *("187", "188", "195", "197", "198"),
    ),
    UNICOM: (
        *("130", "131", "132", "145", "146", "155", "156", "166", "167", "1704", "1707"),
        *("1708", "1709", "171", "175", "176", "185", "186", "196"),
    ),
    TELECOM: (
        *("133", "1349", "1410", "149", "153", "162", "1700", "1701", "1702", "173"),
        *("17400", "17401", "17402", "17403", "17404", "17405", "177", "180", "181", "189"),
        *("190", "191", "193", "199"),
    ),
    BROADNET: ("192",),
}


def _build_lookup() -> tuple[dict[str, str], dict[str, str]]:
    """Expand the table into a 4-digit map (3-digit blocks over ten keys each) and 5-digit overrides."""
    four: dict[str, str] = {}
    five: dict[str, str] = {}
    for length in (3, 4, 5):
        for carrier, prefixes in _CARRIER_PREFIXES.items():
            for prefix in prefixes:
                if len(prefix) != length:
                    continue
                if length == 3:
                    four.update({f"{prefix}{d}": carrier for d in "0123456789"})
                elif length == 4:
                    four[prefix] = carrier
                else:
                    five[prefix] = carrier
    return four, five


_BY_FOUR, _BY_FIVE = _build_lookup()


class Recipients(NamedTuple):
    """Numbers after parsing: valid ones normalised, invalid ones as given; both de-duplicated, in order."""

    valid: list[str]
    invalid: list[str]

    @property
    def requested(self) -> int:
        return len(self.valid) + len(self.invalid)


def ascii_digits(text: str) -> str:
    """
    ``text`` with one form per digit, so that one number has one form for validation and for
    matching opt-outs: NFKC (full-width ``１３８``, and full-width ``，；＋－（）`` and spaces, become
    ASCII), then any other Unicode decimal digit (Arabic-Indic ``١٣٨``, Devanagari, ...) as its ASCII
    digit, which NFKC leaves alone.
    """
    if text.isascii():  # the common case, checked at C speed
        return text
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)


def is_numbers_text(text: str) -> bool:
    """Numbers as text (digits, separators, ``+``, spaces, dashes, parentheses), in any digit form."""
    return _NUMBERS_TEXT.fullmatch(ascii_digits(text)) is not None


def find_mobiles(text: str) -> list[str]:
    """The mobile numbers that appear anywhere in ``text`` (country prefix dropped), in order."""
    return _MOBILE_IN_TEXT.findall(ascii_digits(text))


def split_mobiles(mobiles: str | int | Iterable[str | int] | None) -> list[str]:
    """
    Split a string, or each item of an iterable, on commas, semicolons, ``、``, newlines and whitespace.

    A piece whose spaces sit inside one number (``+86 138 0013 8000``) stays whole. Digits are
    returned in ASCII (:func:`ascii_digits`).
    """
    if mobiles is None:
        return []
    items: Iterable[str | int] = [mobiles] if isinstance(mobiles, (str, int)) else mobiles
    entries: list[str] = []
    for item in items:
        text = str(item)
        if len(text) == 11 and text.isascii() and text.isdigit():  # fast path: an already clean number
            entries.append(text)
            continue
        for piece in _SEPARATORS.split(ascii_digits(text)):
            piece = piece.strip()
            if (len(piece) == 11 and piece.isascii() and piece.isdigit()) or is_valid_mobile(
                normalise_mobile(piece)
            ):  # the same fast path inside a long string
                entries.append(piece)
            else:
                entries.extend(part for part in _WHITESPACE.split(piece) if part)
    return entries


def normalise_mobile(entry: str) -> str:
    """ASCII digits (:func:`ascii_digits`); spaces, dashes and the +86 / 0086 / 86 country prefix stripped."""
    number = _NOISE.sub("", ascii_digits(entry))
    for prefix in _COUNTRY_PREFIXES:
        if number.startswith(prefix) and len(number) == len(prefix) + 11:
            return number[len(prefix) :]
    return number


def is_valid_mobile(number: str) -> bool:
    """11 ASCII digits with a leading 1."""
    return _VALID.fullmatch(number) is not None


def check_mobile(entry: str) -> tuple[str, bool]:
    """``(normalised number, whether it is valid)``; an already clean number skips the regexes."""
    if len(entry) == 11 and entry.isascii() and entry.isdigit():
        return entry, entry[0] == "1"
    number = normalise_mobile(entry)
    return number, is_valid_mobile(number)


def parse_recipients(mobiles: str | int | Iterable[str | int] | None) -> Recipients:
    """Normalise, de-duplicate (keeping the first place) and split into valid and invalid."""
    # Only plain str items: a str subclass (an Enum) is read through str(), as split_mobiles does.
    if isinstance(mobiles, (list, tuple)) and all(type(item) is str for item in mobiles):
        joined = ",".join(mobiles)
        if _CLEAN_LIST.fullmatch(joined):  # valid numbers only, as split_mobiles would split them
            numbers = joined.split(",")
            if len(set(numbers)) == len(numbers):
                return Recipients(numbers, [])
    seen: set[str] = set()
    valid: list[str] = []
    invalid: list[str] = []
    for entry in split_mobiles(mobiles):
        number, is_valid = check_mobile(entry)
        if number in seen:
            continue
        seen.add(number)
        (valid if is_valid else invalid).append(number)
    return Recipients(valid, invalid)


def require_valid(mobiles: str | int | Iterable[str | int] | None) -> list[str]:
    """Parse numbers that must all be valid; the error names the field and masks the numbers."""
    recipients = parse_recipients(mobiles)
    if recipients.invalid:
        raise ValueError(
            f"mobiles: {len(recipients.invalid)} invalid number(s): {mask_sample(recipients.invalid)}"
        )
    return recipients.valid


def mask_sample(numbers: list[str], limit: int = 5) -> str:
    """The first ``limit`` numbers masked, for messages: ``138****8000, 131****1111 and 98 more``."""
    shown = ", ".join(mask_mobile(m) for m in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def mask_mobile(number: str) -> str:
    """``13812341234`` -> ``138****1234`` (any digit form shown in ASCII); short strings are hidden whole."""
    number = ascii_digits(number)
    if len(number) >= 8:
        return f"{number[:3]}****{number[-4:]}"
    return "****"


def mask_in_text(text: str) -> str:
    """``text`` with every mobile number in it masked, in any spelling (for text a server wrote)."""
    text = ascii_digits(text)
    if not any(char.isdigit() for char in text):
        return text
    return _SPELLED_MOBILE.sub(lambda match: mask_mobile(_NOISE.sub("", match[1])), text)


def carrier_of(number: str) -> str:
    """The carrier a number's block was allocated to: mobile, unicom, telecom, broadnet or unknown."""
    carrier = _BY_FIVE.get(number[:5])
    if carrier is None:
        carrier = _BY_FOUR.get(number[:4], UNKNOWN)
    return carrier


def group_by_carrier(numbers: Iterable[str]) -> dict[str, list[str]]:
    """Offline grouping in the shape of the hook's ``group_mobiles`` (broadnet counts as unknown)."""
    groups: dict[str, list[str]] = {MOBILE: [], UNICOM: [], TELECOM: [], UNKNOWN: []}
    by_five, by_four = _BY_FIVE, _BY_FOUR
    for number in numbers:
        carrier = by_five.get(number[:5]) or by_four.get(number[:4], UNKNOWN)
        groups.get(carrier, groups[UNKNOWN]).append(number)
    return groups
