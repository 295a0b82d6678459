"""World sizes and the fixed reference date every age and timestamp derives from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import Any

REFERENCE_DATE = datetime(2026, 6, 30, tzinfo=UTC)
REF_TS = int(REFERENCE_DATE.timestamp())
REF_DAY = date(2026, 6, 30)
EARLIEST_TS = int(datetime(2016, 1, 1, tzinfo=UTC).timestamp())
DAY = 86_400
EVENT_WINDOW = 730 * DAY  # events occur in the two years before the reference date
HEAVY_EVENTS = 1_000
CHUNK = 100_000  # people per generation chunk (fixed: part of the deterministic output)
MIN_PEOPLE = 30
PARALLEL_FROM = 50_000  # people: from here on the build uses child processes


@dataclass(frozen=True)
class WorldSize:
    """How big a world is. ``people`` counts distinct persons (the CRM has one more row:
    the deliberate duplicate of ``case_variant_email``)."""

    people: int
    events_target: int
    objects: int
    tickets_per_person: float = 0.8
    consents_per_person: float = 2.0
    charges_per_customer: float = 6.0
    name: str = "custom"

    @property
    def heavy_events(self) -> int:
        """Events of the ``heavy_user`` (about 1,000; less in very small worlds)."""
        if self.events_target >= 10 * HEAVY_EVENTS:
            return HEAVY_EVENTS
        return max(1, self.events_target // 5)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SIZES: dict[str, WorldSize] = {
    "demo": WorldSize(300, 30_000, 400, name="demo"),
    "large": WorldSize(
        1_000_000,
        10_000_000,
        0,
        tickets_per_person=0.3,
        consents_per_person=1.5,
        charges_per_customer=3.0,
        name="large",
    ),
}


def resolve_size(size: str | WorldSize | Mapping[str, Any]) -> WorldSize:
    """A size by name (``demo``, ``large``), a ``WorldSize`` or a mapping of its fields."""
    if isinstance(size, WorldSize):
        resolved = size
    elif isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown world size {size!r}; known: {sorted(SIZES)}")
        resolved = SIZES[size]
    else:
        known = {f.name for f in fields(WorldSize)}
        unknown = set(size) - known
        if unknown:
            raise ValueError(f"unknown size fields: {sorted(unknown)}")
        resolved = WorldSize(**dict(size))
    if resolved.people < MIN_PEOPLE:
        raise ValueError(f"a world needs at least {MIN_PEOPLE} people")
    if resolved.events_target < 0 or resolved.objects < 0:
        raise ValueError("events_target and objects must not be negative")
    return resolved
