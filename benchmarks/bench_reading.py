"""Read-side benchmark: ``report``, ``changes``, ``digest -f html`` and ``feed`` as whole
processes on a database of 200,000 papers and 5,000 studies with a year of change history.

    python benchmarks/bench_reading.py                  # build (or reuse) the database, time
    python benchmarks/bench_reading.py --rebuild        # build it again even if one matches
    python benchmarks/bench_reading.py --studies 500 --papers 5000 --repeat 1   # a quick look
    python benchmarks/bench_reading.py --profile "digest -f html -o digest.html"  # top 25 functions
    python benchmarks/bench_reading.py --tracker "env PYTHONPATH=/other/checkout /path/tracker"

The database (``benchmarks/out/reading_<studies>s_<papers>p.sqlite``, with a ``.json`` of the
parameters it was built with) is reused while its parameters, the builder version and the day
it was built on match (every window the commands use, "last 30 days", "the last update", is
relative to today) and its schema, once pending migrations are applied, is still what the
models say (alembic's compare_metadata, as at the build); ``--rebuild`` forces a build. It is
built through the same calls ``tracker update`` makes, replaying a year of weekly updates:

* studies: clones of the real recorded CT.gov records: the 11 API v2 studies of
  tests/fixtures/ctgov and the 376 whole records of ../shared/fixtures/ctgov_full_2022 (the 5
  whole MSC records of tests/fixtures/ctgov_full are 5 of them), 387 distinct. The 376 are
  classic-API records of January 2022 *converted* to v2 shape, not byte-exact API output (see
  their README). The classifier finds 35 of the 387 about MSCs (the 2022 searches also drew
  exosome diagnostics, iPSC and CAR-T trials), where a tracker's MSC query mostly finds MSC
  trials, so 80% of the clones (``--msc-studies``) are drawn from those 35. Each clone gets its
  own NCT id (NCT9xxxxxxx, in first-posted order), a first-posted date spread over the last
  five years, its start/completion/results dates shifted by as much, a status consistent with
  them, and a lastUpdatePostDate. Parsed with ``sources.clinicaltrials_gov.parse_study``,
  labelled with ``tracker.pipeline.label``, stored with ``db.upsert.upsert_studies`` in
  batches of 500.
* history: an initial update 52 weeks ago stores every study first posted before it; then 52
  weekly updates, the last one today: each stores the studies first posted that week, and
  changes ~2% of the stored ones along plausible paths (not yet recruiting -> recruiting ->
  active -> completed -> results posted; terminated or suspended with a real registry reason;
  completion dates moved; enrollment changed), with lastUpdatePostDate that night. Stored with
  ``upsert_studies(now=<that night>, run_id=<that night's ctgov fetch_run>)``, so the upsert
  keeps each old version in ``study_version`` and writes the ``study_change`` events. Each
  night is an ``update_run`` (``tracker.update.start_update``/``finish_update``, its times then
  set to that night) with one ``fetch_run`` per source and the source watermarks, as
  ``tracker update`` leaves them; so ``--last-run`` means today's update.
* papers: clones of the real recorded PubMed articles (tests/fixtures/pubmed/efetch_*.xml,
  re-keyed with ``tests/replay_server.clone_pubmed_article``: new PMID, an Entrez date spread
  over the past year, their own DOI and PMCID so that nothing merges), each stored by the
  weekly update after its Entrez date, in efetch pages of 500 through
  ``sources.pubmed.split_efetch`` + ``parse_item``, ``label`` and
  ``db.publications.upsert_publications``. None of the recorded articles is about MSCs (the
  classifier rejects all nine), and a tracker's papers come from an MSC query, so by default
  80% of the clones (``--msc-papers``) carry the brief title and brief summary of a real MSC
  registration (one of the templates above the classifier accepts) as ArticleTitle and
  Abstract; without that every default (MSC-only) listing would show no papers. 1% of the clones
  (``--results-papers``) are results papers: derived from
  tests/fixtures/pubmed/crafted_efetch_medline_date_databank.xml with its DataBankList
  accession replaced by the NCT id of a study already stored, and that study's title and
  summary.

Each command then runs ``--repeat`` times as a fresh process of the real ``tracker`` entry
point (``TRACKER_DB`` set, no other TRACKER_* variable, an empty config dir, ``COLUMNS=80``,
output to a file in benchmarks/out), started by a bare interpreter that waits for it with
``os.wait4``; the best wall time (with its CPU time: on a busy machine the wall time of a run
can be off by half) and the highest peak RSS are kept and checked against the issue's bars:
under 2 s and under 300 MB. ``studies -f csv`` and ``--version`` (the start-up floor) are
shown for reference. For context it also times, in this process, ``build_digest`` (with
its parts), ``render_html``, ``build_feed``, ``build_report``/``render_report`` and
``query_changes``/``render_changes``; ``--profile`` runs one command under cProfile. Exit 1
if a command misses a bar.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
FIX = ROOT / "tests" / "fixtures"
SHARED_2022 = ROOT.parent / "shared" / "fixtures" / "ctgov_full_2022"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

BUILDER_VERSION = 1  # bump when the build changes what it stores
WALL_BAR_S = 2.0
RSS_BAR_MB = 300.0
BATCH_STUDIES = 500
BATCH_PAPERS = 500
PMID_BASE = 40_000_000
# Rare giant records weigh less (as in bench_ingest): one 1.5 MB record in 5,000 is plenty.
TEMPLATE_WEIGHT = {"NCT02513394": 0.2, "NCT04431453": 0.5}
HEAD = (b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
        b'1st January 2019//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">\n'
        b"<PubmedArticleSet>\n")
TAIL = b"\n</PubmedArticleSet>\n"


@dataclass(frozen=True)
class Params:
    """What a built database depends on (a cached one is reused only when all match)."""

    studies: int = 5_000
    papers: int = 200_000
    weeks: int = 52
    change_share: float = 0.02
    msc_studies: float = 0.80
    msc_papers: float = 0.80
    results_papers: float = 0.01
    seed: int = 20261201
    built_on: str = ""  # the day: windows are relative to today
    builder: int = BUILDER_VERSION


# --------------------------------------------------------------------------------------------
# Templates: the real recorded records
# --------------------------------------------------------------------------------------------


@dataclass
class StudyTemplate:
    nct: str
    origin: str  # which fixture folder
    raw: bytes
    weight: float
    first_posted: dt.date
    msc: bool
    title: str
    summary: str | None


def study_templates(rules: Any) -> list[StudyTemplate]:
    """Every real CT.gov record of the three fixture folders, with its MSC verdict."""
    from sources.clinicaltrials_gov import parse_study
    from tracker.pipeline import label

    out: list[StudyTemplate] = []
    seen: set[str] = set()
    folders = [(FIX / "ctgov", "tests/fixtures/ctgov"),
               (FIX / "ctgov_full", "tests/fixtures/ctgov_full"),
               (SHARED_2022, "shared/fixtures/ctgov_full_2022 (converted)")]
    for folder, origin in folders:
        if not folder.is_dir():
            print(f"note: {folder} not found; cloning without it", file=sys.stderr)
            continue
        for path in sorted(folder.glob("*.json")):
            data = orjson.loads(path.read_bytes())
            for study in data.get("studies", [data]) if isinstance(data, dict) else []:
                raw = orjson.dumps(study)
                rec = parse_study(raw)
                if rec.registry_id in seen or rec.first_posted is None:
                    continue
                seen.add(rec.registry_id)
                label([rec], "study", rules)
                out.append(StudyTemplate(
                    rec.registry_id, origin, raw, TEMPLATE_WEIGHT.get(rec.registry_id, 1.0),
                    rec.first_posted, bool(rec.labels.msc_relevant), rec.title,
                    rec.brief_summary))
    return out


def why_stopped_reasons(templates: list[StudyTemplate]) -> list[str]:
    """The real whyStopped texts of the templates."""
    out = []
    for t in templates:
        reason = orjson.loads(t.raw)["protocolSection"].get("statusModule", {}).get("whyStopped")
        if reason and reason not in out:
            out.append(reason)
    return out or ["Sponsor decision"]


def paper_templates() -> tuple[list[bytes], bytes]:
    """The real recorded PubMed articles, and the crafted DataBankList article."""
    from replay_server import load_pubmed_articles, split_pubmed_articles

    real = [a for a in load_pubmed_articles(FIX / "pubmed") if a.startswith(b"<PubmedArticle")]
    (databank,) = split_pubmed_articles(
        (FIX / "pubmed" / "crafted_efetch_medline_date_databank.xml").read_bytes())
    return real, databank


# --------------------------------------------------------------------------------------------
# Studies: state, JSON, evolution
# --------------------------------------------------------------------------------------------


def _partial_to_date(value: str | None) -> dt.date | None:
    if not value:
        return None
    parts = value.split("-")
    try:
        return dt.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1,
                       int(parts[2]) if len(parts) > 2 else 1)
    except ValueError:
        return None


def _shift(value: str | None, days: int) -> str | None:
    """A registry date (YYYY, YYYY-MM or YYYY-MM-DD) moved by ``days``, same granularity."""
    d = _partial_to_date(value)
    if d is None or value is None:
        return value
    parts = len(value.split("-"))
    if parts == 3:
        return (d + dt.timedelta(days=days)).isoformat()
    if parts == 2:
        index = d.year * 12 + d.month - 1 + round(days / 30.4375)
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    return f"{d.year + round(days / 365.25):04d}"


def _months_later(value: str | None, months: int, fallback: dt.date) -> str:
    d = _partial_to_date(value) or fallback
    index = d.year * 12 + d.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass
class StudyState:
    """The fields of one clone that its registry record changes over time."""

    nct: str
    template: int
    first_posted: dt.date
    load_night: int
    shift_days: int
    status: str
    why_stopped: str | None
    start: tuple[str, str | None] | None
    primary_completion: tuple[str, str | None] | None
    completion: tuple[str, str | None] | None
    enrollment: int | None
    enrollment_type: str | None
    results_posted: dt.date | None
    last_update: dt.date


def _date_struct(sm: dict[str, Any], key: str) -> tuple[str, str | None] | None:
    s = sm.get(key)
    if isinstance(s, dict) and s.get("date"):
        return s["date"], s.get("type")
    return None


def initial_state(i: int, template_no: int, tpl: StudyTemplate, first_posted: dt.date,
                  load_night: int, load_date: dt.date, rng: random.Random) -> StudyState:
    """A clone as the registry shows it when first stored: the template's record, its dates
    shifted to the new first-posted date, its status and results consistent with them."""
    study = orjson.loads(tpl.raw)
    sm = study["protocolSection"].get("statusModule", {})
    design = study["protocolSection"].get("designModule", {})
    shift = (first_posted - tpl.first_posted).days

    def moved(key: str) -> tuple[str, str | None] | None:
        s = _date_struct(sm, key)
        return (_shift(s[0], shift) or s[0], s[1]) if s else None

    info = design.get("enrollmentInfo") or {}
    results = _date_struct(sm, "resultsFirstPostDateStruct") if study.get("hasResults") else None
    state = StudyState(
        nct=f"NCT9{i:07d}", template=template_no, first_posted=first_posted,
        load_night=load_night, shift_days=shift, status=sm.get("overallStatus") or "UNKNOWN",
        why_stopped=sm.get("whyStopped"), start=moved("startDateStruct"),
        primary_completion=moved("primaryCompletionDateStruct"),
        completion=moved("completionDateStruct"),
        enrollment=info.get("count") if isinstance(info.get("count"), int) else None,
        enrollment_type=info.get("type"),
        results_posted=_partial_to_date(_shift(results[0], shift)) if results else None,
        last_update=first_posted,
    )
    start = _partial_to_date(state.start[0]) if state.start else None
    done = _partial_to_date(state.primary_completion[0]) if state.primary_completion else None
    if start and start > load_date and state.status not in ("WITHDRAWN",):
        state.status, state.why_stopped = "NOT_YET_RECRUITING", None
        state.start = (state.start[0], "ESTIMATED") if state.start else None
    elif state.status == "COMPLETED" and done and done > load_date:
        state.status = "ACTIVE_NOT_RECRUITING"
    if state.results_posted and state.results_posted > load_date:
        state.results_posted = None
    if state.status != "COMPLETED" and state.status != "TERMINATED":
        state.results_posted = None
    if load_night == 0 and first_posted < load_date:  # some registry update since posting
        span = (load_date - first_posted).days
        state.last_update = first_posted + dt.timedelta(days=rng.randint(0, span))
    if state.results_posted:
        state.last_update = max(state.last_update, state.results_posted)
    return state


def study_json(tpl: StudyTemplate, st: StudyState) -> bytes:
    """The registry record of a clone in its current state: the template's JSON, edited."""
    study = orjson.loads(tpl.raw)
    ps = study["protocolSection"]
    ident = ps["identificationModule"]
    ident["nctId"] = st.nct
    ident.pop("nctIdAliases", None)
    sm = ps.setdefault("statusModule", {})
    sm["overallStatus"] = st.status
    if st.why_stopped:
        sm["whyStopped"] = st.why_stopped
    else:
        sm.pop("whyStopped", None)
    sm["studyFirstPostDateStruct"] = {"date": st.first_posted.isoformat(), "type": "ACTUAL"}
    sm["lastUpdatePostDateStruct"] = {"date": st.last_update.isoformat(), "type": "ACTUAL"}
    sm["statusVerifiedDate"] = st.last_update.isoformat()[:7]
    for key, value in (("studyFirstSubmitDate", st.first_posted),
                       ("studyFirstSubmitQcDate", st.first_posted),
                       ("lastUpdateSubmitDate", st.last_update)):
        if key in sm:
            sm[key] = value.isoformat()
    for key, value in (("startDateStruct", st.start),
                       ("primaryCompletionDateStruct", st.primary_completion),
                       ("completionDateStruct", st.completion)):
        if value is None:
            sm.pop(key, None)
        else:
            sm[key] = {"date": value[0], **({"type": value[1]} if value[1] else {})}
    if st.results_posted:
        study["hasResults"] = True
        sm["resultsFirstPostDateStruct"] = {"date": st.results_posted.isoformat(),
                                            "type": "ACTUAL"}
        for key in ("resultsFirstSubmitDate", "resultsFirstSubmitQcDate"):
            if key in sm:
                sm[key] = st.results_posted.isoformat()
    else:
        study["hasResults"] = False
        study.pop("resultsSection", None)
        for key in ("resultsFirstPostDateStruct", "resultsFirstSubmitDate",
                    "resultsFirstSubmitQcDate"):
            sm.pop(key, None)
    if st.enrollment is not None:
        design = ps.setdefault("designModule", {})
        design["enrollmentInfo"] = {"count": st.enrollment,
                                    **({"type": st.enrollment_type} if st.enrollment_type
                                       else {})}
    return orjson.dumps(study)


