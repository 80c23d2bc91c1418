"""EU Clinical Trials Register end to end: the real CLI against the replay server's register
(HTML search pages of 20, one protocol text per member state), into a real SQLite file.

The protocols are the real records of the recorded full-text download
(tests/fixtures/euctr/euctr_full_trial_details_download.txt): each trial with every member
state it has there. To have more than one search page, those trials are cloned under new
EudraCT numbers (the number replaced in the text; nothing else changed). The search pages are
the recorded search page with its result table repeated per trial (tests/replay_server.py).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from dbsnapshot import base_env, runs, snapshot, state, tracker, write_config
from replay_server import ReplayServer

from sources import euctr

DOWNLOAD = Path(__file__).parent / "fixtures" / "euctr" / "euctr_full_trial_details_download.txt"
CLONES = 22  # with the 2 real trials: 24, two search pages of 20


def trials() -> list[tuple[str, dict[str, bytes]]]:
    text = DOWNLOAD.read_text(encoding="utf-8")
    real: dict[str, dict[str, bytes]] = {}
    for p in euctr.parse_protocol_text(text):
        real.setdefault(p.eudract, {})[p.country or "XX"] = (p.text + "\n").encode()
    out = list(real.items())
    for i in range(CLONES):
        number, texts = out[i % len(real)]
        new = f"2019-{900000 + i:06d}-1{i % 10}"
        out.append((new, {cc: t.replace(number.encode(), new.encode())
                          for cc, t in texts.items()}))
    return out


def _env(srv: ReplayServer, db: Path, cfg: Path) -> dict[str, str]:
    return base_env(TRACKER_DB=str(db), TRACKER_CONFIG=str(cfg),
                    TRACKER_CONTACT_EMAIL="tracker-tests@example.org",
                    TRACKER_EUCTR_ENABLED="true", TRACKER_EUCTR_URL=srv.euctr_url,
                    TRACKER_EUCTR_RATE_PER_SECOND="50", TRACKER_MAX_RETRIES="1",
                    TRACKER_TIMEOUT="20")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", backoff_cap=0.2)


def test_search_pages_and_every_member_state_protocol(tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "euctr.sqlite"
    data = trials()
    with ReplayServer(euctr_trials=data) as srv:
        res = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
        asked = srv.requests_for("euctr")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"euctr: {len(data)} new, 0 changed, 0 unchanged, 0 failed")
    searches = [r for r in asked if r.path.endswith("/search")]
    assert [r.get("page") for r in searches] == ["1", "2"]  # 20 a page
    downloads = {r.path.rsplit("/trial/", 1)[-1] for r in asked if "/download/" in r.path}
    assert downloads == {f"{n}/{cc}" for n, texts in data for cc in texts}
    snap = snapshot(db)["studies"]
    assert sorted(snap) == sorted(f"euctr:{n}" for n, _ in data)
    # one registration per EudraCT number, whatever its member states
    assert len(snap) == len({n for n, _ in data})


def test_a_short_search_fails_in_one_line_and_the_next_run_catches_up(
        tmp_path: Path, cfg: Path) -> None:
    base_db, db = tmp_path / "base.sqlite", tmp_path / "short.sqlite"
    data = trials()
    with ReplayServer(euctr_trials=data) as srv:
        assert tracker(["update", "--source", "euctr"], _env(srv, base_db, cfg)).returncode == 0
    with ReplayServer(euctr_trials=data) as srv:
        srv.add_fault("euctr", "count_mismatch", on_request=1)
        res = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
        assert res.returncode == 1
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: euctr: "), res.stderr
        assert runs(db, "euctr")[-1]["outcome"] == "failed"
        assert state(db, "euctr") is None
        srv.reset_faults()
        again = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
    assert again.returncode == 0, again.stderr
    assert snapshot(db)["studies"] == snapshot(base_db)["studies"]


# --------------------------------------------------------------------------------------------
# The nightly run reads the 7-day feed (crafted from its documented shape: see the README)
# --------------------------------------------------------------------------------------------
def _changed(texts: dict[str, bytes]) -> dict[str, bytes]:
    """crafted_status_change: one member state's protocol with a new trial status."""
    cc = min(texts)
    new = re.sub(rb"Trial Status: [^\n]+", b"Trial Status: Prematurely Ended", texts[cc], count=1)
    assert new != texts[cc]
    return {**texts, cc: new}


