"""The Data Package descriptor, checked by the installed frictionless (CLI and library)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from frictionless import Schema

from exporters.datapackage import descriptor, frictionless_pattern, resource, table_schema
from exporters.formats import FORMATS

REPO = Path(__file__).resolve().parents[1]
FRICTIONLESS = Path(sys.executable).parent / "frictionless"

PERSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.test/person/1.0.0.json",
    "title": "People",
    "type": "object",
    "properties": {
        "person_id": {"type": "string", "pattern": "^p_[0-9]{3}$", "title": "Person"},
        "name": {"type": ["string", "null"], "maxLength": 50, "description": "Full name."},
        "note": {"type": ["string", "null"]},
        "born": {"type": ["string", "null"], "format": "date"},
        "created_at": {
            "type": "string",
            "format": "date-time",
            "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$",
        },
        "active": {"type": ["boolean", "null"]},
        "balance": {"type": ["number", "null"]},
        "visits": {"type": "integer", "minimum": 0},
        "plan": {"type": ["string", "null"], "enum": ["free", "pro"]},
        "email": {"type": ["string", "null"], "format": "email"},
    },
    "required": [
        "person_id", "name", "note", "born", "created_at", "active", "balance", "visits", "plan",
        "email",
    ],
    "additionalProperties": False,
}  # fmt: skip
PERSON_ROWS: dict[str, list[Any]] = {
    "person_id": ["p_001", "p_002", "p_003"],
    "name": ['Zoë O\'Brien, "Jr"', None, "李小龍\nsecond line"],
    "note": ["", None, "ok"],
    "born": ["1990-02-28", None, "2000-12-31"],
    "created_at": ["2026-06-30T12:34:56Z", "2020-01-01T00:00:00Z", "1999-12-31T23:59:59Z"],
    "active": [True, None, False],
    "balance": [12.5, None, -0.25],
    "visits": [0, 7, 2**62],
    "plan": ["pro", None, "free"],
    "email": ["zoe@localhost", None, "a@b.example"],  # not a strict e-mail: still valid
}
EVENT_SCHEMA: dict[str, Any] = {
    "title": "Events",
    "type": "object",
    "properties": {
        "event_id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "what": {"type": "string"},
    },
    "required": ["event_id", "at", "what"],
}
EVENT_ROWS = {
    "event_id": [1, 2],
    "at": ["2026-01-01T00:00:00Z", "2026-01-02T03:04:05Z"],
    "what": ["login", "ünïcödé"],
}
ARROW = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


def _arrow_schema(json_schema: dict[str, Any]) -> pa.Schema:
    fields = []
    for name, prop in json_schema["properties"].items():
        types = [prop["type"]] if isinstance(prop["type"], str) else prop["type"]
        fields.append(pa.field(name, ARROW[types[0]], "null" in types))
    return pa.schema(fields)


def write_package(root: Path, formats: tuple[str, ...]) -> Path:
    """A package as the export writes it: data files, JSON Schemas, datapackage.json."""
    (root / "data").mkdir(parents=True)
    (root / "schemas").mkdir()
    resources = []
    for ds, doc, rows in (
        ("person", PERSON_SCHEMA, PERSON_ROWS),
        ("event", EVENT_SCHEMA, EVENT_ROWS),
    ):
        schema = _arrow_schema(doc)
        (root / "schemas" / f"{ds}-1.0.0.json").write_text(json.dumps(doc))
        for fmt in formats:
            writer, ext, _ = FORMATS[fmt]
            path = f"data/{ds}.{ext}"
            with open(root / path, "wb") as out:
                writer(pa.table(rows, schema=schema).to_batches(), schema, out)
            data = (root / path).read_bytes()
            resources.append(
                resource(
                    name=f"{ds}-{fmt}", path=path, fmt=fmt, bytes_=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), json_schema=doc,
                    json_schema_path=f"schemas/{ds}-1.0.0.json", title=doc["title"],
                    description=f"{doc['title']} as {fmt}",
                )
            )  # fmt: skip
    desc = descriptor(
        name="export-test", title="Personal data export", created="2026-06-30T12:34:56Z",
        resources=resources, description="Everything we hold about you.",
    )  # fmt: skip
    (root / "datapackage.json").write_text(json.dumps(desc, indent=2, ensure_ascii=False))
    return root


def validate(root: Path) -> dict[str, Any]:
    run = subprocess.run(
        [str(FRICTIONLESS), "validate", "--json", "datapackage.json"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return json.loads(run.stdout)


def _errors(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["name"], e["type"]) for t in report["tasks"] for e in t["errors"]] + [
        ("package", e["type"]) for e in report["errors"]
    ]


CHECKED = ("csv", "parquet", "json")  # JSON needs the frictionless[json] extra (ijson)


def test_frictionless_validates_the_package_and_checks_hashes(tmp_path: Path) -> None:
    root = write_package(tmp_path / "pkg", CHECKED)
    report = validate(root)
    assert report["valid"], json.dumps(_errors(report))
    names = {f"{ds}-{fmt}" for ds in ("person", "event") for fmt in CHECKED}
    assert {t["name"] for t in report["tasks"]} == names
    assert all(t["stats"]["rows"] for t in report["tasks"])
    # a changed byte that keeps the data valid: only the hash can tell
    csv_file = root / "data" / "person.csv"
    csv_file.write_bytes(csv_file.read_bytes().replace(b"p_002", b"p_009"))
    report = validate(root)
    assert not report["valid"]
    assert _errors(report) == [("person-csv", "hash-count")]


def test_descriptor_shape() -> None:
    doc = resource(
        name="person-parquet", path="data/person.parquet", fmt="parquet", bytes_=10,
        sha256="ab" * 32, json_schema=PERSON_SCHEMA, json_schema_path="schemas/p.json",
        title="People", description="d",
    )  # fmt: skip
    assert doc["hash"] == "sha256:" + "ab" * 32
    assert doc["mediatype"] == "application/vnd.apache.parquet"
    assert "encoding" not in doc and "bytes" not in doc  # frictionless cannot count Parquet
    assert doc["schema"]["missingValues"] == []  # real nulls: "" stays a string
    assert doc["jsonSchema"] == "schemas/p.json" and doc["type"] == "table"
    csv_doc = resource(**{**_args(), "fmt": "csv", "name": "person-csv"})
    assert csv_doc["bytes"] == 10 and csv_doc["encoding"] == "utf-8"
    assert csv_doc["schema"]["missingValues"] == [""]
    desc = descriptor(name="p", title="t", created="2026-06-30T12:34:56Z", resources=[csv_doc])
    assert desc["$schema"] == "https://datapackage.org/profiles/2.0/datapackage.json"
    assert "description" not in desc
    for bad in ("Person", "person csv", "ä"):
        with pytest.raises(ValueError):
            resource(**{**_args(), "name": bad})
    with pytest.raises(ValueError):
        resource(**{**_args(), "fmt": "xml"})


def _args() -> dict[str, Any]:
    return {
        "name": "person-json", "path": "data/person.json", "fmt": "json", "bytes_": 10,
        "sha256": "0" * 64, "json_schema": PERSON_SCHEMA, "json_schema_path": "schemas/p.json",
        "title": "People", "description": "d",
    }  # fmt: skip


def test_table_schema_mapping() -> None:
    ts = table_schema(PERSON_SCHEMA)
    fields = {f["name"]: f for f in ts["fields"]}
    assert [f["name"] for f in ts["fields"]] == list(PERSON_SCHEMA["properties"])
    assert ts["missingValues"] == [""]
    assert fields["person_id"] == {
        "name": "person_id", "type": "string", "title": "Person",
        "constraints": {"required": True, "pattern": "p_[0-9]{3}"},
    }  # fmt: skip
    assert fields["name"]["constraints"] == {"maxLength": 50}  # nullable: not required
    assert fields["name"]["description"] == "Full name."
    assert fields["born"]["type"] == "date"
    assert fields["created_at"] == {
        "name": "created_at",
        "type": "datetime",
        "constraints": {"required": True},
    }  # no pattern on datetime: frictionless does not support it
    assert fields["visits"]["constraints"] == {"required": True, "minimum": 0}
    assert fields["plan"]["constraints"] == {"enum": ["free", "pro"]}
    assert fields["email"]["type"] == "string" and "format" not in fields["email"]
    assert {f["name"]: f["type"] for f in ts["fields"]}["balance"] == "number"
    assert fields["active"]["type"] == "boolean"


@pytest.mark.parametrize("path", sorted((REPO / "schemas" / "export").glob("*.json")), ids=str)
def test_every_export_schema_gives_a_valid_table_schema(path: Path) -> None:
    Schema.from_descriptor(table_schema(json.loads(path.read_text())))  # raises if invalid


@pytest.mark.parametrize(
    ("pattern", "match", "no_match"),
    [
        ("^acc_[0-9a-f]{3}$", "acc_0af", "xacc_0af"),
        ("abc", "xxabcxx", "ab"),
        ("^a|b$", "ab", "ca"),
        ("^x\\$", "x$y", "xy"),
    ],
)
def test_patterns_keep_json_schema_meaning(pattern: str, match: str, no_match: str) -> None:
    anchored = re.compile(f"^{frictionless_pattern(pattern)}$")  # as frictionless applies it
    assert anchored.match(match) and re.search(pattern, match)
    assert not anchored.match(no_match) and not re.search(pattern, no_match)