def evolve(st: StudyState, night: dt.date, rng: random.Random, reasons: list[str]) -> None:
    """One registry update of a study: the next plausible step of its life, dated ``night``."""
    day = night.isoformat()
    month = day[:7]

    def move_completion() -> None:
        months = rng.choice((-9, -3, 3, 4, 6, 7, 9, 12, 18))
        st.primary_completion = (_months_later(st.primary_completion and st.primary_completion[0],
                                               months, night), "ESTIMATED")
        st.completion = (_months_later(st.completion and st.completion[0], months, night),
                         "ESTIMATED")

    def change_enrollment(actual: bool = False) -> None:
        base = st.enrollment or rng.randint(12, 120)
        st.enrollment = max(1, round(base * rng.choice((0.4, 0.6, 0.75, 0.9, 1.1, 1.3, 1.5, 2.0))))
        if actual:
            st.enrollment_type = "ACTUAL"

    s = st.status
    r = rng.random()
    if s == "NOT_YET_RECRUITING":
        if r < 0.85:
            st.status, st.start = "RECRUITING", (day, "ACTUAL")
        else:
            st.status, st.why_stopped = "WITHDRAWN", rng.choice(reasons)
            st.enrollment, st.enrollment_type = 0, "ACTUAL"
    elif s in ("RECRUITING", "ENROLLING_BY_INVITATION"):
        if r < 0.10:
            st.status, st.why_stopped = "TERMINATED", rng.choice(reasons)
            change_enrollment(actual=True)
            st.primary_completion = st.completion = (day, "ACTUAL")
        elif r < 0.15:
            st.status, st.why_stopped = "SUSPENDED", rng.choice(reasons)
        elif r < 0.55:
            st.status = "ACTIVE_NOT_RECRUITING"
            change_enrollment(actual=True)
        else:
            move_completion()
    elif s == "ACTIVE_NOT_RECRUITING":
        if r < 0.6:
            st.status = "COMPLETED"
            st.primary_completion = (month, "ACTUAL")
            st.completion = (month, "ACTUAL")
        else:
            move_completion()
    elif s == "SUSPENDED":
        if r < 0.6:
            st.status = "RECRUITING"
        else:
            st.status = "TERMINATED"
            st.why_stopped = st.why_stopped or rng.choice(reasons)
    elif s in ("COMPLETED", "TERMINATED") and st.results_posted is None and r < 0.7:
        st.results_posted = night
    elif s == "UNKNOWN":
        if r < 0.5:
            st.status = "COMPLETED"
            st.primary_completion = st.primary_completion or (month, "ACTUAL")
        else:
            move_completion()
    else:  # a correction: the enrollment or the dates
        if r < 0.5:
            change_enrollment()
        else:
            move_completion()
    if rng.random() < 0.25 and st.status not in ("WITHDRAWN",):
        change_enrollment()
    st.last_update = night


