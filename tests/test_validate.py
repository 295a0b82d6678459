"""The vectorized validator against jsonschema itself, record by record.

Differential: random records (valid and mutated: nulls, bad formats, calendar edge cases,
leap seconds, lowercase ``t``/``z``, Unicode digits and lengths, out-of-enum, too long,
out of range) in Arrow batches of several shapes (chunked tables, missing, extra and
re-typed columns); ``invalid_mask`` and the (field, rule) sets must equal what
``Draft202012Validator`` with ``FormatChecker`` reports for ``batch.to_pylist()``.
"""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from engine.normalize.formats import FORMATS, REFERENCE
from engine.normalize.re2_translate import re2_pattern
from engine.normalize.validate import (
    CompiledSchema,
    UnsupportedSchema,
    Violation,
    explain,
    load_schema,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
EXPORT_SCHEMAS = sorted(
    (Path(__file__).resolve().parent.parent / "schemas" / "export").glob("*.json")
)
DT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
S, SN = {"type": "string"}, {"type": ["string", "null"]}

PERSON: dict[str, Any] = {
    "$schema": DRAFT,
    "$id": "https://example.org/test/person/1.0.0.json",
    "title": "Person",
    "description": "test",
    "$comment": "test",
    "examples": [{}],
    "type": "object",
    "properties": {
        "person_id": {**S, "pattern": "^per_[0-9a-f]{12}$", "title": "id"},
        "full_name": {**SN, "minLength": 2, "maxLength": 12},
        "email": {**SN, "format": "email", "maxLength": 40},
        "date_of_birth": {**SN, "format": "date"},
        "country": {**SN, "pattern": "^[A-Z]{2}$"},
        "postcode": {**SN, "pattern": r"\d{4,5}"},  # unanchored; Unicode digits count
        "age": {"type": ["integer", "null"], "minimum": 0, "maximum": 150},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "verified": {"type": "boolean"},
        "locale": {**SN, "enum": ["en", "de", "fr"]},  # null is not listed
        "tier": {**SN, "enum": ["free", "pro", None]},
        "kind": {**S, "const": "person"},
        "external_id": {**SN, "format": "uuid"},
        "website": {**SN, "format": "uri", "description": "optional"},
        "created_at": {**S, "format": "date-time"},
    },
    "required": [
        "person_id",
        "full_name",
        "email",
        "date_of_birth",
        "country",
        "postcode",
        "age",
        "score",
        "verified",
        "locale",
        "tier",
        "kind",
        "external_id",
        "created_at",
    ],
    "additionalProperties": False,
}
USAGE_EVENT: dict[str, Any] = {
    "$schema": DRAFT,
    "$id": "https://example.org/test/usage_event/1.0.0.json",
    "type": "object",
    "properties": {
        "event_id": {**S, "format": "uuid"},
        "occurred_at": {**S, "format": "date-time", "pattern": DT_PATTERN},
        "account_id": {**S, "pattern": "^acc_[0-9a-f]{12}$"},
        "ipv4": {**SN, "format": "ipv4"},
        "ipv6": {**SN, "format": "ipv6"},
        "ip_address": {**SN, "maxLength": 45, "pattern": "^[0-9A-Fa-f:.]+$"},
        "user_agent": {**SN, "maxLength": 60},
        "action": {**S, "enum": ["login", "logout", "view", "delete"]},
        "duration_ms": {"type": ["integer", "null"], "minimum": 0, "exclusiveMaximum": 86_400_000},
        "bytes": {"type": "integer", "minimum": 0},
        "ratio": {"type": ["number", "null"], "minimum": -1.5, "maximum": 1.5},
    },
    "required": [
        "event_id",
        "occurred_at",
        "account_id",
        "ipv4",
        "ipv6",
        "ip_address",
        "user_agent",
        "action",
        "duration_ms",
        "bytes",
        "ratio",
    ],
    "additionalProperties": False,
}
PAYMENT: dict[str, Any] = {
    "$schema": DRAFT,
    "$id": "https://example.org/test/payment/1.0.0.json",
    "type": "object",
    "properties": {
        "record_type": {**S, "enum": ["customer", "payment_method", "charge", "invoice"]},
        "id": {**S, "maxLength": 20},
        "last4": {**SN, "pattern": "^[0-9]{4}$"},
        "amount": {**SN, "pattern": r"^-?\d+(\.\d+)?$"},
        "currency": {**SN, "pattern": "^[A-Z]{3}$"},
        "exp_month": {"type": ["integer", "null"], "minimum": 1, "maximum": 12},
        "email": {**SN, "format": "email"},
        "captured": {"type": ["boolean", "null"]},
    },
    "required": ["record_type", "id", "last4", "amount", "currency", "exp_month", "email"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {
                "properties": {"record_type": {"const": "payment_method"}},
                "required": ["record_type"],
            },
            "then": {
                "required": ["last4", "exp_month"],
                "properties": {"last4": S, "exp_month": {"type": "integer"}},
            },
        },
        {
            "if": {"properties": {"record_type": {"const": "charge"}}, "required": ["record_type"]},
            "then": {
                "required": ["amount", "currency"],
                "properties": {"amount": S, "currency": {**S, "enum": ["EUR", "USD"]}},
            },
        },
        {
            "if": {"properties": {"record_type": {"enum": ["invoice"]}}},
            "then": {
                "properties": {"amount": {**S, "minLength": 1}, "email": {**S, "format": "email"}}
            },
        },
    ],
}

