"""``dagster-webserver`` serving the code location for real, queried over GraphQL (HTTP)."""

from __future__ import annotations

from tests.dagster_fixtures import EXPORT_ASSETS, EXPORT_JOB, PARTITIONS, DagsterUI, graphql

ASSET_NODES = """
{ assetNodes { assetKey { path } pools partitionDefinition { name type } } }
"""


def test_the_export_assets_are_served(dagster_ui: DagsterUI) -> None:
    nodes = graphql(dagster_ui.url, ASSET_NODES)["assetNodes"]
    served = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert served.keys() >= EXPORT_ASSETS, EXPORT_ASSETS - served.keys()
    assert "request_deadlines" in served
    for key in EXPORT_ASSETS:  # one partition per request
        assert served[key]["partitionDefinition"] == {"name": PARTITIONS, "type": "DYNAMIC"}, key
    for source in ("crm", "event_lake", "object_store", "payments"):  # dagster.yaml bounds these
        assert served[f"collected/{source}"]["pools"] == [f"source_{source}"]


DELIVERY = """
query ($partition: String!) {
  assetNodeOrError(assetKey: {path: ["delivery"]}) {
    ... on AssetNode {
      partitionKeys
      latestMaterializationByPartition(partitions: [$partition]) {
        partition runId metadataEntries { label }
      }
    }
  }
}
"""

RUN = """
query ($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { status jobName tags { key value } } }
}
"""


def test_a_delivered_request_shows_as_a_materialized_partition(dagster_ui: DagsterUI) -> None:
    rid = dagster_ui.request_id
    node = graphql(dagster_ui.url, DELIVERY, {"partition": rid})["assetNodeOrError"]
    assert rid in node["partitionKeys"]
    [materialization] = node["latestMaterializationByPartition"]
    assert materialization is not None, f"no delivery materialization for {rid}"
    assert materialization["partition"] == rid
    assert materialization["metadataEntries"], "the delivery carries no metadata"

    run = graphql(dagster_ui.url, RUN, {"runId": materialization["runId"]})["runOrError"]
    assert run["status"] == "SUCCESS"
    assert run["jobName"] == EXPORT_JOB
    assert {"key": "dagster/partition", "value": rid} in run["tags"]


def test_an_unknown_partition_has_no_delivery(dagster_ui: DagsterUI) -> None:
    node = graphql(dagster_ui.url, DELIVERY, {"partition": "no-such-request"})["assetNodeOrError"]
    assert node["latestMaterializationByPartition"] == [None]


INSTANCE = "{ instance { runQueuingSupported runQueueConfig { maxConcurrentRuns } } }"


def test_the_server_runs_on_the_shipped_instance_config(dagster_ui: DagsterUI) -> None:
    instance = graphql(dagster_ui.url, INSTANCE)["instance"]
    assert instance["runQueuingSupported"] is True
    assert instance["runQueueConfig"] == {"maxConcurrentRuns": 4}
