"""The SQL connector against real PostgreSQL, MariaDB and SQLite databases."""

from __future__ import annotations

import datetime as dt
import traceback
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa

from engine.connectors.base import Lookup, SourceError
from engine.connectors.sql import SqlConnector, engine_url
from engine.connectors.sql_copy import copy_batches

SECRET_EMAIL = "zelda.secret@example.org"

meta = sa.MetaData()
people = sa.Table(
    "people",
    meta,
    sa.Column("person_id", sa.String(32), primary_key=True),
    sa.Column("customer_number", sa.String(16)),
    sa.Column("email", sa.String(128)),
    sa.Column("created_at", sa.DateTime),
    sa.Column("date_of_birth", sa.Date),
    sa.Column("risk_score", sa.Float),
    sa.Column("balance", sa.Numeric(10, 2)),
    sa.Column("is_active", sa.Boolean),
    sa.Column("preferences", sa.JSON),
)
events = sa.Table(
    "events",
    meta,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.String(32)),
    sa.Column("action", sa.String(32)),
)


def _setup(url: str, people_rows: list[dict], event_rows: list[dict] | None = None) -> None:
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            meta.create_all(conn)
            if people_rows:
                conn.execute(people.insert(), people_rows)
            if event_rows:
                conn.execute(events.insert(), event_rows)
    finally:
        engine.dispose()


def _person(i: int, email: str | None = None) -> dict:
    return {
        "person_id": f"per_{i:012x}",
        "customer_number": f"C{i:08d}",
        "email": email or f"user{i}@example.com",
        "created_at": dt.datetime(2024, 1, 2, 3, 4, 5),
        "date_of_birth": dt.date(1990, 5, 17),
        "risk_score": 0.25,
        "balance": Decimal("12.50"),
        "is_active": i % 2 == 0,
        "preferences": {"theme": "dark"},
    }


def _fetch(conn: SqlConnector, entity: dict, lookup: Lookup, columns: list[str]) -> pa.Table:
    batches = list(conn.fetch(entity, lookup, columns))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def test_fetch_columns_in_order_with_stable_types(sql_url: str) -> None:
    _setup(sql_url, [_person(1), _person(2), _person(3)])
    conn = SqlConnector("crm", sql_url)
    try:
        cols = [
            "email",
            "person_id",
            "created_at",
            "date_of_birth",
            "risk_score",
            "balance",
            "is_active",
            "preferences",
        ]
        lookup = Lookup("customer_number", ["C00000002", "C00000003", "C99999999"])
        table = _fetch(conn, {"table": "people"}, lookup, cols)
    finally:
        conn.close()
    assert table.column_names == cols
    assert sorted(table["person_id"].to_pylist()) == ["per_000000000002", "per_000000000003"]
    assert table.schema.field("email").type == pa.string()
    assert table.schema.field("created_at").type == pa.timestamp("us")
    assert table.schema.field("date_of_birth").type == pa.date32()
    assert table.schema.field("risk_score").type == pa.float64()
    assert table.schema.field("balance").type == pa.decimal128(10, 2)
    assert table["created_at"][0].as_py() == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert table["balance"][0].as_py() == Decimal("12.50")
    assert table.schema.field("preferences").type == pa.string()  # JSON as text
    assert '"theme"' in table["preferences"][0].as_py()
    # BOOLEAN is bool on PostgreSQL and SQLite; MariaDB stores it as TINYINT(1)
    assert table.schema.field("is_active").type in (pa.bool_(), pa.int64())
    assert sorted(bool(v) for v in table["is_active"].to_pylist()) == [False, True]


def test_streams_many_rows_in_several_batches(sql_url: str) -> None:
    rows = [
        {"event_id": i, "person_id": "per_a" if i % 5 else "per_b", "action": "login"}
        for i in range(30_000)
    ]
    _setup(sql_url, [], rows)
    conn = SqlConnector("crm", sql_url, batch_rows=5_000)
    try:
        batches = list(
            conn.fetch({"table": "events"}, Lookup("person_id", ["per_a"]), ["event_id"])
        )
    finally:
        conn.close()
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == 24_000
    assert len(sizes) >= 5 and max(sizes) <= 5_000
    assert all(b.schema == batches[0].schema for b in batches)
    assert batches[0].schema.field("event_id").type == pa.int64()


