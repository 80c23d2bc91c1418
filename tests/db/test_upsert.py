"""Upsert: new / changed / unchanged, history rows, first_seen_at stability, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from db.models import Study, StudyChange, StudyCondition, StudyReference
from db.upsert import decompress, upsert_studies
from sources.clinicaltrials_gov import parse_study

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()


def _store(engine: Engine, studies: list[dict[str, Any]], now: dt.datetime, run_id: int = 1) -> Any:
    with engine.begin() as conn:
        return upsert_studies(conn, [parse_study(s) for s in studies], run_id=run_id, now=now)


def test_new_then_identical_rerun_changes_nothing(engine: Engine, studies_json: list) -> None:
    first = _store(engine, studies_json, T0)
    assert (first.new, first.changed, first.unchanged) == (len(studies_json), 0, 0)
    counts = {t: _count(engine, t) for t in (Study, StudyCondition, StudyReference, StudyChange)}
    second = _store(engine, studies_json, T1, run_id=2)
    assert (second.new, second.changed, second.unchanged) == (0, 0, len(studies_json))
    assert {t: _count(engine, t) for t in counts} == counts
    assert counts[StudyChange] == 0
    with engine.connect() as conn:
        seen = conn.execute(select(Study.__table__.c.first_seen_at)).scalars().all()
    assert set(seen) == {T0}


def test_changed_study_updates_in_place_and_keeps_history(engine: Engine, studies_json: list) -> None:
    _store(engine, studies_json, T0)
    changed = orjson.loads(orjson.dumps(studies_json[0]))
    proto = changed["protocolSection"]
    old_status = proto["statusModule"]["overallStatus"]
    proto["statusModule"]["overallStatus"] = "TERMINATED"
    proto["designModule"]["enrollmentInfo"]["count"] = 7
    proto["conditionsModule"]["conditions"] = ["Knee Osteoarthritis"]
    nct = proto["identificationModule"]["nctId"]
    result = _store(engine, [changed], T1, run_id=2)
    assert (result.new, result.changed, result.unchanged) == (0, 1, 0)
    s = Study.__table__
    with engine.connect() as conn:
        row = conn.execute(select(s).where(s.c.registry_id == nct)).mappings().one()
        hist = conn.execute(
            select(StudyChange.__table__).order_by(StudyChange.__table__.c.field)
        ).mappings().all()
        conds = conn.execute(
            select(StudyCondition.__table__.c.name).where(
                StudyCondition.__table__.c.study_id == row["id"])
        ).scalars().all()
    assert row["status"] == "TERMINATED" and row["enrollment"] == 7
    assert row["first_seen_at"] == T0 and row["last_changed_at"] == T1
    assert row["first_seen_run_id"] == 1 and row["last_changed_run_id"] == 2
    assert orjson.loads(decompress(row["raw"])) == changed
    assert conds == ["Knee Osteoarthritis"]  # child rows replaced, not appended
    fields = {h["field"]: (h["old_value"], h["new_value"]) for h in hist}
    assert fields["status"] == (old_status, "TERMINATED")
    assert fields["enrollment"][1] == "7"
    assert fields["conditions"][1] == '["Knee Osteoarthritis"]'
    assert set(fields) == {"status", "enrollment", "conditions"}
    assert all(h["registry_date"] is not None for h in hist)
    assert all(h["study_id"] == row["id"] and h["run_id"] == 2 for h in hist)
    assert _count(engine, Study) == len(studies_json)


def test_duplicates_in_one_page_store_once(engine: Engine, studies_json: list) -> None:
    result = _store(engine, [studies_json[0], studies_json[0]], T0)
    assert result.new == 1 and _count(engine, Study) == 1


def test_record_without_key_is_refused(engine: Engine, studies_json: list) -> None:
    rec = parse_study(studies_json[0])
    rec.registry_id = ""
    with engine.begin() as conn, pytest.raises(ValueError, match="registry_id"):
        upsert_studies(conn, [rec], now=T0)