# --------------------------------------------------------------------------------------------
# Papers
# --------------------------------------------------------------------------------------------


_TITLE = re.compile(rb"<ArticleTitle>.*?</ArticleTitle>", re.DOTALL)
_ABSTRACT = re.compile(rb"<Abstract>.*?</Abstract>", re.DOTALL)


def _retext(article: bytes, title: str, summary: str | None) -> bytes:
    """The article with its title and abstract replaced (XML-escaped)."""
    t = escape(title).encode()
    a = _TITLE.sub(lambda _m: b"<ArticleTitle>" + t + b"</ArticleTitle>", article, count=1)
    if summary:
        s = escape(" ".join(summary.split())).encode()
        a = _ABSTRACT.sub(lambda _m: b"<Abstract><AbstractText>" + s
                          + b"</AbstractText></Abstract>", a, count=1)
    return a


def paper_xml(template: bytes, pmid: int, entrez: dt.date,
              text: tuple[str, str | None] | None = None, nct: str | None = None) -> bytes:
    """One cloned PubMed article: new PMID, Entrez date, own DOI and PMCID; ``msc`` and
    ``results`` clones carry a real MSC registration's title and summary; ``results`` ones
    declare ``nct`` in their DataBankList."""
    from replay_server import clone_pubmed_article

    p = str(pmid).encode()
    a = clone_pubmed_article(template, str(pmid), entrez_date=entrez.isoformat())
    a = re.sub(rb'(<ArticleId IdType="doi">)[^<]+', rb"\g<1>10.9999/reading." + p, a)
    a = re.sub(rb'(<ELocationID EIdType="doi"[^>]*>)[^<]+', rb"\g<1>10.9999/reading." + p, a)
    a = re.sub(rb'(<ArticleId IdType="pmc">)PMC\d+', rb"\g<1>PMC9" + p, a)
    if text is not None:
        a = _retext(a, *text)
    if nct is not None:
        a = a.replace(b"<AccessionNumber>NCT01234567</AccessionNumber>",
                      b"<AccessionNumber>" + nct.encode() + b"</AccessionNumber>")
    return a


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    nights: list[dt.datetime]
    studies: list[StudyState]
    new_by_night: dict[int, list[int]] = field(default_factory=dict)
    papers_by_night: dict[int, list[tuple[int, dt.date, str, int, int | None]]] = field(
        default_factory=dict)


