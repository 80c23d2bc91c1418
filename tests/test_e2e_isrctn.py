"""ISRCTN end to end: the real CLI against the replay server's ISRCTN API (no paging; a
``lastEdited`` window over the page size split by date), into a real SQLite file.

The trials are the real recorded ``<fullTrial>`` elements of tests/fixtures/isrctn, cloned
under new ISRCTN numbers and ``lastUpdated`` days (replay_server.clone_isrctn_trial) so that a
window holds more than one page; nothing else in them is changed.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from dbsnapshot import base_env, runs, snapshot, state, tracker, write_config
from replay_server import ReplayServer, clone_isrctn_trial, fixture_dir, load_isrctn_trials

N = 30
PAGE = 8
TODAY = dt.date.today()


def trials() -> list[bytes]:
    real = load_isrctn_trials(fixture_dir("isrctn"))
    start = TODAY - dt.timedelta(days=N)
    return [clone_isrctn_trial(real[i % len(real)], 90000000 + i,
                               (start + dt.timedelta(days=i)).isoformat()) for i in range(N)]


def _env(srv: ReplayServer, db: Path, cfg: Path) -> dict[str, str]:
    return base_env(TRACKER_DB=str(db), TRACKER_CONFIG=str(cfg),
                    TRACKER_CONTACT_EMAIL="tracker-tests@example.org",
                    TRACKER_ISRCTN_ENABLED="true", TRACKER_ISRCTN_URL=srv.isrctn_url,
                    TRACKER_ISRCTN_PAGE_SIZE=str(PAGE), TRACKER_ISRCTN_RATE_PER_SECOND="20",
                    TRACKER_MAX_RETRIES="1", TRACKER_TIMEOUT="20")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", backoff_cap=0.2)


def test_windows_are_split_to_the_page_size_and_every_trial_arrives(
        tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "isrctn.sqlite"
    with ReplayServer(isrctn_trials=trials()) as srv:
        res = tracker(["update", "--source", "isrctn"], _env(srv, db, cfg))
        asked = srv.requests_for("isrctn")
        peak = srv.max_requests_in_window("isrctn", 1.0)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"isrctn: {N} new, 0 changed, 0 unchanged, 0 failed")
    fetches = [r for r in asked if r.get("limit") != "0"]
    assert len(fetches) >= N // PAGE and all(int(r.get("limit")) <= N for r in fetches)
    # every request carries the window, parenthesised after the query
    assert all(re.search(r"\) AND lastEdited GE \d{4}-\d\d-\d\dT00:00:00\.000Z AND lastEdited "
                         r"LT ", r.get("q")) for r in asked)
    assert peak <= 20
    snap = snapshot(db)
    assert len(snap["studies"]) == N
    assert all(k.startswith("isrctn:ISRCTN9") for k in snap["studies"])
    assert state(db, "isrctn")["watermark"] == TODAY.isoformat()


def test_a_short_window_fails_and_the_next_run_catches_up(tmp_path: Path, cfg: Path) -> None:
    """A response whose totalCount announces one more trial than it holds (the issue's
    'totalCount disagrees with what arrived'): the run fails in one line, keeps what
    arrived, leaves the watermark; the next run ends equal to a fault-free run."""
    base_db, db = tmp_path / "base.sqlite", tmp_path / "short.sqlite"
    data = trials()
    with ReplayServer(isrctn_trials=data) as srv:
        assert tracker(["update", "--source", "isrctn"], _env(srv, base_db, cfg)).returncode == 0
        last_fetch = len(srv.requests_for("isrctn"))  # the last request of a run is a fetch
    with ReplayServer(isrctn_trials=data) as srv:
        srv.add_fault("isrctn", "count_mismatch", on_request=last_fetch)
        res = tracker(["update", "--source", "isrctn"], _env(srv, db, cfg))
        assert res.returncode == 1
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: isrctn: "), res.stderr
        assert runs(db, "isrctn")[-1]["outcome"] == "failed"
        assert state(db, "isrctn") is None  # no watermark yet: the window repeats
        kept = snapshot(db)["studies"]
        assert 0 < len(kept) < N + 1
        srv.reset_faults()
        again = tracker(["update", "--source", "isrctn"], _env(srv, db, cfg))
    assert again.returncode == 0, again.stderr
    assert snapshot(db)["studies"] == snapshot(base_db)["studies"]


def test_a_body_that_is_not_xml_is_one_line(tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "bad.sqlite"
    with ReplayServer(isrctn_trials=trials()) as srv:
        srv.add_fault("isrctn", "invalid_xml", on_request=1)
        res = tracker(["update", "--source", "isrctn"], _env(srv, db, cfg))
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "not well-formed XML" in lines[0], res.stderr
    assert runs(db, "isrctn")[-1]["outcome"] == "failed"
