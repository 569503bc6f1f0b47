"""Template variables (``tplValue``) and message length: pure functions for hook, operators, sandbox."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

#: A template variable, ``#name#``.
VARIABLE = re.compile(r"#[^#\s]+#")
#: Characters of one SMS, and of each part of a long SMS (the rest carries the concatenation header).
SINGLE_SMS_CHARS = 70
MULTIPART_SMS_CHARS = 67


def variable_name(key: object) -> str:
    """``code`` or ``#code#`` -> ``#code#``."""
    return _variable_name(key) if type(key) is str else _variable_name.__wrapped__(key)


@functools.lru_cache(maxsize=4096)  # a campaign's million rows share a few names
def _variable_name(key: object) -> str:
    name = str(key).strip()
    if not name.strip("#"):
        raise ValueError(f"tpl_value: empty variable name {key!r}")
    return name if name.startswith("#") and name.endswith("#") and len(name) > 1 else f"#{name.strip('#')}#"


def template_variables(content: str) -> frozenset[str]:
    """The ``#name#`` variables a template's text uses."""
    return frozenset(VARIABLE.findall(content))


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


def pack_values(values: Mapping[str, object]) -> bytes:
    """
    Variables in the compact form a campaign holds per customer: UTF-8 ``#name#\\x1evalue`` pairs
    joined by ``\\x1f``, in the given order (about a third of ``tplValue``'s size for Chinese text).
    """
    return b"\x1f".join(
        _escape(variable_name(key)).encode() + b"\x1e" + _escape(str(value)).encode()
        for key, value in values.items()
    )


def unpack_values(packed: bytes) -> dict[str, str]:
    """The inverse of :func:`pack_values`."""
    text = packed.decode()
    pairs = (pair.partition("\x1e") for pair in text.split("\x1f")) if text else ()
    if "%" not in text:  # nothing was escaped
        return {name: value for name, _, value in pairs}
    return {unquote(name): unquote(value) for name, _, value in pairs}


def packed_tpl_value(packed: bytes) -> str | None:
    """Packed variables as ``tplValue`` (``None`` for none)."""
    return encode_tpl_value(unpack_values(packed)) if packed else None


def _escape(text: str) -> str:
    if "%" in text or "\x1e" in text or "\x1f" in text:
        return text.replace("%", "%25").replace("\x1e", "%1E").replace("\x1f", "%1F")
    return text


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


def message_parts(signature: str, content: str, packed: bytes) -> int:
    """SMS parts of one message: the template rendered with packed variables, after its 【signature】."""
    return sms_parts(f"【{signature}】" + render_text(content, unpack_values(packed)))


def unfilled_variables(content: str, tpl_value: Mapping[str, object] | str | None) -> list[str]:
    """The ``#name#`` variables of a template's text that ``tpl_value`` leaves without a value."""
    given = tpl_value if isinstance(tpl_value, Mapping) else decode_tpl_value(tpl_value)
    return sorted(template_variables(content) - {variable_name(key) for key in given})


def unfilled_message(tpl_id: int | str, unfilled: list[str], refused: str) -> str:
    """
    What to say when ``tpl_value`` leaves template variables unfilled.

    :param refused: what Juhe would refuse, e.g. ``"every call"``.
    """
    return (
        f"tpl_value: template {tpl_id} uses {', '.join(unfilled)}, which tpl_value leaves "
        f"unfilled: Juhe would refuse {refused} (228802)"
    )
