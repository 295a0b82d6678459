"""The data map as typed objects: systems, entities, matches, fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Provenance = Literal["provided", "observed", "inferred"]
ExportType = Literal["access", "portability"]

# Provenance each request type carries (GDPR Art. 15: all; Art. 20: provided and
# observed, per WP242 rev.01 which counts observed data as provided).
PROVENANCE_FOR: dict[str, frozenset[str]] = {
    "access": frozenset({"provided", "observed", "inferred"}),
    "portability": frozenset({"provided", "observed"}),
}


@dataclass(frozen=True)
class IdentitySpec:
    identity_type: str
    key: str
    normalize: str | None = None


@dataclass(frozen=True)
class Match:
    key: str
    column: str
    casefold: bool = False


@dataclass(frozen=True)
class FieldSpec:
    name: str
    source: str | None = None  # source column; None for a constant
    provenance: Provenance = "observed"
    transform: str | None = None
    currency_from: str | None = None
    value: Any = None  # constant value when source is None


@dataclass(frozen=True)
class Withheld:
    column: str
    reason: str


@dataclass(frozen=True)
class Entity:
    system: str
    name: str
    options: dict[str, Any]  # connector-specific: table, path, endpoint, prefix ...
    dataset: str | None
    match: tuple[Match, ...] = ()
    yields: dict[str, str] = field(default_factory=dict)
    fields: tuple[FieldSpec, ...] = ()
    withheld: tuple[Withheld, ...] = ()
    primary_key: str | None = None
    files: bool = False
    directory_only: bool = False

    @property
    def ref(self) -> str:
        """``system.entity``: how records, reports and the manifest name this entity."""
        return f"{self.system}.{self.name}"

    def source_columns(self) -> list[str]:
        """Every source column the export reads: mapped, matched, yielded; never withheld ones."""
        cols: list[str] = []
        for f in self.fields:
            for c in (f.source, f.currency_from):
                if c and c not in cols:
                    cols.append(c)
        for c in [m.column for m in self.match] + list(self.yields.values()):
            if c not in cols:
                cols.append(c)
        if self.primary_key and self.primary_key not in cols:
            cols.append(self.primary_key)
        if self.files:  # what staging a file needs
            cols += [c for c in ("owner", "key", "relative_key") if c not in cols]
        return cols


@dataclass(frozen=True)
class System:
    name: str
    kind: str
    title: str
    connection: dict[str, Any]
    entities: tuple[Entity, ...]
    source_note: str | None = None


@dataclass(frozen=True)
class RedactionSpec:
    own_values: tuple[tuple[str, str], ...] = ()  # (dataset, field)
    name_directory: tuple[str, str, str] | None = None  # (system, entity, column)


@dataclass(frozen=True)
class OrganisationSpec:
    """How an organisation's members are found (``organisations`` in the data map):
    rows of ``members`` whose ``column`` is the organisation's id give keys
    (``yields``); rows of ``identity`` whose ``column`` holds such a key give each
    member's request identity (``value``, of identity type ``type``)."""

    members: tuple[str, str, str, str]  # (system, entity, column, yields)
    identity: tuple[str, str, str, str, str]  # (system, entity, column, value, type)


@dataclass(frozen=True)
class DataMap:
    path: Path
    version: str
    identities: dict[str, IdentitySpec]
    systems: tuple[System, ...]
    redaction: RedactionSpec = RedactionSpec()
    organisations: OrganisationSpec | None = None

    def entities(self) -> list[Entity]:
        return [e for s in self.systems for e in s.entities]

    def system(self, name: str) -> System:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(name)

    def entity(self, system: str, name: str) -> Entity:
        for e in self.system(system).entities:
            if e.name == name:
                return e
        raise KeyError(f"{system}.{name}")

    def datasets(self) -> list[str]:
        """Datasets fed by at least one entity, in data map order."""
        seen: list[str] = []
        for e in self.entities():
            if e.dataset and e.dataset not in seen:
                seen.append(e.dataset)
        return seen
