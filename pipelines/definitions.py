"""The Dagster code location: ``dagster dev -m pipelines.definitions`` (``make serve``).

The export assets are generated from the data map (``PORTABILITY_DATAMAP``), so a new
source system in the YAML is a new asset here without code.
"""

from __future__ import annotations

import dagster as dg

from pipelines.defs.bulk.jobs import bulk_export_job
from pipelines.defs.bulk.schedules import (
    bulk_run_failed,
    organisation_exports,
    pending_exports_nightly,
    recurring_exports,
)
from pipelines.defs.deadlines.assets import deadlines_daily, flag_deadlines_job, request_deadlines
from pipelines.defs.export.assets import build_export_assets
from pipelines.defs.export.jobs import export_job
from pipelines.defs.requests.dpo import (
    deny_request_job,
    extend_request_job,
    purge_registration_runs,
    register_request_job,
)
from pipelines.defs.requests.sensors import (
    export_requests_sensor,
    export_run_failed,
    export_run_succeeded,
)
from pipelines.defs.retention.assets import apply_retention_job, archives_held, retention_daily
from pipelines.lib.settings import PortabilityResource


def build_definitions(portability: PortabilityResource | None = None) -> dg.Definitions:
    portability = portability or PortabilityResource()
    return dg.Definitions(
        assets=[
            *build_export_assets(portability.load_datamap()),
            request_deadlines,
            archives_held,
        ],
        jobs=[
            export_job,
            register_request_job,
            deny_request_job,
            extend_request_job,
            flag_deadlines_job,
            apply_retention_job,
            bulk_export_job,
        ],
        sensors=[
            export_requests_sensor,
            export_run_succeeded,
            export_run_failed,
            purge_registration_runs,
            bulk_run_failed,
        ],
        schedules=[
            deadlines_daily,
            retention_daily,
            pending_exports_nightly,
            recurring_exports,
            organisation_exports,
        ],
        resources={"portability": portability},
    )


defs = build_definitions()
