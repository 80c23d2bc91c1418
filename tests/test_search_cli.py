"""The query controls through the CLI, end to end over the local replay server: two nightly
updates store real records, then ``--query``, ``--limit``, ``--sort``, ``--desc`` and
``--country`` on ``studies``, ``papers``, ``report``, ``changes`` and ``digest``, ``tracker
search``, and bad input through the installed console script (one line, exit 2, nothing
changed).

Real records: the 11 recorded CT.gov studies, the five whole MSC records (tests/fixtures/
ctgov_full) and the recorded PubMed efetch articles. Derived for the second night, said so in
``reworded``: NCT05182034 with both titles reworded (tests/test_search.py does the same).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from dbsnapshot import CMD, base_env, snapshot
from replay_server import ReplayServer, fixture_dir, load_pubmed_articles
from typer.testing import CliRunner

from tests.conftest import ctgov_studies
from tests.test_e2e_history import _env, msc_studies
from tests.test_search import _reworded
from tracker.cli import app

runner = CliRunner()
TODAY = dt.date.today().isoformat()


def _run(args: list[str], env: dict[str, str]) -> str:
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 0, (args, res.output, res.stderr)
    return res.output


def _json(args: list[str], env: dict[str, str]) -> Any:
    return json.loads(_run([*args, "-f", "json"], env))


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("search") / "search.sqlite"
    msc = msc_studies()
    with ReplayServer(ctgov_studies=[*ctgov_studies(), *msc],
                      pubmed_articles=load_pubmed_articles(fixture_dir("pubmed"))) as srv:
        env = _env(srv, db)
        _run(["update"], env)
        before = _json(["studies", "--query", "gonarthrosis"], env)
        srv.replace_study(_reworded(next(s for s in msc if "NCT05182034" in json.dumps(
            s["protocolSection"]["identificationModule"]))))
        assert "1 changed" in _run(["update"], env)
        yield {"env": env, "db": db, "before": before}


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["registry_id"] for r in rows]


def test_studies_query_follows_the_update(nights: Any) -> None:
    env = nights["env"]
    assert nights["before"] == []
    assert ids(_json(["studies", "--query", "gonarthrosis"], env)) == ["NCT05182034"]
    found = _json(["studies", "--query", "mesenchymal"], env)
    assert set(ids(found)) == {"NCT05160831", "NCT05167721", "NCT05182034", "NCT05152160",
                               "NCT05193877"}
    assert [r["score"] for r in found] == sorted((r["score"] for r in found), reverse=True)
    # --as-of: the versions of that date, among the records the current index matches.
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    then = _json(["studies", "--as-of", yesterday, "--query", "gonarthrosis"], env)
    assert ids(then) == ["NCT05182034"] and "gonarthrosis" not in then[0]["title"].lower()
    assert ids(_json(["studies", "--as-of", yesterday, "--query", "mesenchymal", "--sort",
                      "first_posted", "--desc", "--limit", "2"], env)) == [
        "NCT05193877", "NCT05182034"]


def test_limit_sort_desc_and_country(nights: Any) -> None:
    env = nights["env"]
    newest = _json(["studies", "--query", "mesenchymal", "--sort", "first_posted", "--desc",
                    "--limit", "2"], env)
    assert ids(newest) == ["NCT05193877", "NCT05182034"]
    everything = ["--include-irrelevant"]
    assert len(_json(["studies", *everything, "--limit", "3"], env)) == 3
    biggest = _json(["studies", *everything, "--sort", "enrollment", "--desc"], env)
    sizes = [r["enrollment"] for r in biggest]
    known = [n for n in sizes if n is not None]
    assert known == sorted(known, reverse=True) and sizes[: len(known)] == known
    phases = [r["phase"] for r in _json(["studies", *everything, "--sort", "phase"], env)]
    from tracker.taxonomy import PHASES

    assert phases == sorted(phases, key=PHASES.index)
    spain = _json(["studies", *everything, "--country", "spain"], env)
    assert set(ids(spain)) == {"NCT02513394", "NCT03475563", "NCT04431453"}
    assert all("Spain" in r["countries"] for r in spain)
    assert ids(_json(["studies", "--country", "China", "--query", "mesenchymal"], env)) == [
        "NCT05152160"]


def test_papers_report_changes_digest_take_the_query(nights: Any) -> None:
    env = nights["env"]
    papers = _json(["papers", "--include-irrelevant", "--query", '"venous thromboembolism"'],
                   env)
    assert [p["pmid"] for p in papers] == ["23121403"]
    rep = _json(["report", "--since", "2000-01-01", "--query", "knee osteoarthritis"], env)
    assert set(ids(rep["studies"])) == {"NCT05182034", "NCT05160831", "NCT05193877"}
    rep2 = _json(["report", "--since", "2000-01-01", "--query", "knee osteoarthritis",
                  "--limit", "1"], env)
    assert ids(rep2["studies"]) == ids(rep["studies"])[:1]
    assert rep2["by_condition_phase"] == rep["by_condition_phase"]  # counts: every match
    changes = _json(["changes", "--since", "2000-01-01", "--query", "gonarthrosis"], env)
    assert {(c["registry_id"], c["field"]) for c in changes} == {("NCT05182034", "title")}
    assert _json(["changes", "--since", "2000-01-01", "--query", "covid"], env) == []
    digest = _json(["digest", "--since", "2000-01-01", "--query", "osteoarthritis NOT umbilical"],
                   env)
    trials = {i["id"] for g in digest["new_trials"] for i in g["items"]}
    assert trials == {"NCT05193877"}


def test_search_lists_trials_and_papers_best_first(nights: Any) -> None:
    env = nights["env"]
    rows = _json(["search", "--include-irrelevant", "thromboembolism OR mesenchymal"], env)
    assert {r["kind"] for r in rows} == {"trial", "paper"}
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert "PMID:23121403" in {r["id"] for r in rows}
    assert len(_json(["search", "--include-irrelevant", "--limit", "2",
                      "thromboembolism OR mesenchymal"], env)) == 2
    trials_only = _json(["search", "--include-irrelevant", "--country", "United States",
                         "thromboembolism OR mesenchymal"], env)
    assert {r["kind"] for r in trials_only} == {"trial"}
    table = _run(["search", "knee"], env)
    assert "NCT05182034" in table and "result" in table


BAD = [
    (["studies", "--query", '"unbalanced'],
     "--query '\"unbalanced': a double quote is not closed"),
    (["studies", "--sort", "colour"],
     "--sort 'colour' is not one of: first_posted, last_update, phase, enrollment, relevance"),
    (["studies", "--sort", "relevance"], "--sort relevance ranks the matches of --query"),
    (["papers", "--limit", "0"], "--limit '0' is not a whole number of at least 1"),
    (["report", "--limit", "-5"], "--limit '-5' is not a whole number of at least 1"),
    (["changes", "--limit", "ten"], "--limit 'ten' is not a whole number of at least 1"),
    (["studies", "--country", "Spian"],
     "--country 'Spian' is not a country the tracker knows; did you mean 'Spain'"),
    (["digest", "--country", "Narnia"], "--country 'Narnia' is not a country"),
    (["search", "NOT knee"], "NOT only leaves out"),
    (["papers", "--country", "Spain"], "--country is for trials"),
    (["papers", "--sort", "enrollment"], "--sort enrollment is for trials"),
    (["studies", "--desc"], "--desc reverses --sort"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_nothing_changed(nights: Any, args: list[str],
                                                      message: str) -> None:
    db: Path = nights["db"]
    before = snapshot(db)
    import subprocess

    done = subprocess.run([*CMD, *args], env=base_env(TRACKER_DB=str(db)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert done.stdout == ""
    assert snapshot(db) == before


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _cells(page: Any, column: str) -> list[str]:
    return page.eval_on_selector_all(
        f"table.rows-and-columns td.col-{column}", "els => els.map(e => e.textContent.trim())")


def test_serve_opens_in_a_real_browser(nights: Any) -> None:
    """``tracker serve`` (the console script) starts Datasette on 127.0.0.1; in headless
    Chromium the studies view facets by condition group and its search box searches the
    full-text index, and every request stays on this machine."""
    import subprocess

    from browser import TIMEOUT_MS, browser
    from conftest import wait_for

    db: Path = nights["db"]
    port = _free_port()
    proc = subprocess.Popen([*CMD, "serve", "--port", str(port)],
                            env=base_env(TRACKER_DB=str(db)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        if not wait_for(lambda: _listening(port) or proc.poll() is not None, timeout=60) \
                or proc.poll() is not None:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"tracker serve did not start: {err.decode()[-2000:]}")
        base = f"http://127.0.0.1:{port}/{db.stem}"
        with browser() as chromium:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            try:
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                requests: list[str] = []
                errors: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{base}/studies_view", wait_until="load")
                assert "studies_view: 16 rows sorted by first_posted descending" in page.title()
                shown = page.eval_on_selector_all(
                    "table.rows-and-columns th", "els => els.map(e => e.dataset.column)")
                assert "condition_groups" in shown and "content_hash" not in shown
                assert "rules_fingerprint" not in shown and "first_seen_run_id" not in shown
                # Facet by condition group: the array facet's "osteoarthritis" link.
                page.click("a[href*='condition_groups__arraycontains=osteoarthritis']")
                page.wait_for_load_state("load")
                assert set(_cells(page, "registry_id")) == {
                    "NCT05160831", "NCT05182034", "NCT05193877"}
                # Full-text search in the same view, the facet kept.
                page.fill("input[name='_search']", "umbilical")
                page.press("input[name='_search']", "Enter")
                page.wait_for_load_state("load")
                assert "_search=umbilical" in page.url
                assert set(_cells(page, "registry_id")) == {"NCT05160831", "NCT05182034"}
                # The papers view searches abstracts and titles.
                page.goto(f"{base}/papers_view?_search=thromboembolism", wait_until="load")
                assert _cells(page, "pmid") == ["23121403"]
                assert errors == []
                assert all(u.startswith(f"http://127.0.0.1:{port}/") for u in requests)
            finally:
                context.close()
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)


def test_serve_says_how_to_install_datasette(nights: Any, tmp_path: Path) -> None:
    """Without the web extra (Datasette unimportable): one line saying how, exit 1."""
    import subprocess

    stub = tmp_path / "nodatasette"
    stub.mkdir()
    (stub / "datasette.py").write_text("raise ImportError('No module named datasette')\n")
    done = subprocess.run([*CMD, "serve"], env=base_env(TRACKER_DB=str(nights["db"]),
                                                         PYTHONPATH=str(stub)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [(
        "error: Datasette is not installed; install the web extra: pip install "
        "'msc-trial-tracker[web]' (or pip install datasette)")]


def test_datasette_metadata_names_the_views_facets_and_search(nights: Any,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "metadata.json"
    _run(["datasette-metadata", "-o", str(out)], nights["env"])
    meta = json.loads(out.read_text())
    tables = meta["databases"][nights["db"].stem]["tables"]
    assert tables["studies_view"]["fts_table"] == "study_fts"
    assert tables["papers_view"]["fts_table"] == "publication_fts"
    assert {"array": "condition_groups"} in tables["studies_view"]["facets"]
    assert {"studies_view", "papers_view", "changes_view"} <= set(tables)


def test_export_writes_one_file_per_table(nights: Any, tmp_path: Path) -> None:
    import sqlite3

    import pyarrow.parquet as pq

    env = nights["env"]
    out = tmp_path / "export"
    for fmt in ("csv", "jsonl", "parquet"):
        said = _run(["export", "-o", str(out), "-f", fmt], env)
        assert f"studies.{fmt}: 16 rows" in said.replace(str(out) + "/", "")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}.{f}" for n in ("studies", "papers", "changes", "labels",
                                                "links", "countries")
                           for f in ("csv", "jsonl", "parquet"))
    with sqlite3.connect(nights["db"]) as conn:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("study", "publication", "study_change", "record_label")}
    studies = [json.loads(line) for line in (out / "studies.jsonl").read_text().splitlines()]
    assert len(studies) == counts["study"]
    smup = next(s for s in studies if s["registry_id"] == "NCT05182034")
    assert smup["condition_groups"] == ["osteoarthritis"] and smup["msc_relevant"] is True
    assert "raw" not in smup and "content_hash" not in smup
    assert smup["first_seen_at"].endswith("Z")
    changes = pq.read_table(out / "changes.parquet")
    assert changes.num_rows == counts["study_change"] > 0
    papers = pq.read_table(out / "papers.parquet")
    assert str(papers.schema.field("trial_ids").type) == "list<element: string>"
    assert papers.num_rows == counts["publication"]
    labels = (out / "labels.csv").read_text().splitlines()
    assert len(labels) == counts["record_label"] + 1


def test_export_parquet_without_pyarrow_says_how(nights: Any, tmp_path: Path) -> None:
    import subprocess

    stub = tmp_path / "nopyarrow"
    stub.mkdir()
    (stub / "pyarrow.py").write_text("raise ImportError('No module named pyarrow')\n")
    out = tmp_path / "never"
    done = subprocess.run([*CMD, "export", "-f", "parquet", "-o", str(out)],
                          env=base_env(TRACKER_DB=str(nights["db"]), PYTHONPATH=str(stub)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.strip().splitlines() == [(
        "error: --format parquet needs pyarrow; install the parquet extra: pip install "
        "'msc-trial-tracker[parquet]' (or pip install pyarrow)")]
