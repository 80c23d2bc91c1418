"""The NCBI API key never shows: not on stderr, not in a -v retry line, not in the run log, not
in `tracker status` (table or JSON), not in any database row, whatever the server echoes.

The 429 answers are the replay server's copy of NCBI's real rate-limit body, which echoes the
request's ``api-key`` (tests/replay_server.py, ``_ncbi_429``); the articles are the recorded
real efetch records.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from dbsnapshot import base_env, only_sources, tracker, write_config
from replay_server import ReplayServer, fixture_dir, load_pubmed_articles

from tracker.errors import redact, register_secret

KEY = "f00dfacecafe0123456789abcdef0123beef"  # 36 hex characters, the shape of an NCBI key


def _every_text(db: Path) -> str:
    """Every value of every row of every table, as text."""
    out = []
    with closing(sqlite3.connect(db)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
    return "\n".join(out)


def test_an_echoed_key_is_redacted_everywhere(tmp_path: Path) -> None:
    db = tmp_path / "secret.sqlite"
    cfg = write_config(tmp_path / "config.toml", max_retries=1, backoff_cap=0.1)
    with ReplayServer(pubmed_articles=load_pubmed_articles(fixture_dir("pubmed"))) as srv:
        srv.add_fault("pubmed", "429", on_request=1, times=1000)
        env = base_env(TRACKER_DB=str(db), TRACKER_CONFIG=str(cfg),
                       TRACKER_PUBMED_URL=srv.pubmed_url, TRACKER_PUBMED_API_KEY=KEY,
                       **only_sources("pubmed"),
                       TRACKER_CONTACT_EMAIL="tracker-tests@example.org")
        res = tracker(["-v", "update", "--source", "pubmed"], env)
        assert any(r.get("api_key") == KEY for r in srv.requests_for("pubmed"))  # it was sent
    assert res.returncode == 1
    assert "429" in res.stderr or "rate" in res.stderr.lower()
    assert KEY not in res.stdout and KEY not in res.stderr
    assert "Traceback" not in res.stderr
    status_table = tracker(["status"], env)
    status_json = tracker(["status", "-f", "json"], env)
    config = tracker(["config"], env)
    for out in (status_table, status_json, config):
        assert KEY not in out.stdout and KEY not in out.stderr
    assert "***" in status_json.stdout  # the error is there, with the key masked
    assert KEY not in _every_text(db)


def test_redact_masks_a_registered_value_wherever_it_stands() -> None:
    register_secret(KEY)
    body = '{"error":"API rate limit exceeded","api-key":"' + KEY + '","count":"11"}'
    assert KEY not in redact(body) and '"count":"11"' in redact(body)
    assert redact(f"GET /efetch.fcgi?db=pubmed&api_key={KEY}&id=1") == \
        "GET /efetch.fcgi?db=pubmed&api_key=***&id=1"
    assert redact(f"echoed as text: {KEY}.") == "echoed as text: ***."
    register_secret("ab")  # too short to be a key: never registered, never masks words
    assert redact("about a cab") == "about a cab"


def test_a_new_database_file_is_private(tmp_path: Path) -> None:
    """The scheduler's pickled job lives in it: only its owner may read or write it."""
    import stat

    from db.engine import make_engine
    from db.migrate import upgrade

    db = tmp_path / "private.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
