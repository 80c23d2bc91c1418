"""Engine factory and the SQLite pragmas, in one place.

SQLite runs in WAL mode so that ``tracker report`` can read while ``tracker update`` writes,
with foreign keys on and a busy timeout so a reader never fails on a writer's lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import create_engine


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for an SQLAlchemy URL; a SQLite file's folder is created if missing.

    Raises ValueError for a URL SQLAlchemy cannot read.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30},
                               json_serializer=_json_dumps, json_deserializer=orjson.loads)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a
        # transaction really starts when SQLAlchemy says it does (SQLAlchemy docs, "Serializable
        # isolation / Savepoints / Transactional DDL" for pysqlite).
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, json_serializer=_json_dumps,
                         json_deserializer=orjson.loads)


def _create_private(path: Path) -> None:
    """Create a new database file readable and writable by its owner only (0600).

    The file holds the scheduler's job, which APScheduler stores pickled and unpickles when it
    starts: whoever can write the file could make the scheduler run code. An existing file's
    mode is left as its owner set it."""
    import os

    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # a read-only location: SQLite will say so when it opens the file
    os.close(fd)


def _json_dumps(value: object) -> str:
    """JSON columns are written with orjson: the same JSON as ``json.dumps`` reads back, at
    a tenth of the cost (an ingest writes nine JSON lists per paper)."""
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.isolation_level = None  # let the "begin" listener emit BEGIN
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def is_sqlite(bind: Engine | Connection) -> bool:
    """True when ``bind`` talks to SQLite."""
    return bind.dialect.name == "sqlite"


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with engine.begin() as conn:
        yield conn
