"""The payment provider's records: customers, payment methods, charges, invoices.

One payment customer per paying account (any plan but ``free``). Amounts are integers
in the currency's minor unit (cents), times are unix seconds. Every customer has at
least one charge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import names, places
from .crm_extra import org_names
from .people import address
from .sizes import DAY, REF_TS
from .skeleton import Skeleton
from .vec import cat, fill_patterns, hex_strings, pick, seconds, stream, take, zero_pad

_BRANDS = ("visa", "mastercard", "amex")
_BINS = ("4#####", "51####", "52####", "53####", "54####", "55####", "34####", "37####")
_CHARGE_STATUS = ("succeeded", "failed", "refunded")
_INVOICE_STATUS = ("paid", "open", "paid")
_MONTH = 30 * DAY
_CURRENCIES = tuple(c.currency for c in places.COUNTRIES)
_PRICE = np.array(
    [
        [round(p * places.CURRENCY_RATE[c.currency]) for c in places.COUNTRIES]
        for p in places.PLAN_PRICE_EUR_CENTS
    ]
)


@dataclass
class Counters:
    """Running id counters: payment methods and charges are numbered across chunks."""

    pm: int = 0
    ch: int = 0


@dataclass
class Holders:
    """Who the paying accounts belong to, aligned with the account indices."""

    acc: np.ndarray
    country: np.ndarray
    name: pa.Array
    email: pa.Array
    addr: dict[str, pa.Array]


def _customers(sk: Skeleton, h: Holders, rng: np.random.Generator) -> pa.Table:
    created = np.minimum(
        sk.acc_created[h.acc] + rng.integers(0, 20 * DAY, h.acc.size), REF_TS - DAY
    )
    return pa.table(
        {
            "id": sk.ids["cus"].strings(sk.acc_cust[h.acc]),
            "email": h.email,
            "name": h.name,
            "line1": h.addr["billing_street"],
            "city": h.addr["billing_city"],
            "postal_code": h.addr["billing_postcode"],
            "country": h.addr["billing_country"],
            "created": pa.array(created, pa.int64()),
        }
    )


def payment_tables(sk: Skeleton, h: Holders, counters: Counters, chunk: int) -> dict[str, pa.Table]:
    """All provider records of the paying accounts ``h.acc``."""
    rng = stream(sk.seed, 7, chunk)
    customers = _customers(sk, h, rng)
    nc = h.acc.size
    c_created = customers["created"].to_numpy()
    cust_ids = customers["id"]

    n_pm = 1 + (rng.random(nc) < 0.3)
    pm_cust = np.repeat(np.arange(nc), n_pm)
    pm_first = counters.pm + np.concatenate([[0], np.cumsum(n_pm)[:-1]])
    pm_num = np.arange(counters.pm, counters.pm + pm_cust.size)
    counters.pm += pm_cust.size
    brand = rng.choice(3, pm_cust.size, p=[0.55, 0.35, 0.10])
    bin_kind = np.select(
        [brand == 0, brand == 1],
        [0, 1 + rng.integers(0, 5, brand.size)],
        6 + rng.integers(0, 2, brand.size),
    )
    pm_created = c_created[pm_cust] + (
        rng.random(pm_cust.size) * (REF_TS - c_created[pm_cust]) * 0.2
    ).astype(np.int64)
    methods = pa.table(
        {
            "id": sk.ids["pm"].strings(pm_num),
            "customer": cust_ids.take(pa.array(pm_cust)),
            "brand": take(_BRANDS, brand),
            "last4": fill_patterns(rng, ["####"], np.zeros(pm_cust.size, np.int64)),
            "bin": fill_patterns(rng, _BINS, bin_kind),
            "exp_month": pa.array(rng.integers(1, 13, pm_cust.size), pa.int64()),
            "exp_year": pa.array(rng.integers(2025, 2032, pm_cust.size), pa.int64()),
            "created": pa.array(pm_created, pa.int64()),
        }
    )

    months = (REF_TS - c_created) // _MONTH + 1
    n_ch = np.clip(rng.poisson(sk.size.charges_per_customer, nc), 1, months)
    ch_cust = np.repeat(np.arange(nc), n_ch)
    rank = np.arange(ch_cust.size) - np.repeat(np.cumsum(n_ch) - n_ch, n_ch)
    ch_num = np.arange(counters.ch, counters.ch + ch_cust.size)
    counters.ch += ch_cust.size
    back = n_ch[ch_cust] - rank
    created = np.maximum(
        REF_TS - back * _MONTH + rng.integers(0, DAY, ch_cust.size), c_created[ch_cust]
    )
    plan = sk.acc_plan[h.acc][ch_cust]
    country = h.country[ch_cust]
    amount = _PRICE[plan, country]
    prorated = rng.random(ch_cust.size) < 0.1
    amount = np.where(prorated, np.round(amount * rng.uniform(0.3, 1, amount.size)), amount)
    amount = amount.astype(np.int64)
    status = rng.choice(3, ch_cust.size, p=[0.9, 0.06, 0.04])
    plan_label = take([p.capitalize() for p in places.PLAN_NAMES], plan)
    month = pc.strftime(seconds(created), format="%Y-%m")
    pm_of = pm_first[ch_cust] + rank % n_pm[ch_cust]
    charges = pa.table(
        {
            "id": sk.ids["ch"].strings(ch_num),
            "customer": cust_ids.take(pa.array(ch_cust)),
            "amount": pa.array(amount, pa.int64()),
            "currency": take(_CURRENCIES, country),
            "status": take(_CHARGE_STATUS, status),
            "description": cat("Infuze Cloud ", plan_label, " plan – ", month),
            "payment_method": sk.ids["pm"].strings(pm_of),
            "created": pa.array(created, pa.int64()),
        }
    )
    cus_key = sk.ids["cus"].values(sk.acc_cust[h.acc])
    invoices = pa.table(
        {
            "id": sk.ids["in"].strings(ch_num),
            "customer": charges["customer"],
            "number": cat(hex_strings(cus_key[ch_cust], 8, upper=True), "-", zero_pad(rank + 1, 4)),
            "amount_due": pa.array(amount, pa.int64()),
            "amount_paid": pa.array(np.where(status == 1, 0, amount), pa.int64()),
            "currency": charges["currency"],
            "status": take(_INVOICE_STATUS, status),
            "period_start": pa.array(created - _MONTH, pa.int64()),
            "period_end": pa.array(created, pa.int64()),
            "created": pa.array(created - 3600, pa.int64()),
        }
    )
    return {
        "customers": customers,
        "payment_methods": methods,
        "charges": charges,
        "invoices": invoices,
    }


def personal_holders(sk: Skeleton, people: pa.Table, lo: int, hi: int) -> Holders:
    """The paying personal accounts of persons ``lo:hi`` and their CRM details."""
    acc = np.arange(int(sk.acc_first[lo]), int(sk.acc_first[hi]))
    acc = acc[sk.acc_pay[acc]]
    local = pa.array(sk.acc_person[acc] - lo)
    email = people["email"].take(local)
    # The provider keeps the case-variant person's address in lower case.
    twin = sk.acc_person[acc] == sk.edge["case_variant_email"]
    email = pick(twin, pc.utf8_lower(email), email)
    addr = {
        k: people[k].take(local)
        for k in ("billing_street", "billing_city", "billing_postcode", "billing_country")
    }
    return Holders(
        acc, sk.country[sk.acc_person[acc]], people["full_name"].take(local), email, addr
    )


def shared_holders(sk: Skeleton) -> Holders:
    """The paying org-shared accounts: billed to the organisation."""
    rng = stream(sk.seed, 7, 1_000_000_007)
    acc = np.arange(int(sk.n_personal[0]), sk.n_accounts)
    acc = acc[sk.acc_pay[acc]]
    org = sk.acc_org[acc]
    lead = rng.integers(0, sk.n_people, acc.size)  # borrow a country for the address
    l_n, s_n = len(names.LAST_NAMES), len(names.ORG_SUFFIXES)
    word = take(names.LAST_SLUGS, sk.org_name[org] // s_n // (l_n + 1))
    tag = pc.utf8_slice_codeunits(sk.ids["org"].strings(org), 4, 10)
    email = cat("billing@", word, "-", tag, ".example")
    return Holders(acc, sk.country[lead], org_names(sk, org), email, address(sk, lead, rng))
