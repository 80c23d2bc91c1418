"""The real CLI entry point (Typer's runner) against a real SQLite file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from db.engine import make_engine
from db.migrate import upgrade
from db.upsert import upsert_studies
from sources.clinicaltrials_gov import parse_study
from tracker.cli import app

runner = CliRunner()


@pytest.fixture
def db_path(tmp_path: Path, studies_json: list[dict[str, Any]]) -> str:
    path = tmp_path / "cli.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as conn:
        upsert_studies(conn, [parse_study(s) for s in studies_json], run_id=None)
    engine.dispose()
    return str(path)


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_help_for_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    commands = ["update", "report", "studies", "show", "config", "db"]
    for name in commands:
        assert name in result.output
        sub = invoke(name, "--help")
        assert sub.exit_code == 0, name
        assert "--db" in sub.output or name == "db"


def test_studies_json_has_documented_keys(db_path: str) -> None:
    result = invoke("studies", "--db", db_path, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 11
    keys = {"registry", "registry_id", "title", "phase", "status", "conditions", "first_posted",
            "last_update_posted", "first_seen_at", "url"}
    for row in rows:
        assert keys <= set(row)
        assert isinstance(row["conditions"], list)
        dt.date.fromisoformat(row["first_posted"])
        dt.datetime.fromisoformat(row["first_seen_at"])


def test_studies_filters(db_path: str) -> None:
    rows = json.loads(invoke("studies", "--db", db_path, "-f", "json", "--phase", "phase3").output)
    assert {r["registry_id"] for r in rows} == {"NCT02513394", "NCT02552212"}
    rows = json.loads(invoke("studies", "--db", db_path, "-f", "json", "--status",
                             "RECRUITING").output)
    assert {r["status"] for r in rows} == {"RECRUITING"} and len(rows) == 2
    rows = json.loads(invoke("studies", "--db", db_path, "-f", "json", "--condition",
                             "covid").output)
    assert [r["registry_id"] for r in rows] == ["NCT04431453"]
    rows = json.loads(invoke("studies", "--db", db_path, "-f", "json", "--since",
                             "2022-01-01").output)
    assert rows and all(r["first_posted"] >= "2022-01-01" for r in rows)


def test_studies_csv(db_path: str) -> None:
    result = invoke("studies", "--db", db_path, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 11 and rows[0]["registry_id"].startswith("NCT")


def test_report_formats(db_path: str) -> None:
    md = invoke("report", "--db", db_path, "--since", "2020-01-01", "--format", "markdown")
    assert md.exit_code == 0
    assert "| Condition |" in md.output and "[NCT04431453](https://clinicaltrials.gov/study/NCT04431453)" in md.output
    data = json.loads(invoke("report", "--db", db_path, "--since", "2020-01-01", "-f", "json").output)
    assert data["total"] == len(data["studies"]) >= 3
    assert all(s["first_posted"] >= "2020-01-01" for s in data["studies"])
    table = invoke("report", "--db", db_path, "--since", "2020-01-01")
    assert table.exit_code == 0 and "NCT04431453" in table.output


def test_show(db_path: str) -> None:
    result = invoke("show", "NCT02513394", "--db", db_path, "-f", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert any(s["type"] == "EUDRACT_NUMBER" for s in data["secondary_ids"])
    assert all(r["pmid"] for r in data["references"])
    assert "NCT02513394" in invoke("show", "nct02513394", "--db", db_path).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "NCT09999999"], "NCT09999999 is not in this database"),
        (["studies", "--phase", "PHASE9"], "--phase 'PHASE9' is not one of"),
        (["studies", "--since", "yesterday"], "--since 'yesterday' is not a date"),
        (["report", "--format", "xml"], "--format 'xml' is not one of"),
        (["report", "--since", "2020-01-01", "--last-run"], "either --since or --last-run"),
        (["update", "--source", "nosuch"], "unknown source 'nosuch'"),
    ],
)
def test_bad_input_one_line_and_exit_1(db_path: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--db", db_path])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_unknown_option_is_a_usage_error(db_path: str) -> None:
    result = runner.invoke(app, ["report", "--frmat", "json"])
    assert result.exit_code == 2


def test_missing_database_tells_user_to_update(tmp_path: Path) -> None:
    result = invoke("studies", "--db", str(tmp_path / "none.sqlite"))
    assert result.exit_code == 1
    assert "run `tracker update` first" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_db_upgrade_and_history(tmp_path: Path) -> None:
    path = str(tmp_path / "new.sqlite")
    first = invoke("db", "upgrade", "--db", path)
    assert first.exit_code == 0 and "applied 0001" in first.output
    again = invoke("db", "upgrade", "--db", path)
    assert "schema is current" in again.output
    hist = invoke("db", "history", "--db", path)
    assert "applied  0001" in hist.output


def test_config_file_env_and_flag_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('db = "from-file.sqlite"\npubmed_api_key = "SECRET123"\n[ctgov]\nrate_per_second = 0.5\n')
    monkeypatch.setenv("TRACKER_CONFIG", str(cfg))
    out = json.loads(invoke("config").output)
    assert out["db"] == "from-file.sqlite" and out["sources"]["ctgov"]["rate_per_second"] == 0.5
    assert "SECRET123" not in json.dumps(out)
    monkeypatch.setenv("TRACKER_DB", "from-env.sqlite")
    assert json.loads(invoke("config").output)["db"] == "from-env.sqlite"
    assert json.loads(invoke("config", "--db", "flag.sqlite").output)["db"] == "flag.sqlite"
    cfg.write_text('dbb = "typo.sqlite"\n')
    bad = invoke("config")
    assert bad.exit_code == 1 and "unknown key 'dbb'" in bad.stderr


@pytest.mark.parametrize(("typed", "phase"), [("2", "PHASE2"), ("phase 3", "PHASE3"),
                                              ("2/3", "PHASE2_3"), ("na", "NOT_APPLICABLE")])
def test_phase_aliases(db_path: str, typed: str, phase: str) -> None:
    rows = json.loads(invoke("studies", "--db", db_path, "-f", "json", "--phase", typed).output)
    assert rows and {r["phase"] for r in rows} == {phase}