# --- value generators: a valid value most of the time, else a tricky one ----------------

TRICKY_STRINGS = ["", " ", "\n", "x", "é", "\u0663", "😀", "a\nb", "per_0123456789ab\n"]
TRICKY_DATE_TIMES = [
    "2024-02-30T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2000-02-29T12:00:00Z",
    "2100-02-29T00:00:00Z",
    "2024-12-31T23:59:60Z",
    "2016-12-31T23:59:60Z",
    "2024-01-01t00:00:00z",
    "2024-01-01T00:00:00Z\n",
    "2024-01-01T00:00:00",
    "2024-01-01 00:00:00Z",
    "0000-01-01T00:00:00Z",
    "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-04-31T00:00:00Z",
    "2024-01-01T00:00:00.123+05:30",
    "2024-01-01T00:00:00+24:00",
    "2024-1-01T00:00:00Z",
    "2024-01-01T00:00:00.Z",
    "9999-12-31T23:59:59Z",
]
TRICKY_DATES = [
    "2024-02-29",
    "2023-02-29",
    "2024-13-01",
    "2024-00-10",
    "0000-01-01",
    "2024-01-01\n",
    "\u0662\u0660\u0662\u0664-01-01",
    "20240101",
    "2024-W01-1",
    "0001-01-01",
    "2024-06-31",
    "1600-02-29",
    "1700-02-29",
]
TRICKY_UUIDS = [
    "{12345678-1234-5678-1234-567812345678}",
    "urn:uuid:12345678-1234-5678-1234-567812345678",
    "12345678123456781234567812345678",
    "12345678-1234-5678-1234-56781234567g",
    "1_345678-1234-5678-1234-567812345678",
    "+2345678-1234-5678-1234-567812345678",
    " 2345678-1234-5678-1234-56781234567 ",
    "\u06612345678-1234-5678-1234-567812345678",
    "12345678-1234-5678-1234-5678123456789",
    "ABCDEF01-ABCD-ABCD-ABCD-ABCDEF012345",
]
TRICKY_IPS = [
    "01.2.3.4",
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "::",
    "::1",
    "1::2::3",
    "::ffff:1.2.3.4",
    "fe80::1%eth0",
    "1:2:3:4:5:6:7:8:9",
    "12345::",
    "1:2:3:4:5:6:7::",
    "1.2.3.4\n",
    "::1.2.3.04",
    "0.0.0.0",
    "\u0661.2.3.4",
    "2001:DB8::A",
]
TRICKY_URIS = [
    "https://example.org/x?y#z",
    "mailto:a@b",
    "no scheme",
    "http://exa mple.org",
    "http://[::1]:8080/",
    "a:b\n",
    "urn:isbn:0451450523",
    "http://h/%zz",
    "1http://x",
]
NAMES = ["Zoë", "😀😀", "é" * 12, "e\u0301" * 6, "Ab", "Renée Müller"]
BAD_NAMES = ["😀" * 13, "A", "é" * 13, "e\u0301" * 7]


class Gen(random.Random):
    """A random source with a mutation rate: 0 gives only the valid generators' values."""

    rate = 1.0


def _date_time(rng: random.Random) -> str:
    frac = rng.choice(["", ".5", ".123456"])
    off = rng.choice(["Z", "z", "+00:00", "-07:30", "+14:00"])
    t = rng.choice(["T", "t"])
    return (
        f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}{t}"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(61):02d}{frac}{off}"
    )


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return ".".join(str(rng.randrange(300)) for _ in range(4))
    groups = [f"{rng.randrange(65536):x}" for _ in range(rng.randint(1, 8))]
    cut = rng.randint(0, len(groups))
    text = ":".join(groups[:cut]) + ("::" if len(groups) < 8 else ":") + ":".join(groups[cut:])
    return text.replace(":::", "::").strip(":") if rng.random() < 0.3 else text


