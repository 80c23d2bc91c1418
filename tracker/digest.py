"""The editor's digest: what is new and what changed in a period, ranked by what matters.

``build_digest`` returns plain data (what ``tracker digest -f json`` prints); the markdown and
HTML renderers (``tracker.digest_render``) and the Atom feed (``tracker.feed``) are built from
it. Every string in it is registry or journal text as stored: the renderers escape it.

Ranking of changes, most important first (``CHANGE_RANK``): results posted; a phase 3 or later
trial started (or a trial moved into phase 3); completed; terminated, suspended or withdrawn,
with the registry's reason; started recruiting; completion date moved by more than six months;
enrollment changed by 20% or more. Within a kind, the newest registry date first.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from db.models import Publication, PublicationTrial, Study, StudyReference, StudySecondaryId
from tracker.history import ChangeFilter, query_changes
from tracker.reports import (
    PaperFilter,
    StudyFilter,
    _group_order,
    group_keys,
    iso,
    last_update,
    query_paper_ids,
    query_papers,
    query_studies,
    study_clauses,
    unreported_cutoff,
)
from tracker.taxonomy import PHASES
from tracker.words import (
    group_words,
    labels_line,
    phase_words,
    plural,
    status_words,
)

S = Study.__table__
P = Publication.__table__
PT = PublicationTrial.__table__
REF = StudyReference.__table__
SEC = StudySecondaryId.__table__

TITLE = "MSC therapy: latest advancements"
CHANGE_RANK = ("results_posted", "phase3_started", "completed", "stopped",
               "started_recruiting", "completion_moved", "enrollment_changed")
LATE_PHASES = ("PHASE2_3", "PHASE3", "PHASE4")
ACTIVE = ("RECRUITING", "ENROLLING_BY_INVITATION", "ACTIVE_NOT_RECRUITING")
STOPPED = ("TERMINATED", "SUSPENDED", "WITHDRAWN")
# Later phases first inside a condition group: they are closer to patients.
PHASE_ORDER = ("PHASE4", "PHASE3", "PHASE2_3", "PHASE2", "PHASE1_2", "PHASE1", "EARLY_PHASE1",
               "NOT_APPLICABLE", "UNKNOWN")
COMPLETION_SHIFT_MONTHS = 6
ENROLLMENT_SHIFT = 0.20
UNREPORTED_SHOWN = 25
SNIPPET_CHARS = 220


def build_digest(
    conn: Connection,
    *,
    since: dt.date | None = None,
    last_run: bool = False,
    labels: StudyFilter | None = None,
    unreported_months: int = 12,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The digest of one period: ``since`` a date (new registrations first posted on or after
    it, papers first indexed on or after it, changes seen on or after it) or the last update.

    ``labels`` filters every section (its ``query`` and ``countries`` too); its sort orders
    the new trials and papers (with a query: best match first) and its limit caps the new
    trials, the notable changes and the papers, each; counts of unreported trials and the
    charts cover every match.
    """
    today = today or dt.date.today()
    now = now or dt.datetime.now(dt.UTC)
    labels = labels or StudyFilter()
    if last_run:
        up = last_update(conn)
        finished = up.finished_at.date().isoformat() if up.finished_at else "?"
        period = {"since": None, "until": finished, "update_id": up.id,
                  "label": f"the last update (#{up.id}, {finished})"}
    else:
        since = since or today - dt.timedelta(days=7)
        period = {"since": since.isoformat(), "until": today.isoformat(),
                  "label": f"since {since.isoformat()}"}
    flt = replace(labels, since=since if not last_run else None, last_run=last_run,
                  last_run_changed=False)
    studies = query_studies(conn, flt)
    _add_snippets(conn, S, "brief_summary", studies)
    new_trials = _group_trials(studies)

    everything = replace(labels, sort=None, desc=False, limit=None)  # counts and charts
    events = query_changes(conn, ChangeFilter(since=None if last_run else since,
                                              last_run=last_run, labels=everything))
    changes = rank_changes(conn, events)[: labels.limit or None]
    status_moves = Counter(
        f"{e['old_words']} → {e['new_words']}" for e in events if e["field"] == "status")

    # A paper reporting results of a tracked trial is listed whatever the classifier made of
    # its abstract (the trial's labels decide); other papers pass the label filters.
    every = query_papers(conn, PaperFilter(since=flt.since, last_run=last_run, labels=replace(
        everything, include_irrelevant=True, query=None)))
    wanted = {_pid(p) for p in query_paper_ids(conn, PaperFilter(
        since=flt.since, last_run=last_run, labels=labels))}
    reporting = _results_papers(conn, every, everything)
    papers = [p for p in every if _pid(p) in wanted or _pid(p) in reporting]
    if labels.query is not None or labels.sort:  # the labels' order, then their limit
        ranked = query_papers(conn, PaperFilter(since=flt.since, last_run=last_run,
                                                labels=replace(labels, include_irrelevant=True,
                                                               limit=None)))
        place = {_pid(p): i for i, p in enumerate(ranked)}
        papers.sort(key=lambda p: place.get(_pid(p), len(place)))
    papers = papers[: labels.limit or None]
    _add_snippets(conn, P, "abstract", papers, key="pmid_or_id")
    results_papers = [_paper_item(p, reporting[_pid(p)]) for p in papers if _pid(p) in reporting]
    others = [p for p in papers if _pid(p) not in reporting]

    cutoff = unreported_cutoff(today, unreported_months)
    overdue = query_studies(conn, replace(everything, since=None, last_run=False,
                                          unreported_before=cutoff))
    overdue.sort(key=lambda s: (s.get("primary_completion_date") or "", s["registry_id"]),
                 reverse=True)
    unreported = [_unreported_item(s, unreported_months) for s in overdue[:UNREPORTED_SHOWN]]

    counts = {"new_trials": len(studies), "changes": len(changes),
              "new_papers": len(papers), "results_papers": len(results_papers),
              "unreported": len(overdue)}
    return {
        "title": TITLE,
        "period": period,
        "generated_at": iso(now),
        "counts": counts,
        "summary": _summary(counts),
        "new_trials": new_trials,
        "changes": changes,
        "results_papers": results_papers,
        "papers": _group_papers(others),
        "unreported": unreported,
        "unreported_more": max(0, len(overdue) - UNREPORTED_SHOWN),
        "charts": charts_data(conn, everything, today, status_moves),
    }


