"""The Art. 12(3) clock: calendar months, end of day UTC, one two-month extension."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from request_store.deadlines import (
    add_months,
    classify,
    days_left,
    due_soon_from,
    end_of_day,
    extended_deadline,
    legal_deadline,
)


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (date(2026, 1, 15), date(2026, 2, 15)),
        (date(2026, 1, 31), date(2026, 2, 28)),  # no 31 Feb: the month's last day
        (date(2028, 1, 31), date(2028, 2, 29)),  # leap year
        (date(2026, 1, 29), date(2026, 2, 28)),
        (date(2028, 1, 29), date(2028, 2, 29)),
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 2, 28), date(2026, 3, 28)),  # not "end of month to end of month"
        (date(2026, 12, 31), date(2027, 1, 31)),  # across the year
        (date(2026, 5, 31), date(2026, 6, 30)),
    ],
)
def test_one_calendar_month_clamped_to_the_last_day(received: date, due: date) -> None:
    assert add_months(received, 1) == due
    deadline = legal_deadline(datetime.combine(received, datetime.min.time(), UTC))
    assert deadline == datetime(due.year, due.month, due.day, 23, 59, 59, tzinfo=UTC)


def test_deadline_is_the_end_of_the_day_whatever_the_hour_of_receipt() -> None:
    assert legal_deadline(at(2026, 1, 31, 0, 0, 0)) == end_of_day(date(2026, 2, 28))
    assert legal_deadline(at(2026, 1, 31, 23, 59, 59)) == end_of_day(date(2026, 2, 28))
    assert end_of_day(date(2026, 2, 28)).isoformat() == "2026-02-28T23:59:59+00:00"


def test_receipt_day_is_taken_in_utc() -> None:
    # 31 Jan 22:30 in UTC-02:00 is 1 Feb 00:30 UTC: the month runs from 1 Feb
    late_evening = datetime(2026, 1, 31, 22, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert legal_deadline(late_evening) == end_of_day(date(2026, 3, 1))
    # 1 Feb 01:00 in UTC+02:00 is 31 Jan 23:00 UTC
    early = datetime(2026, 2, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert legal_deadline(early) == end_of_day(date(2026, 2, 28))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        legal_deadline(datetime(2026, 1, 31, 12))
    with pytest.raises(ValueError, match="time zone"):
        days_left(end_of_day(date(2026, 1, 1)), datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("original", "extended"),
    [
        (date(2026, 2, 28), date(2026, 4, 28)),  # from the original deadline, not receipt
        (date(2026, 2, 15), date(2026, 4, 15)),
        (date(2026, 12, 31), date(2027, 2, 28)),
        (date(2027, 12, 31), date(2028, 2, 29)),
        (date(2026, 3, 31), date(2026, 5, 31)),
        (date(2026, 4, 30), date(2026, 6, 30)),
    ],
)
def test_extension_adds_two_calendar_months(original: date, extended: date) -> None:
    assert extended_deadline(end_of_day(original)) == end_of_day(extended)


def test_days_left_counts_calendar_days_in_utc() -> None:
    due = end_of_day(date(2026, 2, 28))
    assert days_left(due, at(2026, 2, 1)) == 27
    assert days_left(due, at(2026, 2, 28, 0, 0)) == 0
    assert days_left(due, at(2026, 2, 28, 23, 59, 59)) == 0
    assert days_left(due, at(2026, 3, 1, 0, 0)) == -1


def test_due_soon_from_day_25_after_receipt() -> None:
    received = at(2026, 1, 1, 9)
    deadline = legal_deadline(received)  # 1 Feb
    assert due_soon_from(received, deadline) == at(2026, 1, 26, 0, 0)
    assert classify(received, deadline, None, at(2026, 1, 25, 23, 59, 59)) == "on_time"
    assert classify(received, deadline, None, at(2026, 1, 26, 0, 0)) == "due_soon"
    assert classify(received, deadline, None, at(2026, 2, 1, 23, 59, 59)) == "due_soon"
    assert classify(received, deadline, None, at(2026, 2, 2, 0, 0)) == "overdue"


def test_due_soon_in_february_still_starts_before_the_deadline() -> None:
    received = at(2026, 1, 31)
    deadline = legal_deadline(received)  # 28 Feb
    assert due_soon_from(received, deadline) == at(2026, 2, 25, 0, 0)
    assert classify(received, deadline, None, at(2026, 2, 24, 23)) == "on_time"
    assert classify(received, deadline, None, at(2026, 2, 25, 1)) == "due_soon"


def test_an_extended_request_is_due_soon_in_its_final_month_only() -> None:
    received = at(2026, 1, 1)
    deadline = legal_deadline(received)  # 1 Feb
    extended = extended_deadline(deadline)  # 1 Apr
    assert extended == end_of_day(date(2026, 4, 1))
    assert classify(received, deadline, extended, at(2026, 1, 28)) == "on_time"
    assert classify(received, deadline, extended, at(2026, 2, 10)) == "on_time"  # not overdue
    assert classify(received, deadline, extended, at(2026, 3, 25, 23)) == "on_time"
    assert classify(received, deadline, extended, at(2026, 3, 26, 0)) == "due_soon"
    assert classify(received, deadline, extended, at(2026, 4, 2, 0)) == "overdue"