def _canonical_time(rng: random.Random) -> str:
    return (
        f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
    )


def _ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(256)) for _ in range(4))


def _ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randrange(65536):x}" for _ in range(8)]
    if rng.random() < 0.5:
        cut = rng.randrange(8)
        return ":".join(groups[:cut]) + "::" + ":".join(groups[cut + rng.randint(1, 8 - cut) :])
    return ":".join(groups)


def pick(
    rng: random.Random,
    valid: Callable[[random.Random], Any],
    tricky: list[Any] | Callable[[random.Random], Any],
    null: float = 0.08,
) -> Any:
    r = rng.random()
    rate = getattr(rng, "rate", 1.0)
    if r < null * rate:
        return None
    if r < (null + 0.3) * rate:
        return tricky(rng) if callable(tricky) else rng.choice(tricky)
    return valid(rng)


def person(rng: random.Random) -> dict[str, Any]:
    return {
        "person_id": pick(rng, lambda r: f"per_{r.getrandbits(48):012x}", TRICKY_STRINGS),
        "full_name": pick(rng, lambda r: r.choice(NAMES), [*BAD_NAMES, *TRICKY_STRINGS]),
        "email": pick(
            rng,
            lambda r: f"p{r.randrange(99)}@example.org",
            ["no-at-sign", "@", "a" * 39 + "@", *TRICKY_STRINGS],
        ),
        "date_of_birth": pick(
            rng,
            lambda r: f"{r.randint(1900, 2020)}-{r.randint(1, 12):02d}-{r.randint(1, 31):02d}",
            TRICKY_DATES,
        ),
        "country": pick(rng, lambda r: r.choice(["DE", "FR", "GB"]), ["de", "DEU", "D", "DE\n"]),
        "postcode": pick(
            rng,
            lambda r: f"{r.randrange(10**5):05d}",
            ["12a34", "\u0661\u0662\u0663\u0664", "PC 1234 X", "123"],
        ),
        "age": pick(rng, lambda r: r.randint(0, 150), [-1, 151, 2**62, -(2**63), 0, 150]),
        "score": pick(
            rng,
            lambda r: r.random(),
            [0.0, -0.0, 1.0, 1e-300, 0.999999, float("nan"), float("inf"), 5.0],
        ),
        "verified": pick(rng, lambda r: r.random() < 0.5, [True, False]),
        "locale": pick(rng, lambda r: r.choice(["en", "de", "fr"]), ["EN", "es", ""], null=0.2),
        "tier": pick(rng, lambda r: r.choice(["free", "pro"]), ["gold", "None"], null=0.2),
        "kind": pick(rng, lambda r: "person", ["Person", "person ", ""]),
        "external_id": pick(rng, lambda r: str(uuid.UUID(int=r.getrandbits(128))), TRICKY_UUIDS),
        "website": pick(rng, lambda r: f"https://example.org/{r.randrange(9)}", TRICKY_URIS),
        "created_at": pick(
            rng, _canonical_time, lambda r: r.choice([_date_time(r), *TRICKY_DATE_TIMES])
        ),
    }


def usage_event(rng: random.Random) -> dict[str, Any]:
    return {
        "event_id": pick(rng, lambda r: str(uuid.UUID(int=r.getrandbits(128))), TRICKY_UUIDS),
        "occurred_at": pick(
            rng, _canonical_time, lambda r: r.choice([_date_time(r), *TRICKY_DATE_TIMES])
        ),
        "account_id": pick(
            rng,
            lambda r: f"acc_{r.getrandbits(48):012x}",
            ["acc_0123456789AB", "acc_0123456789ab\n", "xacc_0123456789ab"],
        ),
        "ipv4": pick(rng, _ipv4, lambda r: r.choice([_ip(r), *TRICKY_IPS])),
        "ipv6": pick(rng, _ipv6, lambda r: r.choice([_ip(r), *TRICKY_IPS])),
        "ip_address": pick(rng, _ipv4, [*TRICKY_IPS, "1" * 46]),
        "user_agent": pick(
            rng, lambda r: "Mozilla/5.0 " + "x" * r.randrange(50), ["é" * 60, "😀" * 61, "x" * 61]
        ),
        "action": pick(
            rng, lambda r: r.choice(["login", "logout", "view", "delete"]), ["LOGIN", "edit", ""]
        ),
        "duration_ms": pick(rng, lambda r: r.randrange(86_400_000), [-1, 86_400_000, 0]),
        "bytes": pick(rng, lambda r: r.randrange(10**9), [-1, 0, 2**63 - 1]),
        "ratio": pick(rng, lambda r: r.uniform(-1.5, 1.5), [-1.5, 1.5, 1.5000001, -2.0, 2]),
    }


