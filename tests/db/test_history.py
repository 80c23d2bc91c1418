"""Every version kept and every tracked field diffed, on SQLite and PostgreSQL: a study changed
twice keeps both earlier raw records; each field that moved is one event dated by the registry;
an unchanged field gives none; a listing's replaced record is kept too.

Changed versions are derived from a real recorded study (tests/fixtures/ctgov) by editing the
fields each test names; the paper is a real Europe PMC result re-dated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from replay_server import fixture_dir, load_europepmc_results
from sqlalchemy import select
from sqlalchemy.engine import Engine

from db.history import FIELD_NAMES, diff
from db.models import PublicationSourceVersion, StudyChange, StudyVersion
from db.publications import upsert_publications
from db.upsert import decompress, upsert_studies
from sources.clinicaltrials_gov import parse_study
from sources.europepmc import parse_result
from tracker.history import ChangeFilter, query_changes, timeline
from tracker.reports import StudyFilter

T = [dt.datetime(2026, 1, d, 2, 30, tzinfo=dt.UTC) for d in (1, 8, 15)]


def _edit(study: dict[str, Any], posted: str, **changes: Any) -> dict[str, Any]:
    new = orjson.loads(orjson.dumps(study))
    proto = new["protocolSection"]
    proto["statusModule"]["lastUpdatePostDateStruct"] = {"date": posted, "type": "ACTUAL"}
    for path, value in changes.items():
        node = proto
        *parents, leaf = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return new


def test_each_version_is_kept_and_each_field_diffed(engine: Engine, studies_json: list) -> None:
    base = studies_json[4]  # NCT02513394, a real study with locations in many countries
    nct = base["protocolSection"]["identificationModule"]["nctId"]
    v2 = _edit(base, "2026-01-07", statusModule__overallStatus="TERMINATED",
               statusModule__whyStopped="Slow accrual",
               designModule__enrollmentInfo={"count": 12, "type": "ESTIMATED"})
    v3 = _edit(v2, "2026-01-14", conditionsModule__conditions=["Breast Cancer", "Knee Pain"],
               contactsLocationsModule__locations=[{"country": "Spain"}])
    for now, study, run in ((T[0], base, 1), (T[1], v2, 2), (T[2], v3, 3)):
        with engine.begin() as conn:
            upsert_studies(conn, [parse_study(study)], run_id=run, now=now)
    with engine.connect() as conn:
        versions = conn.execute(select(StudyVersion.__table__).order_by(
            StudyVersion.__table__.c.id)).mappings().all()
        events = conn.execute(select(StudyChange.__table__).order_by(
            StudyChange.__table__.c.id)).mappings().all()
        rows = query_changes(conn, ChangeFilter(labels=StudyFilter(include_irrelevant=True)))
        line = timeline(conn, nct)
    # Two earlier versions, byte-equal to what was stored, with when they were current.
    assert [orjson.loads(decompress(v["raw"])) for v in versions] == [base, v2]
    assert [(v["seen_from"], v["seen_until"], v["run_id"]) for v in versions] == [
        (T[0], T[1], 1), (T[1], T[2], 2)]
    by_run = {}
    for e in events:
        by_run.setdefault(e["run_id"], {})[e["field"]] = (e["old_value"], e["new_value"],
                                                          e["registry_date"])
    old_status = base["protocolSection"]["statusModule"]["overallStatus"]
    assert by_run[2] == {
        "status": (old_status, "TERMINATED", dt.date(2026, 1, 7)),
        "why_stopped": (None, "Slow accrual", dt.date(2026, 1, 7)),
        "enrollment": (str(base["protocolSection"]["designModule"]["enrollmentInfo"]["count"]),
                       "12", dt.date(2026, 1, 7)),
        "enrollment_type": (base["protocolSection"]["designModule"]["enrollmentInfo"]["type"],
                            "ESTIMATED", dt.date(2026, 1, 7)),
    }
    assert set(by_run[3]) == {"conditions", "countries"}
    assert orjson.loads(by_run[3]["countries"][1]) == ["Spain"]
    # Newest first; within a version in the order people read fields.
    assert [r["field"] for r in rows][:2] == ["conditions", "countries"]
    assert [r["field"] for r in rows[2:]] == ["status", "why_stopped", "enrollment",
                                              "enrollment_type"]
    assert rows[2]["new_words"] == "Terminated"
    assert rows[0]["new_words"].startswith("added: Knee Pain")
    assert [e["event"] for e in line["events"]] == ["first seen"] + ["changed"] * 6
    assert line["versions"] == 3


def test_diff_covers_every_tracked_field(studies_json: list) -> None:
    base = parse_study(studies_json[9])  # NCT04431453: arms, outcomes, countries, results
    same = parse_study(studies_json[9])
    assert diff(base, same) == []
    changed = _edit(studies_json[9], "2026-02-01",
                    identificationModule__briefTitle="A new title",
                    statusModule__startDateStruct={"date": "2030-01"},
                    statusModule__primaryCompletionDateStruct={"date": "2031-01"},
                    statusModule__completionDateStruct={"date": "2032-01"},
                    statusModule__resultsFirstPostDateStruct={"date": "2026-02-01"},
                    designModule__phases=["PHASE3"],
                    armsInterventionsModule__armGroups=[{"label": "Only arm"}],
                    armsInterventionsModule__interventions=[{"type": "DRUG", "name": "X"}],
                    outcomesModule__primaryOutcomes=[{"measure": "Pain"}],
                    sponsorCollaboratorsModule__leadSponsor={"name": "Someone else"})
    fields = {f for f, _, _ in diff(base, parse_study(changed))}
    assert {"title", "start_date", "primary_completion_date", "completion_date",
            "results_first_posted", "phase", "arms", "interventions", "primary_outcomes",
            "sponsor"} <= fields <= set(FIELD_NAMES)


def test_a_replaced_listing_record_is_kept(engine: Engine) -> None:
    result = load_europepmc_results(fixture_dir("europepmc") / "search_cancer_core.json")[0]
    later = {**result, "title": result["title"] + " (corrected)"}
    with engine.begin() as conn:
        upsert_publications(conn, [parse_result(result)], run_id=1, now=T[0])
    with engine.begin() as conn:
        upsert_publications(conn, [parse_result(later)], run_id=2, now=T[1])
    with engine.connect() as conn:
        kept = conn.execute(select(PublicationSourceVersion.__table__)).mappings().all()
    assert len(kept) == 1
    assert orjson.loads(decompress(kept[0]["raw"]))["title"] == result["title"]
    assert (kept[0]["seen_from"], kept[0]["seen_until"]) == (T[0], T[1])


def test_digest_changes_and_as_of_on_both_engines(engine: Engine) -> None:
    """The read side over real whole MSC records (tests/fixtures/ctgov_full; the second
    version derived here: NCT05182034 starts recruiting, NCT05152160 is terminated)."""
    from pathlib import Path

    from tracker.classify import load_rules
    from tracker.digest import build_digest
    from tracker.feed import build_feed, validate_atom
    from tracker.history import studies_as_of
    from tracker.pipeline import label

    rules = load_rules(None)
    full = Path(__file__).parent.parent / "fixtures" / "ctgov_full"
    base = [orjson.loads(p.read_bytes()) for p in sorted(full.glob("NCT*.json"))]
    by_id = {s["protocolSection"]["identificationModule"]["nctId"]: s for s in base}
    later = [_edit(by_id["NCT05182034"], "2026-01-07", statusModule__overallStatus="RECRUITING"),
             _edit(by_id["NCT05152160"], "2026-01-07", statusModule__overallStatus="TERMINATED",
                   statusModule__whyStopped="Slow accrual")]
    for now, studies, run in ((T[0], base, 1), (T[1], later, 2)):
        records = [parse_study(s) for s in studies]
        label(records, "study", rules)
        with engine.begin() as conn:
            upsert_studies(conn, records, run_id=run, now=now)
    with engine.connect() as conn:
        data = build_digest(conn, since=dt.date(2026, 1, 8), today=dt.date(2026, 1, 9),
                            now=T[2])
        then = {r["registry_id"]: r for r in studies_as_of(
            conn, StudyFilter(), dt.date(2026, 1, 6), rules)}
    assert [(c["id"], c["change_kind"]) for c in data["changes"]] == [
        ("NCT05152160", "stopped"), ("NCT05182034", "started_recruiting")]
    assert "Slow accrual" in data["changes"][0]["why"]
    assert data["counts"]["new_trials"] == 0  # all first posted before the period
    assert sum(data["charts"]["registrations_by_phase"]["series"]["Phase 2"]) >= 1
    assert then["NCT05182034"]["status"] == "NOT_YET_RECRUITING"
    assert then["NCT05152160"]["status"] == "RECRUITING"
    assert validate_atom(build_feed(data)) == []
