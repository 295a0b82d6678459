"""Vectorized keyword checks on one Arrow column, with jsonschema's verdicts.

A check returns a *mask*: True where a record breaks the rule. A mask is either a
boolean array without nulls or a plain ``bool`` meaning "every record" / "none".
The record seen by jsonschema is the column value as ``to_pylist`` gives it (null is
``None``), so each keyword applies to the JSON types it applies to in jsonschema:
``pattern``/``format``/length only to strings, bounds only to numbers, ``enum`` and
``const`` to every value (null included), ``type`` to every value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from engine.normalize.formats import FORMATS, REFERENCE
from engine.normalize.schema_compile import PropertyRules, Scalar

ArrayLike = pa.Array | pa.ChunkedArray
Mask = ArrayLike | bool
Kind = Literal["string", "integer", "number", "boolean", "null", "other"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_DISTINCT_MIN_ROWS, _DISTINCT_SAMPLE, _DISTINCT_RATIO = 4096, 2048, 8
_PER_VALUE_MAX = 64  # up to this many values, Python checks each (no RE2 compile)
_FAILS = {  # keyword: (comparison that fails the record, bound rounding for integers)
    "minimum": ("less", "ceil"),
    "maximum": ("greater", "floor"),
    "exclusiveMinimum": ("less_equal", "floor"),
    "exclusiveMaximum": ("greater_equal", "ceil"),
}


def prepare(col: ArrayLike) -> tuple[ArrayLike, Kind]:
    """The column in a form the checks use, and the JSON type its values have."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col, "string"
    if pa.types.is_string_view(t):
        return pc.cast(col, pa.large_string()), "string"
    if pa.types.is_boolean(t):
        return col, "boolean"
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t) and (pc.max(col).as_py() or 0) > INT64_MAX:
            return pc.cast(col, pa.float64(), safe=False), "number"  # exact for "type" only
        return (col if t == pa.int64() else pc.cast(col, pa.int64())), "integer"
    if pa.types.is_float32(t) or pa.types.is_float64(t):
        return (col if t == pa.float64() else pc.cast(col, pa.float64())), "number"
    if pa.types.is_null(t):
        return col, "null"
    return col, "other"  # decimal, float16, temporal, binary, nested: never a JSON type here


def m_or(a: Mask, b: Mask) -> Mask:
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return pc.or_(a, b)


def m_and(a: Mask, b: Mask) -> Mask:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return pc.and_(a, b)


def _not_valid(result: ArrayLike, null_means_valid: bool = True) -> ArrayLike:
    """Invert a per-value verdict; a null verdict (null value) counts as ``null_means_valid``."""
    return pc.invert(pc.fill_null(result, null_means_valid))


def _nulls(col: ArrayLike) -> Mask:
    return pc.is_null(col) if col.null_count else False


def _values(col: ArrayLike) -> Mask:
    """True for every non-null value."""
    return pc.is_valid(col) if col.null_count else True


def type_failure(col: ArrayLike, kind: Kind, types: frozenset[str]) -> Mask:
    nulls: Mask = False if "null" in types else _nulls(col)
    if kind == "null":
        return "null" not in types
    if kind == "number" and "number" not in types and "integer" in types:
        integral = pc.and_(pc.is_finite(col), pc.equal(pc.floor(col), col))
        return m_or(nulls, _not_valid(integral))
    accepted = {
        "string": {"string"},
        "integer": {"integer", "number"},
        "number": {"number"},
        "boolean": {"boolean"},
    }.get(kind, set())
    return nulls if accepted & types else m_or(nulls, _values(col))


