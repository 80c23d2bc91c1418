"""Read-side queries: studies by window and filter, the condition-by-phase table, one study.

Functions here return plain data (dicts ready for JSON); ``tracker.render`` turns them into
tables, markdown, CSV or JSON. Every query uses bound parameters.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import Boolean

from db.models import (
    FetchRun,
    Publication,
    PublicationSource,
    PublicationTrial,
    RecordLabel,
    Study,
    StudyChange,
    StudyCondition,
    StudyCountry,
    StudyIntervention,
    StudyMesh,
    StudyReference,
    StudySecondaryId,
    TrialMember,
    UpdateRun,
)
from db.upsert import decompress
from tracker.errors import ConfigError, NotFoundError
from tracker.role import ROLES
from tracker.search import UsageError, parse_query
from tracker.taxonomy import CELL_SOURCES, CONDITION_GROUPS, ORIGINS, PHASES, PRODUCTS, STATUSES

S = Study.__table__
MEMBER = TrialMember.__table__
RUN = FetchRun.__table__
UPDATE = UpdateRun.__table__


@dataclass(frozen=True)
class StudyFilter:
    """Which studies a report or listing covers. Empty lists mean "any"."""

    since: dt.date | None = None  # registry first-posted date on or after
    last_run: bool = False  # new to this database in its last update
    last_run_changed: bool = False  # with last_run: changed in it counts too
    unreported_before: str | None = None  # primary completion before this month, no results
    conditions: Sequence[str] = ()  # registry condition names containing this text
    groups: Sequence[str] = ()  # condition-group slugs
    phases: Sequence[str] = ()
    statuses: Sequence[str] = ()
    cell_sources: Sequence[str] = ()
    origins: Sequence[str] = ()
    products: Sequence[str] = ()
    include_irrelevant: bool = False
    roles: Sequence[str] = ()  # MSC roles (tracker.role.ROLES); any role given lists those
    registry: str | None = None
    query: Any = None  # tracker.search.Query: full-text match (ranked by relevance)
    countries: Sequence[str] = ()  # canonical country names (study_country)
    sort: str | None = None  # one of SORT_KEYS; None: relevance with a query, else default
    desc: bool = False
    limit: int | None = None


SORT_KEYS = ("first_posted", "last_update", "phase", "enrollment", "relevance")
MAX_VALUE = 200  # characters in one filter value: longer is a mistake, not a condition name
_PHASE_ALIASES = {"NA": "NOT_APPLICABLE", "N/A": "NOT_APPLICABLE", "EARLY1": "EARLY_PHASE1",
                  "0": "EARLY_PHASE1"}


def _phase_alias(value: str) -> str:
    """Accept what people type: "2" or "phase 2" for PHASE2, "1/2" for PHASE1_2."""
    v = value.replace(" ", "").replace("/", "_").replace("-", "_")
    if v in _PHASE_ALIASES:
        return _PHASE_ALIASES[v]
    if re.fullmatch(r"[1-4](_[2-4])?", v):
        return "PHASE" + v
    return v


def _check(values: Sequence[str], valid: Sequence[str], option: str) -> list[str]:
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip().upper().replace("-", "_")
            if valid is PHASES:
                part = _phase_alias(part)
            if not part:
                continue
            if part not in valid:
                raise ConfigError(f"{option} {part!r} is not one of: {', '.join(valid)}")
            out.append(part)
    return out


def _slugs(values: Sequence[str], valid: Sequence[str], option: str) -> list[str]:
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip().lower().replace("-", "_").replace(" ", "_")
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
    cell_sources: Sequence[str] = (),
    origins: Sequence[str] = (),
    products: Sequence[str] = (),
    include_irrelevant: bool = False,
    roles: Sequence[str] = (),
    last_run_changed: bool = False,
    unreported_before: str | None = None,
    query: str | None = None,
    countries: Sequence[str] = (),
    sort: str | None = None,
    desc: bool = False,
    limit: int | str | None = None,
    registry: str | None = None,
) -> StudyFilter:
    """Validate filter values from the CLI; raises ConfigError for an unknown value, and
    UsageError (exit 2) for a bad ``--query``, ``--country``, ``--sort`` or ``--limit``.

    A ``--condition`` value that is a condition-group slug (``osteoarthritis``) selects that
    group; any other text matches registry condition names containing it.
    """
    if since is not None and last_run:
        raise ConfigError("use either --since or --last-run, not both")
    for option, values in (("--condition", conditions), ("--phase", phases),
                           ("--status", statuses), ("--cell-source", cell_sources),
                           ("--origin", origins), ("--product", products),
                           ("--country", countries)):
        for v in values:
            if len(v) > MAX_VALUE:
                raise ConfigError(f"{option}: a value of {len(v):,} characters is longer than "
                                  f"the {MAX_VALUE} allowed; give a condition group or a few "
                                  "words of a condition name")
    words = [c.strip() for v in conditions for c in v.split(",") if c.strip()]
    groups = [w.lower().replace("-", "_") for w in words
              if w.lower().replace("-", "_") in CONDITION_GROUPS]
    role_list = _slugs(roles, (*ROLES, "all"), "--role")
    if "all" in role_list:
        # every stored record, whatever its role (and records classified before roles)
        include_irrelevant, role_list = True, []
    return StudyFilter(
        since=since,
        last_run=last_run,
        conditions=[w for w in words if w.lower().replace("-", "_") not in CONDITION_GROUPS],
        groups=groups,
        phases=_check(phases, PHASES, "--phase"),
        statuses=_check(statuses, STATUSES, "--status"),
        cell_sources=_slugs(cell_sources, CELL_SOURCES, "--cell-source"),
        origins=_slugs(origins, ORIGINS, "--origin"),
        products=_slugs(products, PRODUCTS, "--product"),
        include_irrelevant=include_irrelevant,
        roles=role_list,
        last_run_changed=last_run_changed,
        unreported_before=unreported_before,
        query=parse_query(query) if query is not None else None,
        countries=check_countries(countries),
        registry=check_registry(registry),
        sort=check_sort(sort, query is not None, desc),
        desc=desc,
        limit=check_limit(limit),
    )


def check_registry(value: str | None) -> str | None:
    """A registry slug (tracker.trial_ids.REGISTRIES), or UsageError naming them."""
    if value is None:
        return None
    from sources import SOURCES
    from tracker.trial_ids import REGISTRIES

    known = list(REGISTRIES) + [s for s in SOURCES if s not in REGISTRIES]  # + "ictrp" copies
    slug = value.strip().lower()
    if slug not in known:
        raise UsageError(f"--registry {value!r} is not one of: {', '.join(known)}")
    return slug


def check_countries(values: Sequence[str]) -> list[str]:
    """``--country`` values (repeatable, comma-separated) as canonical country names; an
    unknown one is a UsageError naming the closest."""
    from tracker.countries import close_matches, resolve_country

    out = []
    for v in values:
        for part in v.split(",") if "," in v and resolve_country(v) is None else [v]:
            if not part.strip():
                continue
            name = resolve_country(part)
            if name is None:
                near = close_matches(part)
                hint = (f"did you mean {' or '.join(repr(n) for n in near)}?" if near
                        else "give a country name as the registry writes it, e.g. 'Spain', "
                             "'Korea, Republic of'")
                raise UsageError(f"--country {part.strip()!r} is not a country the tracker "
                                 f"knows; {hint}")
            if name not in out:
                out.append(name)
    return out


def check_sort(value: str | None, has_query: bool, desc: bool = False) -> str | None:
    """``--sort``: one of ``SORT_KEYS`` (relevance only with ``--query``)."""
    if value is None:
        if desc and not has_query:
            raise UsageError("--desc reverses --sort: give --sort KEY too (one of: "
                             f"{', '.join(SORT_KEYS)})")
        return None
    key = value.strip().lower().replace("-", "_")
    if key not in SORT_KEYS:
        raise UsageError(f"--sort {value!r} is not one of: {', '.join(SORT_KEYS)}")
    if key == "relevance" and not has_query:
        raise UsageError("--sort relevance ranks the matches of --query: give --query TEXT "
                         "too")
    return key


def check_limit(value: int | str | None) -> int | None:
    """``--limit N``: a whole number of at least 1."""
    if value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1 or str(value).strip().lstrip("+") != str(number):
        raise UsageError(f"--limit {value!r} is not a whole number of at least 1; e.g. "
                         "--limit 20")
    return number


class MatchClause(ColumnElement[bool]):
    """``column IN (ids the full-text index matches for query)``, written for the engine it
    is compiled for (``tracker.search``: FTS5 MATCH or tsquery), the query bound."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, column: Any, kind: str, query: Any) -> None:
        self.column = column
        self.kind = kind
        self.query = query


