"""Failures deliver nothing and say clearly what is wrong, without personal data."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from engine.datamap import load_datamap
from engine.export import ExportFailed, run_export
from engine.request import ExportRequest, Identity
from exporters.delivery import LocalFolderDelivery
from tests.world_fixtures import AS_OF, Demo, edge


def _export(env: dict[str, str], email: str, tmp: Path):
    req = ExportRequest("fail-1", "access", (Identity("email", email),), as_of=AS_OF)
    return run_export(
        req, load_datamap(), LocalFolderDelivery(tmp / "out"), staging_root=tmp / "staging", env=env
    )


def _nothing_left(tmp: Path) -> None:
    assert not (tmp / "out").exists() or not list((tmp / "out").iterdir())
    assert not list((tmp / "staging").glob("*/"))


def test_a_record_failing_its_schema_stops_the_export(demo: Demo, tmp_path: Path) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    crm = tmp_path / "crm.sqlite"
    shutil.copy(demo.root / "crm.sqlite", crm)
    with sqlite3.connect(crm) as con:
        con.execute(
            "update people set billing_country = 'Zzsecretland' where lower(email) = ?",
            (email.casefold(),),
        )
    env = {**demo.env, "CRM_DATABASE_URL": f"sqlite:///{crm}"}
    with pytest.raises(ExportFailed) as info:
        _export(env, email, tmp_path)
    v = [(x.entity, x.field, x.rule, x.count) for x in info.value.violations]
    assert ("crm.people", "billing_country", "pattern", 1) in v
    assert "Zzsecretland" not in str(info.value) and email not in str(info.value)
    assert "crm.people" in str(info.value) and "billing_country" in str(info.value)
    _nothing_left(tmp_path)


def test_an_unreachable_source_is_named_and_nothing_is_delivered(
    demo: Demo, tmp_path: Path
) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    env = {**demo.env, "PAYMENTS_API_URL": "http://127.0.0.1:9/"}
    with pytest.raises(ExportFailed) as info:
        _export(env, email, tmp_path)
    assert "payments" in str(info.value)
    assert info.value.failed_sources and info.value.failed_sources[0].startswith("payments.")
    assert email not in str(info.value)
    _nothing_left(tmp_path)


def test_an_unreachable_database_is_named(demo: Demo, tmp_path: Path) -> None:
    env = {**demo.env, "CRM_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    with pytest.raises(ExportFailed, match="crm"):
        _export(env, edge(demo, "multi_account")["emails"][0], tmp_path)
    _nothing_left(tmp_path)
