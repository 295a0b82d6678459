"""The order in which entities are read: an entity after every entity yielding its keys.

Entities come in waves: every entity of a wave depends only on earlier waves, so the
entities of one wave can be read at the same time.
"""

from __future__ import annotations

from engine.datamap.model import DataMap, Entity


class CycleError(ValueError):
    pass


def entity_order(dm: DataMap) -> list[Entity]:
    """Entities in dependency order (stable: data map order among equals)."""
    return [e for wave in entity_waves(dm) for e in wave]


def entity_waves(dm: DataMap) -> list[list[Entity]]:
    """Entities in waves, each in data map order; a wave needs only earlier waves' keys.

    An entity that matches on key ``k`` comes after every *other* entity that yields
    ``k``, and an entity redacting free text after the entities that give the
    subject's own values. Directory-only entities are left out. A cycle is refused.
    """
    entities, deps = _dependencies(dm)
    waves: list[list[Entity]] = []
    done: set[str] = set()
    pending = list(entities)
    while pending:
        ready = [e for e in pending if deps[e.ref] <= done]
        if not ready:
            names = ", ".join(e.ref for e in pending)
            raise CycleError(f"entities depend on each other's keys in a cycle: {names}")
        waves.append(ready)
        done.update(e.ref for e in ready)
        pending = [e for e in pending if e.ref not in done]
    return waves


def system_dependencies(dm: DataMap) -> dict[str, list[str]]:
    """Each system (with entities to read) and the systems whose keys it needs first.

    An orchestrator reads a system at a time (one Dagster asset per system); that needs
    the systems themselves in an order, which a map whose entities are in order may
    still lack (A.x -> B.y -> A.z). Such a map is refused with the systems named.
    """
    entities, deps = _dependencies(dm)
    system_of = {e.ref: e.system for e in entities}
    needs: dict[str, set[str]] = {}
    for e in entities:
        needs.setdefault(e.system, set()).update(
            system_of[d] for d in deps[e.ref] if system_of[d] != e.system
        )
    order = [s.name for s in dm.systems if s.name in needs]
    done: set[str] = set()
    while len(done) < len(order):
        ready = [s for s in order if s not in done and needs[s] <= done]
        if not ready:
            names = ", ".join(s for s in order if s not in done)
            raise CycleError(f"systems depend on each other's keys in a cycle: {names}")
        done.update(ready)
    return {s: [u for u in order if u in needs[s]] for s in order}


def _dependencies(dm: DataMap) -> tuple[list[Entity], dict[str, set[str]]]:
    """Entities to read (data map order) and, for each, the entities it must follow."""
    entities = [e for e in dm.entities() if not e.directory_only]
    providers: dict[str, list[Entity]] = {}
    for e in entities:
        for k in e.yields:
            providers.setdefault(k, []).append(e)
    deps = {
        e.ref: {p.ref for m in e.match for p in providers.get(m.key, []) if p.ref != e.ref}
        for e in entities
    }
    # Redacting free text needs the subject's own values first (their name is not redacted).
    own = {d for d, _ in dm.redaction.own_values}
    for e in entities:
        if any(f.transform == "redact_others" for f in e.fields):
            deps[e.ref] |= {o.ref for o in entities if o.dataset in own and o.ref != e.ref}
    return entities, deps