def payment(rng: random.Random) -> dict[str, Any]:
    return {
        "record_type": pick(
            rng,
            lambda r: r.choice(PAYMENT["properties"]["record_type"]["enum"]),
            ["refund", "Charge"],
            null=0.03,
        ),
        "id": pick(rng, lambda r: f"ch_{r.getrandbits(40):x}", ["x" * 21, "é" * 20]),
        "last4": pick(
            rng, lambda r: f"{r.randrange(10**4):04d}", ["123", "12345", "\u0661234"], null=0.3
        ),
        "amount": pick(
            rng,
            lambda r: f"{r.randrange(10**5)}.{r.randrange(100):02d}",
            ["", "1.", "-0.5", "1e3", "\u0661\u0662.5"],
            null=0.3,
        ),
        "currency": pick(rng, lambda r: r.choice(["EUR", "USD", "GBP"]), ["eur", "EURO"], null=0.3),
        "exp_month": pick(rng, lambda r: r.randint(1, 12), [0, 13], null=0.3),
        "email": pick(rng, lambda r: "a@b", ["no-at"], null=0.3),
        "captured": pick(rng, lambda r: r.random() < 0.5, [True], null=0.3),
    }


# --- the differential check ------------------------------------------------------------


def _where(path: list[Any]) -> str:
    return "if/then:" if len(path) >= 3 and path[0] == "allOf" and path[2] == "then" else ""


def jsonschema_rules(validator: Draft202012Validator, record: dict[str, Any]) -> set[tuple]:
    out: set[tuple[str, str]] = set()
    for e in validator.iter_errors(record):
        kw = f"format:{e.validator_value}" if e.validator == "format" else str(e.validator)
        rule = _where(list(e.schema_path)) + kw
        if e.validator == "required":
            out |= {(p, rule) for p in e.validator_value if p not in e.instance}
        elif e.validator == "additionalProperties":
            out.add(("", rule))
        else:
            out.add((e.path[0], rule))
    return out


def vectorized_rules(compiled: CompiledSchema, batch: pa.RecordBatch | pa.Table) -> list[set]:
    got: list[set[tuple[str, str]]] = [set() for _ in range(batch.num_rows)]
    for key, mask in compiled.failure_masks(batch).items():
        flags = [mask] * batch.num_rows if isinstance(mask, bool) else mask.to_pylist()
        for i, flag in enumerate(flags):
            if flag:
                got[i].add(key)
    return got


_COMPILED: dict[str, tuple[CompiledSchema, Draft202012Validator]] = {}


def assert_agrees(schema: dict[str, Any], batch: pa.RecordBatch | pa.Table) -> list[set]:
    key = json.dumps(schema, sort_keys=True)
    if key not in _COMPILED:
        _COMPILED[key] = (
            CompiledSchema.from_schema(schema),
            Draft202012Validator(schema, format_checker=FormatChecker()),
        )
    compiled, validator = _COMPILED[key]
    records = batch.to_pylist()
    expected = [jsonschema_rules(validator, r) for r in records]
    got = vectorized_rules(compiled, batch)
    wrong = [
        (i, records[i], expected[i], got[i]) for i in range(len(records)) if expected[i] != got[i]
    ]
    assert not wrong, f"{len(wrong)} records disagree, e.g. {wrong[:3]}"
    mask = compiled.invalid_mask(batch)
    assert isinstance(mask, pa.BooleanArray) and mask.null_count == 0
    assert mask.to_pylist() == [bool(e) for e in expected]
    counts = Counter(k for e in expected for k in e)
    first = {k: next(i for i, e in enumerate(expected) if k in e) for k in counts}
    report = compiled.validate(batch)
    assert {(v.field, v.rule): (v.count, v.first_index) for v in report} == {
        k: (c, first[k]) for k, c in counts.items()
    }
    return expected


