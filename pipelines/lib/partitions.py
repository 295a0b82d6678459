"""One dynamic partition per export request, keyed by its opaque request id (a uuid4).

The key is the only thing about a request in Dagster's partition storage: it carries
nothing about the person.
"""

from __future__ import annotations

import dagster as dg

export_requests = dg.DynamicPartitionsDefinition(name="export_requests")
