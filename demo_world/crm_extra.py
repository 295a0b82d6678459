"""CRM tables besides people and accounts: organisations, members, tickets, consents."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import names
from .people import emails, full_names
from .sizes import REF_TS
from .skeleton import ROLES, Skeleton
from .vec import cat, pick, seconds, stream, take

_PLAIN = (
    (
        "Cannot log in after password reset",
        "Hi,\nsince resetting my password yesterday I can't log in any more. The page just "
        "reloads. Can you help?\nThanks",
    ),
    (
        "Invoice shows wrong VAT number",
        "Hello, the invoice for last month shows an old VAT number. Could you reissue it?",
    ),
    (
        "VM stuck in 'stopping' state",
        'My instance has been stuck in "stopping" for 40 minutes. I need it back urgently 🙏',
    ),
    (
        "Bitte Rechnungsadresse ändern",
        "Guten Tag,\nbitte ändern Sie die Rechnungsadresse meines Kontos.\nFreundliche Grüße",
    ),
    (
        "Question about data retention",
        "How long do you keep logs of my API calls? I could not find it in the privacy policy.",
    ),
    (
        "Remboursement demandé",
        "Bonjour, j'ai été débité deux fois ce mois-ci. Merci de me rembourser le doublon.",
    ),
    (
        "Upload fails for large files",
        "Uploads above 2 GB fail with error 413. Is there a limit on my plan?",
    ),
    (
        "Delete my old bucket",
        "Please delete the bucket I created for testing last year; I no longer need it.",
    ),
    (
        "2FA device lost",
        "I lost my phone with the authenticator app. How can I get back into my account?",
    ),
    (
        "DNS change not propagating",
        "I updated the A record 6 hours ago but the old IP is still served.\n\n-- \n"
        "Sent from my phone",
    ),
    (
        "Upgrade to business plan",
        "We'd like to upgrade to the business plan. Do you offer annual billing?",
    ),
    ("Câu hỏi về hóa đơn", "Xin chào, tôi muốn hỏi về hóa đơn tháng trước. Cảm ơn!"),
)
_MENTION = (
    (
        "Access for a colleague",
        "Hi, my colleague ",
        " can't access our shared project. Could you add them to our team?",
    ),
    (
        "Please transfer ownership",
        "I'm leaving the company. Please transfer the account to ",
        ", who will take over billing from next month.",
    ),
    (
        "Wrong person on invoice",
        "The last invoice was sent to ",
        " by mistake. Please correct the recipient.",
    ),
    (
        "Ticket on behalf of a friend",
        "Writing on behalf of my friend ",
        " who cannot log in since last week and asked me to reach out.",
    ),
    (
        "Shared login problem",
        "Both I and ",
        " use the team login and now get locked out after the MFA change.",
    ),
)
_NOTES = (
    "Verified identity via email link.",
    "Escalated to tier 2.",
    "Customer frustrated; offered 10% credit.",
    "Duplicate of an earlier ticket.",
    "Resolved by clearing the session cache.",
    "Refund issued, see billing.",
    "Waiting for customer reply.",
    "Known incident INC-2291.",
    "",
)
_STATUS = ("open", "pending", "solved", "closed")
_CHANNELS = ("email", "sms", "phone", "post")
_PURPOSES = ("newsletter", "product_updates", "partner_offers", "surveys", "event_invitations")
_SOURCES = ("signup_form", "preference_centre", "support_agent", "import_2019_crm", "mobile_app")


def org_names(sk: Skeleton, org: np.ndarray) -> pa.Array:
    s_n, l_n = len(names.ORG_SUFFIXES), len(names.LAST_NAMES)
    code = sk.org_name[org]
    rest = code // s_n
    second = rest % (l_n + 1)
    other = take(names.LAST_NAMES, np.maximum(second - 1, 0))
    return cat(
        take(names.LAST_NAMES, rest // (l_n + 1)),
        pick(second > 0, cat(" & ", other), ""),
        " ",
        take(names.ORG_SUFFIXES, code % s_n),
    )


def organisations(sk: Skeleton) -> pa.Table:
    org = np.arange(sk.org_created.size)
    return pa.table(
        {
            "org_id": sk.ids["org"].strings(org),
            "name": org_names(sk, org),
            "created_at": seconds(sk.org_created),
        }
    )


def org_members(sk: Skeleton) -> pa.Table:
    return pa.table(
        {
            "org_id": sk.ids["org"].strings(sk.mem_org),
            "person_id": sk.ids["per"].strings(sk.mem_person),
            "role": take(ROLES, sk.mem_role),
            "joined_at": seconds(sk.mem_joined),
        }
    )


def _since(rng: np.random.Generator, start: np.ndarray) -> np.ndarray:
    return start + (rng.random(start.size) * (REF_TS - start)).astype(np.int64)


def tickets(sk: Skeleton, lo: int, hi: int) -> pa.Table:
    """Support tickets of persons ``lo:hi``; some name another person of the world."""
    rng = stream(sk.seed, 4, lo)
    t_lo, t_hi = int(sk.ticket_first[lo]), int(sk.ticket_first[hi])
    tid = np.arange(t_lo, t_hi)
    owner = np.repeat(np.arange(lo, hi), sk.tickets_n[lo:hi])
    n = tid.size
    mention = rng.random(n) < 0.04
    other = rng.integers(0, sk.n_people, n)
    twin = sk.edge["case_variant_email"]  # the duplicate row must not name its own twin
    clash = (other == owner) | ((owner == sk.dup_row) & (other == twin))
    other = np.where(clash, (other + 1) % sk.n_people, other)
    edge_owner = sk.edge["ticket_mentions_other"]
    if lo <= edge_owner < hi:
        first = int(sk.ticket_first[edge_owner]) - t_lo
        mention[first], other[first] = True, sk.edge["mentioned"]
    plain = rng.integers(0, len(_PLAIN), n)
    tmpl = rng.integers(0, len(_MENTION), n)
    other_name = full_names(sk, other)
    who = cat(other_name, " (", emails(sk, other), ")")
    m_body = cat(take([m[1] for m in _MENTION], tmpl), who, take([m[2] for m in _MENTION], tmpl))
    note = take(_NOTES, rng.integers(0, len(_NOTES), n))
    called = mention & (rng.random(n) < 0.5)
    return pa.table(
        {
            "ticket_id": sk.ids["tkt"].strings(tid),
            "person_id": sk.ids["per"].strings(owner),
            "opened_at": seconds(_since(rng, sk.created[owner])),
            "subject": pick(
                mention, take([m[0] for m in _MENTION], tmpl), take([p[0] for p in _PLAIN], plain)
            ),
            "body": pick(mention, m_body, take([p[1] for p in _PLAIN], plain)),
            "status": take(_STATUS, rng.choice(4, n, p=[0.1, 0.1, 0.3, 0.5])),
            "agent_notes": pick(called, cat("Called ", other_name, " to confirm."), note),
        }
    )


def consents(sk: Skeleton, lo: int, hi: int) -> pa.Table:
    """Marketing consent records of persons ``lo:hi``."""
    rng = stream(sk.seed, 5, lo)
    cid = np.arange(int(sk.consent_first[lo]), int(sk.consent_first[hi]))
    person = np.repeat(np.arange(lo, hi), sk.consents_n[lo:hi])
    n = cid.size
    return pa.table(
        {
            "consent_id": sk.ids["con"].strings(cid),
            "person_id": sk.ids["per"].strings(person),
            "channel": take(_CHANNELS, rng.choice(4, n, p=[0.55, 0.2, 0.1, 0.15])),
            "purpose": take(_PURPOSES, rng.integers(0, len(_PURPOSES), n)),
            "granted": pa.array(rng.random(n) < 0.7),
            "recorded_at": seconds(_since(rng, sk.created[person])),
            "source": take(_SOURCES, rng.integers(0, len(_SOURCES), n)),
        }
    )
