"""Crash: ``tracker update`` killed with SIGKILL in the middle of a window; the next run
completes and the database equals the fault-free one (no duplicates, no gaps).

The installed console script runs as a separate process against the replay server holding 60
studies (real recorded ones cloned under new NCT ids and dates) in pages of 5, throttled to 5
requests a second so the window takes a few seconds. It is killed once the server has answered
at least 3 pages, i.e. with some pages committed and the rest not yet fetched.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from dbsnapshot import (
    CMD,
    base_env,
    diff,
    only_sources,
    runs,
    snapshot,
    state,
    tracker,
    write_config,
)
from replay_server import ReplayServer, clone_study

N_STUDIES, PAGE = 60, 5


def many_studies(real: list[dict[str, Any]], n: int = N_STUDIES) -> list[dict[str, Any]]:
    """``n`` studies cloned from the recorded ones, each with its own id and update date."""
    start = dt.date(2023, 1, 1)
    out = []
    for i in range(n):
        day = (start + dt.timedelta(days=3 * i)).isoformat()
        out.append(clone_study(real[i % len(real)], f"NCT0{7000000 + i:07d}", day, day))
    return out


def env_for(srv: ReplayServer, db: Path, cfg: Path, rate: str) -> dict[str, str]:
    return base_env(
        TRACKER_DB=str(db), TRACKER_CONFIG=str(cfg), TRACKER_CTGOV_URL=srv.ctgov_url,
        TRACKER_CTGOV_PAGE_SIZE=str(PAGE), TRACKER_CTGOV_RATE_PER_SECOND=rate,
        **only_sources("ctgov"),
        TRACKER_CONTACT_EMAIL="tracker-tests@example.org",
    )


def test_sigkill_mid_window_then_rerun_equals_fault_free(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    studies = many_studies(studies_json)
    with ReplayServer(ctgov_studies=studies) as srv:
        # The fault-free baseline.
        base_db = tmp_path / "baseline.sqlite"
        res = tracker(["update", "--source", "ctgov"], env_for(srv, base_db, cfg, "100"))
        assert res.returncode == 0, res.stderr
        baseline = snapshot(base_db)
        assert len(baseline["studies"]) == N_STUDIES
        pages = len(srv.requests_for("ctgov"))
        assert pages == N_STUDIES // PAGE

        # The run that gets killed.
        db = tmp_path / "crash.sqlite"
        srv.requests.clear()
        proc = subprocess.Popen([*CMD, "update", "--source", "ctgov"],
                                env=env_for(srv, db, cfg, "5"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: len(srv.requests_for("ctgov")) >= 3, timeout=30), \
                "the update never got to its third page"
            time.sleep(0.1)  # let it be busy storing the page
            assert proc.poll() is None, "the update finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        served = len(srv.requests_for("ctgov"))
        assert served < pages, "the kill came after the last page"

        # What the killed run left: whole pages only, an intact file, no watermark, and the run
        # log still saying "running" (that is the truth: nobody recorded its end).
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        killed = snapshot(db)
        stored = len(killed["studies"])
        assert 0 < stored < N_STUDIES and stored % PAGE == 0, stored
        assert all(baseline["studies"][k] == v for k, v in killed["studies"].items())
        assert state(db, "ctgov") is None
        [killed_run] = runs(db, "ctgov")
        assert killed_run["outcome"] == "running" and killed_run["finished_at"] is None
        # Monitoring sees the dead run as failing (its process is gone), not as running.
        seen = tracker(["status", "-f", "json"], env_for(srv, db, cfg, "100"))
        assert seen.returncode == 1, seen.stdout + seen.stderr
        assert '"outcome": "failed"' in seen.stdout and "process is gone" in seen.stdout

        # The next run completes and ends equal to the fault-free database.
        res = tracker(["update", "--source", "ctgov"], env_for(srv, db, cfg, "100"))
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"ctgov: {N_STUDIES - stored} new, 0 changed, "
                                     f"{stored} unchanged, 0 failed"), res.stdout
        after = snapshot(db)  # asserts no duplicate study and no orphan child row
        assert after == baseline, diff(baseline, after)
        assert after["quarantine"] == []
        assert state(db, "ctgov")["watermark"] == state(base_db, "ctgov")["watermark"]
        killed_again, finished = runs(db, "ctgov")
        # The next update, holding the lock, closes the dead run: never left running.
        assert killed_again["outcome"] == "failed" and "killed" in killed_again["error"]
        assert finished["outcome"] == "ok" and finished["fetched"] == N_STUDIES
        with closing(sqlite3.connect(db)) as conn:
            dupes = conn.execute("SELECT registry_id FROM study GROUP BY registry, registry_id "
                                 "HAVING count(*) > 1").fetchall()
            assert dupes == []
        assert not srv.errors, srv.errors


@pytest.mark.parametrize("after_pages", [1, 6])
def test_sigkill_at_other_points(
    tmp_path: Path, studies_json: list[dict[str, Any]], after_pages: int
) -> None:
    """Killed right after the first page, and late in the window: the rerun still converges."""
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    with ReplayServer(ctgov_studies=many_studies(studies_json, 40)) as srv:
        base_db = tmp_path / "baseline.sqlite"
        assert tracker(["update", "--source", "ctgov"],
                       env_for(srv, base_db, cfg, "100")).returncode == 0
        baseline = snapshot(base_db)
        db = tmp_path / "crash.sqlite"
        srv.requests.clear()
        proc = subprocess.Popen([*CMD, "update", "--source", "ctgov"],
                                env=env_for(srv, db, cfg, "5"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: len(srv.requests_for("ctgov")) >= after_pages, timeout=30)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        assert snapshot(db)["studies"].keys() <= baseline["studies"].keys()
        res = tracker(["update", "--source", "ctgov"], env_for(srv, db, cfg, "100"))
        assert res.returncode == 0, res.stderr
        after = snapshot(db)
        assert after == baseline, diff(baseline, after)
