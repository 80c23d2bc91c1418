"""Renderers on what users see: real recorded CT.gov studies and PubMed / Europe PMC papers,
parsed, stored in a real SQLite file, classified, and read back with ``tracker.reports``.

Derived records (said so where made):

* ``NCT09000001`` is the real study NCT04523987 with its title, conditions, interventions and
  phase replaced by those of a knee-osteoarthritis MSC registration, so that one study is
  about MSCs (no real API v2 MSC study is recorded); the other studies are real recordings.
* ``NCT09000666`` is the real study NCT02552212 with a crafted hostile title (an OSC 8
  hyperlink escape, a BEL, a CSI colour sequence, a C1 CSI, a bidi override, HTML and a
  spreadsheet formula); it goes through the parser and the database like any record.
* Rows whose dates, ids, URLs or text are replaced after querying say so where it is done
  (values SQLite cannot store, such as lone surrogates, or fields no parser would produce).
* Change and timeline rows (``tracker changes``, ``tracker show --timeline``) are built in
  the shape ``tracker.history`` returns, from the real studies' ids, titles and URLs.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import glob
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from db.publications import upsert_publications
from db.upsert import upsert_studies
from sources.clinicaltrials_gov import parse_study
from sources.europepmc import parse_search_page
from sources.pubmed import parse_efetch
from tracker import render
from tracker.config import load_settings
from tracker.relabel import relabel_all
from tracker.reports import (
    LIST_COLUMNS,
    PAPER_COLUMNS,
    PaperFilter,
    build_report,
    make_filter,
    query_papers,
    query_studies,
    study_detail,
)
from tracker.status import collect_status

FIXTURES = Path(__file__).parent / "fixtures"
MSC_ID = "NCT09000001"
HOSTILE_ID = "NCT09000666"
# Crafted: an OSC 8 hyperlink to http://evil around "click" (ESC ] 8 ;; URL BEL), a CSI
# colour sequence, an 8-bit CSI (U+009B), a right-to-left override, HTML, and a formula.
HOSTILE_TITLE = ("<script>x</script>\x1b]8;;http://evil\x07click\x1b]8;;\x07 \x1b[31mred\x1b[0m"
                 " \x9b2J \u202egnp.exe =cmd|' /C calc'!A0")
ALL = make_filter(include_irrelevant=True)


def _study(studies: list[dict[str, Any]], nct: str) -> dict[str, Any]:
    return next(s for s in studies if s["protocolSection"]["identificationModule"]["nctId"] == nct)


def _msc_study(base: dict[str, Any]) -> dict[str, Any]:
    study = copy.deepcopy(base)
    proto = study["protocolSection"]
    proto["identificationModule"].update(
        nctId=MSC_ID, briefTitle="Autologous Adipose-Derived Mesenchymal Stem Cells for Knee "
        "Osteoarthritis", officialTitle=None)
    proto["conditionsModule"] = {"conditions": ["Knee Osteoarthritis"]}
    proto["designModule"]["phases"] = ["PHASE2"]
    proto["armsInterventionsModule"] = {"interventions": [{
        "type": "BIOLOGICAL", "name": "Autologous adipose-derived mesenchymal stem cells"}]}
    study.pop("derivedSection", None)
    return study


def _hostile_study(base: dict[str, Any]) -> dict[str, Any]:
    study = copy.deepcopy(base)
    study["protocolSection"]["identificationModule"].update(
        nctId=HOSTILE_ID, briefTitle=HOSTILE_TITLE)
    return study


@pytest.fixture
def engine(sqlite_engine: Engine, studies_json: list[dict[str, Any]]) -> Engine:
    """The real recordings (plus the two derived studies) stored and classified."""
    studies = [*studies_json, _msc_study(_study(studies_json, "NCT04523987")),
               _hostile_study(_study(studies_json, "NCT02552212"))]
    papers = []
    for name in sorted(glob.glob(str(FIXTURES / "pubmed" / "efetch_pubmed_*.xml"))):
        papers += parse_efetch(Path(name).read_bytes())
    papers += parse_search_page(
        (FIXTURES / "europepmc" / "search_cancer_core.json").read_bytes()).records
    with sqlite_engine.begin() as conn:
        upsert_studies(conn, [parse_study(s) for s in studies], run_id=None)
        upsert_publications(conn, papers)
    relabel_all(sqlite_engine, load_settings({"db": str(sqlite_engine.url)}, env={}))
    return sqlite_engine


@pytest.fixture
def studies(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [r for r in query_studies(conn, ALL) if r["registry_id"] != HOSTILE_ID]


@pytest.fixture
def hostile(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return next(r for r in query_studies(conn, ALL) if r["registry_id"] == HOSTILE_ID)


@pytest.fixture
def papers(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return query_papers(conn, PaperFilter(labels=ALL))


@pytest.fixture
def report(engine: Engine) -> Any:
    with engine.connect() as conn:
        rep = build_report(conn, make_filter(since=dt.date(2000, 1, 1), include_irrelevant=True))
    rep.studies = [s for s in rep.studies if s["registry_id"] != HOSTILE_ID]
    return rep


def _changes(studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Change rows in tracker.history's shape for real studies: two fields of the first
    study, one of two others (values are the canonical codes and their words)."""
    out = []
    for s, field, label, old, new, old_w, new_w, date in [
        (studies[0], "status", "Status", "RECRUITING", "COMPLETED", "Recruiting", "Completed",
         "2026-11-20"),
        (studies[0], "phase", "Phase", "PHASE2", "PHASE2_3", "Phase 2", "Phase 2/3",
         "2026-11-20"),
        (studies[1], "enrollment", "Enrollment", "40", "325", "40", "325", None),
        (studies[2], "conditions", "Conditions", '["Pancreatic Cancer"]',
         '["Pancreatic Cancer", "Metastatic Pancreatic Ductal Adenocarcinoma"]',
         "(nothing removed)", "added: Metastatic Pancreatic Ductal Adenocarcinoma",
         "2026-11-02"),
    ]:
        out.append({"registry": s["registry"], "registry_id": s["registry_id"],
                    "title": s["title"], "field": field, "field_label": label,
                    "old_value": old, "new_value": new, "old_words": old_w, "new_words": new_w,
                    "registry_date": date, "seen_at": "2026-12-01T02:30:00Z", "run_id": 3,
                    "update_id": 2, "url": s["url"], "msc_relevant": s["msc_relevant"]})
    return out