def batch_of(schema: dict[str, Any], make: Callable, n: int, seed: int) -> pa.RecordBatch:
    rng = Gen(seed)
    rows = []
    for _ in range(n):
        rng.rate = rng.choice([0.0, 0.2, 1.0])
        rows.append(make(rng))
    compiled = CompiledSchema.from_schema(schema)
    return pa.RecordBatch.from_pylist(rows, schema=compiled.arrow_schema)


def with_column(batch: pa.RecordBatch, name: str, column: pa.Array) -> pa.RecordBatch:
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, name, column)


CASES = [(PERSON, person), (USAGE_EVENT, usage_event), (PAYMENT, payment)]


@pytest.mark.parametrize(("schema", "make"), CASES, ids=["person", "usage_event", "payment"])
def test_random_records_agree_with_jsonschema(schema: dict[str, Any], make: Callable) -> None:
    batch = batch_of(schema, make, 4000, seed=len(schema["properties"]))
    expected = assert_agrees(schema, batch)
    valid = sum(not e for e in expected)
    assert 0.01 * len(expected) < valid < 0.99 * len(expected)  # both kinds are exercised
    rules = {rule for e in expected for _, rule in e}
    assert "type" in rules and any(r.startswith(("format:", "pattern")) for r in rules)


@pytest.mark.parametrize(("schema", "make"), CASES, ids=["person", "usage_event", "payment"])
def test_batch_shapes_agree_with_jsonschema(schema: dict[str, Any], make: Callable) -> None:
    batch = batch_of(schema, make, 160, seed=99)
    names = batch.schema.names
    assert_agrees(
        schema, pa.Table.from_batches([batch.slice(0, 50), batch.slice(50, 50), batch.slice(100)])
    )
    assert_agrees(schema, batch.slice(0, 0))
    assert_agrees(schema, batch.select(list(reversed(names))))
    for name in names:  # every column missing in turn: required / if-then:required
        assert_agrees(schema, batch.drop_columns([name]))
    extra = batch.append_column("surprise", pa.array(["x"] * batch.num_rows))
    assert_agrees(schema, extra)
    for name in names:  # other Arrow types than the schema's
        column = batch.column(name)
        variants = [pa.nulls(len(column)), pa.array([7] * len(column), pa.int64())]
        if pa.types.is_string(column.type):
            variants += [
                column.cast(pa.large_string()),
                column.cast(pa.string_view()),
                column.dictionary_encode(),
            ]
        if pa.types.is_integer(column.type):
            as_float = column.cast(pa.float64(), safe=False)
            variants += [
                as_float,
                column.cast(pa.int32(), safe=False),
                pc.add(as_float, 0.5),
                pa.array([2**64 - 1] * len(column), pa.uint64()),
            ]
        if pa.types.is_floating(column.type):
            variants += [pa.array([1] * len(column), pa.int64()), column.cast(pa.float32())]
        variants.append(pa.array([b"x"] * len(column), pa.binary()))
        for variant in variants:
            assert_agrees(schema, with_column(batch, name, variant))


def test_repeated_values_agree_on_the_distinct_values_path() -> None:
    """Big batches with few distinct values are checked once per distinct value."""
    base = batch_of(PERSON, person, 60, seed=3)
    big = base.take(pa.array([(i * 7) % 60 for i in range(5000)]))
    expected = assert_agrees(PERSON, big)
    assert any(expected) and not all(expected)
    compiled = CompiledSchema.from_schema(PERSON)
    table = pa.Table.from_batches([big, big])
    assert compiled.validate(table) == [
        Violation(v.field, v.rule, 2 * v.count, v.first_index) for v in compiled.validate(big)
    ]
    assert compiled.invalid_mask(table).to_pylist() == [bool(e) for e in expected] * 2


def test_conditionals_apply_only_to_their_records() -> None:
    compiled = CompiledSchema.from_schema(PAYMENT)
    rows = [dict.fromkeys(compiled.arrow_schema.names) for _ in range(3)]
    rows[0].update(record_type="charge", id="ch_1", amount="1.00", currency="EUR")
    rows[1].update(record_type="charge", id="ch_2", currency="GBP")
    rows[2].update(record_type="customer", id="cus_1")
    batch = pa.RecordBatch.from_pylist(rows, schema=compiled.arrow_schema)
    assert compiled.validate(batch) == [
        Violation("amount", "if/then:type", 1, 1),
        Violation("currency", "if/then:enum", 1, 1),
    ]
    dropped = batch.drop_columns(["currency"])
    assert {(v.field, v.rule, v.count) for v in compiled.validate(dropped)} == {
        ("currency", "required", 3),
        ("currency", "if/then:required", 2),
        ("amount", "if/then:type", 1),
    }
    assert_agrees(PAYMENT, dropped)