def night_times(today: dt.date, weeks: int) -> list[dt.datetime]:
    """02:30 UTC of every weekly night, the first ``weeks`` weeks ago, the last today (earlier
    than 02:30 when the benchmark runs before then, so no update lies in the future)."""
    out = [dt.datetime.combine(today - dt.timedelta(weeks=weeks - k), dt.time(2, 30),
                               tzinfo=dt.UTC) for k in range(weeks + 1)]
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=15)
    midnight = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)
    out[-1] = max(midnight, min(out[-1], now))
    return out


def _night_of(day: dt.date, nights: list[dt.datetime]) -> int:
    """The first update on or after ``day`` (the initial one for anything older)."""
    for k, n in enumerate(nights):
        if n.date() >= day:
            return k
    return len(nights) - 1


def make_plan(p: Params, today: dt.date, templates: list[StudyTemplate],
              n_paper_templates: int, rng: random.Random) -> Plan:
    nights = night_times(today, p.weeks)
    posted = sorted(today - dt.timedelta(days=rng.randrange(5 * 365)) for _ in range(p.studies))
    # The MSC-relevant templates get ``msc_studies`` of the draws, the others the rest.
    msc_total = sum(t.weight for t in templates if t.msc) or 1.0
    other_total = sum(t.weight for t in templates if not t.msc) or 1.0
    weights = [t.weight * (p.msc_studies / msc_total if t.msc
                           else (1 - p.msc_studies) / other_total) for t in templates]
    studies = []
    plan = Plan(nights, studies)
    for i, day in enumerate(posted):
        k = _night_of(day, nights)
        t = rng.choices(range(len(templates)), weights)[0]
        studies.append(initial_state(i, t, templates[t], day, k, nights[k].date(), rng))
        plan.new_by_night.setdefault(k, []).append(i)
    stored_by: list[int] = []  # studies stored by night k, for results papers to name
    entrez = sorted(today - dt.timedelta(days=rng.randrange(365)) for _ in range(p.papers))
    for j, day in enumerate(entrez):
        k = _night_of(day, nights)
        r = rng.random()
        if r < p.results_papers:
            while len(stored_by) < k + 1:
                stored_by.append(sum(len(plan.new_by_night.get(n, []))
                                     for n in range(len(stored_by) + 1)))
            kind, tpl, nct = "results", 0, rng.randrange(max(1, stored_by[k]))
        elif r < p.results_papers + p.msc_papers:
            kind, tpl, nct = "msc", rng.randrange(n_paper_templates), None
        else:
            kind, tpl, nct = "plain", rng.randrange(n_paper_templates), None
        plan.papers_by_night.setdefault(k, []).append((PMID_BASE + j, day, kind, tpl, nct))
    return plan


