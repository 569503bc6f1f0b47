from __future__ import annotations

import pytest

from airflow_provider_juhe.sms_content import (
    decode_tpl_value,
    encode_tpl_value,
    render_text,
    sms_parts,
    variable_name,
)


@pytest.mark.parametrize(("key", "name"), [("code", "#code#"), ("#code#", "#code#"), (" name ", "#name#")])
def test_variable_name(key, name):
    assert variable_name(key) == name


def test_variable_name_rejects_empty():
    with pytest.raises(ValueError, match="tpl_value: empty variable name"):
        variable_name("##")


def test_encode_matches_juhe_example():
    assert encode_tpl_value({"#code#": 123454}) == "%23code%23=123454"


def test_encode_round_trips_special_characters():
    values = {"#a#": "x&y=z#w", "#b#": "张 三 100%"}

    assert decode_tpl_value(encode_tpl_value(values)) == values


def test_string_and_none_pass_through():
    assert encode_tpl_value("%23code%23=1") == "%23code%23=1"
    assert encode_tpl_value(None) is None


def test_render_text():
    assert render_text("您好#name#，验证码#code#", {"name": "王", "#code#": 7}) == "您好王，验证码7"


@pytest.mark.parametrize(("length", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3)])
def test_sms_parts(length, parts):
    assert sms_parts("字" * length) == parts


def test_names_are_read_afresh_for_keys_that_are_equal_but_print_differently():
    from decimal import Decimal

    from airflow_provider_juhe.sms_content import variable_name

    assert [variable_name(key) for key in (0.0, -0.0, 1, True, Decimal("1.0"), Decimal("1.00"))] == [
        "#0.0#",
        "#-0.0#",
        "#1#",
        "#True#",
        "#1.0#",
        "#1.00#",
    ]