@compiles(MatchClause, "sqlite")
def _match_sqlite(element: MatchClause, compiler: Any, **kw: Any) -> str:
    from sqlalchemy import literal

    from db.search import TABLES

    name = TABLES[element.kind][0]
    value = compiler.process(literal(element.query.fts5()), **kw)
    return (f"{compiler.process(element.column, **kw)} IN (SELECT rowid FROM {name} "
            f"WHERE {name} MATCH {value})")


@compiles(MatchClause, "postgresql")
def _match_pg(element: MatchClause, compiler: Any, **kw: Any) -> str:
    from sqlalchemy import literal

    from db.search import TABLES

    name = TABLES[element.kind][0]
    value = compiler.process(literal(element.query.tsquery()), **kw)
    return (f"{compiler.process(element.column, **kw)} IN (SELECT id FROM {name} "
            f"WHERE document @@ CAST({value} AS tsquery))")


def _phase_rank(column: Any) -> Any:
    return case({p: i for i, p in enumerate(PHASES)}, value=column, else_=len(PHASES))


def order_by(flt: StudyFilter, kind: str, score: Any, default: Sequence[Any],
             tiebreak: Any) -> list[Any]:
    """ORDER BY terms for ``flt``'s sort (``default`` when it has none and no query):
    ascending unless ``desc``, records without the value last; relevance best first
    (``desc``: worst first)."""
    key = flt.sort or ("relevance" if flt.query is not None else None)
    if key is None:
        return list(default)
    if key == "relevance":
        return [score.asc() if flt.desc else score.desc(), tiebreak]
    if kind == "study":
        columns = {"first_posted": S.c.first_posted, "last_update": S.c.last_update_posted,
                   "phase": _phase_rank(S.c.phase), "enrollment": S.c.enrollment}
    else:
        columns = {"first_posted": P.c.index_date, "last_update": P.c.date_revised,
                   "phase": _phase_rank(P.c.phase)}
    if key not in columns:
        raise UsageError(f"--sort {key} is for trials; papers sort by first_posted (first "
                         "indexed), last_update (revised), phase or relevance")
    col = columns[key]
    return [(col.desc() if flt.desc else col.asc()).nulls_last(), tiebreak]