def _summary(counts: dict[str, int]) -> str:
    return ", ".join([
        plural(counts["new_trials"], "new trial"), plural(counts["changes"], "notable change"),
        plural(counts["new_papers"], "new paper"),
        f"{counts['results_papers']:,} reporting results of a tracked trial",
        f"{counts['unreported']:,} completed but unreported",
    ])


def _pid(paper: dict[str, Any]) -> str:
    if paper.get("pmid"):
        return f"PMID:{paper['pmid']}"
    if paper.get("pmcid"):
        return str(paper["pmcid"])
    if paper.get("doi"):
        return f"DOI:{paper['doi']}"
    return f"KEY:{paper.get('key') or paper.get('url') or paper.get('title')}"


def _snippet(text: str | None) -> str:
    """The first sentence or so of a summary or abstract, on one line."""
    if not text:
        return ""
    one = " ".join(text.split())
    if len(one) <= SNIPPET_CHARS:
        return one
    cut = one[:SNIPPET_CHARS]
    stop = cut.rfind(". ")
    if stop > SNIPPET_CHARS // 2:
        return cut[: stop + 1]
    return cut[: cut.rfind(" ")].rstrip(",;:") + " …"


def _add_snippets(conn: Connection, table: Any, column: str, rows: list[dict[str, Any]],
                  key: str = "registry_id") -> None:
    """Attach a one-line ``snippet`` of ``column`` to each row (one query per 500 rows)."""
    if key == "registry_id":
        ids = [r["registry_id"] for r in rows]
        col = table.c.registry_id
        get = lambda r: r["registry_id"]
    else:
        ids = [r["pmid"] for r in rows if r.get("pmid")]
        col = table.c.pmid
        get = lambda r: r.get("pmid")
    text: dict[str, str | None] = {}
    for i in range(0, len(ids), 500):
        text.update(conn.execute(select(col, table.c[column]).where(
            col.in_(ids[i : i + 500]))).all())
    if key != "registry_id":  # papers without a PMID: by their DOI or PMCID
        rest = [r for r in rows if not r.get("pmid") and (r.get("doi") or r.get("pmcid"))]
        for r in rest:
            clause = P.c.doi == r["doi"] if r.get("doi") else P.c.pmcid == r["pmcid"]
            r["snippet"] = _snippet(conn.execute(select(P.c.abstract).where(clause)).scalar())
    for r in rows:
        if "snippet" not in r:
            r["snippet"] = _snippet(text.get(get(r)))


