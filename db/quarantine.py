"""Quarantine: records a source sent that could not be parsed, kept raw with the error.

A quarantined record does not stop its run; it is counted as rejected, and it leaves the
quarantine when a later run (or ``tracker classify`` after a fix) stores it. A source that can
fetch records by id is asked again for its quarantined ones at the end of each run
(``tracker.pipeline``), so a record damaged in transit comes back with the next run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from db.models import Quarantine
from db.records import content_hash
from db.upsert import _insert, compress

Q = Quarantine.__table__


def quarantine_record(
    conn: Connection, source: str, record_id: str | None, raw: bytes, error: str,
    run_id: int | None, now: dt.datetime,
) -> str:
    """Keep one unparseable record; returns the key it is kept under."""
    key = record_id or f"sha:{content_hash(raw)}"
    stmt = _insert(conn, Q).values(
        source=source, record_key=key, run_id=run_id, error=error[:2000], raw=compress(raw),
        first_seen_at=now, last_seen_at=now, attempts=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Q.c.source, Q.c.record_key],
        set_={"run_id": stmt.excluded.run_id, "error": stmt.excluded.error,
              "raw": stmt.excluded.raw, "last_seen_at": stmt.excluded.last_seen_at,
              "attempts": Q.c.attempts + 1})
    conn.execute(stmt)
    return key


def release(conn: Connection, source: str, keys: Sequence[str]) -> int:
    """Drop quarantine rows of records that have now been stored."""
    removed = 0
    keys = list(keys)
    for i in range(0, len(keys), 500):
        removed += conn.execute(delete(Q).where(
            Q.c.source == source, Q.c.record_key.in_(keys[i : i + 500]))).rowcount
    return removed


def waiting(conn: Connection, source: str | None = None) -> int:
    """How many records wait in quarantine (for one source or all)."""
    stmt = select(func.count()).select_from(Q)
    if source:
        stmt = stmt.where(Q.c.source == source)
    return int(conn.execute(stmt).scalar_one())


def waiting_ids(conn: Connection, source: str) -> list[str]:
    """The source ids of a source's quarantined records (not those kept under a hash)."""
    stmt = select(Q.c.record_key).where(Q.c.source == source,
                                        Q.c.record_key.not_like("sha:%"))
    return [key for (key,) in conn.execute(stmt.order_by(Q.c.record_key))]
