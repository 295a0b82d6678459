"""The ``people`` table (and the test answer key) materialized from the skeleton, by chunk.

Full names and e-mail addresses are pure functions of the skeleton, so any module can
render the name and e-mail of any person (a ticket that mentions someone, a payment
customer) without holding the whole table. E-mail local parts are injective in the
name indices, which makes them unique; only the letter case varies by person.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import names, places
from .skeleton import Skeleton
from .vec import cat, fill_patterns, pick, seconds, stream, take

SEGMENTS = (
    "price_sensitive",
    "enterprise_prospect",
    "churn_risk",
    "power_user",
    "dormant",
    "student",
)
_MID_NAME = ("", *(f"{m}. " for m in names.MIDDLE_INITIALS))
_F = len(names.FIRST_NAMES)
_L = len(names.LAST_NAMES)


def _cap(s: str) -> str:
    return "-".join(part.capitalize() for part in s.split("-"))


# Slug variants: 0 lower, 1 Capitalized, 2 UPPER (index: slug + n * variant).
_FIRST_SLUGS = pa.array(
    [*names.FIRST_SLUGS, *map(_cap, names.FIRST_SLUGS), *(s.upper() for s in names.FIRST_SLUGS)]
)
_LAST_SLUGS = pa.array(
    [*names.LAST_SLUGS, *map(_cap, names.LAST_SLUGS), *(s.upper() for s in names.LAST_SLUGS)]
)
_LETTERS = pa.array(["", *(m.lower() for m in names.MIDDLE_INITIALS), "", *names.MIDDLE_INITIALS])
_DOMAINS = pa.array([*names.EMAIL_DOMAINS, *(d.capitalize() for d in names.EMAIL_DOMAINS)])
_CASE_VARIANT = np.array([0, 1, 1, 2])  # email_case -> slug variant
_FIRST_ARR = pa.array(names.FIRST_NAMES)
_LAST_ARR = pa.array(names.LAST_NAMES)


def full_names(sk: Skeleton, idx: np.ndarray) -> pa.Array:
    return cat(
        take(_FIRST_ARR, sk.first[idx]),
        " ",
        take(_MID_NAME, sk.middle[idx]),
        take(_LAST_ARR, sk.last[idx]),
    )


def emails(sk: Skeleton, idx: np.ndarray, *, lower: bool = False) -> pa.Array:
    """E-mail addresses as stored in the CRM (or all lower-case)."""
    case = np.zeros(idx.size, np.int64) if lower else sk.email_case[idx]
    variant = _CASE_VARIANT[case]
    style = sk.email_style[idx]
    sep = take((".", "_"), style % 2)
    middle = sk.middle[idx]
    letter = take(_LETTERS, middle + (len(names.MIDDLE_INITIALS) + 1) * (variant > 0))
    mid = pick(middle > 0, cat(letter, sep), "")
    num = pick(style >= 2, pa.array(sk.email_num[idx]).cast(pa.string()), "")
    domain = take(_DOMAINS, sk.email_domain[idx] + len(names.EMAIL_DOMAINS) * (case == 2))
    return cat(
        take(_FIRST_SLUGS, sk.first[idx] + _F * variant),
        sep,
        mid,
        take(_LAST_SLUGS, sk.last[idx] + _L * variant),
        num,
        "@",
        domain,
    )


def email_sha256(emails_: pa.Array) -> pa.Array:
    """Hex SHA-256 of the trimmed, lower-cased address (a technical matching copy)."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(emails_)).to_pylist()
    return pa.array([hashlib.sha256(e.encode()).hexdigest() for e in lowered], pa.string())


