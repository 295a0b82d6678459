"""Python ``re`` patterns rewritten in RE2 syntax, with the same verdicts.

jsonschema checks ``pattern`` with ``re.search``; pyarrow's ``match_substring_regex``
runs RE2. The dialects disagree in places, so a pattern is never handed to RE2 as
written: it is parsed with Python's own parser (escapes, verbose mode, ``{,n}`` mean
what they mean to Python) and emitted again:

* every character class becomes explicit code point ranges computed with Python's
  ``re`` itself (Python's ``\\d``, ``\\w``, ``\\s`` are Unicode-aware, RE2's are ASCII);
  ``.`` becomes "anything but newline" (anything under ``(?s)``);
* ``$`` (end of text, or before a final newline, in Python) becomes ``\\n?\\z``; that is
  exact only in tail position, where nothing follows, so ``$`` elsewhere is refused.
  ``\\Z`` becomes ``\\z``;
* ``mode`` mirrors the Python call: ``search`` (jsonschema's ``pattern``), ``match``
  (anchored at the start) or ``fullmatch``.

Refused with ``RegexUnsupported``: lookarounds, backreferences, conditionals, atomic
groups and possessive quantifiers (RE2 has none), ``(?i)`` (case folding differs),
``(?m)``, Unicode ``\\b``/``\\B``, and whatever RE2 then cannot compile (for example a
repetition above 1000). ``check_agreement`` runs both engines on probe strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from re import _constants as sre
from re import _parser as sre_parse
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Mode = Literal["search", "match", "fullmatch"]
Ranges = tuple[tuple[int, int], ...]

MAX_CODE_POINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
NEVER = r"[^\x{0}-\x{10FFFF}]"

_REFUSED_FLAGS = {
    sre.SRE_FLAG_IGNORECASE: "(?i) case-insensitive matching",
    sre.SRE_FLAG_MULTILINE: "(?m) multi-line anchors",
    sre.SRE_FLAG_LOCALE: "(?L) locale matching",
}
_REFUSED_OPS = {
    sre.ASSERT: "lookahead/lookbehind",
    sre.ASSERT_NOT: "negative lookahead/lookbehind",
    sre.GROUPREF: "backreference",
    sre.GROUPREF_EXISTS: "conditional group",
    sre.ATOMIC_GROUP: "atomic group",
    sre.POSSESSIVE_REPEAT: "possessive quantifier",
}
_CATEGORIES = {
    sre.CATEGORY_DIGIT: (r"\d", False),
    sre.CATEGORY_NOT_DIGIT: (r"\d", True),
    sre.CATEGORY_SPACE: (r"\s", False),
    sre.CATEGORY_NOT_SPACE: (r"\s", True),
    sre.CATEGORY_WORD: (r"\w", False),
    sre.CATEGORY_NOT_WORD: (r"\w", True),
}
# Strings both engines must agree on before a translation is trusted.
PROBES = (
    "",
    "\n",
    "\n\n",
    " ",
    "\t",
    "a",
    "A",
    "z",
    "Z",
    "0",
    "9",
    "_",
    "-",
    ".",
    "a\n",
    "ab",
    "abc\n",
    "\u0663",
    "\u00e9",
    "\u00aa",
    "\u00a0",
    "\u2028",
    "\U0001f600",
    "x\ny",
    "2024-01-31T12:34:56Z",
    "2024-01-31T12:34:56Z\n",
    "per_0123456789ab",
    "acc_0123456789ab",
    "user@example.org",
    "192.168.0.1",
    "2001:db8::1",
    "https://example.org/a?b#c",
)


class RegexUnsupported(ValueError):
    """The pattern cannot be checked by RE2 with Python's verdicts."""


@dataclass(frozen=True)
class _Flags:
    dotall: bool
    ascii: bool


def translate(pattern: str, flags: int = 0, mode: Mode = "search") -> str:
    """The RE2 pattern that gives ``re.<mode>(pattern, s, flags)``'s verdict for every s."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error as exc:
        raise RegexUnsupported(f"not a valid Python regular expression ({exc.msg})") from None
    state = parsed.state.flags
    for flag, what in _REFUSED_FLAGS.items():
        if state & flag:
            raise RegexUnsupported(f"{what} is not supported")
    top = _Flags(dotall=bool(state & sre.SRE_FLAG_DOTALL), ascii=bool(state & sre.SRE_FLAG_ASCII))
    body = _seq(parsed, top, tail=True, full=mode == "fullmatch")
    if mode == "search":
        return body
    return rf"\A(?:{body})" + (r"\z" if mode == "fullmatch" else "")


def check_compiles(expr: str) -> None:
    """Raise ``RegexUnsupported`` if RE2 (through pyarrow) refuses the pattern."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), expr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise RegexUnsupported(f"RE2 cannot compile the translation ({reason})") from None


def check_agreement(pattern: str, expr: str, probes: Iterable[str] = PROBES) -> None:
    """Raise ``RegexUnsupported`` if RE2 and ``re.search`` disagree on a probe string."""
    samples = list(probes)
    compiled = re.compile(pattern)
    expected = [compiled.search(s) is not None for s in samples]
    got = pc.match_substring_regex(pa.array(samples, pa.string()), expr).to_pylist()
    if got != expected:
        raise RegexUnsupported("RE2 and Python's re disagree on a probe string")


