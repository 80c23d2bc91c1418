"""Alembic migrations: they build exactly the models' schema, run twice harmlessly, and an
older database with data upgrades without losing it."""

from __future__ import annotations

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
