"""`tracker status`: per-source state for people and for monitoring checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbsnapshot import only_sources
from replay_server import ReplayServer
from typer.testing import CliRunner

from tracker.cli import app

runner = CliRunner()


def test_status_reports_runs_and_fails_when_a_source_failed(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    db = tmp_path / "status.sqlite"
    with ReplayServer(ctgov_studies=studies_json) as srv:
        env = {"TRACKER_DB": str(db), "TRACKER_CTGOV_URL": srv.ctgov_url,
               "TRACKER_CTGOV_RATE_PER_SECOND": "100", **only_sources("ctgov"),
               "TRACKER_MAX_RETRIES": "0"}
        assert runner.invoke(app, ["update"], env=env).exit_code == 0
        ok = runner.invoke(app, ["status", "-f", "json"], env=env)
        assert ok.exit_code == 0, ok.output
        data = json.loads(ok.output)
        ctgov = next(s for s in data["sources"] if s["source"] == "ctgov")
        assert ctgov["last_run_outcome"] == "ok" and ctgov["watermark"]
        assert ctgov["last_run_counts"]["new"] == 11
        assert data["counts"]["studies"] == 11 and data["healthy"] is True
        pubmed = next(s for s in data["sources"] if s["source"] == "pubmed")
        assert pubmed["enabled"] is False and pubmed["last_run_outcome"] is None

        srv.add_fault("ctgov", "503", on_request=1, times=5)
        failed = runner.invoke(app, ["update"], env=env)
        assert failed.exit_code == 1
        bad = runner.invoke(app, ["status", "-f", "json"], env=env)
        assert bad.exit_code == 1
        data = json.loads(bad.output)
        ctgov = next(s for s in data["sources"] if s["source"] == "ctgov")
        assert ctgov["last_run_outcome"] == "failed" and "HTTP 503" in ctgov["last_error"]
        assert ctgov["last_success"] is not None  # the earlier success is still reported
        table = runner.invoke(app, ["status"], env=env)
        assert "FAILING" in table.output and "ctgov" in table.output