def _timeline(study: dict[str, Any]) -> dict[str, Any]:
    return {"registry_id": study["registry_id"], "title": study["title"], "url": study["url"],
            "events": [
                {"registry_date": study["first_posted"], "seen_at": "2026-10-01T02:30:00Z",
                 "event": "first seen", "field_label": None, "old_words": None,
                 "new_words": "registration first posted"},
                {"registry_date": "2026-10-20", "seen_at": "2026-11-01T02:30:00Z",
                 "event": "version", "field_label": None, "old_words": None,
                 "new_words": "record updated; no tracked field changed"},
                {"registry_date": None, "seen_at": "2026-12-01T02:30:00Z",
                 "event": "changed", "field_label": "Overall status",
                 "old_words": "Active, not recruiting", "new_words": "Completed"},
            ]}


def _status(engine: Engine, error: str | None = None) -> dict[str, Any]:
    settings = load_settings({"db": str(engine.url)}, env={})
    data = collect_status(engine, settings)
    if error:
        data["sources"][0]["last_error"] = error
    data["last_update"] = {
        "id": 7, "started_at": "2026-12-01T02:30:00Z", "finished_at": "2026-12-01T02:41:09Z",
        "outcome": "ok", "sources": [
            {"source": "ctgov", "outcome": "ok", "new": 1, "changed": 1, "unchanged": 9,
             "rejected": 0, "error": None},
            {"source": "pubmed", "outcome": "failed", "new": 0, "changed": 0, "unchanged": 0,
             "rejected": 2, "error": error},
        ]}
    return data


