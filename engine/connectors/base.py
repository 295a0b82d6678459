"""The contract every connector fulfils.

A connector is built from one source system's block of the data map (connection
options already resolved from the environment). The engine asks it for the rows of one
*entity* (a table, a dataset, an API collection, an object prefix) whose match column
holds one of a set of key values, and gets Arrow record batches back, streamed.

Connectors never log or raise with key values in the message: errors name the system,
the entity and what went wrong, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import pyarrow as pa


class SourceError(RuntimeError):
    """A source system could not be read. The message never contains personal data."""

    def __init__(self, system: str, message: str, *, transient: bool = False) -> None:
        super().__init__(f"source {system!r}: {message}")
        self.system = system
        self.transient = transient


@dataclass(frozen=True)
class Lookup:
    """Rows of an entity where ``column`` is one of ``values``.

    ``casefold``: compare ``lower(column)`` with the values (which the engine has
    already lower-cased), for identifiers such as email addresses.
    """

    column: str
    values: Sequence[str]
    casefold: bool = False

    def distinct(self) -> list[str]:
        """The values as text, without duplicates, in order; lower-cased if ``casefold``."""
        values = (str(v) for v in self.values)
        return list(dict.fromkeys(v.lower() if self.casefold else v for v in values))


class Connector(Protocol):
    """One source system."""

    name: str

    def fetch(
        self, entity: Mapping[str, Any], lookup: Lookup, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """Stream the ``columns`` of the entity's rows that match ``lookup``.

        ``entity`` is the entity's block of the data map (``table``, ``path``,
        ``endpoint``, ``prefix`` ... by connector kind). Batches hold exactly
        ``columns``, in that order; a lookup with no values or no match yields nothing.
        """
        ...

    def close(self) -> None: ...


class ObjectReader(Protocol):
    """Connectors of customer files also open an object's content as a stream."""

    def open(self, entity: Mapping[str, Any], key: str) -> BinaryIO: ...
