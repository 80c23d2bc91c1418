"""Migration 0006 on a database that holds data: the full-text index is built from the stored
records, study_country is back-filled by parsing each stored raw record again (rows stored
before revision 0004 have empty ``countries``), record_label gets its foreign keys, and the
views are there; on a real SQLite file and a real PostgreSQL server.

The data are the real recorded records (tests/test_search.py ``load``), stored at the
current schema, after which the database is taken back to revision 0005 (``downgrade``) and
the ``countries`` of every study emptied, as a database written before revision 0004 has
them.
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Engine

from db.migrate import _config, current_revision, head_revision, upgrade
from tests.test_search import STUDY_QUERIES, load, paper_ids, study_ids


def _rows(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_0006_builds_the_index_countries_and_label_keys_of_a_full_database(
        engine: Engine) -> None:
    load(engine)
    index_sql = ("SELECT rowid, title, conditions, interventions, keywords, mesh, summary "
                 "FROM study_fts ORDER BY rowid" if engine.dialect.name == "sqlite"
                 else "SELECT id, document::text FROM study_fts ORDER BY id")
    index_before = _rows(engine, index_sql)
    countries_before = _rows(engine, "SELECT study_id, country FROM study_country "
                                     "ORDER BY study_id, country")
    labels_before = _rows(engine, "SELECT id, kind, record_id, study_id, publication_id "
                                  "FROM record_label ORDER BY id")
    assert countries_before and labels_before

    cfg = _config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
        conn.commit()
    assert current_revision(engine) == "0005"
    with engine.begin() as conn:
        conn.execute(text("UPDATE study SET countries = '[]'"))

    assert [rev for rev, _ in upgrade(engine)] == ["0006", "0007", "0008"]
    assert current_revision(engine) == head_revision()
    assert _rows(engine, index_sql) == index_before
    assert _rows(engine, "SELECT study_id, country FROM study_country "
                         "ORDER BY study_id, country") == countries_before
    assert _rows(engine, "SELECT id, kind, record_id, study_id, publication_id FROM "
                         "record_label ORDER BY id") == labels_before
    assert all((kind == "study") == (sid == rid) and (kind == "publication") == (pid == rid)
               for _, kind, rid, sid, pid in labels_before)
    spain = _rows(engine, "SELECT registry_id FROM study WHERE id IN (SELECT study_id FROM "
                          "study_country WHERE country = 'Spain') ORDER BY registry_id")
    assert spain == [("NCT02513394",), ("NCT03475563",), ("NCT04431453",)]
    filled = _rows(engine, "SELECT countries FROM study WHERE registry_id = 'NCT03475563'")
    assert "Spain" in str(filled[0][0])  # study.countries filled again from the raw record
    for query, expected in STUDY_QUERIES.items():
        assert set(study_ids(engine, query)) == expected, query
    assert paper_ids(engine, "correctional") == ["12091962"]
    views = _rows(engine, "SELECT COUNT(*) FROM studies_view")
    assert views == _rows(engine, "SELECT COUNT(*) FROM study")


def test_0007_adds_the_msc_role_and_tracker_classify_fills_it(engine: Engine) -> None:
    """A database of revision 0006 holding the real records: after 0007 every row is there with
    its role NULL (not guessed), the views show the new columns, and relabelling (what
    ``tracker classify`` runs) gives every row the role the classifier gives its record."""
    from db.models import Study
    from tests.test_search import study_records
    from tracker.classify import classify_study, load_rules
    from tracker.config import Settings
    from tracker.relabel import relabel_all

    load(engine)
    before = _rows(engine, "SELECT id, registry_id, msc_relevant FROM study ORDER BY id")
    cfg = _config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
        conn.commit()
    assert [rev for rev, _ in upgrade(engine)] == ["0007", "0008"]
    assert _rows(engine, "SELECT id, registry_id, msc_relevant FROM study ORDER BY id") == before
    assert _rows(engine, "SELECT DISTINCT msc_role FROM study") == [(None,)]
    assert _rows(engine, "SELECT DISTINCT msc_role FROM studies_view") == [(None,)]
    relabel_all(engine, Settings(db=":memory:"))
    rules = load_rules()
    want = {r.registry_id: classify_study(r, rules).role for r in study_records()}
    got = dict(_rows(engine, "SELECT registry_id, msc_role FROM studies_view"))
    assert got == want and "therapy" in got.values() and set(got.values()) - {"therapy"}
    assert Study.__table__.c.msc_role.index
