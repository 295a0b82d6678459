"""The edge-case subjects listed in ``world.json`` (fake data only).

Each case is ``{"description", "person_ids", "emails", "full_names", "customer_numbers",
"account_ids", "payment_customer_ids", ...}`` with extra keys where a case needs them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import names
from .objects import ObjectSpec
from .people import emails, full_names
from .sizes import REF_DAY
from .skeleton import Skeleton

DESCRIPTIONS = {
    "no_payments": "has accounts, but no payment customer at the provider",
    "no_events": "has an account without any usage event",
    "no_objects": "has an account without any customer file",
    "case_variant_email": (
        "CRM e-mail differs in case from the provider's; a duplicate CRM row for the same "
        "person has the e-mail in yet another case (emails: CRM row, duplicate row)"
    ),
    "multi_account": "one person with three accounts",
    "under_16": "date of birth makes them 14 on the reference date",
    "shared_org_member": "members of an organisation that has a shared account (person_id NULL)",
    "ticket_mentions_other": "a ticket body names another person by full name and e-mail",
    "nobody": "an e-mail address found in no system",
    "heavy_user": "about 1,000 usage events (the typical benchmark subject)",
}


def _strs(arr: Any) -> list[str]:
    return [str(x) for x in arr.to_pylist()]


def describe(sk: Skeleton, persons: list[int]) -> dict[str, list[str]]:
    """Ids, names and e-mail addresses of persons (skeleton row indices)."""
    idx = np.array(persons, dtype=np.int64)
    acc = np.concatenate([np.arange(sk.acc_first[p], sk.acc_first[p + 1]) for p in persons])
    acc = acc.astype(np.int64)
    cust = sk.acc_cust[acc]
    return {
        "person_ids": _strs(sk.ids["per"].strings(idx)),
        "emails": _strs(emails(sk, idx)),
        "full_names": _strs(full_names(sk, idx)),
        "customer_numbers": [f"C{int(c)}" for c in sk.customer_number[idx]],
        "account_ids": _strs(sk.ids["acc"].strings(acc)),
        "payment_customer_ids": _strs(sk.ids["cus"].strings(cust[cust >= 0])),
    }


def _case(name: str, sk: Skeleton, persons: list[int], **extra: Any) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[name], **describe(sk, persons), **extra}


def edge_cases(sk: Skeleton, specs: list[ObjectSpec]) -> dict[str, dict[str, Any]]:
    e = sk.edge
    twin = e["case_variant_email"]
    owner, other = e["ticket_mentions_other"], e["mentioned"]
    org0_members = sorted(int(p) for p in sk.mem_person[sk.mem_org == 0])
    shared_acc = int(sk.shared_account)
    shared_cust = int(sk.acc_cust[shared_acc])
    heavy_acc = int(sk.acc_first[e["heavy_user"]])
    mentioned = describe(sk, [other])
    nobody_tag = sk.ids["per"].one(sk.rows + 1)[4:]  # a counter no person has
    nobody = f"nobody.{nobody_tag}@{names.NOBODY_DOMAIN}"
    under = e["under_16"]
    dob = np.datetime64(int(sk.dob_days[under]), "D")
    return {
        "no_payments": _case("no_payments", sk, [e["no_payments"]]),
        "no_events": _case("no_events", sk, [e["no_events"]]),
        "no_objects": _case("no_objects", sk, [e["no_objects"]]),
        "case_variant_email": _case(
            "case_variant_email",
            sk,
            [twin, sk.dup_row],
            payment_emails=[str(emails(sk, np.array([twin]), lower=True)[0])],
        ),
        "multi_account": _case("multi_account", sk, [e["multi_account"]]),
        "under_16": _case(
            "under_16",
            sk,
            [under],
            date_of_birth=str(dob),
            reference_date=REF_DAY.isoformat(),
            age_on_reference_date=14,
        ),
        "shared_org_member": _case(
            "shared_org_member",
            sk,
            org0_members,
            org_ids=[sk.ids["org"].one(0)],
            shared_account_ids=[sk.ids["acc"].one(shared_acc)],
            shared_payment_customer_ids=[sk.ids["cus"].one(shared_cust)]
            if shared_cust >= 0
            else [],
        ),
        "ticket_mentions_other": _case(
            "ticket_mentions_other",
            sk,
            [owner],
            ticket_ids=[sk.ids["tkt"].one(int(sk.ticket_first[owner]))],
            mentioned_person_ids=mentioned["person_ids"],
            mentioned_full_names=mentioned["full_names"],
            mentioned_emails=mentioned["emails"],
        ),
        "nobody": {
            "description": DESCRIPTIONS["nobody"],
            "person_ids": [],
            "emails": [nobody],
            "full_names": [],
            "customer_numbers": [],
            "account_ids": [],
            "payment_customer_ids": [],
        },
        "heavy_user": _case(
            "heavy_user",
            sk,
            [e["heavy_user"]],
            event_count=int(sk.acc_events[heavy_acc]),
            object_count=sum(1 for s in specs if s.account == heavy_acc),
        ),
    }