def _members(values: Iterable[Scalar], kind: Kind) -> list[Scalar]:
    """The values equal (in jsonschema's sense) to some value of a column of that kind."""
    vals = [v for v in values if v is not None]
    if kind == "string":
        return [v for v in vals if isinstance(v, str)]
    if kind == "boolean":
        return [v for v in vals if isinstance(v, bool)]
    numbers = [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
    if kind == "integer":
        ints = {
            v if isinstance(v, int) else int(v)
            for v in numbers
            if isinstance(v, int) or v.is_integer()
        }
        return sorted(i for i in ints if INT64_MIN <= i <= INT64_MAX)
    if kind == "number":
        floats = {float(v) for v in numbers if _float_exact(v)}
        return sorted(floats | ({-0.0} if 0.0 in floats else set()))  # -0.0 == 0 in Python
    return []


def _float_exact(v: int | float) -> bool:
    try:
        return float(v) == v and not math.isnan(float(v))
    except OverflowError:
        return False


def member_of(col: ArrayLike, kind: Kind, values: tuple[Scalar, ...]) -> Mask:
    """True where the value equals one of ``values`` (jsonschema's ``equal``)."""
    null_ok = any(v is None for v in values)
    members = _members(values, kind)
    if kind == "null":
        return null_ok
    found: Mask = False
    if members:
        found = pc.fill_null(pc.is_in(col, value_set=pa.array(members, type=col.type)), False)
    return m_or(found, _nulls(col)) if null_ok else found


def _bound_failure(col: ArrayLike, kind: Kind, keyword: str, limit: int | float) -> Mask:
    op, rounding = _FAILS[keyword]
    if kind == "integer":
        k = (math.ceil if rounding == "ceil" else math.floor)(limit)
        if k > INT64_MAX or k < INT64_MIN:
            below = k < INT64_MIN  # every int64 is above the limit
            fails = {
                "less": not below,
                "less_equal": not below,
                "greater": below,
                "greater_equal": below,
            }[op]
            return _values(col) if fails else False
        return pc.fill_null(getattr(pc, op)(col, pa.scalar(k, pa.int64())), False)
    if kind == "number":
        return pc.fill_null(getattr(pc, op)(col, pa.scalar(_float_limit(limit, rounding))), False)
    return False


def _float_limit(limit: int | float, rounding: str) -> float:
    """A float f with ``x OP limit == x OP f`` for every float x (exact for big ints)."""
    try:
        f = float(limit)
    except OverflowError:
        return math.inf if limit > 0 else -math.inf
    if f == limit:
        return f
    if rounding == "ceil":
        return f if f > limit else math.nextafter(f, math.inf)
    return f if f < limit else math.nextafter(f, -math.inf)


def property_failures(rules: PropertyRules, col: ArrayLike, kind: Kind) -> list[tuple[str, Mask]]:
    """(rule, mask) for every keyword of ``rules`` on a prepared column."""
    out: list[tuple[str, Mask]] = []
    if rules.types is not None:
        out.append(("type", type_failure(col, kind, rules.types)))
    if rules.enum is not None:
        out.append(("enum", _inverted(member_of(col, kind, rules.enum))))
    if rules.const is not None:
        out.append(("const", _inverted(member_of(col, kind, rules.const))))
    if kind == "string":
        if rules.pattern is not None:
            expr, search = rules.pattern, re.compile(rules.pattern_source or "").search
            verdicts = per_distinct(
                col, lambda a: pc.match_substring_regex(a, expr), lambda v: bool(search(v))
            )
            out.append(("pattern", _not_valid(verdicts)))
        if rules.format is not None:
            fmt = rules.format
            verdicts = per_distinct(col, FORMATS[fmt], REFERENCE[fmt])
            out.append((f"format:{fmt}", _not_valid(verdicts)))
        if rules.min_length is not None or rules.max_length is not None:
            length = pc.utf8_length(col)
            if rules.min_length is not None:
                out.append(("minLength", pc.fill_null(pc.less(length, rules.min_length), False)))
            if rules.max_length is not None:
                out.append(("maxLength", pc.fill_null(pc.greater(length, rules.max_length), False)))
    if kind in ("integer", "number"):
        out.extend((k, _bound_failure(col, kind, k, lim)) for k, lim in rules.bounds)
    return out


def per_distinct(
    col: ArrayLike,
    check: Callable[[ArrayLike], ArrayLike],
    reference: Callable[[str], bool],
) -> ArrayLike:
    """True where a string conforms, null where it is null: ``check`` on the column, or
    on its distinct values when they repeat, or ``reference`` value by value when there
    are few of them.

    Regex checks cost about as much per value as everything else together, and RE2
    compiles the expression on every call; a batch of one subject repeats its account
    ids, source, country... many times, and most batches are small.
    """
    if isinstance(col, pa.ChunkedArray):
        chunks = [per_distinct(c, check, reference) for c in col.chunks]
        return pa.chunked_array(chunks, pa.bool_())
    if len(col) <= _PER_VALUE_MAX:
        return _per_value(col, reference)
    if len(col) >= _DISTINCT_MIN_ROWS:
        sample = col.slice(0, _DISTINCT_SAMPLE)
        if pc.count_distinct(sample).as_py() * _DISTINCT_RATIO > len(sample):
            return check(col)
    encoded = pc.dictionary_encode(col)
    values = encoded.dictionary
    if len(values) <= _PER_VALUE_MAX:
        verdicts = _per_value(values, reference)
    elif len(values) * _DISTINCT_RATIO <= len(col):
        verdicts = check(values)
    else:
        return check(col)
    return pc.take(verdicts, encoded.indices)


def _per_value(col: pa.Array, reference: Callable[[str], bool]) -> pa.Array:
    return pa.array([None if v is None else reference(v) for v in col.to_pylist()], pa.bool_())


def _inverted(mask: Mask) -> Mask:
    return (not mask) if isinstance(mask, bool) else pc.invert(mask)
