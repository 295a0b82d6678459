"""Bulk exports: many subjects read together, archived one by one (byte-identical to
their single exports), across processes or Dagster steps."""

BATCH_SIZE = 500  # subjects read together: larger batches mean fewer, larger queries
