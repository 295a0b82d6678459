"""The legal clock of Art. 12(3) GDPR: one month from receipt, extendable once by two.

Months are calendar months, not 30 days: the deadline is the same day number in the
next month, or that month's last day when it has no such day (31 Jan -> 28 Feb, or
29 Feb in a leap year; 31 Mar -> 30 Apr). A deadline is the *end* of that day in UTC
(23:59:59Z): the day itself is still on time, whatever the subject's time zone, and
every process (sensor, UI, API) computes the same instant.

An extension adds two further calendar months to the original deadline (not to the
receipt): 31 Jan -> 28 Feb -> 28 Apr. Counting from the original deadline is never
later than counting three months from receipt, so it is the safe reading.

"Due soon" follows the issue's "day 25 of 30": a request is due soon from the start
(00:00Z) of the 25th day after the start of its final month, i.e. after receipt for a
one-month deadline and after the original deadline plus one month for an extended one.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

DeadlineStatus = Literal["on_time", "due_soon", "overdue", "closed"]

DUE_SOON_DAY = 25  # "flags requests nearing their deadline (day 25 of 30)"
DEADLINE_MONTHS = 1  # Art. 12(3): within one month of receipt
EXTENSION_MONTHS = 2  # Art. 12(3): extendable by two further months, once
_END_OF_DAY = time(23, 59, 59, tzinfo=UTC)


def utc(moment: datetime, what: str = "time") -> datetime:
    """``moment`` in UTC; a naive datetime is refused (its zone, hence its day, is unknown)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must carry a time zone")
    return moment.astimezone(UTC)


def add_months(day: date, months: int) -> date:
    """The same day number ``months`` later, clamped to the last day of that month."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def end_of_day(day: date) -> datetime:
    """23:59:59 UTC of ``day``: the last second that is still on time."""
    return datetime.combine(day, _END_OF_DAY)


def legal_deadline(received_at: datetime) -> datetime:
    """End of the day one calendar month after receipt (the receipt's UTC date)."""
    return end_of_day(add_months(utc(received_at, "receipt time").date(), DEADLINE_MONTHS))


def extended_deadline(deadline: datetime) -> datetime:
    """End of the day two calendar months after the original deadline's day."""
    return end_of_day(add_months(utc(deadline, "deadline").date(), EXTENSION_MONTHS))


def due_soon_from(
    received_at: datetime, deadline: datetime, extended: datetime | None = None
) -> datetime:
    """The moment a request starts being due soon (00:00Z, day 25 of its final month)."""
    if extended is None:
        start = utc(received_at, "receipt time").date()
    else:
        start = add_months(utc(deadline, "deadline").date(), EXTENSION_MONTHS - 1)
    return datetime.combine(start + timedelta(days=DUE_SOON_DAY), time(0, tzinfo=UTC))


def days_left(due: datetime, now: datetime) -> int:
    """Whole calendar days (UTC) from ``now`` to the due day: 0 on the day, <0 when late."""
    return (utc(due, "deadline").date() - utc(now, "now").date()).days


def classify(
    received_at: datetime, deadline: datetime, extended: datetime | None, now: datetime
) -> DeadlineStatus:
    """``overdue`` after the (extended) deadline, ``due_soon`` from day 25, else ``on_time``."""
    now = utc(now, "now")
    if now > utc(extended or deadline, "deadline"):
        return "overdue"
    if now >= due_soon_from(received_at, deadline, extended):
        return "due_soon"
    return "on_time"
