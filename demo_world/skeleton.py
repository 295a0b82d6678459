"""The world's skeleton: every numeric choice that links tables, made once for all rows.

The skeleton holds small numeric arrays only (name indices, countries, account owners,
event counts, organisation memberships ...). Text columns are materialized from it chunk
by chunk (``people``, ``accounts``, ``crm_extra``, ``payments``), so memory stays bounded.
Person row ``n_people`` is the deliberate duplicate of the ``case_variant_email`` person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from . import names, places
from .sizes import DAY, EARLIEST_TS, REF_DAY, REF_TS, WorldSize
from .vec import IdSpace, crc32_rows, offsets, stream

EDGE_PEOPLE = (
    "under_16",
    "multi_account",
    "no_payments",
    "no_events",
    "no_objects",
    "case_variant_email",
    "ticket_mentions_other",
    "heavy_user",
    "mentioned",
)
EPOCH_DAY = date(1970, 1, 1)
ROLES = ("owner", "admin", "member", "billing")
PREFIXES = ("per", "acc", "org", "tkt", "con", "evt", "cus", "pm", "ch", "in")


@dataclass
class Skeleton:
    seed: int
    size: WorldSize
    n_people: int
    ids: dict[str, IdSpace]
    edge: dict[str, int]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def rows(self) -> int:
        return self.n_people + 1

    @property
    def dup_row(self) -> int:
        return self.n_people

    @property
    def n_accounts(self) -> int:
        return int(self.acc_person.size)


def _names(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f_n, l_n, m_n = len(names.FIRST_NAMES), len(names.LAST_NAMES), len(names.MIDDLE_INITIALS)
    pairs = f_n * l_n
    n_mid = max(round(n * 0.07), n - pairs // 2)
    if n_mid > pairs * m_n * 0.9:
        raise ValueError("world too large for the name lists")
    plain = rng.choice(pairs, n - n_mid, replace=False)
    mid = rng.choice(pairs * m_n, n_mid, replace=False)
    pair = np.concatenate([plain, mid % pairs])
    middle = np.concatenate([np.zeros(n - n_mid, np.int64), mid // pairs + 1])
    perm = rng.permutation(n)
    pair, middle = pair[perm], middle[perm]
    return pair // l_n, middle, pair % l_n


def make_skeleton(seed: int, size: WorldSize) -> Skeleton:
    """Draw every linking choice of the world from ``seed``."""
    rng = stream(seed, 1)
    n = size.people
    rows = n + 1
    a: dict[str, np.ndarray] = {}
    picks = rng.choice(n, len(EDGE_PEOPLE), replace=False)
    edge = {name: int(p) for name, p in zip(EDGE_PEOPLE, picks, strict=True)}
    dup_of = edge["case_variant_email"]

    def with_dup(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values, values[dup_of : dup_of + 1]])

    first, middle, last = _names(rng, n)
    a["first"], a["middle"], a["last"] = with_dup(first), with_dup(middle), with_dup(last)
    a["email_style"] = with_dup(rng.choice(4, n, p=[0.5, 0.2, 0.2, 0.1]))
    a["email_num"] = with_dup(rng.integers(10, 100, n))
    a["email_domain"] = with_dup(rng.integers(0, len(names.EMAIL_DOMAINS), n))
    case = rng.choice(4, n, p=[0.8, 0.12, 0.05, 0.03])
    case[dup_of] = 2  # Anna.Lee@Example.com in the CRM, anna.lee@example.com at payments
    a["email_case"] = np.concatenate([case, [3]])  # the duplicate row: ANNA.LEE@example.com
    weights = np.array([c.weight for c in places.COUNTRIES])
    a["country"] = with_dup(rng.choice(len(weights), n, p=weights / weights.sum()))

    created = rng.integers(EARLIEST_TS, REF_TS - 30 * DAY, n)
    created[edge["heavy_user"]] = min(created[edge["heavy_user"]], REF_TS - 1100 * DAY)
    created[edge["under_16"]] = REF_TS - int(rng.integers(100, 300)) * DAY
    dup_created = min(created[dup_of] + int(rng.integers(30, 400)) * DAY, REF_TS - DAY)
    a["created"] = np.concatenate([created, [dup_created]])
    age = np.clip(rng.normal(41, 13, n), 18, 85)
    ref_days = (REF_DAY - EPOCH_DAY).days
    dob = ref_days - np.floor(age * 365.2425).astype(np.int64)
    young = REF_DAY.replace(year=REF_DAY.year - 14)
    dob[edge["under_16"]] = (young - EPOCH_DAY).days - 100  # 14 years and 100 days old
    a["dob_days"] = with_dup(dob)
    a["customer_number"] = rng.choice(90_000_000, rows, replace=False) + 10_000_000
    a["risk"] = np.round(rng.beta(2, 8, rows), 4)
    a["segment"] = rng.integers(0, 6, rows)

    _accounts(rng, edge, a, n)
    _orgs(rng, edge, a, n)
    _events(rng, size, edge, a)
    tickets = np.minimum(rng.poisson(size.tickets_per_person, rows), 12)
    consents = np.minimum(rng.poisson(size.consents_per_person, rows), 8)
    tickets[edge["ticket_mentions_other"]] = max(1, tickets[edge["ticket_mentions_other"]])
    tickets[edge["heavy_user"]] = max(2, tickets[edge["heavy_user"]])
    tickets[n] = 1  # the duplicate row was created by a support agent for a ticket
    consents[edge["heavy_user"]] = max(2, consents[edge["heavy_user"]])
    consents[n] = 0
    a["tickets_n"], a["consents_n"] = tickets, consents
    a["ticket_first"], a["consent_first"] = offsets(tickets), offsets(consents)
    ids = {p: IdSpace(seed, p) for p in PREFIXES}
    acc_matrix = ids["acc"].matrix(np.arange(a["acc_person"].size))
    a["acc_bucket"] = (crc32_rows(acc_matrix) % np.uint32(64)).astype(np.int64)
    return Skeleton(seed=seed, size=size, n_people=n, ids=ids, edge=edge, arrays=a)


def _accounts(
    rng: np.random.Generator, edge: dict[str, int], a: dict[str, np.ndarray], n: int
) -> None:
    per = rng.choice(3, n + 1, p=[0.03, 0.87, 0.10])
    per[list(edge.values())] = 1
    per[edge["multi_account"]] = 3
    per[n] = 0
    person = np.repeat(np.arange(n + 1), per)
    first = offsets(per)
    plan = rng.choice(4, person.size, p=[0.35, 0.25, 0.30, 0.10])
    plan[first[edge["no_payments"]]] = 0
    plan[first[edge["heavy_user"]]] = 2
    plan[first[edge["case_variant_email"]]] = 2
    plan[first[edge["multi_account"]] : first[edge["multi_account"]] + 3] = [2, 0, 1]
    p_created = a["created"][person]
    created = p_created + (rng.random(person.size) * (REF_TS - p_created) * 0.5).astype(np.int64)
    created[first[edge["heavy_user"]]] = a["created"][edge["heavy_user"]]
    a["acc_person"], a["acc_plan"], a["acc_created"] = person, plan, created
    a["acc_first"], a["n_personal"] = first, np.array([person.size])


def _orgs(rng: np.random.Generator, edge: dict[str, int], a: dict[str, np.ndarray], n: int) -> None:
    n_orgs = max(2, n // 40)
    l_n, s_n = len(names.LAST_NAMES), len(names.ORG_SUFFIXES)
    a["org_name"] = rng.choice(l_n * (l_n + 1) * s_n, n_orgs, replace=False)
    org_created = rng.integers(EARLIEST_TS, REF_TS - 60 * DAY, n_orgs)
    shared = rng.random(n_orgs) < 0.35
    shared[0] = True  # the shared_org_member organisation
    candidates = np.setdiff1d(np.arange(n), np.array(list(edge.values())))
    n_mem = min(max(n_orgs + 3, round(0.15 * n)), candidates.size)
    person = rng.choice(candidates, n_mem, replace=False)
    org = np.concatenate([np.arange(n_orgs), rng.integers(0, n_orgs, n_mem - n_orgs)])
    org[-2:] = 0
    others = rng.choice([1, 2, 3], n_mem - n_orgs, p=[0.15, 0.75, 0.10])
    role = np.concatenate([np.zeros(n_orgs, np.int64), others])
    since = np.maximum(org_created[org], a["created"][person])
    joined = since + (rng.random(n_mem) * (REF_TS - since)).astype(np.int64)
    a["org_created"], a["org_shared"] = org_created, shared
    a["mem_org"], a["mem_person"], a["mem_role"], a["mem_joined"] = org, person, role, joined
    shared_orgs = np.flatnonzero(shared)
    s_created = org_created[shared_orgs] + (
        rng.random(shared_orgs.size) * (REF_TS - org_created[shared_orgs]) * 0.3
    ).astype(np.int64)
    n_personal = a["acc_person"].size
    a["acc_person"] = np.concatenate([a["acc_person"], np.full(shared_orgs.size, -1)])
    a["acc_org"] = np.concatenate([np.full(n_personal, -1), shared_orgs])
    a["acc_plan"] = np.concatenate([a["acc_plan"], np.full(shared_orgs.size, 4)])
    a["acc_created"] = np.concatenate([a["acc_created"], s_created])
    a["acc_pay"] = a["acc_plan"] != 0
    a["acc_cust"] = np.where(a["acc_pay"], np.cumsum(a["acc_pay"]) - 1, -1)
    a["shared_account"] = n_personal  # index of org 0's shared account
    a["org_account"] = np.full(n_orgs, -1)
    a["org_account"][shared_orgs] = n_personal + np.arange(shared_orgs.size)


def _events(
    rng: np.random.Generator, size: WorldSize, edge: dict[str, int], a: dict[str, np.ndarray]
) -> None:
    n_acc = a["acc_person"].size
    heavy_acc = a["acc_first"][edge["heavy_user"]]
    fixed = np.zeros(n_acc, dtype=bool)
    counts = np.zeros(n_acc, dtype=np.int64)
    no_events = slice(a["acc_first"][edge["no_events"]], a["acc_first"][edge["no_events"] + 1])
    fixed[no_events] = True
    fixed[heavy_acc] = True
    counts[heavy_acc] = size.heavy_events
    shared_acc = int(a["shared_account"])
    fixed[shared_acc] = True
    counts[shared_acc] = max(1, size.heavy_events // 5)
    inactive = rng.random(n_acc) < 0.12
    weight = np.where(inactive | fixed, 0.0, rng.lognormal(0.0, 1.25, n_acc))
    remaining = max(0, size.events_target - int(counts.sum()))
    cap = max(size.heavy_events, 1)
    scale = remaining / max(weight.sum(), 1e-9)
    free = np.zeros(n_acc, dtype=np.int64)
    for _ in range(6):
        free = np.minimum(np.floor(weight * scale), cap).astype(np.int64)
        total = int(free.sum())
        if total == 0 or abs(total - remaining) <= remaining * 0.002:
            break
        scale *= remaining / total
    a["acc_events"] = np.where(fixed, counts, free)
