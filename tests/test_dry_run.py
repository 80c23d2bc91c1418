"""The first run, known before it starts: `tracker update --dry-run` asks each source only for
its count (one request each, checked in the replay server's log), prints the window, records,
requests and time, and stores nothing. Also: the default queries stay field-restricted, and
progress lines come every 30 s without a terminal.

Records are the recorded real ones (tests/fixtures/{ctgov,pubmed,europepmc}); counts are what
the replay server announces for them with each API's real envelope.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

from replay_server import ReplayServer, fixture_dir, load_europepmc_results, load_pubmed_articles

from sources import fetched
from tests.conftest import ctgov_studies
from tracker.config import (
    DEFAULT_CTGOV_QUERY,
    DEFAULT_EUROPEPMC_QUERY,
    DEFAULT_PUBMED_QUERY,
    load_settings,
)
from tracker.dryrun import plan_update, total_line
from tracker.progress import LogProgress, eta, progress_line


def _server() -> ReplayServer:
    return ReplayServer(
        ctgov_studies=ctgov_studies(),
        pubmed_articles=load_pubmed_articles(fixture_dir("pubmed")),
        europepmc_results=load_europepmc_results(
            fixture_dir("europepmc") / "search_cancer_core.json"))


def _settings(srv: ReplayServer, db: Path, **extra: str) -> Any:
    return load_settings(env={
        "TRACKER_DB": str(db), **srv.source_env,
        "TRACKER_CTGOV_PAGE_SIZE": "4", "TRACKER_EUROPEPMC_PAGE_SIZE": "10",
        "TRACKER_PUBMED_PAGE_SIZE": "5", "TRACKER_CTGOV_RATE_PER_SECOND": "2",
        "TRACKER_CONTACT_EMAIL": "tracker-tests@example.org", **extra})


def test_dry_run_counts_with_one_request_per_source(tmp_path: Path) -> None:
    db = tmp_path / "never.sqlite"
    with _server() as srv:
        plans = {p.source: p for p in plan_update(_settings(srv, db), None)}
        sent = {src: srv.requests_for(src) for src in ("ctgov", "pubmed", "europepmc")}
        announced = {
            "ctgov": len(srv.ctgov_studies),
            "pubmed": len({a for a in srv.pubmed_articles if b"<PubmedArticle>" in a}),
            "europepmc": len(srv.europepmc_results),
        }
    assert {k: len(v) for k, v in sent.items()} == {"ctgov": 1, "pubmed": 1, "europepmc": 1}
    assert sent["ctgov"][0].get("pageSize") == "1" and sent["ctgov"][0].get("countTotal") == "true"
    assert sent["pubmed"][0].get("rettype") == "count"
    assert sent["europepmc"][0].get("pageSize") == "1"
    assert plans["ctgov"].records == announced["ctgov"] == 11
    assert plans["ctgov"].requests == 3  # 11 studies in pages of 4
    assert plans["ctgov"].seconds == 1.5  # 3 requests at 2 per second
    assert plans["europepmc"].records == announced["europepmc"]
    assert plans["europepmc"].requests == -(-announced["europepmc"] // 10)
    assert plans["pubmed"].records is not None and plans["pubmed"].records >= 1
    assert plans["pubmed"].requests == 1 + -(-plans["pubmed"].records // 5)
    assert all(p.since is None and p.until == dt.datetime.now(dt.UTC).date()
               for p in plans.values())  # a first load: everything
    line = plans["ctgov"].line()
    assert line.startswith("ctgov: 11 records (window everything .. ") and "3 requests" in line
    assert "about 2 s" in line
    assert total_line(list(plans.values())).startswith("total: ")
    assert not db.exists()  # nothing created, nothing stored


def test_dry_run_says_which_source_could_not_be_counted(tmp_path: Path) -> None:
    with _server() as srv:
        srv.add_fault("europepmc", "html_200", on_request=1, times=10)
        settings = _settings(srv, tmp_path / "x.sqlite", TRACKER_MAX_RETRIES="0")
        plans = {p.source: p for p in plan_update(settings, None)}
    assert plans["ctgov"].error is None and plans["ctgov"].records == 11
    assert plans["europepmc"].records is None and plans["europepmc"].error
    assert "could not count" in plans["europepmc"].line()
    assert "1 source could not be counted" in total_line(list(plans.values()))


# ---------------------------------------------------------------- default queries ----------

_EPMC_TERM = re.compile(r'(?:[A-Z_]+:)?"[^"]+"|\(|\)|\bAND\b|\bOR\b|\bNOT\b|\S+')


def test_europepmc_default_query_fields_every_term() -> None:
    """A bare Europe PMC term searches full text: every term must name its field."""
    fields = set()
    for token in _EPMC_TERM.findall(DEFAULT_EUROPEPMC_QUERY):
        if token in ("(", ")", "AND", "OR", "NOT"):
            continue
        field, colon, phrase = token.partition(":")
        assert colon and phrase.startswith('"'), f"bare term {token!r} in the Europe PMC query"
        fields.add(field)
    assert fields == {"TITLE", "ABSTRACT", "KW", "MESH"}
    assert "SRC:" not in DEFAULT_EUROPEPMC_QUERY  # preprints (SRC:PPR) stay in


def test_pubmed_default_query_fields_every_term() -> None:
    for term in re.split(r"\s+OR\s+", DEFAULT_PUBMED_QUERY):
        assert re.fullmatch(r'"[^"]+"\[(MeSH Terms|Title/Abstract)\]', term.strip()), term


def test_ctgov_default_query_is_a_list_of_phrases() -> None:
    """CT.gov's query runs in its BasicSearch area (titles, conditions, interventions,
    keywords, summaries); every alternative is a quoted phrase, so none matches loosely."""
    for term in re.split(r"\s+OR\s+", DEFAULT_CTGOV_QUERY):
        assert re.fullmatch(r'"[^"]+"', term.strip()), term


# ---------------------------------------------------------------- progress ----------------


def test_progress_lines_every_30_seconds_without_a_terminal() -> None:
    clock = [0.0]
    out = io.StringIO()
    advance = LogProgress(out, every=30, clock=lambda: clock[0])("ctgov")
    for t, done in ((5, 1000), (29, 2000), (31, 2000), (45, 3000), (62, 4000)):
        clock[0] = t
        advance(done, 5000)
    lines = out.getvalue().splitlines()
    assert lines == [
        "progress: ctgov 2,000 of 5,000 records (40%), about 46 s left",
        "progress: ctgov 4,000 of 5,000 records (80%), about 16 s left",
    ]
    assert eta(0, 10, 5) is None and eta(10, 10, 5) is None
    assert progress_line("pubmed", 7, None, 3) == "progress: pubmed 7 records so far"


def test_update_dry_run_through_the_cli(tmp_path: Path) -> None:
    """The real console script: counts printed as the server announces them, one request
    per source in the server's log, no database file, exit 0."""
    from dbsnapshot import base_env, tracker

    db = tmp_path / "dry.sqlite"
    with _server() as srv:
        env = base_env(TRACKER_DB=str(db), **srv.source_env,
                       TRACKER_CTGOV_PAGE_SIZE="4", TRACKER_CTGOV_RATE_PER_SECOND="2",
                       TRACKER_CONTACT_EMAIL="tracker-tests@example.org")
        res = tracker(["update", "--dry-run"], env)
        counts = {src: len(srv.requests_for(src)) for src in fetched()}
        n_epmc = len(srv.europepmc_results)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert counts == {src: 1 for src in fetched()}  # every source is on by default
    lines = res.stdout.splitlines()
    assert lines[0].startswith("ctgov: 11 records (window everything .. ")
    assert "3 requests at 2/s" in lines[0]
    assert lines[1].startswith("pubmed: ") and lines[2].startswith(f"europepmc: {n_epmc} records")
    assert [line.split(":")[0] for line in lines[3:6]] == ["isrctn", "euctr", "ctis"]
    assert lines[6].startswith("total: ") and "nothing stored" in lines[6]
    assert not db.exists()


