"""The hook's form body is urlencode's, byte for byte, whatever the text (searched with hypothesis)."""

from __future__ import annotations

import enum
from urllib.parse import parse_qsl, urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.hooks.transport import form_body


class Kind(str, enum.Enum):  # a str subclass whose str() is not its value
    OTP = "1,2"


values = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.one_of(st.integers(), st.none(), st.binary(max_size=10), st.just(Kind.OTP)),
    st.text(st.sampled_from("0123456789,"), max_size=40),  # the numbers' fast path, empty included
    st.lists(st.from_regex(r"1[0-9]{10}", fullmatch=True), min_size=1, max_size=5).map(",".join),
    st.text(st.sampled_from("0123456789,+ %&=#"), max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), values, max_size=5))
def test_form_body_is_urlencode_byte_for_byte(fields):
    body = form_body(fields)

    assert body == urlencode(fields).encode()
    if all(type(value) is str for value in fields.values()):
        assert dict(parse_qsl(body.decode(), keep_blank_values=True)) == fields