def _detail(engine: Engine, nct: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return study_detail(conn, nct)


def _all_outputs(engine: Engine, studies: list, papers: list, report: Any,
                 fmts: tuple[str, ...] = ("table", "markdown")) -> dict[str, str]:
    out = {}
    for fmt in fmts:
        out[f"studies {fmt}"] = render.render_studies(studies, fmt, LIST_COLUMNS)
        out[f"papers {fmt}"] = render.render_papers(papers, fmt, PAPER_COLUMNS)
        out[f"report {fmt}"] = render.render_report(report, fmt, LIST_COLUMNS)
        out[f"changes {fmt}"] = render.render_changes(_changes(studies), fmt)
        out[f"timeline {fmt}"] = render.render_timeline(_timeline(studies[-2]), fmt)
    for fmt in ("table", "json"):
        # an error text that names the live URL: rendered, never requested
        out[f"status {fmt}"] = render.render_status(_status(engine, "HTTP 503 from "
                                                    "https://eutils.ncbi.nlm.nih.gov/entrez/"
                                                    "eutils/efetch.fcgi after 5 retries; "
                                                    "the window is repeated next run"), fmt)
        out[f"detail {fmt}"] = render.render_detail(_detail(engine, "NCT02552212"), fmt)
    return out


# ------------------------------------------------------------------ width -------------------


@pytest.mark.parametrize("columns", [80, 60, 132])
def test_every_table_fits_the_terminal(monkeypatch: pytest.MonkeyPatch, engine: Engine,
                                       studies: list, papers: list, report: Any,
                                       columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    outputs = _all_outputs(engine, studies, papers, report, fmts=("table",))
    ids = {s["registry_id"] for s in studies}
    for name, text in outputs.items():
        if name.endswith("json"):
            continue
        long = [line for line in text.splitlines() if len(line) > columns]
        assert not long, f"{name}: {long[:3]}"
        # Codes never split: every NCT-like token is a whole id.
        for token in re.findall(r"NCT\d*", text):
            assert re.fullmatch(r"NCT\d{8}", token), (name, token)
    table = outputs["studies table"]
    lines = table.splitlines()
    for nct in ids:
        assert any(nct in line for line in lines), nct
    for pmid in (p["pmid"] for p in papers if p["pmid"]):
        assert any(pmid in line for line in outputs["papers table"].splitlines()), pmid
    # The long real title wraps instead of being cut: all its words are printed.
    long_title = next(s["title"] for s in studies if s["registry_id"] == "NCT04523987")
    assert set(long_title.split()) <= set(" ".join(lines).split())


def test_narrow_terminal_is_laid_out_for_60_columns(monkeypatch: pytest.MonkeyPatch,
                                                    studies: list) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    text = render.render_studies(studies, "table", LIST_COLUMNS)
    assert max(len(line) for line in text.splitlines()) <= render.MIN_WIDTH
    assert all(s["registry_id"] in text for s in studies)


def test_no_trailing_padding(monkeypatch: pytest.MonkeyPatch, studies: list) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = render.render_studies(studies, "table", LIST_COLUMNS)
    assert all(line == line.rstrip() for line in text.splitlines())


# ------------------------------------------------------------------ words -------------------


def test_tables_and_markdown_speak_plain_words(monkeypatch: pytest.MonkeyPatch,
                                               studies: list) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    table = render.render_studies(studies, "table", LIST_COLUMNS)
    md = render.render_studies(studies, "markdown", LIST_COLUMNS)
    for text in (table, md):
        assert "Phase 2/3" in text  # NCT04431453, PHASE2_3
        assert "PHASE2_3" not in text and "ACTIVE_NOT_RECRUITING" not in text
        assert "NOT_APPLICABLE" not in text and "Not applicable" in " ".join(text.split())
    assert "Active, not recruiting" in " ".join(table.split())
    assert "| Active, not recruiting |" in md
    # The MSC study's condition group and cell labels, in words.
    msc_line = next(line for line in md.splitlines() if MSC_ID in line)
    assert "| Osteoarthritis |" in msc_line and "adipose, autologous, cells" in msc_line
    assert "Osteoarthritis; adipose, autologous, cells" in " ".join(table.split())


def test_json_and_csv_keep_the_codes(studies: list) -> None:
    rows = json.loads(render.render_studies(studies, "json", LIST_COLUMNS))
    assert {r["phase"] for r in rows} >= {"PHASE2_3", "NOT_APPLICABLE"}
    assert {r["status"] for r in rows} >= {"ACTIVE_NOT_RECRUITING", "COMPLETED"}
    msc = next(r for r in rows if r["registry_id"] == MSC_ID)
    assert msc["condition_groups"] == ["osteoarthritis"] and msc["msc_relevant"] is True
    got = list(csv.DictReader(io.StringIO(render.render_studies(studies, "csv", LIST_COLUMNS))))
    assert list(got[0]) == list(LIST_COLUMNS)
    assert {r["phase"] for r in got} >= {"PHASE2_3", "NOT_APPLICABLE"}
    assert {r["msc_relevant"] for r in got} == {"yes", "no"}
    assert next(r for r in got if r["registry_id"] == MSC_ID)["cell_sources"] == "adipose"


def test_counts_have_plurals(monkeypatch: pytest.MonkeyPatch, studies: list, papers: list,
                             report: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    one = [s for s in studies if s["registry_id"] == MSC_ID]
    assert render.render_studies(one, "table", LIST_COLUMNS).splitlines()[-1] == "1 study"
    assert "\n1 study\n" in render.render_studies(one, "markdown", LIST_COLUMNS)
    many = render.render_studies(studies, "table", LIST_COLUMNS)
    assert f"\n{len(studies)} studies\n" in many
    assert "1 paper\n" in render.render_papers(papers[:1], "table", PAPER_COLUMNS)
    assert render.render_studies([], "table", LIST_COLUMNS) == "0 studies\n"
    # A report with five studies and one paper (the real report, its paper list cut to one).
    small = dataclasses.replace(report, studies=[s for s in report.studies
                                                 if s["first_posted"] >= "2020-01-01"],
                                papers=report.papers[:1])
    assert render.render_report(small, "table", LIST_COLUMNS).startswith(
        "New since 2000-01-01: 5 studies, 1 paper\n")
    assert render.render_report(small, "markdown", LIST_COLUMNS).startswith(
        "## New since 2000-01-01: 5 studies, 1 paper\n")
    changes = render.render_changes(_changes(studies), "table")
    assert "4 changes in 3 studies" in changes
    assert "1 change in 1 study" in render.render_changes(_changes(studies)[:1], "markdown")


# ------------------------------------------------------------------ irrelevant rows ---------


def test_irrelevant_rows_are_marked(monkeypatch: pytest.MonkeyPatch, studies: list,
                                    papers: list, report: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    irrelevant = [s for s in studies if s["msc_relevant"] is False]
    assert irrelevant and any(s["msc_relevant"] is True for s in studies)
    table = render.render_studies(studies, "table", LIST_COLUMNS)
    assert table.count("[not MSC]") == len(irrelevant) + 1  # one per row, one in the legend
    assert render.NOT_MSC_LEGEND in " ".join(table.split())
    lines = table.splitlines()
    msc_line = next(line for line in lines if MSC_ID in line)
    assert "[not MSC]" not in msc_line
    remdesivir = next(line for line in lines if "NCT04431453" in line)
    assert "[not MSC] Study of" in remdesivir
    md = render.render_studies(studies, "markdown", LIST_COLUMNS)
    assert md.count(r"\[not MSC\]") == len(irrelevant) + 1
    # Only relevant rows: no marker, no legend.
    relevant = [s for s in studies if s["msc_relevant"]]
    for fmt in ("table", "markdown"):
        assert "not MSC" not in render.render_studies(relevant, fmt, LIST_COLUMNS)
    rep_md = render.render_report(report, "markdown", LIST_COLUMNS)
    assert r"\[not MSC\] Study of Remdesivir" in rep_md and "judged by the classifier" in rep_md
    assert "[not MSC]" in render.render_papers(papers, "table", PAPER_COLUMNS)
    # CSV and JSON keep the column itself.
    assert "msc_relevant" in render.render_studies(studies, "csv", LIST_COLUMNS).splitlines()[0]


# ------------------------------------------------------------------ report formats ----------


def test_report_csv_carries_studies_then_papers(report: Any) -> None:
    assert report.studies and report.papers
    text = render.render_report(report, "csv", LIST_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    header = next(csv.reader(io.StringIO(text)))
    assert header[0] == "kind" and header == render.report_csv_columns(LIST_COLUMNS)
    assert set(LIST_COLUMNS) | set(PAPER_COLUMNS) == set(header[1:])
    kinds = [r["kind"] for r in rows]
    assert kinds == ["study"] * len(report.studies) + ["paper"] * len(report.papers)
    first_paper = rows[len(report.studies)]
    assert first_paper["pmid"] == report.papers[0]["pmid"] and first_paper["registry_id"] == ""
    assert first_paper["title"] == render.clean_text(report.papers[0]["title"], multiline=True)
    assert rows[0]["pmid"] == "" and rows[0]["registry_id"] == report.studies[0]["registry_id"]
    assert rows[0]["phase"] == report.studies[0]["phase"]  # codes, not words


def test_report_json_has_studies_and_papers(report: Any) -> None:
    data = json.loads(render.render_report(report, "json", LIST_COLUMNS))
    assert [s["registry_id"] for s in data["studies"]] == [
        s["registry_id"] for s in report.studies]
    assert [p["pmid"] for p in data["papers"]] == [p["pmid"] for p in report.papers]
    assert data["total"] == len(report.studies)
    assert data["by_condition_phase"]["osteoarthritis"] == {"PHASE2": 1}


def test_report_table_and_markdown(monkeypatch: pytest.MonkeyPatch, report: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    table = render.render_report(report, "table", LIST_COLUMNS)
    assert "Osteoarthritis" in table and "Not classified" in table and "Phase 2/3" in table
    assert "Studies by condition and phase" in table and "\nPapers\n" in table
    md = render.render_report(report, "markdown", LIST_COLUMNS)
    assert "| Condition | Phase 1 |" in md and "| Osteoarthritis |" in md
    assert "[NCT04431453](https://clinicaltrials.gov/study/NCT04431453)" in md
    assert "(Phase 2/3, Completed, first posted 2020-06-16)" in md
    assert "### Papers" in md and "(PMID 23121403, doi:10.1056/nejmoa1210384)" in md


# ------------------------------------------------------------------ changes, timeline -------


def test_changes_formats(monkeypatch: pytest.MonkeyPatch, studies: list) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    rows = _changes(studies)
    table = render.render_changes(rows, "table")
    flat = " ".join(table.split())
    assert "Recruiting \u2192 Completed" in flat and "Phase 2 \u2192 Phase 2/3" in flat
    assert "2026-11-20" in table and "seen 2026-12-01" in flat  # no registry date: seen date
    md = render.render_changes(rows, "markdown")
    assert md.splitlines()[0] == "| ID | Registry date | Seen | Field | Old | New | Title |"
    assert f"[{rows[0]['registry_id']}]({rows[0]['url']})" in md
    got = list(csv.DictReader(io.StringIO(render.render_changes(rows, "csv"))))
    assert list(got[0]) == list(rows[0]) and got[0]["old_value"] == "RECRUITING"
    assert got[2]["registry_date"] == ""
    assert json.loads(render.render_changes(rows, "json")) == rows
    assert render.render_changes([], "table") == "0 changes in 0 studies\n"


def test_timeline(monkeypatch: pytest.MonkeyPatch, studies: list) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    study = next(s for s in studies if s["registry_id"] == "NCT02513394")
    data = _timeline(study)
    data["events"] = data["events"][::-1]  # given newest first: printed oldest first
    text = render.render_timeline(data, "table")
    lines = text.splitlines()
    assert lines[0].startswith("NCT02513394: PALbociclib")
    first = next(i for i, line in enumerate(lines) if "first seen" in line)
    version = next(i for i, line in enumerate(lines) if "version" in line)
    changed = next(i for i, line in enumerate(lines) if "changed" in line.split())
    assert first < version < changed
    assert "2015-07-31  2026-10-01 02:30" in lines[first]  # registry date beside seen date
    assert "Overall status: Active, not recruiting \u2192 Completed" in " ".join(text.split())
    assert "3 events" in text
    assert json.loads(render.render_timeline(data, "json")) == data


# ------------------------------------------------------------------ status, detail ----------


def test_status_shows_the_last_update(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = render.render_status(_status(engine), "table")
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("Last update #7 (ok)"))
    assert lines[i] == ("Last update #7 (ok), started 2026-12-01 02:30 UTC, finished "
                        "2026-12-01 02:41 UTC")
    assert lines[i + 1] == "  ctgov: ok, 1 new, 1 changed, 9 unchanged, 0 failed"
    assert lines[i + 2] == "  pubmed: failed, 0 new, 0 changed, 0 unchanged, 2 failed"
    assert i + 2 < next(j for j, line in enumerate(lines) if line.startswith("Source"))
    # Older callers: no last_update key at all; a database without updates: None.
    old = _status(engine)
    del old["last_update"]
    assert "Last update" not in render.render_status(old, "table")
    none = _status(engine) | {"last_update": None}
    assert "No update has run yet" in render.render_status(none, "table")
    running = _status(engine)
    running["last_update"] |= {"outcome": "running", "finished_at": None}
    assert "Last update #7 (running), started 2026-12-01 02:30 UTC, not finished" in \
        render.render_status(running, "table")
    assert json.loads(render.render_status(_status(engine), "json"))["last_update"]["id"] == 7


def test_detail_unreported_and_irrelevant(monkeypatch: pytest.MonkeyPatch,
                                          engine: Engine) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    detail = _detail(engine, "NCT02552212")
    assert detail["msc_relevant"] is False
    # Set here whatever the query says, in the shape tracker.reports gives it.
    detail["unreported"] = {"unreported": True, "months_since_primary_completion": 19,
                            "primary_completion": "2024-05"}
    text = render.render_detail(detail, "table")
    lines = text.splitlines()
    assert lines[0].startswith("NCT02552212: Multicenter Study")
    top = " ".join(text.split("\n\n")[0].split())  # the lines above the fields
    assert "Not about MSCs: the classifier judged this study not to be about" in top
    assert ("Completed but unreported: primary completion 2024-05, 19 months ago, no results "
            "posted and no linked results paper") in top
    assert "Phase 3 (PHASE3)" in text and "Completed (COMPLETED)" in text
    assert "references" in text and "35296532" in text
    detail["unreported"] = {"unreported": False}
    assert "unreported" not in render.render_detail(detail, "table").split("\n\n")[0]
    msc = render.render_detail(_detail(engine, MSC_ID), "table")
    assert "Not about MSCs" not in msc and "Osteoarthritis" in msc and "adipose" in msc


# ------------------------------------------------------------------ hostile text ------------

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_hostile_registry_text_is_inert_everywhere(monkeypatch: pytest.MonkeyPatch,
                                                   engine: Engine, studies: list,
                                                   papers: list, report: Any,
                                                   hostile: dict[str, Any]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert hostile["title"] == HOSTILE_TITLE  # stored as the registry sent it
    rows = [hostile, *studies]
    # Crafted on top (after the query), fields no parser would produce this way: a lone
    # surrogate in the sponsor, markdown-breaking dates and a javascript: URL on a paper.
    rows[0] = hostile | {"sponsor": "Evil \ud800 Corp", "first_posted": "2024-01-01](x)"}
    bad_paper = papers[0] | {"title": HOSTILE_TITLE, "journal": "J\x1b[2J <b>",
                             "pub_date": "2025|x", "pmid": "1](javascript:alert(1))",
                             "url": "javascript:alert(1)"}
    rep = dataclasses.replace(report, studies=[rows[0], *report.studies],
                              papers=[bad_paper, *report.papers])
    changes = _changes(rows)
    for c in changes:
        c["old_words"] = "\x1b]8;;http://evil\x07x\x1b]8;;\x07"
    timeline = _timeline(rows[0])
    detail = _detail(engine, HOSTILE_ID) | {"sponsor": "Evil \ud800 Corp"}
    outputs = {}
    for fmt in ("table", "markdown", "csv", "json"):
        outputs[f"studies {fmt}"] = render.render_studies(rows, fmt, LIST_COLUMNS)
        outputs[f"papers {fmt}"] = render.render_papers([bad_paper], fmt, PAPER_COLUMNS)
        outputs[f"report {fmt}"] = render.render_report(rep, fmt, LIST_COLUMNS)
        outputs[f"changes {fmt}"] = render.render_changes(changes, fmt)
        outputs[f"timeline {fmt}"] = render.render_timeline(timeline, fmt)
    for fmt in ("table", "json"):
        outputs[f"detail {fmt}"] = render.render_detail(detail, fmt)
        outputs[f"status {fmt}"] = render.render_status(_status(engine, HOSTILE_TITLE), fmt)
    for name, text in outputs.items():
        assert not _CONTROL.search(text), (name, _CONTROL.findall(text))
        assert "\ud800" not in text
        text.encode("utf-8")  # no lone surrogate survives
        assert "8;;http://evil" not in text or name.endswith("json"), name
        if name.endswith(("table", "markdown")):
            assert "click" in text, name  # the visible text of the link is kept
    for name in ("studies json", "report json", "changes json", "detail json"):
        assert "\\u001b" in outputs[name] and "\\u0007" in outputs[name]  # escaped, not raw
    data = json.loads(outputs["studies json"])
    assert data[0]["title"] == HOSTILE_TITLE  # JSON keeps the value itself
    assert data[0]["sponsor"] == "Evil \ufffd Corp"
    # Markdown: HTML and markdown escaped, only http(s) links, escaped dates and ids.
    md = outputs["report markdown"]
    assert "<script>" not in md and r"\<script\>x\</script\>" in md
    assert not re.search(r"(?<!\\)\]\(javascript", md)  # no link to javascript:
    assert r"first posted 2024\-01\-01\](x)" in md or r"2024-01-01\](x)" in md
    assert r"(PMID 1\](javascript:alert(1))" in md  # the crafted PMID, escaped
    assert r"2025\|x" in md and r"\<b\>" in md
    assert not re.search(r"(?<!\\)\]\(javascript", outputs["papers markdown"])
    # CSV: the formula is neutralised only where a cell would start one.
    got = list(csv.DictReader(io.StringIO(outputs["studies csv"])))
    assert got[0]["title"].startswith("<script>x</script>click")
    assert got[0]["first_posted"] == "2024-01-01](x)"


def test_csv_formula_cells_get_a_quote() -> None:
    rows = [{"a": "=HYPERLINK(\"http://evil\",\"x\")", "b": "+1", "c": "-5", "d": "@SUM(A1)",
             "e": "\tx", "f": "\r=1", "g": "plain - text", "h": -5, "i": 12, "j": "  =1"}]
    got = list(csv.reader(io.StringIO(render.to_csv(rows, list(rows[0])))))[1]
    assert got == ["'=HYPERLINK(\"http://evil\",\"x\")", "'+1", "'-5", "'@SUM(A1)", "'\tx",
                   "'\n=1", "plain - text", "'-5", "12", "'  =1"]


def test_clean_text_and_safe_url() -> None:
    assert render.clean_text("a\x1b]8;;http://evil\x07b\x1b]8;;\x07c") == "abc"
    assert render.clean_text("\x1b[1;31mred\x1b[0m \x9b2Jx \x07\x00") == "red x "
    assert render.clean_text("unterminated \x1b]8;;http://evil") == "unterminated 8;;http://evil"
    assert render.clean_text("a\r\nb\nc\td") == "a b c d"
    assert render.clean_text("a\r\nb\tc", multiline=True) == "a\nb\tc"
    assert render.clean_text("\ud83d\ude00 \udc00") == "\U0001f600 \ufffd"
    assert render.clean_text("abc\u202egpj.exe") == "abcgpj.exe"
    assert render.safe_url("javascript:alert(1)") is None
    assert render.safe_url("data:text/html,x") is None and render.safe_url("/relative") is None
    assert render.safe_url('https://x.org/a b(c)<d>"e\\f|g') == \
        "https://x.org/a%20b%28c%29%3Cd%3E%22e%5Cf%7Cg"
    # a string check of the URL filter: nothing is requested
    assert render.safe_url("https://clinicaltrials.gov/study/NCT04431453") == \
        "https://clinicaltrials.gov/study/NCT04431453"
    assert render._md("see http://evil and www.evil.org") == \
        r"see http:\/\/evil and www\.evil.org"


def test_json_output_has_no_raw_controls() -> None:
    text = render.to_json({"t": "a\x1b]8;;http://evil\x07b\x9bc\u202ed", "k\ud800": 1})
    assert not _CONTROL.search(text)
    assert json.loads(text) == {"t": "a\x1b]8;;http://evil\x07b\x9bc\u202ed", "k\ufffd": 1}


def test_last_run_report_lists_the_changed_studies(monkeypatch: pytest.MonkeyPatch,
                                                   report: Any, studies: list) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    events = _changes(studies)
    # In the shape of tracker.reports.changed_in_last_update: a study row with its events.
    changed = [studies[0] | {"changes": events[:2]}]
    rep = dataclasses.replace(report, title="New in the last update", changed=changed)
    table = render.render_report(rep, "table", LIST_COLUMNS)
    assert table.startswith(f"New in the last update: {len(rep.studies)} studies, "
                            f"{len(rep.papers)} papers; 1 study changed\n")
    section = table[table.index("Changed in the last update"):]
    assert studies[0]["registry_id"] in section
    assert "Status: Recruiting \u2192 Completed" in " ".join(section.split())
    assert max(len(line) for line in table.splitlines()) <= 80
    md = render.render_report(rep, "markdown", LIST_COLUMNS)
    assert "### Changed in the last update" in md and "Phase: Phase 2 \u2192 Phase 2/3" in md
    assert json.loads(render.render_report(rep, "json", LIST_COLUMNS))["changed"][0][
        "registry_id"] == studies[0]["registry_id"]
    rows = list(csv.DictReader(io.StringIO(render.render_report(rep, "csv", LIST_COLUMNS))))
    assert rows[-1]["kind"] == "changed" and rows[-1]["registry_id"] == studies[0]["registry_id"]


def test_long_report_lists_are_capped_in_table_and_markdown(
    monkeypatch: pytest.MonkeyPatch, report: Any
) -> None:
    """A terminal or markdown report shows the newest REPORT_SHOWN rows of each list and says
    how many more there are; CSV and JSON carry them all. The extra papers are copies of the
    report's real ones under new PMIDs (derived here)."""
    import dataclasses

    from tracker.render import REPORT_SHOWN, render_report
    from tracker.reports import LIST_COLUMNS

    monkeypatch.setenv("COLUMNS", "80")
    base = report.papers[0]
    many = [{**base, "pmid": str(40000000 + i)} for i in range(REPORT_SHOWN + 7)]
    big = dataclasses.replace(report, papers=many)
    table = render_report(big, "table", LIST_COLUMNS)
    assert "... and 7 more papers" in table
    assert str(40000000 + REPORT_SHOWN - 1) in table and str(40000000 + REPORT_SHOWN) not in table
    md = render_report(big, "markdown", LIST_COLUMNS)
    assert str(40000000 + REPORT_SHOWN) not in md and "and 7 more papers" in md
    assert len(json.loads(render_report(big, "json", LIST_COLUMNS))["papers"]) == len(many)
    assert render_report(big, "csv", LIST_COLUMNS).count("\npaper,") == len(many)
