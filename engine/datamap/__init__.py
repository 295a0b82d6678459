"""The data map: source systems as configuration."""

from engine.datamap.errors import ConfigError, DataMapError, Problem
from engine.datamap.load import DEFAULT_DATAMAP, load_datamap, resolve_connection
from engine.datamap.model import PROVENANCE_FOR, DataMap, Entity, FieldSpec, System

__all__ = [
    "DEFAULT_DATAMAP",
    "PROVENANCE_FOR",
    "ConfigError",
    "DataMap",
    "DataMapError",
    "Entity",
    "FieldSpec",
    "Problem",
    "System",
    "load_datamap",
    "resolve_connection",
]