def _night_studies_order(plan: Plan) -> list[int]:
    """Study indexes in the order they are first stored (index order is first-posted order)."""
    return [i for k in range(len(plan.nights)) for i in plan.new_by_night.get(k, [])]


def build(db: Path, p: Params) -> dict[str, Any]:
    """Build the database at ``db``; returns figures about what was stored."""
    from sqlalchemy import func, select, text, update

    from db.engine import make_engine
    from db.migrate import ensure_schema
    from db.models import FetchRun, SourceState, UpdateRun
    from db.publications import upsert_publications
    from db.upsert import upsert_studies
    from sources.clinicaltrials_gov import parse_study
    from sources.pubmed import parse_item, split_efetch
    from tracker.classify import load_rules
    from tracker.pipeline import label, release_memory
    from tracker.update import finish_update, start_update

    t0 = time.perf_counter()
    rng = random.Random(p.seed)
    rules = load_rules(None)
    templates = study_templates(rules)
    reasons = why_stopped_reasons(templates)
    msc_texts = [(t.title, t.summary) for t in templates if t.msc and t.summary]
    real_articles, databank = paper_templates()
    with_abstract = [a for a in real_articles if b"<Abstract>" in a]
    today = dt.date.fromisoformat(p.built_on)
    plan = make_plan(p, today, templates, len(real_articles), rng)
    by_origin: dict[str, int] = {}
    for st in plan.studies:
        by_origin[templates[st.template].origin] = by_origin.get(templates[st.template].origin,
                                                                 0) + 1
    print(f"  templates: {len(templates)} CT.gov records ({sum(t.msc for t in templates)} "
          f"MSC-relevant), {len(real_articles)} PubMed articles + the DataBankList article; "
          f"clones per folder: {by_origin}", flush=True)

    for path in db.parent.glob(db.name + "*"):
        path.unlink()
    engine = make_engine(f"sqlite:///{db}")
    ensure_schema(engine)
    RUN, STATE, UPDATE = FetchRun.__table__, SourceState.__table__, UpdateRun.__table__
    stored: list[int] = []
    totals = {"new_studies": 0, "changed_studies": 0, "papers": 0, "results_papers": 0}
    last_print = time.perf_counter()

    def store_studies(indexes: list[int], now: dt.datetime, run_id: int) -> tuple[int, int]:
        new = changed = 0
        for start in range(0, len(indexes), BATCH_STUDIES):
            records = [parse_study(study_json(templates[plan.studies[i].template],
                                              plan.studies[i]))
                       for i in indexes[start : start + BATCH_STUDIES]]
            label(records, "study", rules)
            with engine.begin() as conn:
                result = upsert_studies(conn, records, run_id=run_id, now=now)
            new, changed = new + result.new, changed + result.changed
            del records
            release_memory()
        return new, changed

    def store_papers(items: list[tuple[int, dt.date, str, int, int | None]], now: dt.datetime,
                     run_id: int) -> int:
        count = 0
        for start in range(0, len(items), BATCH_PAPERS):
            arts = []
            for pmid, day, kind, tpl, nct_index in items[start : start + BATCH_PAPERS]:
                if kind == "results":
                    assert nct_index is not None
                    st = plan.studies[order[nct_index]]
                    t = templates[st.template]
                    arts.append(paper_xml(databank, pmid, day,
                                          (t.title, t.summary), st.nct))
                elif kind == "msc":
                    arts.append(paper_xml(with_abstract[tpl % len(with_abstract)], pmid,
                                          day, msc_texts[pmid % len(msc_texts)]))
                else:
                    arts.append(paper_xml(real_articles[tpl], pmid, day))
            items_ = split_efetch(HEAD + b"\n".join(arts) + TAIL)
            records = [parse_item(it) for it in items_]
            label(records, "publication", rules)
            with engine.begin() as conn:
                result = upsert_publications(conn, records, run_id=run_id, now=now)
            count += result.new
        return count

    order = _night_studies_order(plan)
    for k, night in enumerate(plan.nights):
        update_id = start_update(engine, ["ctgov", "pubmed"])
        prev = plan.nights[k - 1].date() if k else None
        runs = {}
        with engine.begin() as conn:
            conn.execute(update(UPDATE).where(UPDATE.c.id == update_id).values(started_at=night))
            for n, source in enumerate(("ctgov", "pubmed")):
                runs[source] = conn.execute(RUN.insert().values(
                    update_id=update_id, source=source,
                    started_at=night + dt.timedelta(minutes=4 * n), outcome="running",
                    window_start=prev - dt.timedelta(days=3) if prev else None,
                    window_end=night.date(), full=prev is None,
                )).inserted_primary_key[0]
        # ctgov: the studies first posted since the last update, and ~2% of the stored ones
        new_ids = plan.new_by_night.get(k, [])
        changed_ids = []
        if k:
            changed_ids = rng.sample(stored, min(len(stored), round(p.change_share * p.studies)))
            for i in changed_ids:
                evolve(plan.studies[i], night.date(), rng, reasons)
        ct_now = night + dt.timedelta(minutes=1)
        n_new, n_changed = store_studies(new_ids + changed_ids, ct_now, runs["ctgov"])
        stored += new_ids
        # pubmed: the papers indexed since the last update
        papers = plan.papers_by_night.get(k, [])
        n_papers = store_papers(papers, night + dt.timedelta(minutes=5), runs["pubmed"])
        totals["new_studies"] += n_new
        totals["changed_studies"] += n_changed
        totals["papers"] += n_papers
        totals["results_papers"] += sum(1 for x in papers if x[2] == "results")
        finished = night + dt.timedelta(minutes=9)
        with engine.begin() as conn:
            for source, (fetched, new, changed) in (
                    ("ctgov", (len(new_ids) + len(changed_ids), n_new, n_changed)),
                    ("pubmed", (len(papers), n_papers, 0))):
                conn.execute(update(RUN).where(RUN.c.id == runs[source]).values(
                    finished_at=finished, outcome="ok", fetched=fetched, new=new,
                    changed=changed, unchanged=fetched - new - changed))
                values = {"watermark": night.date(), "last_success_at": finished,
                          "last_run_id": runs[source]}
                if not conn.execute(update(STATE).where(STATE.c.source == source).values(
                        **values)).rowcount:
                    conn.execute(STATE.insert().values(source=source, **values))
        finish_update(engine, update_id, "ok", None)
        with engine.begin() as conn:
            conn.execute(update(UPDATE).where(UPDATE.c.id == update_id).values(
                started_at=night, finished_at=finished))
        if time.perf_counter() - last_print > 15 or k == len(plan.nights) - 1:
            last_print = time.perf_counter()
            print(f"  update {k:2d}/{len(plan.nights) - 1} ({night.date()}): "
                  f"{totals['new_studies']:,} studies, {totals['changed_studies']:,} changes, "
                  f"{totals['papers']:,} papers, {last_print - t0:.0f} s", flush=True)
    with engine.begin() as conn:
        counts = {name: conn.execute(select(func.count()).select_from(text(name))).scalar_one()
                  for name in ("study", "study_version", "study_change", "publication",
                               "publication_trial", "update_run", "fetch_run", "record_label")}
        relevant = conn.execute(text(
            "SELECT SUM(msc_relevant = 1), COUNT(*) FROM publication")).one()
        counts["msc_relevant_papers"] = int(relevant[0] or 0)
        counts["msc_relevant_studies"] = int(conn.execute(text(
            "SELECT SUM(msc_relevant = 1) FROM study")).scalar() or 0)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return {"seconds": time.perf_counter() - t0, "bytes": db.stat().st_size, "counts": counts}


