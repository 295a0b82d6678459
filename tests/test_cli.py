"""The installed ``portability`` command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3

from engine.datamap import DEFAULT_DATAMAP
from tests.world_fixtures import Demo

CLI = str(Path(sys.executable).parent / "portability")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_datamap_check_accepts_the_shipped_map() -> None:
    r = run("datamap", "check")
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_datamap_check_refuses_a_malformed_map(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text(DEFAULT_DATAMAP.read_text().replace("provenance: provided", "provenance: x", 1))
    r = run("datamap", "check", str(bad))
    assert r.returncode == 2
    assert str(bad) in r.stderr and "provenance" in r.stderr


def test_export_refuses_a_malformed_map_before_any_query(demo: Demo, tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    text = DEFAULT_DATAMAP.read_text().replace(
        "${CRM_DATABASE_URL}", "postgresql://nobody@127.0.0.1:9/x"
    )
    bad.write_text(text.replace("table: accounts", "table: accounts\n        shoe: 1"))
    r = run(
        "export",
        "--email",
        "someone@example.org",
        "--datamap",
        str(bad),
        "--out",
        str(tmp_path / "out"),
    )
    assert r.returncode == 2
    assert "systems.crm.entities.accounts" in r.stderr and "someone@" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_export_by_customer_id_from_a_demo_world(demo: Demo, tmp_path: Path) -> None:
    cases = json.loads((demo.root / "world.json").read_text())["edge_cases"]
    cust = cases["multi_account"]["customer_numbers"][0]
    r = run(
        "export",
        "--customer-id",
        cust,
        "--type",
        "portability",
        "--format",
        "csv,json",
        "--world",
        str(demo.root),
        "--out",
        str(tmp_path / "out"),
        "--staging",
        str(tmp_path / "staging"),
    )
    assert r.returncode == 0, r.stderr
    path = next(
        line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("archive: ")
    )
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert "data/personal.csv" in names and "data/personal.parquet" not in names
    assert "reading crm.people" in r.stderr  # progress
    assert cust not in r.stderr


def test_identities_from_a_file_or_stdin_stay_off_the_command_line(
    demo: Demo, tmp_path: Path
) -> None:
    cases = json.loads((demo.root / "world.json").read_text())["edge_cases"]
    email = cases["multi_account"]["emails"][0]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# the subject\nemail = {email}\n\n")
    common = ["--world", str(demo.root), "--format", "json", "--staging", str(tmp_path / "st")]
    by_file = run("export", "--identity-file", str(ids), "--out", str(tmp_path / "a"), *common)
    assert by_file.returncode == 0, by_file.stderr
    by_stdin = subprocess.run(
        [CLI, "export", "--identity-file", "-", "--out", str(tmp_path / "b"), *common],
        input=f"email={email}\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert by_stdin.returncode == 0, by_stdin.stderr
    for r in (by_file, by_stdin):
        path = next(x.split(": ", 1)[1] for x in r.stdout.splitlines() if x.startswith("archive"))
        with zipfile.ZipFile(path) as z:
            people = json.loads(z.read("data/personal.json"))
        assert [p["email"] for p in people] == [email]
        assert email not in r.stderr


def test_a_bad_identity_line_is_named_without_its_value(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("email=someone@example.org\nphone=+44 7700 900123\n")
    r = run("export", "--identity-file", str(ids), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "identity line 2" in r.stderr and "TYPE=VALUE" in r.stderr
    assert "7700" not in r.stderr and "someone" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_the_command_loads_the_export_machinery_only_to_export() -> None:
    """``--help`` and ``datamap check`` start without Arrow datasets or SQLAlchemy."""
    probe = (
        "import sys, engine.cli; "
        "print(sorted(m for m in ('pyarrow.dataset', 'sqlalchemy', 'pandas', 'engine.export') "
        "if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_export_to_s3_in_parts(
    demo: Demo, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    email = json.loads((demo.root / "world.json").read_text())["edge_cases"]["heavy_user"]
    target = f"s3://{s3_bucket}/cli?endpoint_url={moto_endpoint}"
    r = run(
        "export", "--email", email["emails"][0], "--world", str(demo.root),
        "--out", target, "--max-part-size", str(256 * 1024),
        "--staging", str(tmp_path / "staging"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    parts = [line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("part ")]
    assert len(parts) >= 3 and all(p.startswith(f"s3://{s3_bucket}/cli/") for p in parts)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == sorted(p.split("/", 3)[3] for p in parts)
    bad = run("export", "--email", "a@b.example", "--out", "s3://b/p?nonsense=1")
    assert bad.returncode == 2 and "--out: unknown parameter 'nonsense'" in bad.stderr


def test_bulk_exports_each_listed_person_across_processes(demo: Demo, tmp_path: Path) -> None:
    """``portability bulk``: one archive per line, progress on stderr without data, one
    result line per person, exit 1 when one failed; a bad line is named, not echoed."""
    import sqlite3

    with sqlite3.connect(demo.root / "crm.sqlite") as con:
        people = list(con.execute("select email, customer_number from people limit 5"))
    lines = [f"email={e}" for e, _ in people[:4]]
    lines += [f"email={people[4][0]};controller_customer_id={people[4][1]}", "# a comment"]
    subjects = tmp_path / "people.txt"
    subjects.write_text("\n".join(lines) + "\n")
    env_file = tmp_path / "sources.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in demo.env.items()))
    out, staging = tmp_path / "out", tmp_path / "staging"
    common = ["--env-file", str(env_file), "--out", str(out), "--staging", str(staging)]
    r = run("bulk", str(subjects), *common, "--batch-size", "2", "--processes", "2")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    assert all(row[2] == "delivered" for row in rows)
    for row, (email, _) in zip(rows, people, strict=True):
        with zipfile.ZipFile(row[3]) as z:
            assert email in z.read("data/personal.json").decode()
    assert "5 delivered, 0 failed, 0 remaining" in r.stderr
    assert not any(email in r.stderr for email, _ in people)
    assert not any(staging.iterdir())

    subjects.write_text(lines[0] + "\n")
    alone = run("bulk", str(subjects), *common, "--processes", "0")  # in this process
    assert alone.returncode == 0 and alone.stdout.count("\tdelivered\t") == 1, alone.stderr

    subjects.write_text("email=nobody@example.org\nshoe_size=44\n")
    bad = run("bulk", str(subjects), *common)
    assert bad.returncode == 2 and "subject line 2" in bad.stderr and "44" not in bad.stderr
