"""Shared code of the Dagster code location: settings, partitions, safe failures."""