# --- formats and patterns, value by value ----------------------------------------------

FORMAT_SEEDS = {
    "date-time": (
        [
            "2024-01-31T12:34:56Z",
            "2024-02-29T00:00:00+01:00",
            "0001-01-01t00:00:00z",
            "2023-02-28T23:59:59.123456-23:59",
            *TRICKY_DATE_TIMES,
        ],
        "0123456789-:TtZz.+ \n\u0663\u00df\uff10",
    ),
    "date": (["2024-02-29", "2023-02-28", "9999-12-31", *TRICKY_DATES], "0123456789- \n\u0663"),
    "uuid": (
        ["12345678-1234-5678-1234-567812345678", *TRICKY_UUIDS],
        "0123456789abcdefABCDEF-{}_ +xX\u0660\u0663\u00a0\u2003\n:urnid\x1c",
    ),
    "ipv4": (["192.168.0.1", "0.0.0.0", "255.255.255.255", *TRICKY_IPS], "0123456789. \n\u0663/"),
    "ipv6": (
        ["2001:db8::1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", *TRICKY_IPS],
        "0123456789abcdefABCDEFg:.%/ \n",
    ),
    "uri": (TRICKY_URIS, "abc:/?#[]@!$&'()*+,;=%20-._~ \n\u00e9"),
    "email": (["a@b", "ab", ""], "@a \n"),
}


def _mutate(rng: random.Random, text: str, alphabet: str) -> str:
    chars = list(text)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        pos = rng.randrange(len(chars) + 1)
        op = rng.random()
        if op < 0.4 and chars:
            chars[min(pos, len(chars) - 1)] = rng.choice(alphabet)
        elif op < 0.7:
            chars.insert(pos, rng.choice(alphabet))
        elif chars:
            del chars[min(pos, len(chars) - 1)]
    return "".join(chars)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_formats_agree_with_format_checker(fmt: str) -> None:
    rng = random.Random(fmt)
    seeds, alphabet = FORMAT_SEEDS[fmt]
    values = [*seeds, *(_mutate(rng, rng.choice(seeds), alphabet) for _ in range(20_000))]
    if fmt in ("ipv4", "ipv6"):
        values += [_ip(rng) for _ in range(20_000)]
    if fmt == "date-time":
        values += [_date_time(rng) for _ in range(20_000)]
    checker = FormatChecker()
    expected = [checker.conforms(v, fmt) for v in values]
    got = FORMATS[fmt](pa.array(values, pa.string())).to_pylist()
    wrong = [(v, e) for v, g, e in zip(values, got, expected, strict=True) if g != e]
    assert not wrong, wrong[:10]
    assert 0 < sum(expected) < len(values)
    # the value-by-value path that small and low-cardinality columns take
    by_value = [REFERENCE[fmt](v) for v in values]
    wrong = [(v, e) for v, g, e in zip(values, by_value, expected, strict=True) if g != e]
    assert not wrong, wrong[:10]


def test_date_time_upper_only_matters_for_ascii() -> None:
    """jsonschema upper()s a date-time first; no non-ASCII character becomes usable."""
    usable = set("0123456789-:TZ.+\n")
    found = [
        c
        for c in range(128, 0x110000)
        if not 0xD800 <= c <= 0xDFFF and set(chr(c).upper()) <= usable
    ]
    assert found == []


PATTERNS = [
    r"^\d{4}-\d{2}$",
    r"\d{4,5}",
    r"^\w+$",
    r"\s",
    r"^[^\W\d_]+$",
    r"[\D]x",
    r"\S+$",
    r"^a$|^b",
    r"(?:ab)+$",
    r"a{,2}b",
    r"^.$",
    r"(?s)^.$",
    r"\Aab\Z",
    r"^[^a-c]*$",
    r"(?x) ^ a \# b $",
    r"\u00e9|\x41|\N{DIGIT ONE}",
    r"(?a)\w\b",
    r"^(a|bc)?$",
    r"^-?\d+(\.\d+)?$",
    r"^[a-z0-9_]+\.[a-z0-9_]+$",
    r"[\u0660-\u0669]",
    r"colou?r",
    r"^\d*?$",
    r"(?a)^\d+$",
    r"^(?:x|$)",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_patterns_agree_with_python_re(pattern: str) -> None:
    rng = random.Random(pattern)
    alphabet = "ab1_ \n\t.-#\u0663\u00e9\u00aa\u00a0\U0001f600xAZ"
    values = ["", "\n", "a", "b", "ab\n", "ab", "x", "a#b", "é", "A", "1"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(8))) for _ in range(5000)]
    expr = re2_pattern(pattern)
    got = pc.match_substring_regex(pa.array(values, pa.string()), expr).to_pylist()
    expected = [re.search(pattern, v) is not None for v in values]
    assert got == expected
    # every path of the pattern keyword: value by value, per distinct value, whole column
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": pattern}}}
    compiled = CompiledSchema.from_schema(schema)
    for batch in (values[:40], values[:40] * 3, values[:100] * 60, values):
        mask = compiled.invalid_mask(pa.table({"v": pa.array(batch, pa.string())}))
        assert mask.to_pylist() == [re.search(pattern, v) is None for v in batch]


