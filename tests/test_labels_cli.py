"""Labels end to end: classified at ingest, filtered and grouped in reports, shown with their
evidence, rebuilt by `tracker classify`, quarantine retried.

The MSC study here is DERIVED from the real recorded study NCT04523987 (no real API v2 MSC
study is recorded): its title, conditions, interventions and phases are replaced by those of a
typical knee-osteoarthritis MSC registration; the other ten studies are the real recordings.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from db.engine import make_engine
from db.migrate import upgrade
from db.quarantine import quarantine_record
from sources.base import Page, Window
from sources.clinicaltrials_gov import ClinicalTrialsGov, parse_page
from tracker.classify import load_rules
from tracker.cli import app
from tracker.config import load_settings
from tracker.pipeline import RunSummary, ingest_page

runner = CliRunner()


def msc_study(base: dict[str, Any], nct: str = "NCT09000001") -> dict[str, Any]:
    study = copy.deepcopy(base)
    proto = study["protocolSection"]
    proto["identificationModule"].update(
        nctId=nct, briefTitle="Autologous Adipose-Derived Mesenchymal Stem Cells for Knee "
        "Osteoarthritis", officialTitle=None)
    proto["conditionsModule"] = {"conditions": ["Knee Osteoarthritis"]}
    proto["designModule"]["phases"] = ["PHASE2"]
    proto["armsInterventionsModule"] = {"interventions": [{
        "type": "BIOLOGICAL", "name": "Autologous adipose-derived mesenchymal stem cells"}]}
    study.pop("derivedSection", None)
    return study


@pytest.fixture
def db(tmp_path: Path, studies_json: list[dict[str, Any]]) -> str:
    path = tmp_path / "labels.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    base = next(s for s in studies_json
                if s["protocolSection"]["identificationModule"]["nctId"] == "NCT04523987")
    body = orjson.dumps({"studies": [*studies_json, msc_study(base)]})
    settings = load_settings({"db": str(path)}, env={})
    items, _, _ = parse_page(body)
    summary = RunSummary("ctgov", 1, Window(None, dt.date.today()))
    ingest_page(engine, ClinicalTrialsGov(settings.source("ctgov")), Page(items), 1, summary,
                load_rules())
    engine.dispose()
    return str(path)


def _json(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.output)


def test_labels_in_json_and_default_relevance_filter(db: str) -> None:
    rows = _json("studies", "--db", db, "-f", "json")
    assert [r["registry_id"] for r in rows] == ["NCT09000001"]
    row = rows[0]
    assert row["msc_relevant"] is True
    assert row["condition_groups"] == ["osteoarthritis"]
    assert row["cell_sources"] == ["adipose"] and row["origins"] == ["autologous"]
    assert row["products"] == ["cells"] and row["phase"] == "PHASE2"
    everything = _json("studies", "--db", db, "-f", "json", "--include-irrelevant")
    assert len(everything) == 12
    assert sum(r["msc_relevant"] is False for r in everything) == 11


@pytest.mark.parametrize(("option", "value", "hits"), [
    ("--condition", "osteoarthritis", 1), ("--condition", "rheumatoid_arthritis", 0),
    ("--cell-source", "adipose", 1), ("--cell-source", "bone_marrow", 0),
    ("--origin", "autologous", 1), ("--origin", "allogeneic", 0),
    ("--product", "cells", 1), ("--product", "secretome", 0),
    ("--phase", "PHASE2", 1), ("--condition", "knee", 1),
])
def test_label_filters(db: str, option: str, value: str, hits: int) -> None:
    assert len(_json("studies", "--db", db, "-f", "json", option, value)) == hits


def test_bad_label_value_is_one_line(db: str) -> None:
    result = runner.invoke(app, ["studies", "--db", db, "--cell-source", "liver"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: --cell-source 'liver' is not one of")


def test_report_groups_by_condition_group(db: str) -> None:
    rep = _json("report", "--db", db, "--since", "2000-01-01", "-f", "json")
    assert rep["by_condition_phase"] == {"osteoarthritis": {"PHASE2": 1}}
    wide = _json("report", "--db", db, "--since", "2000-01-01", "-f", "json",
                 "--include-irrelevant")
    assert next(iter(wide["by_condition_phase"])) == "osteoarthritis"  # chronic pain first
    assert "(not classified)" in wide["by_condition_phase"]


def test_show_prints_evidence(db: str) -> None:
    detail = _json("show", "NCT09000001", "--db", db, "-f", "json")
    families = {e["family"] for e in detail["evidence"]}
    assert {"relevance", "condition_group", "cell_source", "origin", "phase"} <= families
    assert "Knee Osteoarthritis" in json.dumps(detail["evidence"]) or "osteoarthritis" in \
        json.dumps(detail["evidence"]).lower()
    table = runner.invoke(app, ["show", "NCT09000001", "--db", db])
    assert "evidence" in table.output and "adipose" in table.output


def test_classify_rebuilds_labels_and_retries_quarantine(db: str, studies_json: list) -> None:
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE study SET msc_relevant = NULL, condition_groups = '[]'"))
        conn.execute(text("DELETE FROM record_label"))
        quarantine_record(conn, "ctgov", "NCT09000002",
                          orjson.dumps(msc_study(studies_json[0], "NCT09000002")),
                          "earlier parser failed", None, dt.datetime.now(dt.UTC))
    engine.dispose()
    result = runner.invoke(app, ["classify", "--db", db])
    assert result.exit_code == 0, result.stderr
    assert "classified 12 studies" in result.output and "1 stored, 0 still failing" in result.output
    rows = _json("studies", "--db", db, "-f", "json", "--condition", "osteoarthritis")
    assert sorted(r["registry_id"] for r in rows) == ["NCT09000001", "NCT09000002"]


def test_evaluate_command_meets_bars() -> None:
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 0, result.output
    assert "relevance" in result.output and "condition_group" in result.output


def prp_study(base: dict[str, Any], nct: str = "NCT09000002") -> dict[str, Any]:
    """DERIVED from the real NCT04523987 like msc_study: a platelet-rich plasma trial whose
    intervention description cites MSCs (the classifier must call it a mention)."""
    study = msc_study(base, nct)
    proto = study["protocolSection"]
    proto["identificationModule"]["briefTitle"] = "Platelet-Rich Plasma for Knee Osteoarthritis"
    proto["armsInterventionsModule"] = {"interventions": [{
        "type": "BIOLOGICAL", "name": "Platelet-rich plasma",
        "description": "Leukocyte-poor PRP; platelet growth factors are thought to act on "
                       "resident mesenchymal stem cells."}]}
    return study


@pytest.fixture
def role_db(tmp_path: Path, studies_json: list[dict[str, Any]]) -> str:
    path = tmp_path / "roles.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    base = next(s for s in studies_json
                if s["protocolSection"]["identificationModule"]["nctId"] == "NCT04523987")
    body = orjson.dumps({"studies": [*studies_json, msc_study(base), prp_study(base)]})
    settings = load_settings({"db": str(path)}, env={})
    items, _, _ = parse_page(body)
    summary = RunSummary("ctgov", 1, Window(None, dt.date.today()))
    ingest_page(engine, ClinicalTrialsGov(settings.source("ctgov")), Page(items), 1, summary,
                load_rules())
    engine.dispose()
    return str(path)


def test_role_is_stored_at_ingest_and_filters_every_listing(role_db: str) -> None:
    default = _json("studies", "--db", role_db, "-f", "json")
    assert [(r["registry_id"], r["msc_role"]) for r in default] == [("NCT09000001", "therapy")]
    assert default[0]["minimally_manipulated"] is False
    every = _json("studies", "--db", role_db, "-f", "json", "--role", "all")
    assert len(every) == 13 and {r["msc_role"] for r in every} == {"therapy", "mention", "none"}
    assert [r["registry_id"] for r in every if r["msc_role"] == "mention"] == ["NCT09000002"]
    only = _json("studies", "--db", role_db, "-f", "json", "--role", "mention,therapy")
    assert sorted(r["registry_id"] for r in only) == ["NCT09000001", "NCT09000002"]
    rep = _json("report", "--db", role_db, "--since", "2000-01-01", "-f", "json", "--role",
                "mention")
    assert [s["registry_id"] for s in rep["studies"]] == ["NCT09000002"]
    detail = _json("show", "NCT09000002", "--db", role_db, "-f", "json")
    assert detail["msc_role"] == "mention" and detail["msc_relevant"] is False
    assert "not a" in detail["relevance_reason"] or "mention" in detail["relevance_reason"]
    table = runner.invoke(app, ["show", "NCT09000002", "--db", role_db])
    assert "mention: MSCs only mentioned" in table.output


def test_bad_role_is_one_line(role_db: str) -> None:
    result = runner.invoke(app, ["studies", "--db", role_db, "--role", "thrapy"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        ("error: --role 'thrapy' is not one of: therapy, laboratory, manufacturing, endogenous, "
        "mention, none, all")]