def test_in_lists_are_chunked(sql_url: str) -> None:
    _setup(sql_url, [_person(i) for i in range(2_400)])
    conn = SqlConnector("crm", sql_url)
    statements: list[tuple[str, int]] = []

    @sa.event.listens_for(conn.engine, "before_cursor_execute")
    def _count(_c, _cur, statement, parameters, _ctx, _many) -> None:  # type: ignore[no-untyped-def]
        if "people" in statement and "SELECT" in statement.upper():
            size = len(parameters) if isinstance(parameters, (dict, tuple, list)) else 0
            statements.append((statement, size))

    values = [f"C{i:08d}" for i in range(0, 2_600)]  # 2,400 exist, 200 do not
    try:
        table = _fetch(conn, {"table": "people"}, Lookup("customer_number", values), ["person_id"])
    finally:
        conn.close()
    assert table.num_rows == 2_400
    assert len(set(table["person_id"].to_pylist())) == 2_400
    if conn.is_postgresql:
        assert len(statements) == 1  # one array bind
        assert "ANY" in statements[0][0]
    else:
        assert len(statements) == 3  # 1,000 + 1,000 + 600
        assert all(size <= 1_000 for _, size in statements)


def test_casefold_matches_mixed_case_emails(sql_url: str) -> None:
    _setup(
        sql_url,
        [
            _person(1, "Alice.Smith@Example.COM"),
            _person(2, "alice.smith@example.com"),
            _person(3, "BOB@example.org"),
            _person(4, "carol@example.net"),
        ],
    )
    conn = SqlConnector("crm", sql_url)
    try:
        folded = _fetch(
            conn,
            {"table": "people"},
            Lookup("email", ["alice.smith@example.com", "bob@example.org"], True),
            ["person_id"],
        )
        exact = _fetch(
            conn,
            {"table": "people"},
            Lookup("email", ["alice.smith@example.com"], False),
            ["person_id"],
        )
    finally:
        conn.close()
    assert sorted(folded["person_id"].to_pylist()) == [
        "per_000000000001",
        "per_000000000002",
        "per_000000000003",
    ]
    if not sql_url.startswith("mysql"):  # MariaDB's default collation ignores case anyway
        assert exact["person_id"].to_pylist() == ["per_000000000002"]


@pytest.mark.parametrize(
    "entity, column",
    [
        ({"table": "people; drop table x"}, "email"),
        ({"table": "a.b.c"}, "email"),
        ({"table": "people"}, "email) OR 1=1 --"),
        ({"table": "people"}, "1email"),
    ],
)
def test_identifiers_are_validated(sql_url: str, entity: dict, column: str) -> None:
    _setup(sql_url, [_person(1)])
    conn = SqlConnector("crm", sql_url)
    try:
        with pytest.raises(SourceError, match=r"invalid .* identifier") as info:
            conn.fetch(entity, Lookup(column, ["x"]), ["person_id"])
        assert info.value.system == "crm" and not info.value.transient
        assert (
            _fetch(
                conn, {"table": "people"}, Lookup("email", ["user1@example.com"]), ["person_id"]
            ).num_rows
            == 1
        )
    finally:
        conn.close()


def test_unknown_table_and_column(sql_url: str) -> None:
    _setup(sql_url, [_person(1)])
    conn = SqlConnector("crm", sql_url)
    try:
        with pytest.raises(SourceError, match="table not found"):
            list(conn.fetch({"table": "nope"}, Lookup("email", [SECRET_EMAIL]), ["email"]))
        with pytest.raises(SourceError, match="no column 'shoe_size'"):
            list(conn.fetch({"table": "people"}, Lookup("email", [SECRET_EMAIL]), ["shoe_size"]))
    finally:
        conn.close()


def test_no_values_no_query(sql_url: str) -> None:
    conn = SqlConnector("crm", sql_url)
    try:
        assert list(conn.fetch({"table": "people"}, Lookup("email", []), ["email"])) == []
    finally:
        conn.close()


def test_error_messages_hold_no_looked_up_values(sql_url: str) -> None:
    _setup(sql_url, [_person(1, SECRET_EMAIL)])
    conn = SqlConnector("crm", sql_url)
    lookup = Lookup("email", [SECRET_EMAIL, "other.person@example.net"])
    try:
        assert _fetch(conn, {"table": "people"}, lookup, ["person_id"]).num_rows == 1
        # The table disappears after its columns were reflected: the query itself fails,
        # and SQLAlchemy's message would print the statement and the bound values.
        admin = sa.create_engine(engine_url(sql_url))
        with admin.begin() as c:
            c.execute(sa.text("DROP TABLE people"))
        admin.dispose()
        with pytest.raises(SourceError) as info:
            list(conn.fetch({"table": "people"}, lookup, ["person_id"]))
    finally:
        conn.close()
    err = info.value
    text = str(err) + "".join(traceback.format_exception(err))
    assert "crm" in str(err) and "people" in str(err) and "query failed" in str(err)
    assert SECRET_EMAIL not in text and "other.person" not in text
    assert "SELECT" not in text.upper().replace("SELECTED", "")
    assert err.__cause__ is None and err.__suppress_context__


