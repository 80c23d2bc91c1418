"""db.bulk.execute_many stores exactly what conn.execute(stmt, rows) stores.

Rows of every value kind the ingest writes (JSON lists and objects, JSON null, datetimes,
booleans, bytes, NULL) go into one real SQLite table through the driver-bound path and into a
twin through SQLAlchemy; the stored values (as SQLite holds them, not as read back through
the types) must be equal. Statements the fast path cannot bind fall back and still work.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from db.bulk import execute_many
from db.engine import make_engine


def _tables() -> tuple[MetaData, Table, Table]:
    meta = MetaData()
    cols = lambda: [
        Column("id", Integer, primary_key=True),
        Column("name", String, unique=True),
        Column("tags", JSON),
        Column("seen", DateTime(timezone=True)),
        Column("flag", Boolean),
        Column("raw", LargeBinary),
    ]
    return meta, Table("fast", meta, *cols()), Table("slow", meta, *cols())


def _rows(n: int) -> list[dict]:
    base = dt.datetime(2026, 12, 1, 14, 3, 5, 123456, tzinfo=dt.UTC)
    return [{"name": f"r{i}", "tags": [["a", i], {"k": None}, None][i % 3],
             "seen": None if i % 5 == 0 else base + dt.timedelta(seconds=i),
             "flag": [True, False, None][i % 3], "raw": bytes([i % 256]) * 3}
            for i in range(n)]


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'bulk.sqlite'}")
    yield engine
    engine.dispose()


def _stored(conn, name: str) -> list[tuple]:
    return conn.exec_driver_sql(
        f"SELECT name, tags, typeof(tags), seen, flag, raw FROM {name} ORDER BY id").all()


def test_the_driver_bound_rows_equal_sqlalchemys(db: Engine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    meta, fast, slow = _tables()
    meta.create_all(db)
    rows = _rows(50)
    driver_calls = []
    real = Connection.exec_driver_sql
    monkeypatch.setattr(Connection, "exec_driver_sql",
                        lambda self, *a, **k: driver_calls.append(a[0]) or real(self, *a, **k))
    with db.begin() as conn:
        execute_many(conn, fast.insert(), rows)
        conn.execute(slow.insert(), rows)
    assert [c.split(" (")[0] for c in driver_calls if c != "BEGIN"] == ["INSERT INTO fast"]
    with db.connect() as conn:
        got, want = _stored(conn, "fast"), _stored(conn, "slow")
    assert len(got) == 50
    assert got == want
    assert {r[2] for r in got} == {"text"}  # JSON None is stored as 'null', as SQLAlchemy does


def test_an_upsert_with_excluded_values_and_a_fallback(db: Engine) -> None:
    meta, fast, _slow = _tables()
    meta.create_all(db)
    with db.begin() as conn:
        execute_many(conn, fast.insert(), _rows(20))
        stmt = sqlite.insert(fast)
        stmt = stmt.on_conflict_do_update(index_elements=[fast.c.name],
                                          set_={"tags": stmt.excluded.tags})
        execute_many(conn, stmt, [{**r, "tags": ["new"]} for r in _rows(20)])
        # a literal in the statement is a bound name the rows lack: SQLAlchemy binds it
        literal = sqlite.insert(fast).on_conflict_do_update(
            index_elements=[fast.c.name], set_={"flag": True})
        execute_many(conn, literal, _rows(20))
    with db.connect() as conn:
        stored = conn.execute(fast.select().order_by(fast.c.id)).all()
    assert len(stored) == 20
    assert {tuple(r.tags) for r in stored} == {("new",)}
    assert all(r.flag is True for r in stored)


def test_rows_with_different_keys_are_refused_as_sqlalchemy_refuses_them(db: Engine) -> None:
    meta, fast, slow = _tables()
    meta.create_all(db)
    rows = _rows(10)
    rows[5] = {"name": "odd", "tags": [], "seen": None, "flag": None, "extra": 1}
    with pytest.raises(Exception) as fast_err, db.begin() as conn:
        execute_many(conn, fast.insert(), rows)
    with pytest.raises(Exception) as slow_err, db.begin() as conn:
        conn.execute(slow.insert(), rows)
    assert type(fast_err.value) is type(slow_err.value)
    with db.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM fast").scalar() == 0
