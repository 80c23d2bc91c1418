"""Many rows through one statement, with SQLite's values bound by the driver.

``conn.execute(stmt, rows)`` builds a parameter dictionary per row and runs each value through
its type's bind processor, in Python: on the ingest path that cost as much as SQLite storing
the rows (about 20 us a paper). :func:`execute_many` compiles the statement once for the
rows' keys, takes each row's values with one ``itemgetter`` and runs only the processors the
columns have (JSON, dates), exactly as SQLAlchemy would, then hands the tuples to the DB-API
``executemany``. Statements it cannot bind this way (a column default to fill in, a literal in
an ON CONFLICT clause, another dialect) go through ``conn.execute`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection


def execute_many(conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``conn.execute(stmt, rows)`` for rows that all have the same keys."""
    if not rows:
        return
    if conn.dialect.name != "sqlite" or len(rows) < 8:
        conn.execute(stmt, rows)
        return
    keys = list(rows[0])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=keys)
    names = compiled.positiontup
    # Every bound name must be a key of the rows: a name that is not (a Python-side column
    # default, a literal value in the statement) needs SQLAlchemy to fill it in.
    if not compiled.positional or names is None or not set(names) <= set(keys) or any(
            len(row) != len(keys) for row in rows):
        conn.execute(stmt, rows)
        return
    dialect = conn.dialect
    procs = []
    for i, name in enumerate(names):
        proc = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if proc is not None:
            procs.append((i, proc))
    get = itemgetter(*names)
    try:
        values = [(get(row),) for row in rows] if len(names) == 1 else [get(row) for row in rows]
    except KeyError:  # rows with different keys: SQLAlchemy says which
        conn.execute(stmt, rows)
        return
    if procs:
        out = []
        for vals in values:
            vals = list(vals)
            for i, proc in procs:
                vals[i] = proc(vals[i])
            out.append(tuple(vals))
        values = out
    conn.exec_driver_sql(compiled.string, values)
