"""What changed: change events, one study's timeline, and the database as it stood on a date.

Reads ``study_change`` (one row per field per new version, ``db.history``) and
``study_version`` (every earlier raw record). Rows are JSON-ready dicts; ``tracker.render``
prints them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from db.history import BY_NAME, FIELD_NAMES, from_text
from db.models import FetchRun, Study, StudyChange, StudyVersion
from db.upsert import decompress
from tracker.errors import NotFoundError
from tracker.reports import (
    LIST_COLUMNS,
    StudyFilter,
    _slugs,
    iso,
    last_update,
    study_clauses,
)
from tracker.search import matches
from tracker.words import phase_words, status_words

S = Study.__table__
C = StudyChange.__table__
V = StudyVersion.__table__
RUN = FetchRun.__table__


@dataclass(frozen=True)
class ChangeFilter:
    """Which change events to list. ``since`` is the day the tracker saw the change."""

    since: dt.date | None = None
    last_run: bool = False
    fields: Sequence[str] = ()
    labels: StudyFilter = field(default_factory=StudyFilter)
    study_ids: Sequence[int] = ()


def check_fields(values: Sequence[str]) -> list[str]:
    """Validate ``--field`` values (comma-separated allowed); ConfigError names the valid ones."""
    return _slugs(values, FIELD_NAMES, "--field")


def words(field_name: str, value: Any) -> str:
    """One field value in plain words."""
    if value is None or value == []:
        return "(none)"
    if field_name == "status":
        return status_words(value)
    if field_name == "phase":
        return phase_words(value)
    if field_name == "has_results":
        return "yes" if value in ("true", True) else "no"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def event_words(field_name: str, old: str | None, new: str | None) -> tuple[str, str]:
    """(old, new) in words; for list fields, what was removed and what was added."""
    a, b = from_text(field_name, old), from_text(field_name, new)
    if isinstance(a, list) or isinstance(b, list):
        a, b = a or [], b or []
        removed = [x for x in a if x not in b]
        added = [x for x in b if x not in a]
        if not removed and not added:  # only the order changed
            return words(field_name, a), words(field_name, b)
        return (("removed: " + words(field_name, removed)) if removed else "(nothing removed)",
                ("added: " + words(field_name, added)) if added else "(nothing added)")
    return words(field_name, a), words(field_name, b)


def query_changes(conn: Connection, flt: ChangeFilter) -> list[dict[str, Any]]:
    """Change events matching ``flt``, newest first (by the registry's date, then by when the
    tracker saw them), fields in ``db.history.FIELDS`` order within a version."""
    clauses: list[Any] = []
    if flt.since is not None:
        start = dt.datetime.combine(flt.since, dt.time(), tzinfo=dt.UTC)
        clauses.append(C.c.changed_at >= start)
    if flt.last_run:
        clauses.append(C.c.run_id.in_(last_update(conn).run_ids or (-1,)))
    if flt.fields:
        clauses.append(C.c.field.in_(list(flt.fields)))
    if flt.study_ids:
        clauses.append(C.c.study_id.in_(list(flt.study_ids)))
    labels = flt.labels
    clauses += study_clauses(labels, query=False)
    match = matches(conn, "study", labels.query) if labels.query is not None else None
    score = [match.c.score] if match is not None else []
    joined = C.join(S, S.c.id == C.c.study_id)
    if match is not None:
        joined = joined.join(match, match.c.id == S.c.id)
    stmt = (select(C.c.id, C.c.field, C.c.old_value, C.c.new_value, C.c.registry_date,
                   C.c.changed_at, C.c.run_id, RUN.c.update_id, S.c.registry, S.c.registry_id,
                   S.c.title, S.c.url, S.c.msc_relevant, S.c.first_posted, S.c.phase,
                   S.c.enrollment, *score)
            .select_from(joined.outerjoin(RUN, RUN.c.id == C.c.run_id))
            .where(*clauses))
    order = {name: i for i, name in enumerate(FIELD_NAMES)}
    rows = []
    sort_values: dict[int, Any] = {}
    for r in conn.execute(stmt).mappings():
        old_words, new_words = event_words(r["field"], r["old_value"], r["new_value"])
        spec = BY_NAME.get(r["field"])
        rows.append({
            "registry": r["registry"], "registry_id": r["registry_id"], "title": r["title"],
            "field": r["field"], "field_label": spec.label if spec else r["field"],
            "old_value": r["old_value"], "new_value": r["new_value"],
            "old_words": old_words, "new_words": new_words,
            "registry_date": iso(r["registry_date"]), "seen_at": iso(r["changed_at"]),
            "run_id": r["run_id"], "update_id": r["update_id"], "url": r["url"],
            "msc_relevant": r["msc_relevant"], "event_id": r["id"],
        })
        if match is not None:
            rows[-1]["score"] = round(float(r["score"]), 6)
        sort_values[r["id"]] = (r["first_posted"], r["phase"], r["enrollment"])
    # Within one version: registry id, then the order people read fields in (stable sorts).
    rows.sort(key=lambda e: (e["registry_id"], order.get(e["field"], len(order))))
    rows.sort(key=lambda e: (e["registry_date"] or "", e["seen_at"] or ""), reverse=True)
    key = labels.sort or ("relevance" if labels.query is not None else None)
    if key is not None:
        rows = sort_rows(rows, key, labels.desc, lambda e: {
            "first_posted": sort_values[e["event_id"]][0],
            "last_update": e["registry_date"], "phase": sort_values[e["event_id"]][1],
            "enrollment": sort_values[e["event_id"]][2], "relevance": e.get("score")}[key])
    return rows[: labels.limit] if labels.limit else rows


def sort_rows(rows: list[dict[str, Any]], key: str, desc: bool,
              value: Any) -> list[dict[str, Any]]:
    """``rows`` in the order of ``--sort key`` (``value(row)`` gives the key's value): as
    ``tracker.reports.order_by`` orders in SQL (ascending unless ``desc``, rows without a
    value last; relevance best first), stable."""
    from tracker.taxonomy import PHASES

    def norm(row: dict[str, Any]) -> Any:
        v = value(row)
        if key == "phase":
            return PHASES.index(v) if v in PHASES else len(PHASES)
        return iso(v) if v is not None else None

    present = [r for r in rows if norm(r) is not None]
    missing = [r for r in rows if norm(r) is None]
    reverse = desc if key != "relevance" else not desc
    present.sort(key=norm, reverse=reverse)
    return present + missing


def timeline(conn: Connection, registry_id: str) -> dict[str, Any]:
    """One study's history, oldest first: first sight, then each new version with the fields
    it changed (a version that changed no tracked field is listed as such)."""
    rid = registry_id.strip().upper()
    study = conn.execute(select(S.c.id, S.c.registry_id, S.c.title, S.c.url, S.c.first_posted,
                                S.c.first_seen_at).where(S.c.registry_id == rid)).mappings().first()
    if study is None:
        raise NotFoundError(f"{registry_id} is not in this database; run `tracker update` or "
                            "check the id (e.g. NCT01234567)")
    events: list[dict[str, Any]] = [{
        "registry_date": iso(study["first_posted"]), "seen_at": iso(study["first_seen_at"]),
        "event": "first seen", "field": None, "field_label": None,
        "old_words": None, "new_words": "registration first posted"
        if study["first_posted"] else "first stored",
    }]
    changes = query_changes(conn, ChangeFilter(study_ids=[study["id"]],
                                               labels=StudyFilter(include_irrelevant=True)))
    by_seen: dict[str, list[dict[str, Any]]] = {}
    for ev in changes:
        by_seen.setdefault(ev["seen_at"], []).append(ev)
    versions = conn.execute(select(V.c.seen_until, V.c.last_update_posted).where(
        V.c.study_id == study["id"]).order_by(V.c.seen_until)).all()
    seen_versions = set()
    current = conn.execute(select(S.c.last_update_posted).where(
        S.c.id == study["id"])).scalar()
    for i, (until, _posted) in enumerate(versions):
        key = iso(until)
        seen_versions.add(key)
        evs = sorted(by_seen.get(key, []), key=lambda e: FIELD_NAMES.index(e["field"])
                     if e["field"] in FIELD_NAMES else 99)
        if not evs:
            posted = versions[i + 1][1] if i + 1 < len(versions) else current
            events.append({"registry_date": iso(posted), "seen_at": key, "event": "version",
                           "field": None, "field_label": None, "old_words": None,
                           "new_words": "record updated; no tracked field changed"})
        for ev in evs:
            events.append(_timeline_event(ev))
    for key, evs in sorted(by_seen.items()):  # events of versions not kept (older databases)
        if key not in seen_versions:
            events += [_timeline_event(ev) for ev in evs]
    events[1:] = sorted(events[1:], key=lambda e: (e["seen_at"] or "", e["registry_date"] or ""))
    return {"registry_id": study["registry_id"], "title": study["title"], "url": study["url"],
            "versions": len(versions) + 1, "events": events}


def _timeline_event(ev: dict[str, Any]) -> dict[str, Any]:
    return {"registry_date": ev["registry_date"], "seen_at": ev["seen_at"], "event": "changed",
            "field": ev["field"], "field_label": ev["field_label"],
            "old_words": ev["old_words"], "new_words": ev["new_words"]}


def studies_as_of(conn: Connection, flt: StudyFilter, as_of: dt.date,
                  rules: Any = None) -> list[dict[str, Any]]:
    """The studies as the registry showed them on ``as_of``, from the versions kept.

    A study counts when it was first posted on or before ``as_of``; its row is the newest
    stored version whose registry update date is on or before ``as_of`` (the earliest kept
    version when every kept one is newer: ``as_of_exact`` is then False). Filters apply to
    those versions' values, labels included (they are classified again with ``rules``);
    ``--query`` and ``--country`` to the current record (the index and the locations hold
    the current version only). ``flt``'s sort and limit apply to the rows.
    """
    from dataclasses import replace

    from sources import parse_raw
    from tracker.classify import classify_study, load_rules

    rules = rules or load_rules(None)
    cols = [S.c[name] for name in LIST_COLUMNS]
    current = study_clauses(StudyFilter(include_irrelevant=True, query=flt.query,
                                        countries=flt.countries))
    base = select(S.c.id, func.coalesce(S.c.source, S.c.registry), *cols).where(
        (S.c.first_posted <= as_of) | (S.c.first_posted.is_(None)), *current)
    scores: dict[str, float] = {}
    if flt.query is not None:
        scores = {r["registry_id"]: r["score"] for r in _ranked(conn, replace(
            flt, sort=None, desc=False, limit=None))}
    rows: list[dict[str, Any]] = []
    keep = _python_filter(flt)
    for sid, registry, *values in conn.execute(base):
        row = {name: iso(v) for name, v in zip(LIST_COLUMNS, values, strict=True)}
        if row["first_posted"] is None and row["first_seen_at"][:10] > as_of.isoformat():
            continue
        posted = row["last_update_posted"]
        if posted is not None and posted > as_of.isoformat():
            # The current version is newer than the date: rebuild the one the registry showed.
            kept = conn.execute(select(V.c.raw, V.c.last_update_posted).where(
                V.c.study_id == sid).order_by(V.c.seen_from)).all()
            fitting = [v for v in kept if v[1] is not None and v[1] <= as_of]
            if not kept:
                row["as_of_exact"] = False
            else:
                raw = fitting[-1][0] if fitting else kept[0][0]
                try:
                    rec = parse_raw(registry, decompress(raw))
                except Exception:  # noqa: BLE001, S112 - a version that no longer parses: left out
                    continue
                rec.labels = classify_study(rec, rules)
                first_seen = row["first_seen_at"]
                row = record_row(rec)
                row["first_seen_at"] = first_seen
                row["as_of_exact"] = bool(fitting)
        row.setdefault("as_of_exact", True)
        if keep(row):
            if flt.query is not None:
                row["score"] = scores.get(row["registry_id"], 0.0)
            rows.append(row)
    rows.sort(key=lambda r: (r["first_posted"] or "", r["registry_id"]), reverse=True)
    key = flt.sort or ("relevance" if flt.query is not None else None)
    if key is not None:
        field_of = {"first_posted": "first_posted", "last_update": "last_update_posted",
                    "phase": "phase", "enrollment": "enrollment", "relevance": "score"}
        rows = sort_rows(rows, key, flt.desc, lambda r: r.get(field_of[key]))
    return rows[: flt.limit] if flt.limit else rows


def _ranked(conn: Connection, flt: StudyFilter) -> list[dict[str, Any]]:
    from tracker.reports import query_studies

    return query_studies(conn, StudyFilter(include_irrelevant=True, query=flt.query))


def record_row(rec: Any) -> dict[str, Any]:
    """A listing row (``LIST_COLUMNS``) built from a parsed record, not from the table."""
    from db.labels import label_values
    from db.upsert import _study_row

    values = _study_row(rec, dt.datetime.now(dt.UTC), None)
    values.update(label_values(rec.labels, None))
    return {name: iso(values.get(name)) for name in LIST_COLUMNS}


def _python_filter(flt: StudyFilter) -> Any:
    """``flt``'s label, phase, status and condition filters as a test on a listing row."""
    def keep(row: dict[str, Any]) -> bool:
        if flt.roles:
            if row.get("msc_role") not in flt.roles:
                return False
        elif not flt.include_irrelevant and row["msc_relevant"] is False:
            return False
        if flt.phases and row["phase"] not in flt.phases:
            return False
        if flt.statuses and row["status"] not in flt.statuses:
            return False
        for wanted, have in ((flt.groups, row["condition_groups"]),
                             (flt.cell_sources, row["cell_sources"]),
                             (flt.origins, row["origins"]), (flt.products, row["products"])):
            if wanted and not set(wanted) & set(have or ()):
                return False
        return not flt.conditions or any(t.lower() in c.lower() for t in flt.conditions
                                         for c in row["conditions"] or ())

    return keep


__all__ = ["ChangeFilter", "check_fields", "event_words", "query_changes", "record_row",
           "studies_as_of", "timeline"]