def _meta_path(db: Path) -> Path:
    return db.with_suffix(".json")


def schema_drift(path: Path) -> str:
    """How the database's schema differs from the models (alembic's compare_metadata), after
    applying any pending migration; "" when it matches."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import db.models  # noqa: F401
    from db.engine import make_engine
    from db.migrate import ensure_schema

    engine = make_engine(f"sqlite:///{path}")
    try:
        ensure_schema(engine)
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
            return repr(diffs) if diffs else ""
    finally:
        engine.dispose()


def ensure_db(p: Params, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """The database for ``p``: reused when its recorded parameters match and its schema is
    still the models' (a migration edited or added since is applied, or forces a rebuild when
    the result differs from the models as the build left it), else (re)built."""
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / f"reading_{p.studies}s_{p.papers}p.sqlite"
    meta_path = _meta_path(db)
    if not rebuild and db.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") != asdict(p):
            print("parameters changed (or built on another day): rebuilding", flush=True)
        elif schema_drift(db) != meta.get("schema_drift", ""):
            print("the schema changed since the build: rebuilding", flush=True)
        else:
            meta["reused"] = True
            return db, meta
    print(f"building {db.relative_to(ROOT)} ({p.studies:,} studies, {p.papers:,} papers, "
          f"{p.weeks} weekly updates)", flush=True)
    tmp = db.with_name(db.stem + ".building.sqlite")
    figures = build(tmp, p)
    for path in db.parent.glob(db.name + "*"):
        path.unlink()
    meta_path.unlink(missing_ok=True)
    tmp.replace(db)
    meta = {"params": asdict(p), **figures, "built_at": dt.datetime.now(dt.UTC).isoformat(),
            "schema_drift": schema_drift(db)}
    if meta["schema_drift"]:
        print(f"note: the models and the migrations disagree: {meta['schema_drift'][:300]}")
    meta_path.write_text(json.dumps(meta, indent=1))
    meta["reused"] = False
    return db, meta


# --------------------------------------------------------------------------------------------
# Timing whole processes
# --------------------------------------------------------------------------------------------


def tracker_exe(command: str | None = None) -> list[str]:
    """The command that runs ``tracker``: ``command`` (split like a shell would) if given,
    else the virtualenv's entry point."""
    if command:
        return shlex.split(command)
    for candidate in (ROOT / ".venv" / "bin" / "tracker", Path(sys.executable).parent / "tracker"):
        if candidate.exists():
            return [str(candidate)]
    raise SystemExit("no tracker entry point: pip install -e . in the virtualenv first")


