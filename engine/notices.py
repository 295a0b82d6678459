"""Notices for the DPO and the subject that the data itself calls for."""

from __future__ import annotations

import datetime as dt

from engine.staging import Staging

CHILD_AGE = 16


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def notices_for(staging: Staging, as_of: dt.datetime) -> list[dict[str, str]]:
    """``subject_under_16`` when a date of birth makes the subject a child (policy s. 10)."""
    out: list[dict[str, str]] = []
    today = as_of.date()
    for batch in staging.batches("personal", ["date_of_birth"]):
        ages = [_age(dt.date.fromisoformat(v), today) for v in batch.column(0).to_pylist() if v]
        if any(a < CHILD_AGE for a in ages):
            out.append(
                {
                    "code": "subject_under_16",
                    "text": (
                        "Our records give a date of birth under 16. Our services are not meant "
                        "for children (privacy policy section 10): the DPO reviews this account, "
                        "and a request made for a child needs a holder of parental "
                        "responsibility."
                    ),
                }
            )
            break
    return out