@pytest.mark.parametrize("pattern", [r"^\d$", r"^\w$", r"^\s$", r"^.$", r"^[^\d\s]$"])
def test_pattern_classes_agree_on_every_code_point(pattern: str) -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    got = pc.match_substring_regex(pa.array(chars, pa.string()), re2_pattern(pattern))
    rx = re.compile(pattern)
    assert got.to_pylist() == [rx.search(c) is not None for c in chars]


# --- refusing what cannot be checked ---------------------------------------------------


def _with_property(sub: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"$schema": DRAFT, "type": "object", "properties": {"x": sub}, **top}


@pytest.mark.parametrize(
    ("schema", "keyword", "path"),
    [
        (_with_property(S, oneOf=[S]), "oneOf", "#"),
        (_with_property({**S, "minItems": 1}), "minItems", "#/properties/x"),
        (_with_property({"type": "array", "items": S}), "items", "#/properties/x"),
        (_with_property({"type": "object"}), "type", "#/properties/x"),
        (_with_property({**S, "format": "hostname"}), "format", "#/properties/x"),
        (_with_property({"type": ["string", "integer"]}), "type", "#/properties/x"),
        (_with_property({"description": "no type"}), "type", "#/properties/x"),
        (_with_property({**S, "$ref": "#/$defs/y"}), "$ref", "#/properties/x"),
        (_with_property(S, additionalProperties=S), "additionalProperties", "#"),
        (_with_property(S, required=["y"]), "required", "#"),
        (_with_property(S, patternProperties={"^a": S}), "patternProperties", "#"),
        (_with_property(S, allOf=[{"properties": {"x": S}}]), "allOf", "#/allOf/0"),
        (
            _with_property(
                S, allOf=[{"if": {"properties": {"x": {"const": "a"}}}, "then": {}, "else": {}}]
            ),
            "else",
            "#/allOf/0",
        ),
        (
            _with_property(S, allOf=[{"if": {"properties": {"x": {"pattern": "a"}}}, "then": {}}]),
            "if",
            "#/allOf/0/if/properties/x",
        ),
        (
            _with_property(
                S,
                allOf=[
                    {
                        "if": {"properties": {"x": {"const": "a"}}},
                        "then": {"properties": {"x": {"not": S}}},
                    }
                ],
            ),
            "not",
            "#/allOf/0/then/properties/x",
        ),
        (
            {**_with_property(S), "$schema": "http://json-schema.org/draft-07/schema#"},
            "$schema",
            "#",
        ),
        (_with_property({**S, "pattern": "(?=a)b"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": r"(a)\1"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": "(?i)abc"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": "a$b"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": r"\bword"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": "a++"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": "a{2000}"}), "pattern", "#/properties/x"),
        (_with_property({**S, "pattern": "(unclosed"}), "pattern", "#/properties/x"),
    ],
)
def test_unsupported_keywords_are_refused(schema: dict[str, Any], keyword: str, path: str) -> None:
    with pytest.raises(UnsupportedSchema) as info:
        CompiledSchema.from_schema(schema)
    assert (info.value.keyword, info.value.path) == (keyword, path)
    assert repr(keyword) in str(info.value) and repr(path) in str(info.value)


# --- no values in reports --------------------------------------------------------------

SECRET = "Zyxwq-7731-secret"