def clean_env(db: Path) -> dict[str, str]:
    """The environment without TRACKER_* settings (and no user config), but TRACKER_DB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    config_home = OUT / "empty_config"
    config_home.mkdir(parents=True, exist_ok=True)
    env.update(TRACKER_DB=str(db), COLUMNS="80", XDG_CONFIG_HOME=str(config_home))
    return env


@dataclass
class Command:
    name: str
    args: list[str]
    output: str  # file name in OUT the command writes (with -o) or its stdout goes to
    to_file: bool = False  # True: the command writes ``output`` itself (-o)
    reference: bool = False  # shown, not held to the bars


def commands() -> list[Command]:
    return [
        Command("report", ["report"], "report.txt"),
        Command("report --last-run", ["report", "--last-run"], "report_last_run.txt"),
        Command("changes", ["changes"], "changes.txt"),
        Command("changes --last-run", ["changes", "--last-run"], "changes_last_run.txt"),
        Command("digest -f html", ["digest", "-f", "html", "-o"], "digest.html", True),
        Command("digest --last-run -f html", ["digest", "--last-run", "-f", "html", "-o"],
                "digest_last_run.html", True),
        Command("feed", ["feed", "-o"], "feed.xml", True),
        Command("studies -f csv", ["studies", "-f", "csv"], "studies.csv", reference=True),
        Command("--version", ["--version"], "version.txt", reference=True),
    ]


# The process that starts each command: a bare interpreter (``-S``, ~10 MB). Linux carries the
# starting process's peak RSS over into the child's (exec keeps the larger of the old and the
# new address space's high-water mark), so a command started from this benchmark, which holds
# the templates and the build, would report this process's peak instead of its own.
LAUNCH = r"""
import json, os, subprocess, sys, time
spec = json.loads(sys.argv[1])
with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
    t0 = time.perf_counter()
    proc = subprocess.Popen(spec["args"], stdout=out, stderr=err, env=spec["env"],
                            cwd=spec["cwd"])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "maxrss_kb": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime,
                  "rc": os.waitstatus_to_exitcode(status)}))
"""


def run_once(exe: list[str], cmd: Command, env: dict[str, str]
             ) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MB, output bytes, CPU seconds) of one fresh process."""
    target = OUT / cmd.output
    target.unlink(missing_ok=True)
    err_path = OUT / "stderr.txt"
    spec = {"args": [*exe, *cmd.args] + ([str(target)] if cmd.to_file else []),
            "stdout": os.devnull if cmd.to_file else str(target), "stderr": str(err_path),
            "env": env, "cwd": str(OUT)}
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCH, json.dumps(spec)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"`tracker {' '.join(cmd.args)}` exited {result['rc']}:\n"
                         f"{err_path.read_text()[-2000:]}")
    return result["wall"], result["maxrss_kb"] / 1024, target.stat().st_size, result["cpu"]


def time_commands(db: Path, repeat: int, exe: list[str]) -> list[dict[str, Any]]:
    env = clean_env(db)
    rows = []
    for cmd in commands():
        runs = [run_once(exe, cmd, env) for _ in range(repeat)]
        best = min(runs, key=lambda r: r[0])
        wall = best[0]
        rss = max(r[1] for r in runs)
        ok = wall < WALL_BAR_S and rss < RSS_BAR_MB
        rows.append({"command": cmd.name, "wall": wall, "walls": [r[0] for r in runs],
                     "cpu": best[3], "rss": rss, "bytes": runs[-1][2],
                     "reference": cmd.reference, "ok": ok})
        print(f"  {cmd.name:28s} {wall:6.2f} s  {rss:5.0f} MB  (runs: "
              f"{', '.join(f'{r[0]:.2f}' for r in runs)} s)", flush=True)
    return rows


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'command':34s} {'best wall':>9s} {'(CPU)':>7s} {'peak RSS':>9s} "
            f"{'output':>9s}  verdict")
    lines = [head, "-" * 84]
    for r in rows:
        verdict = ("PASS" if r["ok"] else "FAIL") if not r["reference"] else "(reference)"
        lines.append(f"{'tracker ' + r['command']:34s} {r['wall']:7.2f} s {r['cpu']:5.2f} s "
                     f"{r['rss']:6.0f} MB "
                     f"{_size(r['bytes']):>9s}  {verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# In process: where the time goes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def timed_parts(module: Any, names: list[str]) -> Iterator[dict[str, list[float]]]:
    """Wrap ``module``'s functions ``names`` to record their (inclusive) times."""
    spent: dict[str, list[float]] = {n: [] for n in names}
    originals = {n: getattr(module, n) for n in names}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name].append(time.perf_counter() - t0)
        return inner

    for n, fn in originals.items():
        setattr(module, n, wrap(n, fn))
    try:
        yield spent
    finally:
        for n, fn in originals.items():
            setattr(module, n, fn)