def test_dry_run_after_a_first_load_plans_the_incremental_window(tmp_path: Path) -> None:
    """After a real run the dry run asks for the window the next run would (watermark minus
    the overlap), and still stores nothing: the watermark and the run log are unchanged."""
    import sqlite3
    from contextlib import closing

    from dbsnapshot import base_env, only_sources, tracker

    db = tmp_path / "inc.sqlite"
    with _server() as srv:
        env = base_env(TRACKER_DB=str(db), TRACKER_CTGOV_URL=srv.ctgov_url,
                       TRACKER_CTGOV_RATE_PER_SECOND="100", **only_sources("ctgov"))
        assert tracker(["update"], env).returncode == 0
        with closing(sqlite3.connect(db)) as conn:
            before = conn.execute("SELECT count(*) FROM fetch_run").fetchone()[0], \
                conn.execute("SELECT watermark FROM source_state").fetchall()
        srv.requests.clear()
        res = tracker(["update", "--dry-run"], env)
        sent = srv.requests_for("ctgov")
        with closing(sqlite3.connect(db)) as conn:
            after = conn.execute("SELECT count(*) FROM fetch_run").fetchone()[0], \
                conn.execute("SELECT watermark FROM source_state").fetchall()
    today = dt.datetime.now(dt.UTC).date()
    since = (today - dt.timedelta(days=3)).isoformat()
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"ctgov: 0 records (window {since} .. {today.isoformat()})")
    assert len(sent) == 1 and sent[0].get("filter.advanced", "").startswith(
        f"AREA[LastUpdatePostDate]RANGE[{since}")
    assert after == before
