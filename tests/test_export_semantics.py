"""What an export carries: the right subject by any identity, Art. 15 vs Art. 20 content,
withheld credentials, redacted mentions of others, the under-16 notice."""

from __future__ import annotations

import json
import sqlite3
import zipfile

from engine.request import email_sha256
from tests.world_fixtures import Demo, Exporter, archive_text


def edge(demo: Demo, name: str) -> dict:
    return json.loads((demo.root / "world.json").read_text())["edge_cases"][name]


def records(result, dataset: str) -> list[dict]:
    with zipfile.ZipFile(result.delivered.location) as z:
        if f"data/{dataset}.json" not in z.namelist():
            return []
        return json.loads(z.read(f"data/{dataset}.json"))


def person_row(demo: Demo, email: str) -> dict:
    con = sqlite3.connect(demo.root / "crm.sqlite")
    con.row_factory = sqlite3.Row
    row = con.execute(
        "select * from people where lower(email) = lower(?) order by person_id", (email,)
    ).fetchone()
    return dict(row)


def test_every_identity_type_finds_the_same_person(demo: Demo, exporter: Exporter) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    person = person_row(demo, email)
    by_email = exporter.export(("email", email.upper()))
    by_hash = exporter.export(("email_sha256", email_sha256(email)))
    by_id = exporter.export(("controller_customer_id", person["customer_number"]))
    ids = [{r["person_id"] for r in records(r, "personal")} for r in (by_email, by_hash, by_id)]
    assert ids[0] == ids[1] == ids[2] and person["person_id"] in ids[0]
    assert len(records(by_email, "account")) == 3


def test_case_variant_email_finds_the_duplicate_row(demo: Demo, exporter: Exporter) -> None:
    case = edge(demo, "case_variant_email")
    result = exporter.export(("email", case["emails"][0]))
    people = records(result, "personal")
    assert len(people) == 2
    assert len({p["email"].casefold() for p in people}) == 1


def test_portability_leaves_out_inferred_data_and_says_so(demo: Demo, exporter: Exporter) -> None:
    email = edge(demo, "heavy_user")["emails"][0]
    access = exporter.export(("email", email), request_type="access")
    port = exporter.export(("email", email), request_type="portability")
    assert any(e["geo_country"] for e in records(access, "usage_event"))
    assert all(e["geo_country"] is None for e in records(port, "usage_event"))
    assert all(p["segment"] is None for p in records(port, "personal"))
    assert len(records(access, "usage_event")) == len(records(port, "usage_event")) > 500
    excluded = {(x["entity"], x["field"]) for x in port.manifest["excluded"]}
    assert {("events", "geo_country"), ("people", "segment")} <= excluded
    assert access.manifest["excluded"] == []


def test_credentials_never_leave(demo: Demo, exporter: Exporter) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    text = archive_text(exporter.export(("email", email)).delivered.location)
    con = sqlite3.connect(demo.root / "crm.sqlite")
    pid = person_row(demo, email)["person_id"]
    for pw, mfa in con.execute(
        "select password_hash, mfa_secret from accounts where person_id=?", (pid,)
    ):
        assert pw not in text
        assert not mfa or mfa not in text
    assert "$argon2" not in text


def test_card_numbers_stop_at_last_four(demo: Demo, exporter: Exporter) -> None:
    result = exporter.export(("email", edge(demo, "multi_account")["emails"][0]))
    methods = [r for r in records(result, "payment") if r["record_type"] == "payment_method"]
    assert methods and all(len(m["last4"]) == 4 and m["last4"].isdigit() for m in methods)
    charges = [r for r in records(result, "payment") if r["record_type"] == "charge"]
    assert charges and all("." in c["amount"] or c["currency"] in ("JPY", "KRW") for c in charges)


def test_ticket_mentioning_another_person_is_redacted(demo: Demo, exporter: Exporter) -> None:
    case = edge(demo, "ticket_mentions_other")
    result = exporter.export(("email", case["emails"][0]))
    bodies = " ".join(t["body"] or "" for t in records(result, "support_ticket"))
    assert "[name of another person]" in bodies
    assert "[email of another person]" in bodies
    assert result.manifest["redactions"]["count"] >= 2


def test_under_16_is_flagged(demo: Demo, exporter: Exporter) -> None:
    result = exporter.export(("email", edge(demo, "under_16")["emails"][0]))
    assert [n["code"] for n in result.manifest["notices"]] == ["subject_under_16"]


def test_missing_systems_report_none(demo: Demo, exporter: Exporter) -> None:
    result = exporter.export(("email", edge(demo, "no_payments")["emails"][0]))
    status = {f"{s['system']}.{s['entity']}": s["status"] for s in result.manifest["sources"]}
    assert status["crm.people"] == "found"
    assert status["payments.charges"] == "none"
