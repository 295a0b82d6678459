"""Vectorized ``format`` checks giving the verdicts of jsonschema's ``FormatChecker``.

Each check takes a string array (or chunked array) and returns a boolean array: True
where the value conforms, null where the value is null. The semantics are those of the
checkers jsonschema installs with rfc3339-validator and rfc3986-validator (the ones the
format-nongpl extra brings for these formats; see ``jsonschema/_format.py``):

``email``
    ``"@" in value``, nothing more.
``date-time``
    ``rfc3339_validator.validate_rfc3339(value.upper())`` (rfc3339_validator 0.1.4): its
    regex (ASCII digits, seconds 00-59 so no leap second, ``$`` lets one final newline
    through) then year != 0 and a day the month has (``calendar.monthrange``). Here
    both are one RE2 pattern with the Gregorian calendar spelt out; ``upper()`` matters
    only for ASCII ``t`` and ``z`` (no other character uppercases to one the regex
    accepts: tested over every code point).
``date``
    jsonschema's ``_RE_DATE`` (``^\\d{4}-\\d{2}-\\d{2}$``, ASCII, full match, so no final
    newline) and ``date.fromisoformat``: year 1..9999, a real month and day.
``uuid``
    ``uuid.UUID(value)`` and a hyphen at positions 8, 13, 18 and 23. ``UUID`` removes
    ``urn:``, ``uuid:``, surrounding braces and every hyphen, wants 32 characters and
    then ``int(text, 16)``, which also takes surrounding whitespace, a ``+``, a ``0x``
    prefix, single underscores between digits and any Unicode decimal digit.
``ipv4``
    ``ipaddress.IPv4Address``: four decimal octets 0..255, ASCII digits, no leading zero.
``ipv6``
    ``ipaddress.IPv6Address`` without a scope id: 1-4 hex digits per group, one ``::``
    standing for at least one group, an optional dotted IPv4 tail.
``uri``
    ``rfc3986_validator.validate_rfc3986(value, rule="URI")``: its regex, translated.

``REFERENCE`` holds the same checks value by value, as jsonschema runs them. RE2 compiles
a pattern on every call (60 us for ``date-time``, over 1 ms for ``ipv6``), so a column of
a few distinct values is cheaper to check that way; ``checks.per_distinct`` decides.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import date
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc
import rfc3339_validator
import rfc3986_validator

from engine.normalize.re2_translate import (
    char_class,
    check_compiles,
    python_class,
    translate,
)

ArrayLike = pa.Array | pa.ChunkedArray
FormatCheck = Callable[[ArrayLike], ArrayLike]

# The calendar in regex form: year 0001-9999, a day the month has, 29 February in leap
# years only (calendar.monthrange / date.fromisoformat agree on the Gregorian rules).
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    "|(?:0[13578]|1[02])-31)"
)
_CALENDAR_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
# rfc3339_validator 0.1.4's RFC3339_REGEX (ASCII digits; seconds 00-59; '$' lets a final
# newline through), on value.upper(): only ASCII 't' and 'z' change in a way that matters.
_TIME = (
    "[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


def _compiled(expr: str) -> str:
    check_compiles(expr)
    return expr


_DATE_TIME = _compiled(f"\\A{_CALENDAR_DATE}{_TIME}\\n?\\z")
_DATE = _compiled(f"\\A{_CALENDAR_DATE}\\z")  # jsonschema's _RE_DATE is a full match
_URI = _compiled(
    translate(
        rfc3986_validator.URI_RE_COMP.pattern, rfc3986_validator.URI_RE_COMP.flags, mode="match"
    )
)

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4_BODY = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV4 = _compiled(rf"\A{_IPV4_BODY}\z")


def _ipv6_expr() -> str:
    """Every shape ``ipaddress.IPv6Address`` accepts: 8 groups, or fewer around one ``::``."""
    h = "[0-9A-Fa-f]{1,4}"

    def groups(n: int) -> str:
        return "" if n == 0 else h + (f"(?::{h}){{{n - 1}}}" if n > 1 else "")

    shapes = [groups(8), f"{groups(6)}:{_IPV4_BODY}"]
    for tail_v4 in (False, True):
        width = 6 if tail_v4 else 8  # groups left for hex once an IPv4 tail takes two
        for hi in range(width):
            for lo in range(width - hi):  # hi + lo <= width - 1: '::' covers >= 1 group
                right = groups(lo)
                if tail_v4:
                    right = f"{right}:{_IPV4_BODY}" if lo else _IPV4_BODY
                shapes.append(f"{groups(hi)}::{right}")
    return _compiled(r"\A(?:" + "|".join(shapes) + r")\z")


_IPV6 = _ipv6_expr()


def _int16_expr() -> str:
    """What ``int(text, 16)`` accepts.

    CPython maps non-ASCII whitespace to a space and non-ASCII decimal digits to ASCII
    (code points below 127 are kept as they are), then parses: spaces, a sign, an
    optional ``0x`` (plus one underscore), digits with single underscores, spaces.
    """
    high = [(lo, hi) for lo, hi in python_class(r"\s") + python_class(r"\d") if hi >= 127]
    spaces = [(max(lo, 127), hi) for lo, hi in high if chr(hi).isspace()]
    decimals = [(max(lo, 127), hi) for lo, hi in high if chr(hi).isdecimal()]
    zeros = [(cp, cp) for lo, hi in decimals for cp in range(lo, hi + 1) if int(chr(cp)) == 0]
    space = char_class([(9, 13), (32, 32), *spaces])
    digit = char_class([(48, 57), (65, 70), (97, 102), *decimals])
    zero = char_class([(48, 48), *zeros])
    return _compiled(rf"\A{space}*\+?(?:{zero}[xX]_?)?{digit}(?:_?{digit})*{space}*\z")


_INT16 = _int16_expr()


def _matches(arr: ArrayLike, expr: str) -> ArrayLike:
    return pc.match_substring_regex(arr, expr)


def is_email(arr: ArrayLike) -> ArrayLike:
    return pc.match_substring(arr, "@")


def is_date_time(arr: ArrayLike) -> ArrayLike:
    return _matches(arr, _DATE_TIME)


def is_date(arr: ArrayLike) -> ArrayLike:
    return _matches(arr, _DATE)


def is_uuid(arr: ArrayLike) -> ArrayLike:
    hyphens = pc.and_(
        pc.and_(
            pc.equal(pc.utf8_slice_codeunits(arr, 8, 9), "-"),
            pc.equal(pc.utf8_slice_codeunits(arr, 13, 14), "-"),
        ),
        pc.and_(
            pc.equal(pc.utf8_slice_codeunits(arr, 18, 19), "-"),
            pc.equal(pc.utf8_slice_codeunits(arr, 23, 24), "-"),
        ),
    )
    text = pc.replace_substring(pc.replace_substring(arr, "urn:", ""), "uuid:", "")
    text = pc.replace_substring(pc.utf8_trim(text, "{}"), "-", "")
    parsed = pc.and_(pc.equal(pc.utf8_length(text), 32), _matches(text, _INT16))
    return pc.and_(parsed, hyphens)


def is_ipv4(arr: ArrayLike) -> ArrayLike:
    return _matches(arr, _IPV4)


def is_ipv6(arr: ArrayLike) -> ArrayLike:
    return _matches(arr, _IPV6)


def is_uri(arr: ArrayLike) -> ArrayLike:
    return _matches(arr, _URI)


FORMATS: dict[str, FormatCheck] = {
    "date-time": is_date_time,
    "date": is_date,
    "email": is_email,
    "uuid": is_uuid,
    "ipv4": is_ipv4,
    "ipv6": is_ipv6,
    "uri": is_uri,
}


# Value by value: jsonschema's own checkers (jsonschema/_format.py), which return False
# or raise ValueError (AddressValueError included) for a value that does not conform.
_RE_DATE_PY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)


def _conforming(check: Callable[[str], object]) -> Callable[[str], bool]:
    def conforms(value: str) -> bool:
        try:
            return bool(check(value))
        except ValueError:
            return False

    return conforms


def _uuid_conforms(value: str) -> bool:
    UUID(value)
    return all(value[i] == "-" for i in (8, 13, 18, 23))


REFERENCE: dict[str, Callable[[str], bool]] = {
    "date-time": _conforming(lambda v: rfc3339_validator.validate_rfc3339(v.upper())),
    "date": _conforming(lambda v: _RE_DATE_PY.fullmatch(v) and date.fromisoformat(v)),
    "email": lambda v: "@" in v,
    "uuid": _conforming(_uuid_conforms),
    "ipv4": _conforming(ipaddress.IPv4Address),
    "ipv6": _conforming(lambda v: not getattr(ipaddress.IPv6Address(v), "scope_id", "")),
    "uri": _conforming(lambda v: rfc3986_validator.validate_rfc3986(v, rule="URI")),
}
