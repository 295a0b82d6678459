"""The DPO's jobs in the Dagster UI: register an export, deny one, extend its deadline.

Launch them from the job's Launchpad. What the DPO types into ``register_request``
(the subject's identity) is kept in Dagster's run storage, as every run config is, until
``purge_registration_runs`` deletes the finished registration run (within a minute);
the request store keeps the identity only while the request is open.
"""

import shutil

import dagster as dg
from pydantic import Field

from engine.request import FORMATS, IDENTITY_TYPES, Identity
from pipelines.lib.failures import safe_failures
from pipelines.lib.settings import PortabilityResource
from request_store import RequestSpec

DPO = "dpo:dagster-ui"


class RegisterRequestConfig(dg.Config):
    identity_type: str = Field(description=f"one of {', '.join(IDENTITY_TYPES)}")
    identity_value: str = Field(description="the subject's email, hashed email or customer id")
    request_type: str = Field("access", description="access (Art. 15) or portability (Art. 20)")
    formats: list[str] = Field(list(FORMATS), description="any of json, csv, parquet")


class RequestDecisionConfig(dg.Config):
    request_id: str = Field(description="the request's opaque id (its partition key)")
    reason: str = Field(description="why; recorded in the audit trail and told to the subject")


@dg.op(name="register")
def register_request_op(
    context: dg.OpExecutionContext,
    config: RegisterRequestConfig,
    portability: PortabilityResource,
) -> None:
    with safe_failures("register"), portability.open_store() as store:
        spec = RequestSpec(
            config.request_type,
            [Identity(config.identity_type, config.identity_value)],
            config.formats,
            channel="dpo",
        )
        req, _ = store.submit(spec, actor=DPO)
    context.log.info(
        f"registered request {req.request_id}: its export starts within a minute "
        f"(asset catalog, partition {req.request_id}); legal deadline {req.due:%Y-%m-%d}"
    )


@dg.job(
    name="register_request",
    description="Register an export for a person (the DPO's launch form). The identity "
    "typed here is purged from Dagster with this run once it ends.",
    tags={"portability/kind": "registration"},
)
def register_request_job() -> None:
    register_request_op()


@dg.op(name="deny")
def deny_request_op(
    context: dg.OpExecutionContext, config: RequestDecisionConfig, portability: PortabilityResource
) -> None:
    with safe_failures("deny"), portability.open_store() as store:
        store.deny(config.request_id, config.reason, actor=DPO)
    shutil.rmtree(portability.staging_root() / config.request_id, ignore_errors=True)
    context.log.info(f"denied request {config.request_id}; its identities are deleted")


@dg.job(name="deny_request", description="Deny a received or failed request, with a reason.")
def deny_request_job() -> None:
    deny_request_op()


@dg.op(name="extend")
def extend_request_op(
    context: dg.OpExecutionContext, config: RequestDecisionConfig, portability: PortabilityResource
) -> None:
    with safe_failures("extend"), portability.open_store() as store:
        req = store.extend(config.request_id, config.reason, actor=DPO)
    context.log.info(f"extended request {config.request_id} to {req.due:%Y-%m-%d}")


@dg.job(
    name="extend_request",
    description="Extend a request's deadline by two months (once, within the first month).",
)
def extend_request_job() -> None:
    extend_request_op()


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    name="purge_registration_runs",
)
def purge_registration_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Delete finished registration runs: their config holds what the DPO typed."""
    done = context.instance.get_run_records(
        dg.RunsFilter(
            job_name="register_request",
            statuses=[
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ],
        )
    )
    for record in done:
        context.instance.delete_run(record.dagster_run.run_id)
    return dg.SkipReason(f"purged {len(done)} registration run(s)")
