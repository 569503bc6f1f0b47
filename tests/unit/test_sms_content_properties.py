"""tplValue encoding searched with hypothesis: any names and values survive the wire and the packed form."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.sms_content import (
    decode_tpl_value,
    encode_tpl_value,
    message_parts,
    pack_values,
    packed_tpl_value,
    render_text,
    sms_parts,
    unpack_values,
    variable_name,
)

FAST = settings(max_examples=150, deadline=None)
#: Any text UTF-8 can carry, with what tplValue's syntax uses and what people put in SMS more likely.
characters = st.one_of(
    st.sampled_from("&=#% +?/\\\x1e\x1f王芳账单元😀🇨🇳\n\t"),
    st.characters(exclude_categories=("Cs",)),
)
values = st.text(characters, max_size=20)
names = st.text(characters, min_size=1, max_size=12).filter(lambda key: key.strip().strip("#"))
variables = st.dictionaries(names, st.one_of(values, st.integers(), st.floats(allow_nan=False)), max_size=6)


def expected(tpl_value: dict) -> dict[str, str]:
    """What Juhe should read: each key as ``#name#`` (a later key of the same name wins), values as text."""
    return {variable_name(key): str(value) for key, value in tpl_value.items()}


@FAST
@given(variables)
@example({"#a#": "x=1&y=2#%", "b": "\x1e\x1f%1E", "#c#": "王 芳 😀"})
@example({"code": "1", "#code#": "2"})
def test_tpl_value_survives_the_form_body_and_the_sandbox_decoding(tpl_value):
    encoded = encode_tpl_value(tpl_value)
    received = dict(parse_qsl(urlencode({"tplValue": encoded}), keep_blank_values=True))["tplValue"]

    assert decode_tpl_value(received) == expected(tpl_value)


@FAST
@given(variables)
def test_packed_values_round_trip_and_give_the_same_tpl_value(tpl_value):
    packed = pack_values(tpl_value)

    assert unpack_values(packed) == expected(tpl_value)
    if expected(tpl_value):
        assert decode_tpl_value(packed_tpl_value(packed)) == expected(tpl_value)
    else:
        assert packed_tpl_value(packed) is None


@FAST
@given(names, values)
def test_code_and_hash_code_are_the_same_variable(name, value):
    bare = name.strip().strip("#")
    assume(bare and bare == bare.strip())  # "# a #" is the variable "# a #", not "a"

    assert variable_name(bare) == variable_name(f"#{bare}#") == f"#{bare}#"
    assert encode_tpl_value({bare: value}) == encode_tpl_value({f"#{bare}#": value})
    assert pack_values({bare: value}) == pack_values({f"#{bare}#": value})


@FAST
@given(variables, values, st.integers(min_value=0, max_value=80))
def test_the_fee_estimate_renders_packed_values_as_render_text_does(tpl_value, text, padding):
    content = "您好" + "".join(f"{variable_name(key)}，" for key in tpl_value) + text + "账" * padding
    rendered = "【银行】" + render_text(content, expected(tpl_value))

    assert message_parts("银行", content, pack_values(tpl_value)) == sms_parts(rendered)