def _label_clauses(table: Any, kind: str, flt: StudyFilter) -> list[Any]:
    """EXISTS clauses on record_label for the label filters, and the relevance filter."""
    lab = RecordLabel.__table__
    # The record's own foreign key (study_id / publication_id), so that SQLite reads this
    # record's labels on (fk, family, label) rather than every record with the label.
    record = lab.c.study_id if kind == "study" else lab.c.publication_id
    clauses: list[Any] = []
    for family, values in (("condition_group", flt.groups), ("cell_source", flt.cell_sources),
                           ("origin", flt.origins), ("product", flt.products)):
        if values:
            clauses.append(exists().where(record == table.c.id, lab.c.family == family,
                                          lab.c.label.in_(values)))
    if flt.roles:
        clauses.append(table.c.msc_role.in_(list(flt.roles)))
    elif not flt.include_irrelevant:
        # NULL or true as one test ("msc_relevant IS NOT 0"; PostgreSQL "IS NOT false"): the
        # OR of two tests on this indexed column made SQLite walk ix_*_msc_relevant, every
        # relevant row, instead of the window's date index or the join's key.
        clauses.append(table.c.msc_relevant.is_not(False))
    return clauses


@dataclass(frozen=True)
class LastUpdate:
    """The last finished ``tracker update`` and the source runs that belong to it."""

    id: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str
    run_ids: tuple[int, ...]


def last_update(conn: Connection) -> LastUpdate:
    """The newest update that has finished (an update still running is not "the last
    update" until it ends); raises ConfigError when there is none yet."""
    row = conn.execute(select(UPDATE).where(UPDATE.c.outcome != "running").order_by(
        UPDATE.c.id.desc()).limit(1)).mappings().first()
    if row is None:
        raise ConfigError("--last-run: this database has no finished update yet; run "
                          "`tracker update` first")
    runs = conn.execute(select(RUN.c.id).where(RUN.c.update_id == row["id"])).scalars().all()
    return LastUpdate(row["id"], row["started_at"], row["finished_at"], row["outcome"],
                      tuple(runs))


