"""The chunked build stages: the CRM (with the test answer key) and the payment store.

Both walk the people in chunks of ``CHUNK`` rows; each chunk is generated from the
skeleton alone, so the two stages can run in different processes and agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from . import accounts, crm_extra, payments, people
from .payments_store import PaymentsWriter, count_rows
from .sizes import CHUNK
from .skeleton import Skeleton
from .sql import CrmSink

Progress = Callable[[str, int, int], None]


def write_crm(sk: Skeleton, root: Path, url: str, progress: Progress | None) -> dict[str, int]:
    """Load the CRM tables at ``url`` and write ``root/people.parquet``; row counts."""
    crm = CrmSink(url)
    counts = dict.fromkeys(("people", "accounts", "support_tickets", "marketing_consents"), 0)
    truth: pq.ParquetWriter | None = None
    carry: dict[str, Any] = {}
    for lo in range(0, sk.rows, CHUNK):
        hi = min(lo + CHUNK, sk.rows)
        rows = people.people_chunk(sk, lo, hi, carry)
        tables = {
            "people": rows,
            "accounts": accounts.personal_accounts(sk, lo, hi),
            "support_tickets": crm_extra.tickets(sk, lo, hi),
            "marketing_consents": crm_extra.consents(sk, lo, hi),
        }
        for name, table in tables.items():
            crm.write(name, table)
            counts[name] += table.num_rows
        answer = people.truth_chunk(sk, rows, lo, hi)
        truth = truth or pq.ParquetWriter(root / "people.parquet", answer.schema)
        truth.write_table(answer)
        if progress:
            progress("crm", hi, sk.rows)
    tables = {
        "accounts": accounts.shared_accounts(sk),
        "organisations": crm_extra.organisations(sk),
        "org_members": crm_extra.org_members(sk),
    }
    for name, table in tables.items():
        crm.write(name, table)
        counts[name] = counts.get(name, 0) + table.num_rows
    if truth is not None:
        truth.close()
    crm.finish()
    return counts


def write_payments(sk: Skeleton, root: Path, progress: Progress | None) -> dict[str, int]:
    """Write ``root/payments.sqlite``; row counts as ``payment_<table>``."""
    path = root / "payments.sqlite"
    writer = PaymentsWriter(path)
    counters = payments.Counters()
    carry: dict[str, Any] = {}
    for lo in range(0, sk.rows, CHUNK):
        hi = min(lo + CHUNK, sk.rows)
        rows = people.people_chunk(sk, lo, hi, carry)
        holders = payments.personal_holders(sk, rows, lo, hi)
        writer.write(payments.payment_tables(sk, holders, counters, lo))
        if progress:
            progress("payments", hi, sk.rows)
    writer.write(payments.payment_tables(sk, payments.shared_holders(sk), counters, 1 << 40))
    writer.close()
    return {f"payment_{k}": v for k, v in count_rows(path).items()}
