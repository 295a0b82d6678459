"""An export read back with tools that are not ours: frictionless, pyarrow, duckdb, pandas,
jsonschema. Plus determinism and the definite answer for a person found nowhere."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import jsonschema
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.world_fixtures import Demo, Exporter, edge


@pytest.fixture(scope="module")
def rich_archive(demo: Demo, exporter: Exporter, tmp_path_factory) -> Path:
    email = edge(demo, "multi_account")["emails"][0]
    result = exporter.export(("email", email))
    out = tmp_path_factory.mktemp("rich")
    with zipfile.ZipFile(result.delivered.location) as z:
        z.extractall(out)
    return out


def test_archive_layout_and_frictionless(rich_archive: Path) -> None:
    names = {p.relative_to(rich_archive).as_posix() for p in rich_archive.rglob("*") if p.is_file()}
    for required in (
        "datapackage.json",
        "manifest.json",
        "README.html",
        "data/personal.json",
        "data/personal.csv",
        "data/personal.parquet",
        "data/account.csv",
        "data/usage_event.parquet",
        "schemas/personal-1.0.0.json",
    ):
        assert required in names, required
    frictionless = Path(sys.executable).parent / "frictionless"
    run = subprocess.run(
        [str(frictionless), "validate", "--json", "datapackage.json"],
        cwd=rich_archive,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(run.stdout)
    assert report["valid"], json.dumps(report, indent=1)[:3000]


def test_formats_agree_and_read_with_other_tools(rich_archive: Path) -> None:
    data = rich_archive / "data"
    for ds in ("personal", "account", "usage_event", "payment"):
        rows_json = json.loads((data / f"{ds}.json").read_text())
        pq_table = pq.read_table(data / f"{ds}.parquet")
        csv_df = pd.read_csv(data / f"{ds}.csv", dtype=str, keep_default_na=False)
        duck = duckdb.sql(f"select count(*) from read_parquet('{data / (ds + '.parquet')}')")
        n = len(rows_json)
        assert n > 0, ds
        assert pq_table.num_rows == n == len(csv_df) == duck.fetchall()[0][0]
        assert list(csv_df.columns) == list(rows_json[0]) == pq_table.schema.names
        # same ids in the same order in every format
        key = pq_table.schema.names[1]
        assert (
            [r[key] for r in rows_json] == pq_table.column(key).to_pylist() == csv_df[key].tolist()
        )


def test_json_records_meet_the_schemas_in_the_archive(rich_archive: Path) -> None:
    fmt = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for path in sorted((rich_archive / "data").glob("*.json")):
        schema = json.loads((rich_archive / "schemas" / f"{path.stem}-1.0.0.json").read_text())
        v = jsonschema.Draft202012Validator(schema, format_checker=fmt)
        for rec in json.loads(path.read_text()):
            v.validate(rec)


def test_manifest_lists_sources_schemas_and_withheld(rich_archive: Path) -> None:
    m = json.loads((rich_archive / "manifest.json").read_text())
    assert m["request"]["type"] == "access" and m["personal_data_held"] is True
    assert m["as_of"] == "2026-07-01T12:00:00Z"
    assert {s["status"] for s in m["sources"]} <= {"found", "none"}
    assert {f"{s['system']}.{s['entity']}" for s in m["sources"]} >= {
        "crm.people",
        "crm.accounts",
        "event_lake.events",
        "payments.charges",
    }
    assert m["schemas"]["personal"].endswith("/personal/1.0.0.json")
    withheld = {(w["entity"], w["column"]) for w in m["withheld"]}
    assert {
        ("accounts", "password_hash"),
        ("accounts", "mfa_secret"),
        ("people", "risk_score"),
    } <= withheld
    assert all(w["reason"] for w in m["withheld"])


def test_readme_holds_the_article_15_context(rich_archive: Path) -> None:
    html = (rich_archive / "README.html").read_text()
    for words in (
        "Purposes",
        "Recipients",
        "Kept for",
        "supervisory authority",
        "Standard Contractual Clauses",
        "data/personal.csv",
        "password_hash",
    ):
        assert words in html, words


def test_same_sources_and_as_of_give_identical_bytes(
    demo: Demo,
    exporter: Exporter,
    tmp_path: Path,
) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    a = exporter.export(("email", email), request_id="determinism", out=tmp_path / "a")
    b = exporter.export(("email", email), request_id="determinism", out=tmp_path / "b")
    assert a.delivered.sha256 == b.delivered.sha256
    assert Path(a.delivered.location).read_bytes() == Path(b.delivered.location).read_bytes()
    # sources read one by one or all of a wave at once: the same archive
    one = exporter.export(("email", email), request_id="determinism", out=tmp_path / "c", workers=1)
    many = exporter.export(
        ("email", email), request_id="determinism", out=tmp_path / "d", workers=16
    )
    assert one.delivered.sha256 == many.delivered.sha256 == a.delivered.sha256
    assert [o.entity for o in one.outcomes] == [o.entity for o in many.outcomes]


def test_person_found_nowhere_gets_a_definite_answer(demo: Demo, exporter: Exporter) -> None:
    result = exporter.export(("email", edge(demo, "nobody")["emails"][0]))
    m = result.manifest
    assert m["personal_data_held"] is False
    assert "no personal data" in m["statement"]
    assert all(s["status"] == "none" for s in m["sources"])
    with zipfile.ZipFile(result.delivered.location) as z:
        names = z.namelist()
        assert {"manifest.json", "datapackage.json", "README.html"} <= set(names)
        assert not [n for n in names if n.startswith("data/")]


def test_delivered_archive_is_owner_only(demo: Demo, exporter: Exporter) -> None:
    result = exporter.export(("email", edge(demo, "multi_account")["emails"][0]))
    path = Path(result.delivered.location)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list((exporter.base / "staging").glob("*/")), "staging left behind"