def test_type_mismatch_error_holds_no_values(postgres_url: str) -> None:
    _setup(postgres_url, [], [{"event_id": 1, "person_id": "p", "action": "a"}])
    conn = SqlConnector("crm", postgres_url)
    try:
        with pytest.raises(SourceError) as info:  # integer = ANY(text[])
            list(conn.fetch({"table": "events"}, Lookup("event_id", [SECRET_EMAIL]), ["action"]))
    finally:
        conn.close()
    assert SECRET_EMAIL not in str(info.value)
    assert "code 42883" in str(info.value) and not info.value.transient


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://postgres@127.0.0.1:1/nowhere", marks=pytest.mark.postgres),
        pytest.param("mysql+pymysql://root@127.0.0.1:1/nowhere", marks=pytest.mark.mariadb),
    ],
)
def test_unreachable_server_is_transient(url: str) -> None:
    conn = SqlConnector("crm", url, connect_timeout_s=2)
    try:
        with pytest.raises(SourceError) as info:
            list(conn.fetch({"table": "people"}, Lookup("email", [SECRET_EMAIL]), ["email"]))
    finally:
        conn.close()
    assert info.value.transient
    assert info.value.system == "crm" and "cannot connect" in str(info.value)
    assert SECRET_EMAIL not in str(info.value)


def test_missing_sqlite_file_is_not_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "missing.sqlite"
    conn = SqlConnector("crm", f"sqlite:///{path}")
    try:
        with pytest.raises(SourceError, match="cannot connect") as info:
            list(conn.fetch({"table": "people"}, Lookup("email", ["x"]), ["email"]))
    finally:
        conn.close()
    assert not info.value.transient
    assert not path.exists()


def test_schema_qualified_table(postgres_url: str) -> None:
    engine = sa.create_engine(engine_url(postgres_url))
    with engine.begin() as c:
        c.execute(sa.text("CREATE SCHEMA crm"))
        c.execute(sa.text("CREATE TABLE crm.people (person_id text, email text)"))
        c.execute(sa.text("INSERT INTO crm.people VALUES ('p1', 'a@x'), ('p2', 'b@x')"))
    engine.dispose()
    conn = SqlConnector("crm", postgres_url)
    try:
        table = _fetch(conn, {"table": "crm.people"}, Lookup("email", ["b@x"]), ["person_id"])
    finally:
        conn.close()
    assert table["person_id"].to_pylist() == ["p2"]


def test_copy_bulk_reads_match_fetch(postgres_url: str) -> None:
    rows = [_person(i) for i in range(1, 40)]
    rows[3]["email"] = ""  # empty text stays empty, NULL stays null
    rows[4]["email"] = None
    rows[5]["email"] = 'quote " and, comma\nnewline'
    _setup(postgres_url, rows)
    conn = SqlConnector("crm", postgres_url)
    cols = [
        "person_id",
        "email",
        "created_at",
        "date_of_birth",
        "risk_score",
        "balance",
        "is_active",
        "preferences",
    ]
    lookup = Lookup("customer_number", [f"C{i:08d}" for i in range(0, 60)])
    try:
        fetched = pa.Table.from_batches(list(conn.fetch({"table": "people"}, lookup, cols)))
        batches = list(copy_batches(conn, {"table": "people"}, lookup, cols, segment_bytes=1_000))
        copied = pa.Table.from_batches(batches)
        folded = list(
            copy_batches(
                conn,
                {"table": "people"},
                Lookup("email", ["USER9@example.com"], True),
                ["person_id"],
            )
        )
    finally:
        conn.close()
    assert copied.schema == fetched.schema
    assert copied.sort_by("person_id").equals(fetched.sort_by("person_id"))
    assert copied.num_rows == 39 and len(batches) > 1  # several segments of whole rows
    assert pa.Table.from_batches(folded)["person_id"].to_pylist() == ["per_000000000009"]


def test_copy_is_postgresql_only(sqlite_url: str) -> None:
    conn = SqlConnector("crm", sqlite_url)
    with pytest.raises(SourceError, match="need PostgreSQL"):
        copy_batches(conn, {"table": "people"}, Lookup("email", ["x"]), ["email"])
    conn.close()


def test_unreadable_value_error_holds_no_value(sqlite_url: str) -> None:
    _setup(sqlite_url, [_person(1)])
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as c:  # SQLite keeps any text in a DATETIME column
        c.execute(sa.text("UPDATE people SET created_at = :v"), {"v": SECRET_EMAIL})
    engine.dispose()
    conn = SqlConnector("crm", sqlite_url)
    try:
        with pytest.raises(SourceError, match="could not be read") as info:
            list(
                conn.fetch(
                    {"table": "people"}, Lookup("person_id", ["per_000000000001"]), ["created_at"]
                )
            )
    finally:
        conn.close()
    assert SECRET_EMAIL not in str(info.value)
