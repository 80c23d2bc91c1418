"""``tracker status``: what the nightly job did, per source, and what the database holds."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from db.models import (
    FetchRun,
    Publication,
    Quarantine,
    SourceState,
    Study,
    TrialMember,
    UpdateRun,
)
from sources import REGISTRY
from tracker.config import Settings
from tracker.errors import redact
from tracker.reports import iso

RUN = FetchRun.__table__
STATE = SourceState.__table__
UPDATE = UpdateRun.__table__


def _dead(conn: Any, update_id: int | None) -> bool:
    """True when the update a running source run belongs to was started on this host by a
    process that no longer exists (killed); unknown (another host, no pid) counts as alive:
    running is not failing."""
    if update_id is None:
        return False
    row = conn.execute(select(UPDATE.c.pid, UPDATE.c.host).where(
        UPDATE.c.id == update_id)).first()
    if row is None or row[0] is None or row[1] != socket.gethostname():
        return False
    try:
        os.kill(row[0], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def last_update_status(conn: Any) -> dict[str, Any] | None:
    """The newest update run (running or not) with each of its source runs under it."""
    up = conn.execute(select(UPDATE).order_by(UPDATE.c.id.desc()).limit(1)).mappings().first()
    if up is None:
        return None
    runs = conn.execute(select(RUN).where(RUN.c.update_id == up["id"]).order_by(
        RUN.c.id)).mappings().all()
    outcome, error = up["outcome"], up["error"]
    if outcome == "running" and _dead(conn, up["id"]):
        outcome, error = "failed", "its process is gone (killed?); the next update closes it"
    return {
        "id": up["id"], "started_at": iso(up["started_at"]), "finished_at": iso(up["finished_at"]),
        "outcome": outcome, "error": redact(error) if error else None,
        "sources": [{"source": r["source"], "outcome": r["outcome"], "run_id": r["id"],
                     **{k: r[k] for k in ("new", "changed", "unchanged", "rejected")},
                     "error": redact(r["error"]) if r["error"] else None} for r in runs],
    }


def collect_status(engine: Engine, settings: Settings, next_run: dt.datetime | None = None) -> dict[str, Any]:
    """Per-source run state and database counts, JSON-ready.

    ``healthy`` is False when the last run of any enabled source failed, or was left running
    by a process that died. A run still running is not a failure: monitoring does not alarm
    while the nightly update works.
    """
    sources = []
    healthy = True
    with engine.connect() as conn:
        for name in REGISTRY:
            state = conn.execute(select(STATE).where(STATE.c.source == name)).mappings().first()
            last = conn.execute(select(RUN).where(RUN.c.source == name).order_by(
                RUN.c.id.desc()).limit(1)).mappings().first()
            if name not in settings.sources:  # a file import (tracker import): shown once used
                if last is None:
                    continue
                enabled = True
            else:
                enabled = settings.source(name).enabled
            last_ok = conn.execute(select(RUN.c.finished_at).where(
                RUN.c.source == name, RUN.c.outcome.in_(("ok", "partial"))).order_by(
                RUN.c.id.desc()).limit(1)).scalar()
            last_error = conn.execute(select(RUN.c.error, RUN.c.finished_at).where(
                RUN.c.source == name, RUN.c.error.is_not(None)).order_by(
                RUN.c.id.desc()).limit(1)).first()
            waiting = conn.execute(select(func.count()).select_from(Quarantine.__table__).where(
                Quarantine.__table__.c.source == name)).scalar_one()
            outcome = last["outcome"] if last else None
            if outcome == "running" and _dead(conn, last["update_id"]):
                outcome = "failed"  # its process is gone: the next update will close it
            if enabled and outcome == "failed":
                healthy = False
            sources.append({
                "source": name,
                "enabled": enabled,
                "last_run_outcome": outcome,
                "last_run_started": iso(last["started_at"]) if last else None,
                "last_run_counts": {k: last[k] for k in (
                    "fetched", "new", "changed", "unchanged", "rejected", "requests",
                    "retries")} if last else None,
                "last_success": iso(last_ok),
                "watermark": iso(state["watermark"]) if state else None,
                "last_error": redact(last_error[0]) if last_error else None,
                "last_error_at": iso(last_error[1]) if last_error else None,
                "quarantined": waiting,
            })
        s, p = Study.__table__, Publication.__table__
        member = TrialMember.__table__
        counts = {
            "studies": conn.execute(select(func.count()).select_from(s)).scalar_one(),
            # registrations that declare each other are one trial (db.trials)
            "trials": conn.execute(select(func.count(func.distinct(func.coalesce(
                member.c.trial_id, s.c.id)))).select_from(s.outerjoin(
                    member, member.c.study_id == s.c.id))).scalar_one(),
            "studies_msc_relevant": conn.execute(select(func.count()).select_from(s).where(
                s.c.msc_relevant.is_(True))).scalar_one(),
            "papers": conn.execute(select(func.count()).select_from(p).where(
                p.c.deleted.is_(False))).scalar_one(),
            "papers_msc_relevant": conn.execute(select(func.count()).select_from(p).where(
                p.c.msc_relevant.is_(True), p.c.deleted.is_(False))).scalar_one(),
            "quarantined": conn.execute(select(func.count()).select_from(
                Quarantine.__table__)).scalar_one(),
        }
        latest = last_update_status(conn)
    return {"database": settings.db, "healthy": healthy, "next_scheduled_run": iso(next_run),
            "last_update": latest, "sources": sources, "counts": counts}