def _study_item(s: dict[str, Any], why: str, entry_key: str) -> dict[str, Any]:
    return {
        "kind": "study", "id": s["registry_id"], "url": s.get("url"), "title": s["title"],
        "snippet": s.get("snippet", ""), "labels": labels_line(s),
        "groups": [group_words(g) for g in s.get("condition_groups") or []],
        "phase_label": phase_words(s.get("phase")), "status_label": status_words(s.get("status")),
        "date": s.get("first_posted"), "why": why, "entry_key": entry_key,
        "msc_relevant": s.get("msc_relevant"),
    }


def _group_trials(studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New trials under their first condition group (chronic pain first), then by phase."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    first_of: dict[Any, dict[str, Any]] = {}  # a trial's item: its other registrations join it
    for s in studies:
        trial = s.get("trial_id")
        if trial is not None and trial in first_of:
            item = first_of[trial]
            item["also_registered"] = [*item.get("also_registered", []), s["registry_id"]]
            item["why"] += f"; also registered as {s['registry_id']}"
            continue
        group = min(group_keys(s), key=_group_order)
        item = _study_item(
            s, f"New trial, first posted {s['first_posted'] or 'on an unknown date'}",
            f"study:{s['registry_id']}:new")
        if trial is not None:
            first_of[trial] = item
        cells.setdefault((group, s["phase"]), []).append(item)
    out = []
    for group, phase in sorted(cells, key=lambda k: (_group_order(k[0]), PHASE_ORDER.index(
            k[1]) if k[1] in PHASE_ORDER else len(PHASE_ORDER))):
        out.append({"group": group, "group_label": group_words(group), "phase": phase,
                    "phase_label": phase_words(phase), "items": cells[(group, phase)]})
    return out


def _months(value: str | None) -> int | None:
    """A registry date (YYYY, YYYY-MM or YYYY-MM-DD) as a month number; None if absent."""
    if not value or len(value) < 4 or not value[:4].isdigit():
        return None
    month = int(value[5:7]) if len(value) >= 7 and value[5:7].isdigit() else 6
    return int(value[:4]) * 12 + month - 1


def change_kind(event: dict[str, Any], phase: str | None) -> str | None:
    """The notable kind of one change event (``CHANGE_RANK``), or None if it is not notable."""
    name, old, new = event["field"], event["old_value"], event["new_value"]
    if name == "has_results" and new == "true":
        return "results_posted"
    if name == "results_first_posted" and new and not old:
        return "results_posted"
    if name == "status":
        if new in ACTIVE and old not in ACTIVE and phase in LATE_PHASES:
            return "phase3_started"
        if new == "COMPLETED":
            return "completed"
        if new in STOPPED:
            return "stopped"
        if new == "RECRUITING":
            return "started_recruiting"
    if name == "phase" and new in LATE_PHASES and old not in LATE_PHASES:
        return "phase3_started"
    if name in ("completion_date", "primary_completion_date"):
        a, b = _months(old), _months(new)
        if a is not None and b is not None and abs(b - a) > COMPLETION_SHIFT_MONTHS:
            return "completion_moved"
    if name == "enrollment" and old and new:
        try:
            a, b = int(old), int(new)
        except ValueError:
            return None
        if a > 0 and abs(b - a) / a >= ENROLLMENT_SHIFT:
            return "enrollment_changed"
    return None


def _why(kind: str, event: dict[str, Any], reason: str | None) -> str:
    date = event["registry_date"] or (event["seen_at"] or "")[:10]
    old, new = event["old_words"], event["new_words"]
    if kind == "results_posted":
        return f"Results posted (registry update {date})"
    if kind == "phase3_started":
        if event["field"] == "phase":
            return f"Moved into {new} (was {old}; registry update {date})"
        return f"Phase 3 or later trial now {new.lower()} (was {old.lower()}; {date})"
    if kind == "completed":
        return f"Completed (was {old.lower()}; registry update {date})"
    if kind == "stopped":
        because = f"; reason given: {reason}" if reason else "; no reason given"
        return f"{new} (was {old.lower()}{because}; {date})"
    if kind == "started_recruiting":
        return f"Started recruiting (was {old.lower()}; {date})"
    if kind == "completion_moved":
        label = event["field_label"].lower()
        return f"{label[0].upper()}{label[1:]} moved from {old} to {new} ({date})"
    if kind == "enrollment_changed":
        return f"Enrollment changed from {old} to {new} ({date})"
    return f"{event['field_label']}: {old} → {new} ({date})"


def rank_changes(conn: Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Notable changes as digest items, most important first.

    One item per study version (a study and the registry date of the update that changed it)
    with every notable kind of that version, ranked by its most important kind; ties keep the
    newest first. ``why`` says each kind in rank order."""
    if not events:
        return []
    ids = sorted({e["registry_id"] for e in events})
    info: dict[str, dict[str, Any]] = {}
    cols = (S.c.registry_id, S.c.phase, S.c.status, S.c.why_stopped, S.c.brief_summary,
            S.c.cell_sources, S.c.origins, S.c.products, S.c.condition_groups,
            S.c.first_posted)
    for i in range(0, len(ids), 500):
        for row in conn.execute(select(*cols).where(S.c.registry_id.in_(ids[i : i + 500]))):
            info[row[0]] = dict(row._mapping)
    reasons = {(e["registry_id"], e["seen_at"]): e["new_value"] for e in events
               if e["field"] == "why_stopped"}
    versions: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for e in events:  # newest first already
        study = info.get(e["registry_id"], {})
        kind = change_kind(e, study.get("phase"))
        if kind is None:
            continue
        found = versions.setdefault((e["registry_id"], e["seen_at"]), [])
        if kind not in {k for k, _ in found}:
            found.append((kind, e))
    items = []
    for (rid, seen), found in versions.items():
        found.sort(key=lambda ke: CHANGE_RANK.index(ke[0]))
        kind, first = found[0]
        study = info.get(rid, {})
        reason = reasons.get((rid, seen)) or study.get("why_stopped")
        date = first["registry_date"] or (seen or "")[:10] or None
        why = "; ".join(_why(k, e, reason) for k, e in found)
        item = _study_item({**study, "title": first["title"], "url": first["url"],
                            "registry_id": rid, "snippet": _snippet(study.get("brief_summary")),
                            "msc_relevant": first.get("msc_relevant")}, why,
                           f"change:{rid}:{date}:{'+'.join(k for k, _ in found)}")
        item.update(date=date, change_kind=kind, change_kinds=[k for k, _ in found],
                    field=first["field"], old=first["old_words"], new=first["new_words"],
                    seen_at=seen, reason=reason if any(k == "stopped" for k, _ in found)
                    else None)
        items.append(item)
    items.sort(key=lambda it: CHANGE_RANK.index(it["change_kind"]))  # stable: newest first
    return items


def _results_papers(conn: Connection, papers: list[dict[str, Any]],
                    labels: StudyFilter) -> dict[str, list[str]]:
    """Which of ``papers`` report results of a stored trial that passes ``labels``' filters,
    and of which trials.

    A paper reports a trial when it declares it (PubMed databank, title or abstract link of
    type "reports") and the trial is stored, or when the registry lists the paper as a RESULT
    reference."""
    out: dict[str, list[str]] = {}
    tracked = study_clauses(replace(labels, since=None, last_run=False))
    by_pmid = {p["pmid"]: p for p in papers if p.get("pmid")}
    pmids = list(by_pmid)
    for i in range(0, len(pmids), 500):
        stmt = select(REF.c.pmid, S.c.registry_id).select_from(
            REF.join(S, S.c.id == REF.c.study_id)).where(
            REF.c.pmid.in_(pmids[i : i + 500]), REF.c.type == "RESULT", *tracked)
        for pmid, rid in conn.execute(stmt):
            out.setdefault(_pid(by_pmid[pmid]), []).append(rid)
    declared = [(p, rid) for p in papers for rid in p.get("trial_ids") or []]
    if declared:
        rids = sorted({rid for _, rid in declared})
        stored: set[str] = set()
        for i in range(0, len(rids), 500):
            chunk = rids[i : i + 500]
            stored |= set(conn.execute(select(S.c.registry_id).where(
                S.c.registry_id.in_(chunk), *tracked)).scalars())
            stored |= set(conn.execute(select(SEC.c.value).select_from(
                SEC.join(S, S.c.id == SEC.c.study_id)).where(
                SEC.c.value.in_(chunk), *tracked)).scalars())
        reports = _reporting_links(conn, [p for p, _ in declared])
        for p, rid in declared:
            if rid in stored and (_pid(p), rid) in reports:
                lst = out.setdefault(_pid(p), [])
                if rid not in lst:
                    lst.append(rid)
    return out


def _reporting_links(conn: Connection, papers: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(paper id, trial id) pairs whose stored link type is "reports"."""
    wanted = {_pid(p): p for p in papers}
    out: set[tuple[str, str]] = set()
    clauses = []
    pmids = [p["pmid"] for p in wanted.values() if p.get("pmid")]
    dois = [p["doi"] for p in wanted.values() if not p.get("pmid") and p.get("doi")]
    if pmids:
        clauses.append(P.c.pmid.in_(pmids))
    if dois:
        clauses.append(P.c.doi.in_(dois))
    if not clauses:
        return out
    stmt = select(P.c.pmid, P.c.pmcid, P.c.doi, PT.c.registry_id).select_from(
        PT.join(P, P.c.id == PT.c.publication_id)).where(
        or_(*clauses), PT.c.link_type == "reports")
    for pmid, pmcid, doi, rid in conn.execute(stmt):
        out.add((_pid({"pmid": pmid, "pmcid": pmcid, "doi": doi}), rid))
    return out


def _paper_item(p: dict[str, Any], trials: list[str] | None = None) -> dict[str, Any]:
    if trials:
        why = f"Reports results of {', '.join(trials)}"
        key = f"paper:{_pid(p)}:reports"
    else:
        why = f"New paper, first indexed {p.get('index_date') or 'on an unknown date'}"
        key = f"paper:{_pid(p)}:new"
    journal = p.get("journal") or ""
    return {
        "kind": "paper", "id": _pid(p), "url": p.get("url"), "title": p["title"],
        "snippet": p.get("snippet", ""), "labels": labels_line(p),
        "groups": [group_words(g) for g in p.get("condition_groups") or []],
        "phase_label": phase_words(p["phase"]) if p.get("phase") not in (None, "UNKNOWN")
        else "", "status_label": "preprint" if p.get("is_preprint") else "",
        "journal": journal, "pub_date": p.get("pub_date"),
        "date": p.get("index_date"), "why": why, "entry_key": key, "trials": trials or [],
        "msc_relevant": p.get("msc_relevant"),
    }


def _group_papers(papers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in papers:
        group = min(group_keys(p), key=_group_order)
        groups.setdefault(group, []).append(_paper_item(p))
    return [{"group": g, "group_label": group_words(g), "items": groups[g]}
            for g in sorted(groups, key=_group_order)]


def _unreported_item(s: dict[str, Any], months: int) -> dict[str, Any]:
    done = s.get("primary_completion_date")
    item = _study_item(s, f"Primary completion {done}, more than {plural(months, 'month')} "
                          "ago; no results posted and no results paper linked",
                       f"study:{s['registry_id']}:unreported")
    item.update(primary_completion=done, date=done)
    return item


def quarters(today: dt.date, years: int = 5) -> list[str]:
    """The last ``years`` years of calendar quarters up to today's, oldest first: 2022Q1 ..."""
    index = today.year * 4 + (today.month - 1) // 3
    return [f"{i // 4}Q{i % 4 + 1}" for i in range(index - years * 4 + 1, index + 1)]


def charts_data(conn: Connection, labels: StudyFilter, today: dt.date,
                status_moves: Counter[str]) -> dict[str, Any]:
    """Registrations per quarter (by phase, by condition group) over five years, and the status
    changes of the period, for the digest's charts."""
    x = quarters(today)
    start = dt.date(int(x[0][:4]), (int(x[0][-1]) - 1) * 3 + 1, 1)
    rows = query_studies(conn, replace(labels, since=start, last_run=False))
    by_phase: dict[str, list[int]] = {}
    by_group: dict[str, list[int]] = {}
    pos = {q: i for i, q in enumerate(x)}
    for s in rows:
        if not s.get("first_posted"):
            continue
        d = dt.date.fromisoformat(s["first_posted"])
        q = pos.get(f"{d.year}Q{(d.month - 1) // 3 + 1}")
        if q is None:
            continue
        by_phase.setdefault(s["phase"], [0] * len(x))[q] += 1
        group = min(group_keys(s), key=_group_order)
        by_group.setdefault(group, [0] * len(x))[q] += 1
    phase_series = {phase_words(p): by_phase[p] for p in PHASES if p in by_phase}
    groups = sorted(by_group, key=_group_order)
    group_series = {group_words(g): by_group[g] for g in groups}
    moves = status_moves.most_common(12)
    return {
        "registrations_by_phase": {
            "title": "New MSC registrations per quarter, by phase", "x": x if rows else [],
            "series": phase_series},
        "registrations_by_group": {
            "title": "New MSC registrations per quarter, by condition group",
            "x": x if rows else [], "series": group_series},
        "status_changes": {"title": "Status changes in this period",
                           "labels": [m[0] for m in moves], "counts": [m[1] for m in moves]},
    }


__all__ = ["CHANGE_RANK", "build_digest", "change_kind", "charts_data", "quarters",
           "rank_changes"]