def re2_pattern(pattern: str) -> str:
    """``translate`` for jsonschema's ``pattern`` keyword, compiled and cross-checked."""
    expr = translate(pattern)
    check_compiles(expr)
    check_agreement(pattern, expr)
    return expr


# --- code point sets -------------------------------------------------------------------


@cache
def _all_characters() -> str:
    codes = np.arange(MAX_CODE_POINT + 1, dtype="<u4").tobytes()
    return codes.decode("utf-32-le", "surrogatepass")


@cache
def python_class(expr: str, ascii_only: bool = False) -> Ranges:
    """The code point ranges a one-character Python regex (``\\d``...) matches."""
    rx = re.compile(f"(?:{expr})+", re.ASCII if ascii_only else 0)
    return tuple((m.start(), m.end() - 1) for m in rx.finditer(_all_characters()))


def merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    start = 0
    for lo, hi in merge(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return tuple(out)


def _without_surrogates(ranges: Ranges) -> Ranges:
    s_lo, s_hi = _SURROGATES
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if hi < s_lo or lo > s_hi:
            out.append((lo, hi))
            continue
        if lo < s_lo:
            out.append((lo, s_lo - 1))
        if hi > s_hi:
            out.append((s_hi + 1, hi))
    return tuple(out)


def _char(cp: int) -> str:
    ch = chr(cp)
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{cp:X}}}"


def char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """RE2 text for a set of code points (UTF-8 text never holds surrogates)."""
    clean = _without_surrogates(merge(ranges))
    if not clean:
        return NEVER
    if len(clean) == 1 and clean[0][0] == clean[0][1]:
        return _char(clean[0][0])
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in clean)
    return f"[{body}]"


# --- emitting --------------------------------------------------------------------------


def _seq(items: Sequence[tuple[Any, Any]], flags: _Flags, tail: bool, full: bool) -> str:
    last = len(items) - 1
    return "".join(
        _node(op, av, flags, tail and i == last, full) for i, (op, av) in enumerate(items)
    )


def _node(op: Any, av: Any, flags: _Flags, tail: bool, full: bool) -> str:
    if op in _REFUSED_OPS:
        raise RegexUnsupported(f"{_REFUSED_OPS[op]} is not supported by RE2")
    if op == sre.LITERAL:
        return char_class(((av, av),))
    if op == sre.NOT_LITERAL:
        return char_class(complement(((av, av),)))
    if op == sre.ANY:
        return "(?s:.)" if flags.dotall else char_class(complement(((10, 10),)))
    if op == sre.IN:
        return char_class(_set_ranges(av, flags))
    if op == sre.BRANCH:
        return "(?:" + "|".join(_seq(b, flags, tail, full) for b in av[1]) + ")"
    if op == sre.SUBPATTERN:
        _group, add, remove, sub = av
        return "(?:" + _seq(sub, _scoped(flags, add, remove), tail, full) + ")"
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        lo, hi, sub = av
        return f"(?:{_seq(sub, flags, False, full)}){_quantifier(lo, hi)}"
    if op == sre.AT:
        return _anchor(av, flags, tail, full)
    raise RegexUnsupported(f"regular expression construct {op} is not supported")


def _quantifier(lo: int, hi: int) -> str:
    if hi == sre.MAXREPEAT:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    if (lo, hi) == (0, 1):
        return "?"
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


def _anchor(code: Any, flags: _Flags, tail: bool, full: bool) -> str:
    if code in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
        return r"\A"
    if code == sre.AT_END_STRING:
        return r"\z"
    if code == sre.AT_END:
        if not tail:
            raise RegexUnsupported("'$' is supported only at the end of the pattern")
        return r"\z" if full else r"\n?\z"
    if code in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY):
        if not flags.ascii:
            raise RegexUnsupported(r"Unicode word boundaries (\b, \B) are not supported")
        return r"\b" if code == sre.AT_BOUNDARY else r"\B"
    raise RegexUnsupported(f"anchor {code} is not supported")


def _scoped(flags: _Flags, add: int, remove: int) -> _Flags:
    for flag, what in _REFUSED_FLAGS.items():
        if add & flag:
            raise RegexUnsupported(f"{what} is not supported")
    dotall = (flags.dotall or bool(add & sre.SRE_FLAG_DOTALL)) and not remove & sre.SRE_FLAG_DOTALL
    ascii_only = (flags.ascii or bool(add & sre.SRE_FLAG_ASCII)) and not add & sre.SRE_FLAG_UNICODE
    return _Flags(dotall=dotall, ascii=ascii_only)


def _set_ranges(items: Sequence[tuple[Any, Any]], flags: _Flags) -> Ranges:
    negate = False
    ranges: list[tuple[int, int]] = []
    for op, av in items:
        if op == sre.NEGATE:
            negate = True
        elif op == sre.LITERAL:
            ranges.append((av, av))
        elif op == sre.RANGE:
            ranges.append(av)
        elif op == sre.CATEGORY and av in _CATEGORIES:
            expr, inverted = _CATEGORIES[av]
            got = python_class(expr, flags.ascii)
            ranges.extend(complement(got) if inverted else got)
        else:
            raise RegexUnsupported(f"character class item {op} {av} is not supported")
    merged = merge(ranges)
    return complement(merged) if negate else merged