def test_the_nightly_run_downloads_only_what_the_7_day_feed_names(
        tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "feed.sqlite"
    data = trials()
    with ReplayServer(euctr_trials=data) as srv:
        assert tracker(["update", "--source", "euctr"], _env(srv, db, cfg)).returncode == 0
        before = snapshot(db)["studies"]
        number, texts = srv.euctr_trials[3]
        srv.euctr_trials[3] = (number, _changed(texts))
        srv.euctr_changed = [number]
        n0 = len(srv.requests_for("euctr"))
        res = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
        asked = srv.requests_for("euctr")[n0:]
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("euctr: 0 new, 1 changed, 0 unchanged, 0 failed"), res.stdout
    assert asked[0].path.endswith("/rest/feed/bydates")
    assert [r.get("query") for r in asked if r.path.endswith("/search")] == [number]
    assert len(asked) == 2 + len(texts)  # the feed, the search, its protocols
    after = snapshot(db)["studies"]
    assert after[f"euctr:{number}"] != before[f"euctr:{number}"]
    assert {k: v for k, v in after.items() if k != f"euctr:{number}"} == {
        k: v for k, v in before.items() if k != f"euctr:{number}"}


def test_an_empty_feed_costs_one_request_and_moves_the_watermark(
        tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "empty.sqlite"
    with ReplayServer(euctr_trials=trials()) as srv:
        assert tracker(["update", "--source", "euctr"], _env(srv, db, cfg)).returncode == 0
        n0 = len(srv.requests_for("euctr"))
        res = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
        asked = srv.requests_for("euctr")[n0:]
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("euctr: 0 new, 0 changed, 0 unchanged, 0 failed")
    assert len(asked) == 1
    assert runs(db, "euctr")[-1]["outcome"] == "ok"


def test_a_feed_that_is_an_html_page_fails_in_one_line_and_the_next_run_catches_up(
        tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "html.sqlite"
    data = trials()
    with ReplayServer(euctr_trials=data) as srv:
        assert tracker(["update", "--source", "euctr"], _env(srv, db, cfg)).returncode == 0
        mark = state(db, "euctr")
        number, texts = srv.euctr_trials[0]
        srv.euctr_trials[0] = (number, _changed(texts))
        srv.euctr_changed = [number]
        srv.add_fault("euctr", "html_200", path="/rest/feed/bydates")
        res = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
        assert res.returncode == 1
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: euctr: "), res.stderr
        assert "feed" in lines[0]
        assert state(db, "euctr") == mark
        srv.reset_faults()
        again = tracker(["update", "--source", "euctr"], _env(srv, db, cfg))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("euctr: 0 new, 1 changed")


def test_a_window_older_than_the_feed_pages_the_whole_query(tmp_path: Path, cfg: Path) -> None:
    db = tmp_path / "old.sqlite"
    data = trials()
    since = (dt.date.today() - dt.timedelta(days=10)).isoformat()
    with ReplayServer(euctr_trials=data) as srv:
        assert tracker(["update", "--source", "euctr"], _env(srv, db, cfg)).returncode == 0
        n0 = len(srv.requests_for("euctr"))
        res = tracker(["update", "--source", "euctr", "--since", since], _env(srv, db, cfg))
        asked = srv.requests_for("euctr")[n0:]
    assert res.returncode == 0, res.stderr
    assert not any("/feed/" in r.path for r in asked)
    assert [r.get("page") for r in asked if r.path.endswith("/search")] == ["1", "2"]
    assert f"0 new, 0 changed, {len(data)} unchanged" in res.stdout
