"""The data map: the shipped one is valid; malformed ones are refused with file, path, why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.datamap import DEFAULT_DATAMAP, ConfigError, DataMapError, load_datamap
from engine.datamap.graph import CycleError, entity_order, entity_waves, system_dependencies
from engine.datamap.load import resolve_connection


def _write(tmp_path: Path, mutate) -> Path:
    doc = yaml.safe_load(DEFAULT_DATAMAP.read_text())
    mutate(doc)
    p = tmp_path / "datamap.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_shipped_datamap_is_valid_and_ordered() -> None:
    dm = load_datamap()
    order = [e.ref for e in entity_order(dm)]
    assert order.index("crm.people") < order.index("crm.accounts")
    assert order.index("crm.accounts") < order.index("event_lake.events")
    assert order.index("crm.accounts") < order.index("payments.charges")
    assert order.index("crm.people") < order.index("crm.support_tickets")
    assert "crm.people_directory" not in order
    # entities of a wave are read together: each needs only keys of earlier waves
    waves = [[e.ref for e in wave] for wave in entity_waves(dm)]
    assert waves == [
        ["crm.people"],
        ["crm.accounts", "crm.memberships", "crm.support_tickets", "crm.marketing_consents"],
        [
            "event_lake.events",
            "object_store.files",
            "payments.customers",
            "payments.payment_methods",
            "payments.charges",
            "payments.invoices",
        ],
    ]
    assert set(dm.datasets()) == {
        "personal",
        "account",
        "organisation_membership",
        "support_ticket",
        "marketing_consent",
        "usage_event",
        "customer_object",
        "payment",
    }


def test_withheld_columns_are_never_exported() -> None:
    dm = load_datamap()
    for e in dm.entities():
        exported = {f.source for f in e.fields if f.transform != "is_present"}
        assert not {w.column for w in e.withheld} & exported, e.ref
    # credentials are not even read
    assert "password_hash" not in dm.entity("crm", "accounts").source_columns()
    assert "risk_flag" not in dm.entity("event_lake", "events").source_columns()


@pytest.mark.parametrize(
    ("mutate", "path", "why"),
    [
        (
            lambda d: d["systems"]["crm"]["entities"]["people"]["fields"].update(
                shoe_size={"from": "shoe", "provenance": "provided"}
            ),
            "systems.crm.entities.people.fields.shoe_size",
            "has no field 'shoe_size'",
        ),
        (
            lambda d: d["systems"]["crm"]["entities"]["people"]["fields"]["email"].update(
                provenance="guessed"
            ),
            "systems.crm.entities.people.fields.email",
            "provenance",
        ),
        (lambda d: d["systems"]["crm"].update(kind="oracle"), "systems.crm.kind", "oracle"),
        (
            lambda d: d["systems"]["crm"]["entities"]["accounts"]["match"][0].update(key="ssn"),
            "systems.crm.entities.accounts.match.0.key",
            "'ssn' is given by no request identity",
        ),
        (
            lambda d: d["systems"]["crm"]["connection"].update(
                url="postgresql://app:hunter2@db/crm"
            ),
            "systems.crm.connection.url",
            "password in clear text",
        ),
        (
            lambda d: d["systems"]["crm"]["entities"]["people"]["fields"]["segment"].update(
                **{"from": "risk_score"}
            ),
            "systems.crm.entities.people.withheld.0.column",
            "withheld but also exported",
        ),
        (
            lambda d: d["systems"]["crm"]["entities"]["people"].update(dataset="shoes"),
            "systems.crm.entities.people.dataset",
            "no schema for dataset 'shoes'",
        ),
        (
            lambda d: d["systems"]["crm"]["entities"]["people"]["fields"].pop("person_id"),
            "systems.crm.entities.people.fields",
            "required field 'person_id'",
        ),
    ],
)
def test_malformed_datamap_names_file_path_and_why(tmp_path: Path, mutate, path, why) -> None:
    p = _write(tmp_path, mutate)
    with pytest.raises(DataMapError) as info:
        load_datamap(p)
    msg = str(info.value)
    assert str(p) in msg
    assert path in msg, msg
    assert why in msg, msg
    # the line number of the offending place is given
    assert any(pr.line for pr in info.value.problems)


def test_cycle_is_refused(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["systems"]["crm"]["entities"]["people"]["match"].append(
            {"key": "account_id", "column": "person_id"}
        )

    with pytest.raises(DataMapError, match="cycle"):
        load_datamap(_write(tmp_path, mutate))


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("datamap_version: '1'\nsystems:\n  crm: [unclosed\n")
    with pytest.raises(DataMapError) as info:
        load_datamap(p)
    assert "not valid YAML" in str(info.value)
    assert info.value.problems[0].line is not None


def test_missing_environment_variable_is_named() -> None:
    dm = load_datamap()
    with pytest.raises(ConfigError, match="CRM_DATABASE_URL"):
        resolve_connection(dm.system("crm"), env={})
    opts = resolve_connection(
        dm.system("payments"), env={"PAYMENTS_API_URL": "http://x", "PAYMENTS_API_TOKEN": "t0k"}
    )
    assert opts["token"] == "t0k" and opts["base_url"] == "http://x"
    with pytest.raises(ConfigError, match="PAYMENTS_API_TOKEN") as info:
        resolve_connection(dm.system("payments"), env={"PAYMENTS_API_URL": "http://x"})
    assert "t0k" not in str(info.value)


def test_systems_in_a_key_cycle_are_refused_for_stepwise_exports(tmp_path: Path) -> None:
    """crm.people -> payments.customers -> crm.marketing_consents: entities in order,
    systems not (a Dagster asset per system could not be ordered)."""

    def mutate(doc: dict) -> None:
        payments = doc["systems"]["payments"]["entities"]
        payments["customers"]["match"] = [{"key": "person_id", "column": "id"}]
        payments["customers"]["yields"] = {"consent_key": "id"}
        consents = doc["systems"]["crm"]["entities"]["marketing_consents"]
        consents["match"] = [{"key": "consent_key", "column": "person_id"}]

    dm = load_datamap(_write(tmp_path, mutate))
    order = [e.ref for e in entity_order(dm)]
    assert order.index("payments.customers") < order.index("crm.marketing_consents")
    with pytest.raises(CycleError, match="systems depend on each other's keys in a cycle: crm"):
        system_dependencies(dm)
    assert system_dependencies(load_datamap()) == {
        "crm": [],
        "event_lake": ["crm"],
        "object_store": ["crm"],
        "payments": ["crm"],
    }
