"""Template variables (``tplValue``) and message length: pure functions for hook, operators, sandbox."""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import quote, unquote

#: Characters of one SMS, and of each part of a long SMS (the rest carries the concatenation header).
SINGLE_SMS_CHARS = 70
MULTIPART_SMS_CHARS = 67


def variable_name(key: object) -> str:
    """``code`` or ``#code#`` -> ``#code#``."""
    name = str(key).strip()
    if not name.strip("#"):
        raise ValueError(f"tpl_value: empty variable name {key!r}")
    return name if name.startswith("#") and name.endswith("#") and len(name) > 1 else f"#{name.strip('#')}#"


def encode_tpl_value(tpl_value: Mapping[str, object] | str | None) -> str | None:
    """
    Encode template variables the way Juhe expects.

    Each ``#name#`` and each value is percent-encoded on its own and the pairs are joined as
    ``#name#=value&...``, so ``&``, ``=``, ``#``, spaces and Chinese inside values survive. A string is
    taken as already encoded.
    """
    if tpl_value is None or isinstance(tpl_value, str):
        return tpl_value
    if not isinstance(tpl_value, Mapping):
        raise TypeError(f"tpl_value: expected a mapping or a string, got {type(tpl_value).__name__}")
    return "&".join(
        f"{quote(variable_name(key), safe='')}={quote(str(value), safe='')}"
        for key, value in tpl_value.items()
    )


def decode_tpl_value(encoded: str | None) -> dict[str, str]:
    """The inverse of :func:`encode_tpl_value`: ``{"#code#": "123456"}``."""
    values: dict[str, str] = {}
    for pair in (encoded or "").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        values[unquote(name)] = unquote(value)
    return values


def render_text(template: str, values: Mapping[str, object]) -> str:
    """Put variable values into a template's ``#name#`` placeholders."""
    text = template
    for key, value in values.items():
        text = text.replace(variable_name(key), str(value))
    return text


def sms_parts(text: str) -> int:
    """How many SMS a text costs: 70 characters for one, 67 per part beyond that."""
    if len(text) <= SINGLE_SMS_CHARS:
        return 1
    return math.ceil(len(text) / MULTIPART_SMS_CHARS)