def in_process(db: Path) -> None:
    """build_digest (with its parts) and render_html, report and changes, timed in-process."""
    import tracker.digest as digest_mod
    from db.engine import make_engine
    from tracker.config import load_settings
    from tracker.digest import build_digest
    from tracker.digest_render import render_html
    from tracker.feed import build_feed
    from tracker.history import ChangeFilter, query_changes
    from tracker.render import render_changes, render_report
    from tracker.reports import LIST_COLUMNS, build_report, make_filter

    settings = load_settings({"db": str(db)}, env={})
    engine = make_engine(settings.db_url)
    today = dt.date.today()
    parts = ["query_studies", "query_changes", "rank_changes", "query_papers",
             "_results_papers", "_add_snippets", "charts_data"]

    def clock(fn: Callable[[], Any]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - t0

    print("\nin-process, same database (one run each, after the timings above):")
    with engine.connect() as conn:
        for label_, kwargs in (("digest (last 7 days)", {}),
                               ("digest --last-run", {"last_run": True}),
                               ("feed data (last 30 days)",
                                {"since": today - dt.timedelta(days=30)})):
            with timed_parts(digest_mod, parts) as spent:
                data, t_build = clock(lambda kw=kwargs: build_digest(
                    conn, labels=make_filter(), unreported_months=settings.unreported_months,
                    **kw))
            if label_.startswith("feed"):
                out, t_render = clock(lambda d=data: build_feed(d))
                what = "build_feed"
            else:
                out, t_render = clock(lambda d=data: render_html(d))
                what = "render_html"
            c = data["counts"]
            print(f"  {label_}: build_digest {t_build:.2f} s, {what} {t_render:.2f} s "
                  f"({len(out) / 1e6:.1f} MB; {c['new_trials']} new trials, {c['changes']} "
                  f"changes, {c['new_papers']:,} papers, {c['results_papers']} results papers, "
                  f"{c['unreported']:,} unreported)")
            print("    build_digest parts (inclusive; charts_data includes a query_studies): "
                  + ", ".join(f"{n} {sum(v):.2f} s" + (f" x{len(v)}" if len(v) > 1 else "")
                              for n, v in spent.items() if v))
        rep, t_q = clock(lambda: build_report(conn, make_filter(
            since=today - dt.timedelta(days=30))))
        text_, t_r = clock(lambda: render_report(rep, "table", LIST_COLUMNS))
        print(f"  report: build_report {t_q:.2f} s ({len(rep.studies)} studies, "
              f"{len(rep.papers):,} papers), render_report table {t_r:.2f} s "
              f"({len(text_) / 1e6:.1f} MB)")
        rows, t_q = clock(lambda: query_changes(conn, ChangeFilter(
            since=today - dt.timedelta(days=30), labels=make_filter())))
        text_, t_r = clock(lambda: render_changes(rows, "table"))
        print(f"  changes: query_changes {t_q:.2f} s ({len(rows):,} events), render_changes "
              f"table {t_r:.2f} s")
    engine.dispose()


def profile(db: Path, command: str, top: int = 25) -> None:
    """Run one ``tracker`` command in this process under cProfile; print the top functions."""
    from tracker.cli import app

    args = shlex.split(command)
    if args and args[0] == "tracker":
        args = args[1:]
    os.environ.update(clean_env(db))
    for k in [k for k in os.environ if k.startswith("TRACKER_") and k != "TRACKER_DB"]:
        del os.environ[k]
    prof = cProfile.Profile()
    sink = io.StringIO()
    os.chdir(OUT)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        prof.enable()
        try:
            app(args=args, prog_name="tracker", standalone_mode=False)
        finally:
            prof.disable()
    wall = time.perf_counter() - t0
    print(f"tracker {command}: {wall:.2f} s in-process under cProfile "
          f"({len(sink.getvalue()):,} characters to stdout)")
    for key in ("cumulative", "tottime"):
        print(f"\ntop {top} by {key}:")
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.strip_dirs().sort_stats(key).print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=Params.studies)
    ap.add_argument("--papers", type=int, default=Params.papers)
    ap.add_argument("--weeks", type=int, default=Params.weeks,
                    help="weekly updates in the year of history")
    ap.add_argument("--msc-studies", type=float, default=Params.msc_studies,
                    help="share of study clones drawn from the MSC-relevant templates")
    ap.add_argument("--msc-papers", type=float, default=Params.msc_papers,
                    help="share of paper clones given a real MSC registration's title and "
                         "summary (the recorded articles are not about MSCs)")
    ap.add_argument("--results-papers", type=float, default=Params.results_papers,
                    help="share of paper clones declaring a stored trial (DataBankList)")
    ap.add_argument("--seed", type=int, default=Params.seed)
    ap.add_argument("--rebuild", action="store_true", help="build even if a matching DB exists")
    ap.add_argument("--repeat", type=int, default=3, help="runs per command (best wall kept)")
    ap.add_argument("--profile", metavar="COMMAND",
                    help='profile one command in-process, e.g. "digest -f html -o digest.html" '
                         "(run in benchmarks/out, so relative -o paths land there)")
    ap.add_argument("--tracker", metavar="COMMAND",
                    help="run this instead of .venv/bin/tracker (e.g. another checkout's)")
    ap.add_argument("--no-in-process", action="store_true",
                    help="skip the in-process timings of build_digest / render_html")
    args = ap.parse_args()
    p = Params(args.studies, args.papers, args.weeks, msc_studies=args.msc_studies,
               msc_papers=args.msc_papers,
               results_papers=args.results_papers, seed=args.seed,
               built_on=dt.date.today().isoformat())
    db, meta = ensure_db(p, args.rebuild)
    c = meta["counts"]
    how = "reused, built" if meta["reused"] else "built"
    print(f"database {db.relative_to(ROOT)}: {how} in {meta['seconds']:.0f} s, "
          f"{_size(db.stat().st_size)}")
    print(f"  {c['study']:,} studies ({c['msc_relevant_studies']:,} MSC-relevant), "
          f"{c['study_version']:,} kept versions, {c['study_change']:,} change events, "
          f"{c['publication']:,} papers ({c['msc_relevant_papers']:,} MSC-relevant), "
          f"{c['publication_trial']:,} paper-trial links, {c['update_run']} updates")
    if args.profile:
        profile(db, args.profile)
        return
    exe = tracker_exe(args.tracker)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ntiming {len(commands())} commands x {args.repeat} fresh processes "
          f"({' '.join(exe)}, COLUMNS=80; {os.cpu_count()} CPUs, load average {load}):",
          flush=True)
    rows = time_commands(db, args.repeat, exe)
    print("\n" + table(rows))
    bars = [r for r in rows if not r["reference"]]
    ok = all(r["ok"] for r in bars)
    print(f"\nbars: each under {WALL_BAR_S:.0f} s wall and {RSS_BAR_MB:.0f} MB peak RSS: "
          + ("BARS MET" if ok else "BARS NOT MET: "
             + ", ".join(r["command"] for r in bars if not r["ok"])))
    if not args.no_in_process:
        in_process(db)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
