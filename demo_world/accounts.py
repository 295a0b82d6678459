"""The ``accounts`` table: personal accounts by person chunk, then org-shared accounts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import places
from .people import emails
from .sizes import REF_TS
from .skeleton import Skeleton
from .vec import cat, fill_patterns, pick, seconds, stream, take

_HASHES = (
    "$argon2id$v=19$m=65536,t=3,p=4$" + "%" * 22 + "$" + "%" * 43,
    "$argon2id$v=19$m=19456,t=2,p=1$" + "%" * 22 + "$" + "%" * 43,
    "$argon2i$v=19$m=4096,t=3,p=1$" + "%" * 22 + "$" + "%" * 43,
)
_THEMES = ("light", "dark", "system", "high-contrast")
_EXTRAS = (
    "",
    "",
    ',"beta_features":["gpu-instances","ipv6-only"]',
    ',"default_region":"eu-central-1"',
    ',"default_region":"ap-southeast-1","units":"metric"',
    ',"dashboard":{"pinned":["vm","dns"],"compact":true}',
)
_LOGIN_TAGS = ("", "+work", "+lab")


def _secrets(rng: np.random.Generator, n: int, plan: np.ndarray) -> dict[str, pa.Array]:
    hashes = fill_patterns(rng, _HASHES, rng.choice(3, n, p=[0.8, 0.15, 0.05]))
    mfa = fill_patterns(rng, ["&" * 32], np.zeros(n, np.int64))
    has_mfa = rng.random(n) < np.where(plan >= 3, 0.7, 0.25)
    return {"password_hash": hashes, "mfa_secret": pc.if_else(pa.array(has_mfa), mfa, None)}


def _preferences(rng: np.random.Generator, country: np.ndarray) -> pa.Array:
    n = country.size
    cs = places.COUNTRIES
    flags = take(("false", "true"), rng.integers(0, 2, (2, n)).ravel())
    return cat(
        '{"language":"',
        take([c.language for c in cs], country),
        '","timezone":"',
        take([c.timezone for c in cs], country),
        '","theme":"',
        take(_THEMES, rng.integers(0, len(_THEMES), n)),
        '","notifications":{"email":',
        flags.slice(0, n),
        ',"sms":',
        flags.slice(n, n),
        "}",
        take(_EXTRAS, rng.integers(0, len(_EXTRAS), n)),
        "}",
    )


def _times(rng: np.random.Generator, created: np.ndarray) -> dict[str, pa.Array]:
    last = created + (rng.random(created.size) * (REF_TS - created)).astype(np.int64)
    never = rng.random(created.size) < 0.08
    return {
        "created_at": seconds(created),
        "last_login_at": pc.if_else(pa.array(never), None, seconds(last)),
    }


def _payment_ids(sk: Skeleton, acc: np.ndarray) -> pa.Array:
    cust = sk.acc_cust[acc]
    ids = sk.ids["cus"].strings(np.maximum(cust, 0))
    return pc.if_else(pa.array(cust >= 0), ids, None)


def _plans(sk: Skeleton, acc: np.ndarray) -> pa.Array:
    return take(places.PLAN_NAMES, sk.acc_plan[acc])


def personal_accounts(sk: Skeleton, lo: int, hi: int) -> pa.Table:
    """Accounts of persons ``lo:hi`` (contiguous: accounts are ordered by person)."""
    rng = stream(sk.seed, 3, lo)
    acc = np.arange(int(sk.acc_first[lo]), int(sk.acc_first[hi]))
    person = sk.acc_person[acc]
    rank = acc - sk.acc_first[person]
    lower = emails(sk, person, lower=True)
    parts = pc.split_pattern(lower, "@", max_splits=1)
    local = pc.list_element(parts, 0)
    domain = pc.list_element(parts, 1)
    tag = take(_LOGIN_TAGS, rank)
    handle = (rank == 0) & (rng.random(acc.size) < 0.2)
    login = pick(handle, local, cat(local, tag, "@", domain))
    return pa.table(
        {
            "account_id": sk.ids["acc"].strings(acc),
            "person_id": sk.ids["per"].strings(person),
            "org_id": pa.nulls(acc.size, pa.string()),
            "login_name": login,
            **_secrets(rng, acc.size, sk.acc_plan[acc]),
            "preferences": _preferences(rng, sk.country[person]),
            "plan": _plans(sk, acc),
            "is_shared": pa.array(np.zeros(acc.size, dtype=bool)),
            **_times(rng, sk.acc_created[acc]),
            "payment_customer_id": _payment_ids(sk, acc),
        }
    )


def shared_accounts(sk: Skeleton) -> pa.Table:
    """One shared account per organisation that has one: ``person_id`` NULL."""
    rng = stream(sk.seed, 3, 1_000_000_007)
    acc = np.arange(int(sk.n_personal[0]), sk.n_accounts)
    org = sk.acc_org[acc]
    org_hex = pc.utf8_slice_codeunits(sk.ids["org"].strings(org), 4)
    return pa.table(
        {
            "account_id": sk.ids["acc"].strings(acc),
            "person_id": pa.nulls(acc.size, pa.string()),
            "org_id": sk.ids["org"].strings(org),
            "login_name": cat("team-", org_hex),
            **_secrets(rng, acc.size, sk.acc_plan[acc]),
            "preferences": _preferences(rng, rng.integers(0, len(places.COUNTRIES), acc.size)),
            "plan": _plans(sk, acc),
            "is_shared": pa.array(np.ones(acc.size, dtype=bool)),
            **_times(rng, sk.acc_created[acc]),
            "payment_customer_id": _payment_ids(sk, acc),
        }
    )
