"""End to end for the abstract sources: PubMed and Europe PMC over real HTTP, deduplicated,
linked to trials both ways, incremental, polite.

Derived records (said so where made): one PubMed article is a real one re-keyed to a PMID that a
real CT.gov study cites; one Europe PMC result is a real one re-keyed to a real PubMed PMID so
that both listings describe the same paper; the crafted DataBankList article names NCT01234567,
so a real CT.gov study is cloned under that id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dbsnapshot import only_sources
from replay_server import (
    ReplayServer,
    clone_europepmc_result,
    clone_pubmed_article,
    clone_study,
    fixture_dir,
    load_europepmc_results,
    load_pubmed_articles,
    split_pubmed_articles,
)
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.engine import make_engine
from db.models import Publication, PublicationSource, SourceState
from tracker.cli import app

runner = CliRunner()
CITED_PMID = "35296532"  # cited as a RESULT reference by the real study NCT02552212


def _articles() -> list[bytes]:
    real = load_pubmed_articles(fixture_dir("pubmed"))
    nejm = next(a for a in real if b"23121403" in a)
    databank = split_pubmed_articles(
        (fixture_dir("pubmed") / "crafted_efetch_medline_date_databank.xml").read_bytes())
    # The clone is a different paper: give it its own DOI so it does not merge with the NEJM one.
    clone = clone_pubmed_article(nejm, CITED_PMID).replace(
        b"10.1056/NEJMoa1210384", b"10.9999/derived." + CITED_PMID.encode())
    return [*real, clone, *databank]


def _distinct_pmids(articles: list[bytes]) -> int:
    import re

    return len({re.search(rb"<PMID[^>]*>(\d+)</PMID>", a).group(1) for a in articles})  # type: ignore[union-attr]


def _results() -> list[dict[str, Any]]:
    real = load_europepmc_results(fixture_dir("europepmc") / "search_cancer_core.json")
    twin = clone_europepmc_result(real[0], "23121403")
    twin["source"] = "MED"
    return [*real, twin]


def _env(srv: ReplayServer, db: Path, **extra: str) -> dict[str, str]:
    return {
        "TRACKER_DB": str(db),
        "TRACKER_CTGOV_URL": srv.ctgov_url,
        "TRACKER_PUBMED_URL": srv.pubmed_url,
        "TRACKER_EUROPEPMC_URL": srv.europepmc_url,
        **only_sources("ctgov", "pubmed", "europepmc"),
        "TRACKER_CTGOV_RATE_PER_SECOND": "100",
        "TRACKER_EUROPEPMC_RATE_PER_SECOND": "100",
        "TRACKER_CONTACT_EMAIL": "tracker-tests@example.org",
        **extra,
    }


def _scalar(db: Path, stmt: Any) -> Any:
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        value = conn.execute(stmt).scalar_one()
    engine.dispose()
    return value


@pytest.fixture
def studies(studies_json: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*studies_json, clone_study(studies_json[0], "NCT01234567", "2024-01-02", "2024-01-02")]


def test_all_sources_dedup_links_rate_and_rerun(tmp_path: Path, studies: list) -> None:
    db = tmp_path / "papers.sqlite"
    articles, results = _articles(), _results()
    with ReplayServer(ctgov_studies=studies, pubmed_articles=articles,
                      europepmc_results=results) as srv:
        env = _env(srv, db)
        first = runner.invoke(app, ["update"], env=env)
        assert first.exit_code == 0, first.output + first.stderr
        lines = first.output.splitlines()
        assert lines[0].startswith("ctgov: 12 new")
        assert lines[1].startswith(f"pubmed: {_distinct_pmids(articles)} new")
        # counts are per listing: the paper PubMed also lists is new to Europe PMC too,
        # whichever source stored it first (the sources run side by side)
        assert lines[2].startswith(f"europepmc: {len(results)} new, 0 changed")

        # NCBI etiquette: tool and email on every call, never more than 3 requests a second.
        eutils = srv.requests_for("pubmed")
        assert eutils and all(r.get("tool") == "msc-trial-tracker" for r in eutils)
        assert all(r.get("email") == "tracker-tests@example.org" for r in eutils)
        assert srv.max_requests_in_window("pubmed", 1.0) <= 3

        # One paper, one row, both provenances.
        pubs = _scalar(db, select(func.count()).select_from(Publication.__table__))
        assert pubs == _distinct_pmids(articles) + len(results) - 1
        shown = json.loads(runner.invoke(app, ["show", "PMID:23121403", "-f", "json"], env=env).output)
        assert {s["source"] for s in shown["listings"]} == {"pubmed", "europepmc"}
        assert shown["title"].startswith("Low-dose aspirin")  # PubMed's title wins over the twin's
        assert "europepmc" in shown["sources"] and "pubmed" in shown["sources"]

        # Links both ways: the trial's reference (trial side) ...
        nct = json.loads(runner.invoke(app, ["show", "NCT02552212", "-f", "json"], env=env).output)
        linked = [p for p in nct["papers"] if p["pmid"] == CITED_PMID]
        assert linked and linked[0]["link_type"] == "result" and linked[0]["stored"]
        paper = json.loads(runner.invoke(app, ["show", f"PMID:{CITED_PMID}", "-f", "json"], env=env).output)
        assert any(t["registry_id"] == "NCT02552212" and t["link_type"] == "result" for t in paper["trials"])
        # ... and the paper's DataBankList (paper side), matched to the stored study.
        databank = json.loads(runner.invoke(app, ["papers", "-f", "json", "--include-irrelevant"], env=env).output)
        with_trial = [p for p in databank if "NCT01234567" in p["trial_ids"]]
        assert with_trial
        study = json.loads(runner.invoke(app, ["show", "NCT01234567", "-f", "json"], env=env).output)
        assert any(p["found_in"] == "paper databank" and p["link_type"] == "reports" for p in study["papers"])

        # Watermarks for every source; a rerun asks for the window only and adds nothing.
        assert _scalar(db, select(func.count()).select_from(SourceState.__table__)) == 3
        srv.requests.clear()
        second = runner.invoke(app, ["update"], env=env)
        assert second.exit_code == 0, second.stderr
        assert all(" 0 new, 0 changed" in line for line in second.output.splitlines())
        searches = srv.requests_for("pubmed", "esearch.fcgi")
        assert {r.get("datetype") for r in searches} == {"edat", "mdat"}
        assert all(r.get("mindate") != "1900/01/01" for r in searches)
        epmc = srv.requests_for("europepmc")
        assert "FIRST_IDATE:[" in epmc[0].get("query", "")
        assert _scalar(db, select(func.count()).select_from(Publication.__table__)) == pubs
        sources = _scalar(db, select(func.count()).select_from(PublicationSource.__table__))
        assert sources == pubs + 1


def test_paper_stored_before_its_trial_links_when_the_trial_arrives(tmp_path: Path, studies: list) -> None:
    db = tmp_path / "order.sqlite"
    with ReplayServer(ctgov_studies=studies, pubmed_articles=_articles(),
                      europepmc_results=[]) as srv:
        env = _env(srv, db, TRACKER_PUBMED_RATE_PER_SECOND="50")
        assert runner.invoke(app, ["update", "--source", "pubmed"], env=env).exit_code == 0
        before = json.loads(runner.invoke(app, ["show", f"PMID:{CITED_PMID}", "-f", "json"], env=env).output)
        # The real abstract names its ANZCTR registration: a paper-side link, trial not stored.
        assert [(t["registry_id"], t["stored"]) for t in before["trials"]] == [
            ("ACTRN12605000004662", False)]
        assert runner.invoke(app, ["update", "--source", "ctgov"], env=env).exit_code == 0
        after = json.loads(runner.invoke(app, ["show", f"PMID:{CITED_PMID}", "-f", "json"], env=env).output)
        assert [t["registry_id"] for t in after["trials"] if t["stored"]] == ["NCT02552212"]


def test_pubmed_splits_windows_past_the_esearch_ceiling(tmp_path: Path) -> None:
    db = tmp_path / "split.sqlite"
    articles = _articles()
    with ReplayServer(pubmed_articles=articles, esearch_ceiling=3) as srv:
        env = _env(srv, db, TRACKER_PUBMED_RATE_PER_SECOND="100", TRACKER_PUBMED_MAX_WINDOW="3")
        result = runner.invoke(app, ["update", "--source", "pubmed"], env=env)
        assert result.exit_code == 0, result.stderr
        assert result.output.startswith(f"pubmed: {_distinct_pmids(articles)} new")
        fetched = srv.requests_for("pubmed", "efetch.fcgi")
        assert len(fetched) >= 4  # 11 records in windows of at most 3
        searches = srv.requests_for("pubmed", "esearch.fcgi")
        assert searches[0].get("mindate") == "1900/01/01"