def _per_country(
    lists: list[tuple[str, ...]], country: np.ndarray, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """A random entry of ``lists[country]`` per row, as (flat list, index into it)."""
    flat = [x for lst in lists for x in lst]
    start = np.cumsum([0, *(len(lst) for lst in lists)])[:-1]
    count = np.array([len(lst) for lst in lists])
    return flat, start[country] + rng.integers(0, count[country])


def address(sk: Skeleton, idx: np.ndarray, rng: np.random.Generator) -> dict[str, pa.Array]:
    """Billing street, city, postcode and country of persons (random per call)."""
    country = sk.country[idx]
    cs = places.COUNTRIES
    street = take(*_per_country([c.streets for c in cs], country, rng))
    number = pa.array(rng.integers(1, 240, idx.size)).cast(pa.string())
    suffix = take(("", "", "", "", "a", "b", " bis", "/3"), rng.integers(0, 8, idx.size))
    number = cat(number, suffix)
    first = np.array([c.number_first for c in cs])[country]
    line1 = pick(first, cat(number, " ", street), cat(street, " ", number))
    patterns, which = _per_country([c.postcodes for c in cs], country, rng)
    return {
        "billing_street": line1,
        "billing_city": take(*_per_country([c.cities for c in cs], country, rng)),
        "billing_postcode": fill_patterns(rng, patterns, which),
        "billing_country": take([c.code for c in cs], country),
    }


def people_chunk(sk: Skeleton, lo: int, hi: int, carry: dict[str, Any]) -> pa.Table:
    """Rows ``lo:hi`` of ``people``. ``carry`` passes the duplicated person's address on."""
    rng = stream(sk.seed, 2, lo)
    idx = np.arange(lo, hi)
    email = emails(sk, idx)
    phones, which = _per_country([c.phones for c in places.COUNTRIES], sk.country[idx], rng)
    cols: dict[str, pa.Array] = {
        "person_id": sk.ids["per"].strings(idx),
        "customer_number": cat("C", pa.array(sk.customer_number[idx]).cast(pa.string())),
        "full_name": full_names(sk, idx),
        "email": email,
        "phone": fill_patterns(rng, phones, which),
        **address(sk, idx, rng),
        "date_of_birth": pa.array(sk.dob_days[idx].astype(np.int32), pa.date32()),
        "created_at": seconds(sk.created[idx]),
        "risk_score": pa.array(sk.risk[idx], pa.float64()),
        "segment": take(SEGMENTS, sk.segment[idx]),
        "email_sha256": email_sha256(email),
    }
    table = pa.table(cols)
    dup_of = sk.edge["case_variant_email"]
    keep = ("phone", "billing_street", "billing_city", "billing_postcode", "billing_country")
    if lo <= dup_of < hi:
        carry["dup"] = {k: table[k][dup_of - lo] for k in keep}
    if lo <= sk.dup_row < hi:
        mask = pa.array(idx == sk.dup_row)
        for k, value in carry["dup"].items():
            table = table.set_column(
                table.schema.get_field_index(k), k, pc.if_else(mask, value, table[k])
            )
    return table


def truth_chunk(sk: Skeleton, people: pa.Table, lo: int, hi: int) -> pa.Table:
    """The answer key for tests: each person row with its account and payment ids."""
    a_lo, a_hi = int(sk.acc_first[lo]), int(sk.acc_first[hi])
    acc_idx = np.arange(a_lo, a_hi)
    offs = pa.array((sk.acc_first[lo : hi + 1] - a_lo).astype(np.int32))
    acc_ids = pa.ListArray.from_arrays(offs, sk.ids["acc"].strings(acc_idx))
    cust = sk.acc_cust[acc_idx]
    paying = np.concatenate([[0], np.cumsum(cust >= 0)])
    pay_offs = pa.array(paying[sk.acc_first[lo : hi + 1] - a_lo].astype(np.int32))
    pay = pa.ListArray.from_arrays(pay_offs, sk.ids["cus"].strings(cust[cust >= 0]))
    dup = np.full(hi - lo, None, dtype=object)
    if lo <= sk.dup_row < hi:
        dup[sk.dup_row - lo] = sk.ids["per"].one(sk.edge["case_variant_email"])
    return pa.table(
        {
            "person_id": people["person_id"],
            "customer_number": people["customer_number"],
            "full_name": people["full_name"],
            "email": people["email"],
            "account_ids": acc_ids,
            "payment_customer_ids": pay,
            "duplicate_of": pa.array(dup, pa.string()),
        }
    )
