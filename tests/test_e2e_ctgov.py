"""End to end: the real `tracker update` over real HTTP against the local replay server.

The server replays the recorded real studies with CT.gov's paging (several pages,
``nextPageToken`` absent on the last, ``totalCount`` only on the first); the CLI reaches it
through ``TRACKER_CTGOV_URL`` exactly as a user's mirror would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dbsnapshot import only_sources
from replay_server import ReplayServer, clone_study
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.engine import make_engine
from db.models import FetchRun, SourceState, Study, StudyChange
from tracker.cli import app

runner = CliRunner()


def _env(srv: ReplayServer, db: Path) -> dict[str, str]:
    return {
        "TRACKER_DB": str(db),
        "TRACKER_CTGOV_URL": srv.ctgov_url,
        "TRACKER_CTGOV_PAGE_SIZE": "4",  # 11 studies -> 3 pages
        "TRACKER_CTGOV_RATE_PER_SECOND": "100",
        **only_sources("ctgov"),
    }


def _count(db: Path, table: Any) -> int:
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()
    engine.dispose()
    return n


def test_update_then_rerun_then_change(tmp_path: Path, studies_json: list[dict[str, Any]]) -> None:
    db = tmp_path / "e2e.sqlite"
    with ReplayServer(ctgov_studies=studies_json) as srv:
        env = _env(srv, db)
        first = runner.invoke(app, ["update", "--source", "ctgov"], env=env)
        assert first.exit_code == 0, first.output + str(first.stderr)
        assert "ctgov: 11 new, 0 changed, 0 unchanged, 0 failed" in first.output
        pages = srv.requests_for("ctgov")
        assert len(pages) == 3
        assert "filter.advanced" not in pages[0].params  # first run: full load
        assert [("pageToken" in p.params) for p in pages] == [False, True, True]
        assert _count(db, Study) == 11

        # The report and listing read what the update stored.
        listed = json.loads(runner.invoke(app, ["studies", "-f", "json", "--include-irrelevant"], env=env).output)
        assert {s["registry_id"] for s in listed} == {s["protocolSection"]["identificationModule"]["nctId"] for s in studies_json}
        rep = json.loads(runner.invoke(app, ["report", "--last-run", "-f", "json", "--include-irrelevant"], env=env).output)
        assert rep["total"] == 11

        # Second run: asks only for the LastUpdatePostDate window and adds nothing.
        srv.requests.clear()
        second = runner.invoke(app, ["update", "--source", "ctgov"], env=env)
        assert second.exit_code == 0
        assert "0 new, 0 changed" in second.output
        reqs = srv.requests_for("ctgov")
        assert reqs[0].get("filter.advanced", "").startswith("AREA[LastUpdatePostDate]RANGE[")
        assert _count(db, Study) == 11

        # A study changes and a new one appears, both posted today: the window sees them.
        changed = json.loads(json.dumps(studies_json[0]))
        nct = changed["protocolSection"]["identificationModule"]["nctId"]
        status = changed["protocolSection"]["statusModule"]
        today = dt.date.today().isoformat()
        status["overallStatus"] = "COMPLETED"
        status["lastUpdatePostDateStruct"]["date"] = today
        srv.replace_study(changed)
        srv.ctgov_studies.append(clone_study(studies_json[1], "NCT09999991", today, today))
        third = runner.invoke(app, ["update", "--source", "ctgov"], env=env)
        assert third.exit_code == 0
        assert "ctgov: 1 new, 1 changed, 0 unchanged" in third.output
        assert _count(db, Study) == 12
        assert _count(db, StudyChange) >= 1
        shown = json.loads(runner.invoke(app, ["show", nct, "-f", "json"], env=env).output)
        assert any(c["field"] == "status" and c["new_value"] == "COMPLETED" for c in shown["changes"])
        new = json.loads(runner.invoke(app, ["report", "--last-run", "-f", "json", "--include-irrelevant"], env=env).output)
        assert [s["registry_id"] for s in new["studies"]] == ["NCT09999991"]
    assert _count(db, FetchRun) == 3
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        state = conn.execute(select(SourceState.__table__)).mappings().one()
    engine.dispose()
    assert state["source"] == "ctgov" and state["watermark"] is not None


def test_shortfall_fails_the_window_and_keeps_the_watermark(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    db = tmp_path / "short.sqlite"
    with ReplayServer(ctgov_studies=studies_json) as srv:
        env = _env(srv, db)
        srv.add_fault("ctgov", "count_mismatch", on_request=1)
        result = runner.invoke(app, ["update", "--source", "ctgov"], env=env)
        assert result.exit_code == 1
        assert "announced 16 records but sent 11" in result.stderr
        assert _count(db, SourceState) == 0  # no watermark: the next run repeats the full window
        assert _count(db, Study) == 11  # what arrived is kept
        again = runner.invoke(app, ["update", "--source", "ctgov"], env=env)
        assert again.exit_code == 0 and "0 new, 0 changed, 11 unchanged" in again.output
        assert "filter.advanced" not in srv.requests_for("ctgov")[-1].params


def test_installed_entry_point_runs_against_the_server(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    """The console script a user runs, as a separate process."""
    db = tmp_path / "proc.sqlite"
    exe = Path(sys.executable).parent / "tracker"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tracker"]
    with ReplayServer(ctgov_studies=studies_json) as srv:
        env = {**os.environ, **_env(srv, db)}
        out = subprocess.run([*cmd, "update", "--source", "ctgov"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        assert "11 new" in out.stdout
        rep = subprocess.run([*cmd, "report", "--since", "2000-01-01", "-f", "markdown",
                              "--include-irrelevant"],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
        assert rep.returncode == 0 and "NCT04431453" in rep.stdout
