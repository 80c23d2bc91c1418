"""Read-side queries: studies by window and filter, the condition-by-phase table, one study.

Functions here return plain data (dicts ready for JSON); ``tracker.render`` turns them into
tables, markdown, CSV or JSON. Every query uses bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import exists, func, select
from sqlalchemy.engine import Connection

from db.models import (
    FetchRun,
    Study,
    StudyChange,
    StudyCondition,
    StudyIntervention,
    StudyMesh,
    StudyReference,
    StudySecondaryId,
)
from db.upsert import decompress
from tracker.errors import ConfigError, NotFoundError
from tracker.taxonomy import PHASES, STATUSES

S = Study.__table__
RUN = FetchRun.__table__


@dataclass(frozen=True)
class StudyFilter:
    """Which studies a report or listing covers. Empty lists mean "any"."""

    since: dt.date | None = None  # registry first-posted date on or after
    last_run: bool = False  # new to this database in its last update
    conditions: Sequence[str] = ()
    phases: Sequence[str] = ()
    statuses: Sequence[str] = ()
    registry: str | None = None


def _check(values: Sequence[str], valid: Sequence[str], option: str) -> list[str]:
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip().upper().replace("-", "_")
            if not part:
                continue
            if part not in valid:
                raise ConfigError(f"{option} {part!r} is not one of: {', '.join(valid)}")
            out.append(part)
    return out


def make_filter(
    *,
    since: dt.date | None = None,
    last_run: bool = False,
    conditions: Sequence[str] = (),
    phases: Sequence[str] = (),
    statuses: Sequence[str] = (),
) -> StudyFilter:
    """Validate filter values from the CLI; raises ConfigError for an unknown phase or status."""
    if since is not None and last_run:
        raise ConfigError("use either --since or --last-run, not both")
    return StudyFilter(
        since=since,
        last_run=last_run,
        conditions=[c.strip() for v in conditions for c in v.split(",") if c.strip()],
        phases=_check(phases, PHASES, "--phase"),
        statuses=_check(statuses, STATUSES, "--status"),
    )


def last_run_threshold(conn: Connection) -> int | None:
    """Run id after which studies count as "new in the last update".

    That is every run since the successful run before the latest successful one, so studies a
    failed run stored before the last success are not forgotten. None means "all runs".
    """
    ids = conn.execute(
        select(RUN.c.id).where(RUN.c.outcome.in_(("ok", "partial"))).order_by(RUN.c.id.desc())
        .limit(2)
    ).scalars().all()
    if not ids:
        raise ConfigError("--last-run: this database has no successful update yet; run "
                          "`tracker update` first")
    return ids[1] if len(ids) > 1 else None


def _where(conn: Connection, flt: StudyFilter) -> list[Any]:
    clauses: list[Any] = []
    if flt.since is not None:
        clauses.append(S.c.first_posted >= flt.since)
    if flt.last_run:
        threshold = last_run_threshold(conn)
        clauses.append(S.c.first_seen_run_id.is_not(None))
        if threshold is not None:
            clauses.append(S.c.first_seen_run_id > threshold)
    if flt.phases:
        clauses.append(S.c.phase.in_(flt.phases))
    if flt.statuses:
        clauses.append(S.c.status.in_(flt.statuses))
    if flt.registry:
        clauses.append(S.c.registry == flt.registry)
    if flt.conditions:
        c = StudyCondition.__table__
        alternatives = [func.lower(c.c.name).contains(term.lower(), autoescape=True)
                        for term in flt.conditions]
        from sqlalchemy import or_

        clauses.append(exists().where(c.c.study_id == S.c.id, or_(*alternatives)))
    return clauses


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


LIST_COLUMNS = (
    "registry", "registry_id", "title", "phase", "status", "conditions", "study_type",
    "enrollment", "sponsor", "first_posted", "last_update_posted", "start_date",
    "completion_date", "has_results", "first_seen_at", "last_changed_at", "url",
)


def query_studies(conn: Connection, flt: StudyFilter) -> list[dict[str, Any]]:
    """Studies matching ``flt``, newest first-posted first, as JSON-ready dicts."""
    cols = [S.c[name] for name in LIST_COLUMNS]
    stmt = select(*cols).where(*_where(conn, flt)).order_by(
        S.c.first_posted.desc(), S.c.registry_id
    )
    return [
        {name: _iso(value) for name, value in zip(LIST_COLUMNS, row, strict=True)}
        for row in conn.execute(stmt)
    ]


@dataclass
class Report:
    """New studies in a window, with their condition-by-phase counts."""

    title: str
    studies: list[dict[str, Any]]
    groups: list[str]
    phases: list[str]
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    group_totals: Counter[str] = field(default_factory=Counter)


def group_keys(study: dict[str, Any]) -> list[str]:
    """The rows a study is counted in: its conditions as the registry names them."""
    return sorted({c for c in study.get("conditions") or []}) or ["(no condition)"]


def build_report(conn: Connection, flt: StudyFilter) -> Report:
    """The report for ``flt``: studies plus a condition-by-phase table counting each once."""
    studies = query_studies(conn, flt)
    counts: Counter[tuple[str, str]] = Counter()
    totals: Counter[str] = Counter()
    for s in studies:
        for g in group_keys(s):
            counts[(g, s["phase"])] += 1
            totals[g] += 1
    groups = sorted(totals, key=lambda g: (-totals[g], g))
    phases = [p for p in PHASES if any(k[1] == p for k in counts)]
    if flt.last_run:
        title = "New in the last update"
    elif flt.since:
        title = f"New since {flt.since.isoformat()} (first posted)"
    else:
        title = "All studies"
    return Report(title, studies, groups, phases, dict(counts), totals)


def study_detail(conn: Connection, registry_id: str) -> dict[str, Any]:
    """Everything stored about one study; raises NotFoundError for an unknown id."""
    rid = registry_id.strip().upper()
    row = conn.execute(select(S).where(S.c.registry_id == rid)).mappings().first()
    if row is None:
        raise NotFoundError(f"{registry_id} is not in this database; run `tracker update` or "
                            "check the id (e.g. NCT01234567)")
    out = {k: _iso(v) for k, v in row.items() if k not in ("raw", "id", "content_hash")}
    sid = row["id"]

    def rows(table: Any, *cols: str) -> list[dict[str, Any]]:
        t = table.__table__
        stmt = select(*[t.c[c] for c in cols]).where(t.c.study_id == sid).order_by(t.c.id)
        return [dict(r._mapping) for r in conn.execute(stmt)]

    out["interventions"] = rows(StudyIntervention, "type", "name", "other_names")
    out["mesh"] = rows(StudyMesh, "kind", "mesh_id", "term", "ancestor")
    out["secondary_ids"] = rows(StudySecondaryId, "value", "type", "domain")
    out["references"] = rows(StudyReference, "pmid", "type", "citation", "retraction_pmids")
    out["changes"] = [
        {k: _iso(v) for k, v in r.items()}
        for r in rows(StudyChange, "field", "old_value", "new_value", "changed_at")
    ]
    return out


def raw_record(conn: Connection, registry_id: str) -> dict[str, Any]:
    """The stored raw registry record of one study, decompressed and parsed."""
    blob = conn.execute(select(S.c.raw).where(S.c.registry_id == registry_id.upper())).scalar()
    if blob is None:
        raise NotFoundError(f"{registry_id} is not in this database")
    return orjson.loads(decompress(blob))