def _window_clauses(
    conn: Connection, table: Any, date_column: Any, since: dt.date | None, last_run: bool,
    changed: bool = False,
) -> list[Any]:
    """"New since a date" or "new in the last update" (``changed``: or changed in it), for
    studies and papers alike. The last update counts every source run it made, failed ones
    included: what a failed source stored before it failed is new too."""
    clauses: list[Any] = []
    if since is not None:
        clauses.append(date_column >= since)
    if last_run:
        runs = last_update(conn).run_ids or (-1,)
        new = table.c.first_seen_run_id.in_(runs)
        clauses.append(or_(new, table.c.last_changed_run_id.in_(runs)) if changed else new)
    return clauses


def _where(conn: Connection, flt: StudyFilter, query: bool = True) -> list[Any]:
    clauses = _window_clauses(conn, S, S.c.first_posted, flt.since, flt.last_run,
                              flt.last_run_changed)
    return clauses + study_clauses(flt, query=query)


def study_clauses(flt: StudyFilter, *, query: bool = True) -> list[Any]:
    """The label, phase, status, condition, country, full-text (unless not ``query``) and
    unreported filters of ``flt`` on ``study`` (everything but the time window)."""
    clauses: list[Any] = []
    if flt.query is not None and query:
        clauses.append(MatchClause(S.c.id, "study", flt.query))
    if flt.countries:
        sc = StudyCountry.__table__
        clauses.append(exists().where(sc.c.study_id == S.c.id,
                                      sc.c.country.in_(list(flt.countries))))
    if flt.phases:
        clauses.append(S.c.phase.in_(flt.phases))
    if flt.statuses:
        clauses.append(S.c.status.in_(flt.statuses))
    if flt.registry:
        clauses.append(S.c.registry == flt.registry)
    clauses += _label_clauses(S, "study", flt)
    if flt.conditions:
        c = StudyCondition.__table__
        alternatives = [func.lower(c.c.name).contains(term.lower(), autoescape=True)
                        for term in flt.conditions]
        clauses.append(exists().where(c.c.study_id == S.c.id, or_(*alternatives)))
    if flt.unreported_before:
        clauses.append(unreported_clause(flt.unreported_before))
    return clauses


def unreported_cutoff(today: dt.date, months: int) -> str:
    """The month (YYYY-MM) a primary completion must be before to count as overdue."""
    index = today.year * 12 + today.month - 1 - months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def unreported_clause(cutoff: str) -> Any:
    """Completed but unreported: the primary completion (registry date, month granularity)
    lies before ``cutoff``, the registry shows no results, no registry reference is a RESULT
    and no stored paper reports the trial. Withdrawn trials (they enrolled no one) are not."""
    pt = PublicationTrial.__table__
    sec = StudySecondaryId.__table__
    ref = StudyReference.__table__
    return and_(
        S.c.primary_completion_date.is_not(None),
        func.substr(S.c.primary_completion_date, 1, 7) < cutoff,
        S.c.has_results.is_(False),
        S.c.status != "WITHDRAWN",
        ~exists().where(ref.c.study_id == S.c.id, ref.c.type == "RESULT"),
        ~exists().where(pt.c.link_type == "reports", or_(
            pt.c.registry_id == S.c.registry_id,
            pt.c.registry_id.in_(select(sec.c.value).where(sec.c.study_id == S.c.id)))),
    )