def test_explain_names_field_and_rule_never_the_value() -> None:
    record = {k: None for k in PERSON["properties"]} | {
        "person_id": SECRET,
        "email": SECRET,
        "country": SECRET,
        "kind": SECRET,
        "locale": SECRET,
        "created_at": SECRET,
        "full_name": SECRET * 3,
        "verified": SECRET,
        "score": 7731.5,
        "age": 77310,
        "surprise": SECRET,
    }
    del record["postcode"]
    lines = explain(PERSON, record)
    validator = Draft202012Validator(PERSON, format_checker=FormatChecker())
    assert any(SECRET in e.message for e in validator.iter_errors(record))  # jsonschema's do
    assert len(lines) == len(list(validator.iter_errors(record)))
    for line in lines:
        assert SECRET not in line and "7731" not in line, line
    assert "field 'email': format 'email' not met" in lines
    assert "field 'postcode': required property missing" in lines
    assert "record: additionalProperties false: unexpected 'surprise'" in lines
    assert any(line.startswith("field 'person_id': pattern") for line in lines)
    bad = {"record_type": "charge", "amount": None}
    assert "field 'amount': type 'string' not met (if/then of allOf/1)" in explain(PAYMENT, bad)


def test_violations_carry_no_values() -> None:
    compiled = CompiledSchema.from_schema(PERSON)
    rows = [person(random.Random(i)) for i in range(50)]
    for row in rows:
        row.update(person_id=SECRET, email=SECRET, created_at=SECRET)
    report = compiled.validate(pa.RecordBatch.from_pylist(rows, schema=compiled.arrow_schema))
    assert report and SECRET not in repr(report)
    assert {("person_id", "pattern"), ("email", "format:email")} <= {
        (v.field, v.rule) for v in report
    }


# --- the API around it -----------------------------------------------------------------


def test_arrow_schema_id_and_load(tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON), encoding="utf-8")
    compiled = load_schema(path)
    assert compiled.schema_id == PERSON["$id"]
    assert compiled.arrow_schema.names == list(PERSON["properties"])
    types = {f.name: (f.type, f.nullable) for f in compiled.arrow_schema}
    assert types["person_id"] == (pa.string(), False)
    assert types["age"] == (pa.int64(), True)
    assert types["score"] == (pa.float64(), False)
    assert types["verified"] == (pa.bool_(), False)


def test_duplicate_columns_are_an_error() -> None:
    compiled = CompiledSchema.from_schema(PAYMENT)
    table = pa.table([pa.array(["a"]), pa.array(["b"])], names=["id", "id"])
    with pytest.raises(ValueError, match="'id'"):
        compiled.validate(table)


@pytest.mark.skipif(not EXPORT_SCHEMAS, reason="no schemas/export/*.json yet")
@pytest.mark.parametrize("path", EXPORT_SCHEMAS, ids=lambda p: p.name)
def test_dataset_schemas_compile_and_agree(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    compiled = load_schema(path)
    assert compiled.schema_id == document["$id"]
    assert compiled.arrow_schema.names == list(document["properties"])
    rng = random.Random(path.name)
    pools = {
        pa.string(): [
            None,
            "",
            "x",
            "DE",
            "EUR",
            "1234",
            "12.50",
            "a@b",
            "files/a.txt",
            "2024-01-31T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "acc_0123456789ab",
            "per_0123456789ab",
            "crm.people",
            "C01234567",
            "0" * 64,
            "email",
            "owner",
            "open",
            "charge",
            "payment_method",
            "invoice",
            "customer",
        ],
        pa.int64(): [None, -1, 0, 1, 12, 13, 1970, 2100, 2101],
        pa.float64(): [None, -1.0, 0.5],
        pa.bool_(): [None, True, False],
    }
    for f in compiled.arrow_schema:
        enum = document["properties"][f.name].get("enum")
        if enum:
            pools.setdefault(f.name, [*enum, None, "other"])
    rows = [
        {f.name: rng.choice(pools.get(f.name, pools[f.type])) for f in compiled.arrow_schema}
        for _ in range(1500)
    ]
    assert_agrees(document, pa.RecordBatch.from_pylist(rows, schema=compiled.arrow_schema))


def test_random_ascii_noise_agrees() -> None:
    """Short random printable strings in every string field of the usage event."""
    rng = random.Random(5)
    compiled = CompiledSchema.from_schema(USAGE_EVENT)
    rows = []
    for _ in range(1000):
        row = usage_event(rng)
        for f in compiled.arrow_schema:
            if f.type == pa.string() and rng.random() < 0.2:
                row[f.name] = "".join(rng.choice(string.printable) for _ in range(rng.randrange(9)))
        rows.append(row)
    assert_agrees(USAGE_EVENT, pa.RecordBatch.from_pylist(rows, schema=compiled.arrow_schema))
