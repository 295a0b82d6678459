"""The members of an organisation, as request identities (organisation-wide exports).

The data map's ``organisations`` block says where to look: the organisation's member
rows give keys (person ids), and each key's row in a directory gives the member's
identity (a customer number). Each member then gets a request and an archive of their
own: an export for the organisation is one export per person, never one archive with
everyone in it. Errors name the entity, never an id.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.connectors.base import Connector, Lookup
from engine.datamap.model import DataMap
from engine.request import Identity


class NoOrganisations(ValueError):
    """The data map says nothing about organisations."""


def organisation_members(
    dm: DataMap, connectors: Mapping[str, Connector], org_id: str
) -> list[tuple[Identity, ...]]:
    """One identity tuple per member of ``org_id``, sorted by identity value (a member
    found twice, or without an identity value, is listed once, or not at all)."""
    spec = dm.organisations
    if spec is None:
        raise NoOrganisations("the data map has no 'organisations' block")
    system, entity, column, yields = spec.members
    members = dm.entity(system, entity)
    keys: set[str] = set()
    for batch in connectors[system].fetch(members.options, Lookup(column, [org_id]), [yields]):
        keys.update(str(v) for v in batch.column(0).to_pylist() if v is not None)
    if not keys:
        return []
    system, entity, column, value, kind = spec.identity
    directory = dm.entity(system, entity)
    values: set[str] = set()
    lookup = Lookup(column, sorted(keys))
    for batch in connectors[system].fetch(directory.options, lookup, [value]):
        values.update(str(v) for v in batch.column(0).to_pylist() if v)
    return [(Identity(kind, v),) for v in sorted(values)]