def iso(value: Any) -> Any:
    """Dates and aware datetimes as ISO strings (UTC, with Z); anything else unchanged."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


LIST_COLUMNS = (
    "registry", "registry_id", "title", "phase", "status", "conditions", "msc_relevant",
    "msc_role", "minimally_manipulated", "condition_groups", "cell_sources", "origins", "products", "study_type", "enrollment",
    "sponsor", "first_posted", "last_update_posted", "start_date", "primary_completion_date",
    "completion_date", "has_results", "results_first_posted", "why_stopped", "countries",
    "first_seen_at", "last_changed_at", "url",
)


# The listing columns that hold dates or times: the only ones ``iso`` changes.
_STUDY_DATES = ("first_posted", "last_update_posted", "results_first_posted", "first_seen_at",
                "last_changed_at")


def query_studies(conn: Connection, flt: StudyFilter) -> list[dict[str, Any]]:
    """Studies matching ``flt`` as JSON-ready dicts: newest first-posted first, or in
    ``flt``'s sort (with a query: best match first, each with its ``score``), at most
    ``flt.limit``."""
    from tracker.search import matches

    cols = [S.c[name] for name in LIST_COLUMNS]
    match = matches(conn, "study", flt.query) if flt.query is not None else None
    score = match.c.score if match is not None else None
    # the trial each registration belongs to (db.trials): counts count trials
    trial = func.coalesce(MEMBER.c.trial_id, S.c.id).label("trial_id")
    stmt = select(*cols, trial, *([score] if match is not None else [])).where(
        *_where(conn, flt, query=False)).outerjoin_from(S, MEMBER, MEMBER.c.study_id == S.c.id)
    if match is not None:
        stmt = stmt.join(match, match.c.id == S.c.id)
    stmt = stmt.order_by(*order_by(flt, "study", score,
                                   (S.c.first_posted.desc(), S.c.registry_id), S.c.registry_id))
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    out = []
    for row in conn.execute(stmt):
        d = dict(zip(LIST_COLUMNS, row, strict=False))
        d["trial_id"] = row[len(LIST_COLUMNS)]
        for name in _STUDY_DATES:
            d[name] = iso(d[name])
        if match is not None:
            d["score"] = round(float(row[-1]), 6)
        out.append(d)
    return out


@dataclass
class Report:
    """New studies in a window, with their condition-by-phase counts."""

    title: str
    studies: list[dict[str, Any]]
    groups: list[str]
    phases: list[str]
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    group_totals: Counter[str] = field(default_factory=Counter)
    papers: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)  # --last-run: changed studies


UNCLASSIFIED = "(not classified)"


def group_keys(study: dict[str, Any]) -> list[str]:
    """The rows a study is counted in: its condition groups (each study once per group)."""
    return list(dict.fromkeys(study.get("condition_groups") or [])) or [UNCLASSIFIED]


def _group_order(group: str) -> tuple[int, str]:
    """Chronic-pain groups first, then the other TAXONOMY groups, then user-defined ones."""
    if group in CONDITION_GROUPS:
        return CONDITION_GROUPS.index(group), group
    return len(CONDITION_GROUPS) + (1 if group == UNCLASSIFIED else 0), group


def build_report(conn: Connection, flt: StudyFilter) -> Report:
    """The report for ``flt``: studies plus a condition-by-phase table counting each once
    (every match of the filters; ``flt.limit`` shortens the lists, not the counts)."""
    from dataclasses import replace

    studies = query_studies(conn, replace(flt, limit=None))
    counts: Counter[tuple[str, str]] = Counter()
    totals: Counter[str] = Counter()
    # A trial registered in several registries counts once (db.trials groups them).
    seen: set[tuple[str, str, Any]] = set()
    seen_group: set[tuple[str, Any]] = set()
    for s in studies:
        trial = s.get("trial_id") or s["registry_id"]
        for g in group_keys(s):
            if (g, s["phase"], trial) not in seen:
                seen.add((g, s["phase"], trial))
                counts[(g, s["phase"])] += 1
            if (g, trial) not in seen_group:
                seen_group.add((g, trial))
                totals[g] += 1
    groups = sorted(totals, key=_group_order)
    phases = [p for p in PHASES if any(k[1] == p for k in counts)]
    changed: list[dict[str, Any]] = []
    if flt.last_run:
        title = "New in the last update"
        changed = changed_in_last_update(conn, flt)
    elif flt.since:
        title = f"New since {flt.since.isoformat()}"
    else:
        title = "All studies"
    papers = query_papers(conn, PaperFilter(
        since=flt.since, last_run=flt.last_run, labels=flt))
    if flt.limit:
        studies = studies[: flt.limit]
    return Report(title, studies, groups, phases, dict(counts), totals, papers, changed)


def changed_in_last_update(conn: Connection, flt: StudyFilter) -> list[dict[str, Any]]:
    """Studies the last update changed (not new in it), each with its change events."""
    from tracker.history import ChangeFilter, query_changes

    run_ids = last_update(conn).run_ids or (-1,)
    stmt = select(*[S.c[name] for name in LIST_COLUMNS]).where(
        S.c.last_changed_run_id.in_(run_ids), S.c.first_seen_run_id.not_in(run_ids),
        *study_clauses(flt)).order_by(S.c.registry_id).limit(flt.limit)
    rows = [{name: iso(v) for name, v in zip(LIST_COLUMNS, row, strict=True)}
            for row in conn.execute(stmt)]
    events: dict[str, list[dict[str, Any]]] = {}
    for ev in query_changes(conn, ChangeFilter(last_run=True, labels=flt)):
        events.setdefault(ev["registry_id"], []).append(ev)
    for row in rows:
        row["changes"] = events.get(row["registry_id"], [])
    return rows


def study_detail(conn: Connection, registry_id: str, *,
                 unreported_months: int = 12) -> dict[str, Any]:
    """Everything stored about one study, with whether it is completed but unreported;
    raises NotFoundError for an unknown id."""
    rid = registry_id.strip().upper()
    row = conn.execute(select(S).where(S.c.registry_id == rid)).mappings().first()
    if row is None:
        raise NotFoundError(f"{registry_id} is not in this database; run `tracker update` or "
                            "check the id (e.g. NCT01234567)")
    out = {k: iso(v) for k, v in row.items() if k not in ("raw", "id", "content_hash")}
    sid = row["id"]

    def rows(table: Any, *cols: str) -> list[dict[str, Any]]:
        t = table.__table__
        stmt = select(*[t.c[c] for c in cols]).where(t.c.study_id == sid).order_by(t.c.id)
        return [dict(r._mapping) for r in conn.execute(stmt)]

    out["interventions"] = rows(StudyIntervention, "type", "name", "other_names")
    out["mesh"] = rows(StudyMesh, "kind", "mesh_id", "term", "ancestor")
    out["secondary_ids"] = rows(StudySecondaryId, "value", "type", "domain")
    out["references"] = rows(StudyReference, "pmid", "type", "citation", "retraction_pmids")
    out["papers"] = study_papers(conn, sid, row["registry"], row["registry_id"])
    out["changes"] = [
        {k: iso(v) for k, v in r.items()}
        for r in rows(StudyChange, "field", "old_value", "new_value", "registry_date",
                      "changed_at")
    ]
    out["unreported"] = unreported_status(conn, sid, unreported_months)
    from db.trials import registrations

    # every registration of the trial, and what joined it (only when there are several)
    regs = registrations(conn, sid)
    if len(regs) > 1:
        out["registrations"] = regs
    return out


def unreported_status(conn: Connection, study_id: int, months: int,
                      today: dt.date | None = None) -> dict[str, Any]:
    """Whether one study is completed but unreported, and since when."""
    cutoff = unreported_cutoff(today or dt.date.today(), months)
    row = conn.execute(select(S.c.primary_completion_date).where(
        S.c.id == study_id, unreported_clause(cutoff))).first()
    if row is None:
        return {"unreported": False}
    done = row[0]
    today = today or dt.date.today()
    year, month = int(done[:4]), int(done[5:7]) if len(done) >= 7 else 12
    return {"unreported": True, "primary_completion": done,
            "months_since_primary_completion": (today.year - year) * 12 + today.month - month,
            "threshold_months": months}


def raw_record(conn: Connection, registry_id: str) -> dict[str, Any]:
    """The stored raw registry record of one study, decompressed and parsed."""
    blob = conn.execute(select(S.c.raw).where(S.c.registry_id == registry_id.upper())).scalar()
    if blob is None:
        raise NotFoundError(f"{registry_id} is not in this database")
    return orjson.loads(decompress(blob))


P = Publication.__table__
PT = PublicationTrial.__table__
REF = StudyReference.__table__
SEC = StudySecondaryId.__table__

PAPER_COLUMNS = (
    "pmid", "pmcid", "doi", "title", "journal", "pub_date", "publication_types", "is_preprint",
    "deleted", "phase", "msc_relevant", "msc_role", "condition_groups", "cell_sources", "origins",
    "products", "index_date", "sources", "trial_ids", "first_seen_at", "url",
)


@dataclass(frozen=True)
class PaperFilter:
    """Which papers a listing covers."""

    since: dt.date | None = None  # first indexed (PubMed Entrez date / Europe PMC) on or after
    last_run: bool = False
    include_deleted: bool = False
    labels: StudyFilter | None = None  # label filters (groups, phases, sources, relevance)


def _paper_clauses(conn: Connection, flt: PaperFilter, query: bool = True) -> list[Any]:
    clauses = _window_clauses(conn, P, P.c.index_date, flt.since, flt.last_run)
    if not flt.include_deleted:
        clauses.append(P.c.deleted.is_(False))
    labels = flt.labels or StudyFilter()
    if labels.query is not None and query:
        clauses.append(MatchClause(P.c.id, "publication", labels.query))
    clauses += _label_clauses(P, "publication", labels)
    if labels.phases:
        clauses.append(P.c.phase.in_(labels.phases))
    return clauses


_PAPER_FIELDS = tuple(c for c in PAPER_COLUMNS if c != "trial_ids")
_PAPER_DATES = ("index_date", "first_seen_at")  # the only columns ``iso`` changes


def query_papers(conn: Connection, flt: PaperFilter) -> list[dict[str, Any]]:
    """Papers matching ``flt``, most recently indexed first (or in the labels' sort; with a
    query: best match first, each with its ``score``), at most the labels' ``limit``, with
    the trial ids they name. Deleted citations are not in the full-text index."""
    from tracker.search import matches

    labels = flt.labels or StudyFilter()
    match = matches(conn, "publication", labels.query) if labels.query is not None else None
    score = match.c.score if match is not None else None
    cols = [P.c.id] + [P.c[c] for c in _PAPER_FIELDS]
    stmt = select(*cols, *([score] if match is not None else [])).where(
        *_paper_clauses(conn, flt, query=False))
    if match is not None:
        stmt = stmt.join_from(P, match, match.c.id == P.c.id)
    stmt = stmt.order_by(*order_by(labels, "publication", score,
                                   (P.c.index_date.desc(), P.c.id.desc()), P.c.id.desc()))
    if labels.limit:
        stmt = stmt.limit(labels.limit)
    rows = conn.execute(stmt).all()
    trial_ids: dict[int, list[str]] = {}
    ids = [r[0] for r in rows]
    for i in range(0, len(ids), 500):
        stmt = select(PT.c.publication_id, PT.c.registry_id).where(
            PT.c.publication_id.in_(ids[i : i + 500])).order_by(PT.c.id)
        for pid, rid in conn.execute(stmt):
            lst = trial_ids.setdefault(pid, [])
            if rid not in lst:
                lst.append(rid)
    out = []
    for r in rows:
        d = dict(zip(_PAPER_FIELDS, r[1:], strict=False))
        for c in _PAPER_DATES:
            d[c] = iso(d[c])
        d["trial_ids"] = trial_ids.get(r[0], [])
        if match is not None:
            d["score"] = round(float(r[-1]), 6)
        out.append(d)
    return out


def query_paper_ids(conn: Connection, flt: PaperFilter) -> list[dict[str, Any]]:
    """The identifiers (pmid, pmcid, doi, url, title) of the papers ``query_papers`` returns
    for ``flt``, without reading the rest of their rows (unordered)."""
    names = ("pmid", "pmcid", "doi", "url", "title")
    stmt = select(*[P.c[n] for n in names]).where(*_paper_clauses(conn, flt))
    return [dict(zip(names, r, strict=True)) for r in conn.execute(stmt)]


def study_papers(conn: Connection, study_id: int, registry: str, registry_id: str) -> list[dict[str, Any]]:
    """Papers linked to a study from either side, each with its link type and evidence.

    Trial side: the registry's own references (RESULT / BACKGROUND / DERIVED), matched on PMID
    whether or not the paper is stored yet. Paper side: trial ids a stored paper declares or
    mentions, matched on the study's id or any of its secondary ids.
    """
    out: list[dict[str, Any]] = []
    stmt = select(REF.c.pmid, REF.c.type, REF.c.citation, REF.c.retraction_pmids, P.c.title,
                  P.c.url).select_from(REF.outerjoin(P, P.c.pmid == REF.c.pmid)).where(
        REF.c.study_id == study_id).order_by(REF.c.id)
    for r in conn.execute(stmt).mappings():
        out.append({
            "pmid": r["pmid"], "title": r["title"] or r["citation"],
            "link_type": (r["type"] or "reference").lower(), "found_in": f"{registry} references",
            "evidence": r["citation"], "retracted_by": r["retraction_pmids"],
            "stored": r["title"] is not None,
            "url": r["url"] or (f"https://pubmed.ncbi.nlm.nih.gov/{r['pmid']}/" if r["pmid"] else None),
        })
    ids = [registry_id] + list(conn.execute(
        select(SEC.c.value).where(SEC.c.study_id == study_id)).scalars())
    stmt = select(PT.c.link_type, PT.c.found_in, PT.c.evidence, PT.c.registry_id, P.c.pmid,
                  P.c.doi, P.c.title, P.c.url).select_from(
        PT.join(P, P.c.id == PT.c.publication_id)).where(PT.c.registry_id.in_(ids)).order_by(PT.c.id)
    for r in conn.execute(stmt).mappings():
        out.append({
            "pmid": r["pmid"], "title": r["title"], "link_type": r["link_type"],
            "found_in": f"paper {r['found_in']}", "evidence": r["evidence"], "retracted_by": [],
            "stored": True, "url": r["url"],
        })
    return out


def find_paper(conn: Connection, ref: str) -> dict[str, Any]:
    """A stored paper by ``PMID:n``, ``PMCn``, ``DOI:...`` or bare PMID; NotFoundError if none."""
    text = ref.strip()
    low = text.lower()
    if low.startswith("pmid:"):
        clause = P.c.pmid == text[5:].strip()
    elif low.startswith("doi:"):
        clause = P.c.doi == text[4:].strip().lower()
    elif low.startswith("pmc"):
        clause = P.c.pmcid == text.upper()
    elif text.isdigit():
        clause = P.c.pmid == text
    else:
        raise NotFoundError(f"{ref!r} is not a paper id; use PMID:12345, PMC1234567 or DOI:10.x/y")
    row = conn.execute(select(P).where(clause)).mappings().first()
    if row is None:
        raise NotFoundError(f"{ref} is not in this database; run `tracker update` or check the id")
    return dict(row)


def paper_detail(conn: Connection, ref: str) -> dict[str, Any]:
    """A paper, its listings, and the trials it is linked to with link type and evidence."""
    row = find_paper(conn, ref)
    pid = row["id"]
    out = {k: iso(v) for k, v in row.items() if k not in ("id",)}
    src = PublicationSource.__table__
    out["listings"] = [dict(r._mapping) for r in conn.execute(
        select(src.c.source, src.c.source_id).where(src.c.publication_id == pid))]
    trials: list[dict[str, Any]] = []
    stmt = select(PT.c.registry, PT.c.registry_id, PT.c.link_type, PT.c.found_in,
                  PT.c.evidence).where(PT.c.publication_id == pid).order_by(PT.c.id)
    for r in conn.execute(stmt).mappings():
        study = conn.execute(select(S.c.registry_id, S.c.title, S.c.url).where(or_(
            (S.c.registry == r["registry"]) & (S.c.registry_id == r["registry_id"]),
            S.c.id.in_(select(SEC.c.study_id).where(SEC.c.value == r["registry_id"])),
        ))).mappings().first()
        trials.append({
            "registry": r["registry"], "registry_id": r["registry_id"],
            "link_type": r["link_type"], "found_in": f"paper {r['found_in']}",
            "evidence": r["evidence"], "stored": study is not None,
            "title": study["title"] if study else None,
            "url": study["url"] if study else None,
        })
    if row["pmid"]:
        stmt = select(S.c.registry, S.c.registry_id, S.c.title, S.c.url, REF.c.type,
                      REF.c.citation).select_from(REF.join(S, S.c.id == REF.c.study_id)).where(
            REF.c.pmid == row["pmid"])
        for r in conn.execute(stmt).mappings():
            trials.append({
                "registry": r["registry"], "registry_id": r["registry_id"],
                "link_type": (r["type"] or "reference").lower(),
                "found_in": f"{r['registry']} references", "evidence": r["citation"],
                "stored": True, "title": r["title"], "url": r["url"],
            })
    out["trials"] = trials
    return out
