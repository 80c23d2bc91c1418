"""EU CTIS end to end: the real CLI against the replay server's CTIS API (POST search in
1-based pages, GET retrieve), into a real SQLite file.

No real CTIS response could be found (tests/fixtures/ctis/README.md): the trials are the
``crafted_*`` fixtures derived from the documented shapes (API_NOTES 6), the search
summaries from the crafted search pages and the records from the crafted retrieve files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbsnapshot import base_env, runs, snapshot, state, tracker, write_config
from replay_server import ReplayServer

FIX = Path(__file__).parent / "fixtures" / "ctis"


def trials() -> list[tuple[dict, dict]]:
    summaries = [s for name in ("crafted_search_page1.json", "crafted_search_page2.json")
                 for s in json.loads((FIX / name).read_text(encoding="utf-8"))["data"]]
    return [(s, json.loads((FIX / f"crafted_retrieve_{s['ctNumber']}.json").read_text(
        encoding="utf-8"))) for s in summaries]


def _env(srv: ReplayServer, db: Path, cfg: Path) -> dict[str, str]:
    return base_env(TRACKER_DB=str(db), TRACKER_CONFIG=str(cfg),
                    TRACKER_CONTACT_EMAIL="tracker-tests@example.org",
                    TRACKER_CTIS_ENABLED="true", TRACKER_CTIS_URL=srv.ctis_url,
                    TRACKER_CTIS_PAGE_SIZE="2", TRACKER_CTIS_RATE_PER_SECOND="20",
                    TRACKER_MAX_RETRIES="1", TRACKER_TIMEOUT="20")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", backoff_cap=0.2)


def test_search_pages_from_one_and_every_trial_is_retrieved(tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "ctis.sqlite"
    data = trials()
    with ReplayServer(ctis_trials=data) as srv:
        res = tracker(["update", "--source", "ctis"], _env(srv, db, cfg))
        asked = srv.requests_for("ctis")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"ctis: {len(data)} new, 0 changed, 0 unchanged, 0 failed")
    posts = [json.loads(r.body) for r in asked if r.method == "POST"]
    assert [p["pagination"]["page"] for p in posts] == [1, 2]  # never page 0
    assert all(p["searchCriteria"]["containAll"] == "mesenchymal" for p in posts)
    assert sorted(r.path.rsplit("/", 1)[-1] for r in asked if r.method == "GET") == sorted(
        s["ctNumber"] for s, _ in data)
    assert sorted(snapshot(db)["studies"]) == sorted(f"ctis:{s['ctNumber']}" for s, _ in data)
    # The next night: no server-side "since"; the search is paged again and only trials whose
    # lastUpdated falls in the window are retrieved (none of these: they are from 2025).
    with ReplayServer(ctis_trials=data) as srv:
        again = tracker(["update", "--source", "ctis"], _env(srv, db, cfg))
        asked = srv.requests_for("ctis")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("ctis: 0 new, 0 changed, 0 unchanged, 0 failed")
    assert [r.method for r in asked] == ["POST", "POST"]


def test_a_short_search_fails_in_one_line_and_the_next_run_catches_up(
        tmp_path: Path, cfg: Path) -> None:
    base_db, db = tmp_path / "base.sqlite", tmp_path / "short.sqlite"
    data = trials()
    with ReplayServer(ctis_trials=data) as srv:
        assert tracker(["update", "--source", "ctis"], _env(srv, base_db, cfg)).returncode == 0
    with ReplayServer(ctis_trials=data) as srv:
        srv.add_fault("ctis", "count_mismatch", on_request=1, times=10)
        res = tracker(["update", "--source", "ctis"], _env(srv, db, cfg))
        assert res.returncode == 1
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ctis: "), res.stderr
        assert runs(db, "ctis")[-1]["outcome"] == "failed"
        assert state(db, "ctis") is None
        srv.reset_faults()
        again = tracker(["update", "--source", "ctis"], _env(srv, db, cfg))
    assert again.returncode == 0, again.stderr
    assert snapshot(db)["studies"] == snapshot(base_db)["studies"]
