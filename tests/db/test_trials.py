"""One trial, many registrations (db/trials.py) on a real SQLite file and a real PostgreSQL
server, through the real CLI for merge, unmerge, duplicates and show.

Records: the real recorded whole CT.gov records (tests/fixtures/ctgov_full_2022). The second
registrations are DERIVED from them with tests/replay_server.clone_study (a new NCT id), and
only the fields each test names are changed: ``secondaryIdInfos`` naming the first record
(as CT.gov records name their EudraCT or ISRCTN twins), or nothing at all (a look-alike that
declares nothing, for the suggestions).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from db.migrate import upgrade
from db.models import TrialMember
from db.trials import merge, registrations, regroup, suggestions, trial_of, unmerge
from db.upsert import upsert_studies
from sources.clinicaltrials_gov import parse_study
from tests.replay_server import clone_study
from tracker.cli import app

FULL = Path(__file__).resolve().parents[1] / "fixtures" / "ctgov_full_2022"
runner = CliRunner()


def real(nct: str) -> dict[str, Any]:
    return json.loads((FULL / f"{nct}.json").read_text(encoding="utf-8"))


def declaring(base: dict[str, Any], new_id: str, *declared: str) -> dict[str, Any]:
    """A clone of a real record under ``new_id`` whose secondary ids name ``declared``."""
    study = clone_study(base, new_id, "2022-02-01")
    study["protocolSection"]["identificationModule"]["secondaryIdInfos"] = [
        {"id": d, "type": "OTHER"} for d in declared]
    return study


def store(engine: Engine, *studies: dict[str, Any]) -> dict[str, int]:
    """Parse, classify and store ``studies`` as an update does, then group them."""
    from tracker.classify import classify_study, load_rules

    rules = load_rules()
    records = [parse_study(s) for s in studies]
    for rec in records:
        rec.labels = classify_study(rec, rules)
    with engine.begin() as conn:
        upsert_studies(conn, records)
        regroup(conn)
        rows = conn.execute(select(TrialMember.__table__)).mappings().all()
    from db.models import Study

    with engine.connect() as conn:
        ids = {r[0]: r[1] for r in conn.execute(select(Study.__table__.c.registry_id,
                                                      Study.__table__.c.id))}
    assert len(rows) == len(ids)
    return ids


def test_registrations_that_declare_each_other_are_one_trial(engine: Engine) -> None:
    a = real("NCT05160831")
    ids = store(engine, a, declaring(real("NCT05182034"), "NCT09100001", "NCT05160831"),
                real("NCT05193877"))
    with engine.connect() as conn:
        assert trial_of(conn, ids["NCT09100001"]) == trial_of(conn, ids["NCT05160831"])
        assert trial_of(conn, ids["NCT05193877"]) != trial_of(conn, ids["NCT05160831"])
        regs = registrations(conn, ids["NCT05160831"])
    assert [r["registry_id"] for r in regs] == ["NCT05160831", "NCT09100001"]
    assert any("ctgov:NCT09100001 lists NCT05160831 as a secondary id" in r["joined_by"]
               for r in regs), regs


def test_editor_decisions_survive_regrouping_in_order(engine: Engine) -> None:
    ids = store(engine, real("NCT05160831"),
                declaring(real("NCT05182034"), "NCT09100001", "NCT05160831"),
                real("NCT05193877"))
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        unmerge(conn, "NCT09100001", now=t0)
        assert trial_of(conn, ids["NCT09100001"]) == ids["NCT09100001"]
        merge(conn, "NCT05193877", "NCT05160831", now=t0 + dt.timedelta(days=1))
        regroup(conn)  # as every update does: the decisions hold
        assert trial_of(conn, ids["NCT05193877"]) == trial_of(conn, ids["NCT05160831"])
        assert trial_of(conn, ids["NCT09100001"]) == ids["NCT09100001"]
        merge(conn, "NCT09100001", "NCT05160831", now=t0 + dt.timedelta(days=2))
        assert len(registrations(conn, ids["NCT05160831"])) == 3
    # a re-import of every record (same rows) keeps the decisions
    store(engine, real("NCT05160831"),
          declaring(real("NCT05182034"), "NCT09100001", "NCT05160831"), real("NCT05193877"))
    with engine.connect() as conn:
        assert len(registrations(conn, ids["NCT05160831"])) == 3


def test_a_look_alike_is_suggested_never_merged(engine: Engine) -> None:
    base = real("NCT05160831")
    twin = clone_study(base, "NCT09100002", "2022-02-01")  # declares nothing
    ids = store(engine, base, twin, real("NCT05193877"))
    with engine.connect() as conn:
        assert trial_of(conn, ids["NCT09100002"]) != trial_of(conn, ids["NCT05160831"])
        found = suggestions(conn)
    pair = {("ctgov:NCT05160831", "ctgov:NCT09100002"), ("ctgov:NCT09100002",
                                                          "ctgov:NCT05160831")}
    assert found and (found[0].a, found[0].b) in pair and found[0].score >= 0.9, found
    assert "the same sponsor" in found[0].why


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    from db.engine import make_engine

    path = tmp_path / "trials.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store(engine, real("NCT05160831"), clone_study(real("NCT05160831"), "NCT09100002",
                                                   "2022-02-01"), real("NCT05193877"))
    engine.dispose()
    return str(path)


def test_cli_merge_show_unmerge_duplicates(db_file: str) -> None:
    res = runner.invoke(app, ["duplicates", "--db", db_file, "-f", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["score"] >= 0.9
    res = runner.invoke(app, ["merge", "NCT05160831", "NCT09100002", "--db", db_file,
                              "--note", "same trial, registered twice"])
    assert res.exit_code == 0, res.output + res.stderr
    assert res.output.startswith("merged: one trial of 2 registrations: ctgov:NCT05160831")
    detail = json.loads(runner.invoke(app, ["show", "NCT09100002", "--db", db_file, "-f",
                                            "json"]).output)
    assert [r["registry_id"] for r in detail["registrations"]] == ["NCT05160831",
                                                                   "NCT09100002"]
    assert "merged by an editor" in detail["registrations"][1]["joined_by"]
    dup = json.loads(runner.invoke(app, ["duplicates", "--db", db_file, "-f", "json"]).output)
    assert dup == []  # merged pairs are no longer suggested
    res = runner.invoke(app, ["unmerge", "NCT09100002", "--db", db_file])
    assert res.exit_code == 0 and "is a trial of its own" in res.output
    detail = json.loads(runner.invoke(app, ["show", "NCT09100002", "--db", db_file, "-f",
                                            "json"]).output)
    assert "registrations" not in detail


def test_cli_unknown_registration_is_one_line(db_file: str) -> None:
    res = runner.invoke(app, ["merge", "NCT05160831", "NCT00000000", "--db", db_file])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [
        ("error: no stored registration 'NCT00000000'; give a registry id as tracker studies "
        "shows it (NCT01234567, ISRCTN12345678, ...)")]
    res = runner.invoke(app, ["merge", "NCT05160831", "NCT05160831", "--db", db_file])
    assert res.exit_code == 1 and "are the same registration" in res.stderr


def test_report_counts_trials_not_registrations(tmp_path: Path) -> None:
    """The same knee-OA trial registered twice (the second declares the first) is one trial
    in the report's counts; both registrations are still listed and filterable."""
    from db.engine import make_engine

    path = tmp_path / "count.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store(engine, real("NCT05160831"),
          declaring(real("NCT05160831"), "NCT09100001", "NCT05160831"))
    engine.dispose()
    rep = json.loads(runner.invoke(app, ["report", "--db", str(path), "--since", "2000-01-01",
                                         "-f", "json"]).output)
    assert sum(rep["by_condition_phase"]["osteoarthritis"].values()) == 1
    listed = json.loads(runner.invoke(app, ["studies", "--db", str(path), "-f", "json"]).output)
    assert sorted(r["registry_id"] for r in listed) == ["NCT05160831", "NCT09100001"]
    assert len({r["trial_id"] for r in listed}) == 1


def test_digest_lists_a_trial_once_with_its_other_registrations(tmp_path: Path) -> None:
    from db.engine import make_engine

    path = tmp_path / "digest.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store(engine, real("NCT05160831"),
          declaring(real("NCT05160831"), "NCT09100001", "NCT05160831"))
    engine.dispose()
    res = runner.invoke(app, ["digest", "--db", str(path), "--since", "2000-01-01", "-f",
                              "json"])
    assert res.exit_code == 0, res.output + res.stderr
    data = json.loads(res.output)
    items = [i for cell in data["new_trials"] for i in cell["items"]]
    assert len(items) == 1, items
    assert items[0]["also_registered"] in (["NCT09100001"], ["NCT05160831"])
    assert "also registered as NCT" in items[0]["why"]
