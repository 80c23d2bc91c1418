"""Alembic migrations: they build exactly the models' schema, run twice harmlessly, and an
older database with data upgrades without losing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import db.models  # noqa: F401
from db.engine import make_engine
from db.migrate import _config, current_revision, head_revision, history, pending, upgrade
from db.models import Study
from db.upsert import upsert_studies
from sources.clinicaltrials_gov import parse_study


def test_migrations_build_the_models_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    assert current_revision(engine) == head_revision()
    assert pending(engine) == [] and upgrade(engine) == []


def test_history_lists_every_revision_in_order() -> None:
    revs = [rev for rev, _ in history()]
    assert revs == sorted(revs) and revs[0] == "0001" and revs[-1] == head_revision()


def test_old_database_with_data_upgrades_in_place(tmp_path: Path, studies_json: list[Any]) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    cfg = _config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.commit()
    assert current_revision(engine) == "0001"
    # Rows written by the first schema (no label columns yet).
    rec = parse_study(studies_json[0])
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO study (registry, registry_id, title, phase, status, conditions, keywords,"
            " interventions, mesh_terms, has_results, url, content_hash, raw, first_seen_at,"
            " last_changed_at) VALUES ('ctgov', :rid, :title, 'PHASE1', 'RECRUITING', '[]', '[]',"
            " '[]', '[]', 0, :url, 'x', x'00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
            {"rid": rec.registry_id, "title": rec.title, "url": rec.url})
    applied = upgrade(engine)
    assert [rev for rev, _ in applied] == [rev for rev, _ in history()][1:]
    with engine.connect() as conn:
        row = conn.execute(select(Study.__table__)).mappings().one()
        assert row["registry_id"] == rec.registry_id and row["condition_groups"] == []
        assert row["msc_relevant"] is None
    # And the upgraded database takes new writes (the stale hash makes the study "changed").
    with engine.begin() as conn:
        result = upsert_studies(conn, [rec])
    assert (result.new, result.changed) == (0, 1)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Study.__table__)).scalar_one() == 1


def test_0003_database_with_history_upgrades_keeping_every_row(
    tmp_path: Path, studies_json: list[Any]
) -> None:
    """A database of revision 0003 with runs, a study and its change history: after the
    upgrade every row is there, the old history rows read as before, and the per-source runs
    are grouped into updates (a source repeating starts the next update)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'v3.sqlite'}")
    cfg = _config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.commit()
    rec = parse_study(studies_json[0])
    with engine.begin() as conn:
        for rid, source, outcome in ((1, "ctgov", "ok"), (2, "pubmed", "failed"),
                                     (3, "europepmc", "ok"), (4, "ctgov", "ok"),
                                     (5, "pubmed", "ok")):
            conn.execute(text(
                "INSERT INTO fetch_run (id, source, started_at, finished_at, outcome, full,"
                " fetched, new, changed, unchanged, rejected, requests, retries) VALUES"
                " (:id, :s, '2026-11-0' || :id || ' 02:30:00', '2026-11-0' || :id || ' 02:40:00',"
                " :o, 0, 0, 0, 0, 0, 0, 0, 0)"), {"id": rid, "s": source, "o": outcome})
        conn.execute(text(
            "INSERT INTO study (registry, registry_id, title, phase, status, conditions, keywords,"
            " interventions, mesh_terms, has_results, url, content_hash, raw, first_seen_at,"
            " last_changed_at, first_seen_run_id, last_changed_run_id, condition_groups,"
            " cell_sources, origins, products, evidence) VALUES ('ctgov', :rid, :title, 'PHASE1',"
            " 'COMPLETED', '[]', '[]', '[]', '[]', 0, :url, 'x', x'00', '2026-11-01 02:31:00',"
            " '2026-11-04 02:31:00', 1, 4, '[]', '[]', '[]', '[]', '[]')"),
            {"rid": rec.registry_id, "title": rec.title, "url": rec.url})
        conn.execute(text(
            "INSERT INTO study_change (study_id, field, old_value, new_value, changed_at, run_id)"
            " VALUES (1, 'status', 'RECRUITING', 'COMPLETED', '2026-11-04 02:31:00', 4)"))
    upgrade(engine)
    with engine.connect() as conn:
        history = conn.execute(text(
            "SELECT field, old_value, new_value, registry_date, run_id FROM study_change"
        )).all()
        runs = conn.execute(text("SELECT id, update_id FROM fetch_run ORDER BY id")).all()
        updates = conn.execute(text(
            "SELECT id, outcome, sources FROM update_run ORDER BY id")).all()
        study = conn.execute(text("SELECT countries, why_stopped FROM study")).one()
    assert history == [("status", "RECRUITING", "COMPLETED", None, 4)]
    assert [u for _, u in runs] == [1, 1, 1, 2, 2]
    assert [(u[0], u[1], json.loads(u[2])) for u in updates] == [
        (1, "partial", ["ctgov", "pubmed", "europepmc"]), (2, "ok", ["ctgov", "pubmed"])]
    assert study == ("[]", None)
    # The timeline and change listing read the pre-0004 row as it is.
    from tracker.history import ChangeFilter, query_changes
    from tracker.reports import StudyFilter

    with engine.connect() as conn:
        rows = query_changes(conn, ChangeFilter(labels=StudyFilter(include_irrelevant=True)))
    assert [(r["field"], r["old_words"], r["new_words"], r["update_id"]) for r in rows] == [
        ("status", "Recruiting", "Completed", 2)]


def test_every_study_field_has_one_home() -> None:
    """The one list of a study's stored fields (db.records.STUDY_COLUMNS) matches the table:
    each is a column of ``study``; every other StudyRecord field is a child table, read from
    the raw record, or the raw record, its hash and labels themselves."""
    import dataclasses

    from db.records import STUDY_CHILDREN, STUDY_COLUMNS, STUDY_FROM_RAW, StudyRecord

    columns = set(Study.__table__.c.keys())
    assert set(STUDY_COLUMNS) <= columns, set(STUDY_COLUMNS) - columns
    fields = {f.name for f in dataclasses.fields(StudyRecord)}
    rest = fields - set(STUDY_COLUMNS) - set(STUDY_CHILDREN) - set(STUDY_FROM_RAW)
    assert rest == {"raw", "labels", "rules_fingerprint"}, rest
