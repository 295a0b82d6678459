"""Canonical value forms, vectorized on Arrow arrays.

Every transform returns the new array and the number of values it could not convert;
those stop the export (a value is never silently dropped or nulled).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.compute as pc

Result = tuple[pa.Array, int]

_UTC_US = pa.timestamp("us", tz="UTC")
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"

# ISO 4217 minor units where they are not 2.
_MINOR_UNITS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def _failed(before: pa.Array, after: pa.Array) -> int:
    """Values present before a conversion and missing after it."""
    return int(pc.sum(pc.and_(pc.is_valid(before), pc.is_null(after))).as_py() or 0)


def _to_utc(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return pc.assume_timezone(pc.cast(arr, pa.timestamp("us")), "UTC")
        return pc.cast(arr, _UTC_US)
    if pa.types.is_date(t):
        return pc.assume_timezone(
            pc.cast(pc.cast(arr, pa.timestamp("s")), pa.timestamp("us")), "UTC"
        )
    if pa.types.is_integer(t):  # unix seconds
        return pc.cast(pc.cast(pc.multiply(arr, 1_000_000), pa.int64()), _UTC_US)
    if pa.types.is_floating(t):
        return pc.cast(pc.cast(pc.multiply(arr, 1_000_000.0), pa.int64()), _UTC_US)
    return _parse_timestamps(pc.cast(arr, pa.string()))


def _parse_timestamps(arr: pa.Array) -> pa.Array:
    """ISO 8601 text, with or without offset (without one it is UTC), 'T' or space."""
    text = pc.utf8_trim_whitespace(arr)
    try:
        return pc.cast(text, _UTC_US)
    except pa.ArrowInvalid:
        pass
    try:
        return pc.assume_timezone(pc.cast(text, pa.timestamp("us")), "UTC")
    except pa.ArrowInvalid:
        pass
    out = []  # mixed forms: element-wise, only on this slow path
    for v in text.to_pylist():
        out.append(_parse_one(v))
    return pa.array(out, type=_UTC_US)


def _parse_one(v: str | None) -> object:
    if v is None:
        return None
    for target in (_UTC_US, pa.timestamp("us")):
        try:
            ts = pc.cast(pa.array([v]), target)
            if target.tz is None:
                ts = pc.assume_timezone(ts, "UTC")
            return ts[0].as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def timestamp(arr: pa.Array) -> Result:
    ts = _to_utc(arr)
    out = pc.strftime(pc.cast(ts, pa.timestamp("s", tz="UTC"), safe=False), format=_RFC3339)
    return out, _failed(arr, out)


def date(arr: pa.Array) -> Result:
    if pa.types.is_timestamp(arr.type):
        d = pc.cast(_to_utc(arr), pa.date32())
    elif pa.types.is_date(arr.type):
        d = arr
    else:
        text = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(pc.cast(arr, pa.string())), 0, 10)
        try:
            d = pc.cast(text, pa.date32())
        except pa.ArrowInvalid:
            d = pa.array([_date_one(v) for v in text.to_pylist()], type=pa.date32())
    out = pc.strftime(d, format="%Y-%m-%d")
    return out, _failed(arr, out)


def _date_one(v: str | None) -> object:
    import datetime as dt

    try:
        return dt.date.fromisoformat(v) if v else None
    except ValueError:
        return None


def upper(arr: pa.Array) -> Result:
    return pc.utf8_upper(pc.cast(arr, pa.string())), 0


def string(arr: pa.Array) -> Result:
    return pc.cast(arr, pa.string()), 0


def is_present(arr: pa.Array) -> Result:
    valid = pc.is_valid(arr)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        valid = pc.and_(valid, pc.fill_null(pc.greater(pc.utf8_length(arr), 0), False))
    return valid, 0


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def boolean(arr: pa.Array) -> Result:
    if pa.types.is_boolean(arr.type):
        return arr, 0
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        out = pc.not_equal(arr, 0)
        return out, 0
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(arr, pa.string())))
    out = pc.if_else(
        pc.is_in(text, pa.array(sorted(_TRUE))),
        True,
        pc.if_else(pc.is_in(text, pa.array(sorted(_FALSE))), False, pa.scalar(None, pa.bool_())),
    )
    return out, _failed(arr, out)


def last4(arr: pa.Array) -> Result:
    """Card numbers are never exported beyond their last four digits."""
    digits = pc.replace_substring_regex(pc.cast(arr, pa.string()), r"[^0-9]", "")
    out = pc.utf8_slice_codeunits(digits, -4)
    return out, 0


def json_text(arr: pa.Array) -> Result:
    """JSON text in a canonical form (sorted keys, no spaces); invalid JSON fails."""
    out: list[str | None] = []
    bad = 0
    for v in arr.to_pylist():
        if v is None:
            out.append(None)
            continue
        try:
            obj = orjson.loads(v) if isinstance(v, str | bytes) else v
            out.append(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode())
        except (orjson.JSONDecodeError, TypeError):
            out.append(None)
            bad += 1
    return pa.array(out, type=pa.string()), bad


def money_minor(amount: pa.Array, currency: pa.Array) -> Result:
    """Integer minor units and an ISO 4217 code to a decimal string ('1234','eur' -> '12.34')."""
    out: list[str | None] = []
    bad = 0
    for a, c in zip(amount.to_pylist(), currency.to_pylist(), strict=True):
        if a is None:
            out.append(None)
            continue
        if c is None or not isinstance(a, int | str):
            out.append(None)
            bad += 1
            continue
        try:
            exp = _MINOR_UNITS.get(str(c).upper(), 2)
            value = Decimal(int(a)).scaleb(-exp)
            out.append(f"{value:.{exp}f}")
        except (ValueError, ArithmeticError):
            out.append(None)
            bad += 1
    return pa.array(out, type=pa.string()), bad


UNARY: dict[str, Callable[[pa.Array], Result]] = {
    "timestamp": timestamp,
    "date": date,
    "upper": upper,
    "string": string,
    "is_present": is_present,
    "boolean": boolean,
    "last4": last4,
    "json_text": json_text,
}
