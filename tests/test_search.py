"""Full-text search on a real SQLite file and a real PostgreSQL server: the same query finds
the same ids on both, ranking is stable, and the index follows every write (new records, a
changed record, a PubMed DeleteCitation, ``tracker classify``).

Real records only: the 11 recorded CT.gov API v2 studies (tests/fixtures/ctgov), the five
whole MSC records (tests/fixtures/ctgov_full) and the recorded PubMed efetch articles
(tests/fixtures/pubmed/efetch_*.xml). Derived here, and said so where made: a changed version
of NCT05182034 (its brief title reworded), and the DeleteCitation of PMID 12091962 (the
fixture's own crafted_efetch_delete_citation.xml, derived from the recorded pubmed1 file).
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from db import search as index
from db.publications import upsert_publications
from db.upsert import upsert_studies
from sources.clinicaltrials_gov import parse_study
from sources.pubmed import parse_item, split_efetch
from tests.conftest import FIXTURES, ctgov_studies, load_json
from tracker.classify import load_rules
from tracker.pipeline import label
from tracker.reports import PaperFilter, make_filter, query_papers, query_studies
from tracker.search import UsageError, parse_query

RULES = load_rules(None)
EVERYTHING = {"include_irrelevant": True}


def study_records(extra: list[dict[str, Any]] | None = None) -> list[Any]:
    studies = [*ctgov_studies(), *(load_json(p) for p in sorted(
        (FIXTURES / "ctgov_full").glob("NCT*.json"))), *(extra or [])]
    recs = [parse_study(orjson.dumps(s)) for s in studies]
    label(recs, "study", RULES)
    return recs


def paper_records(pattern: str = "efetch_*.xml") -> list[Any]:
    recs = []
    for path in sorted((FIXTURES / "pubmed").glob(pattern)):
        recs += [parse_item(item) for item in split_efetch(path.read_bytes())]
    label(recs, "publication", RULES)
    return recs


def load(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_studies(conn, study_records())
        upsert_publications(conn, paper_records())


def study_ids(engine: Engine, query: str, **kw: Any) -> list[str]:
    with engine.connect() as conn:
        return [r["registry_id"] for r in query_studies(conn, make_filter(
            query=query, **{**EVERYTHING, **kw}))]


def paper_ids(engine: Engine, query: str, deleted: bool = False, **kw: Any) -> list[str]:
    with engine.connect() as conn:
        return [r["pmid"] for r in query_papers(conn, PaperFilter(
            labels=make_filter(query=query, **{**EVERYTHING, **kw}), include_deleted=deleted))]


# What each query finds among the real records (checked by hand against their text).
STUDY_QUERIES = {
    "mesenchymal": {"NCT05160831", "NCT05167721", "NCT05182034", "NCT05152160",
                    "NCT05193877"},
    "knee osteoarthritis": {"NCT05182034", "NCT05160831", "NCT05193877"},
    '"umbilical cord"': {"NCT05160831", "NCT05152160", "NCT05182034"},
    "mesenchymal NOT knee": {"NCT05167721", "NCT05152160"},
    "covid OR osteoarthritis": {"NCT04431453", "NCT05160831", "NCT05182034", "NCT05193877"},
    "SMUP*": {"NCT05182034"},
    '"bone marrow" aspirate': {"NCT05193877"},
    "(graft OR atrophy) AND stem": {"NCT05152160", "NCT05167721"},
}


PAPER_QUERIES = {
    '"venous thromboembolism"': {"23121403"},
    "pesticide*": {"28775130"},
    "phenotyp*": {"20412080", "29963580"},
    "correctional": {"12091962"},
    "Acacia seed oil": {"22351513"},
}


@pytest.fixture
def both(sqlite_engine: Engine, pg_engine: Engine) -> tuple[Engine, Engine]:
    load(sqlite_engine)
    load(pg_engine)
    return sqlite_engine, pg_engine


def test_the_same_query_finds_the_same_ids_on_both_engines(both: tuple[Engine, Engine]) -> None:
    lite, pg = both
    for query, expected in STUDY_QUERIES.items():
        assert set(study_ids(lite, query)) == expected, query
        assert set(study_ids(pg, query)) == expected, query
    for query, expected in PAPER_QUERIES.items():
        assert set(paper_ids(lite, query)) == expected, query
        assert set(paper_ids(pg, query)) == expected, query
    # And queries whose answer is whatever the abstracts hold: one answer on both engines.
    for query in ("acid NOT oil", "aids OR aspirin", "(13)C", "studies", "human*",
                  "chronic NOT lung"):
        assert set(paper_ids(lite, query)) == set(paper_ids(pg, query)), query
    assert paper_ids(lite, "22351513 OR nonexistentwordzz") == []  # ids are not text


def test_ranking_is_best_first_and_stable(both: tuple[Engine, Engine]) -> None:
    lite, pg = both
    for engine in both:
        first = study_ids(engine, "knee osteoarthritis")
        assert first == study_ids(engine, "knee osteoarthritis")  # the same order each time
        # Both words in the title rank above a trial that has them in its summary only.
        assert first[-1] == "NCT05193877"
        with engine.connect() as conn:
            rows = query_studies(conn, make_filter(query="knee osteoarthritis", **EVERYTHING))
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    # --sort overrides relevance; --limit cuts after sorting; --desc reverses.
    newest = study_ids(lite, "mesenchymal", sort="first_posted", desc=True, limit=2)
    assert newest == ["NCT05193877", "NCT05182034"]
    assert study_ids(pg, "mesenchymal", sort="first_posted", desc=True, limit=2) == newest
    assert study_ids(lite, "mesenchymal", sort="first_posted")[0] == "NCT05152160"


def test_label_filters_and_countries_combine_with_the_query(both: tuple[Engine, Engine]
                                                          ) -> None:
    for engine in both:
        assert set(study_ids(engine, "mesenchymal", conditions=["osteoarthritis"])) == {
            "NCT05160831", "NCT05182034", "NCT05193877"}
        assert study_ids(engine, "mesenchymal", countries=["China"]) == ["NCT05152160"]
        assert study_ids(engine, "mesenchymal", countries=["usa"]) == ["NCT05167721"]
        assert set(study_ids(engine, "mesenchymal", countries=["USA,china"])) == {
            "NCT05167721", "NCT05152160"}
        assert study_ids(engine, "covid", countries=["korea"]) == []
        assert study_ids(engine, "randomized", countries=["south korea"]) == ["NCT02513394"]
        with engine.connect() as conn:
            spain = query_studies(conn, make_filter(countries=["Spain"], **EVERYTHING))
            stored = conn.execute(text(
                "SELECT COUNT(*) FROM study_country WHERE country = 'Spain'")).scalar_one()
        assert len(spain) == stored > 0


def _reworded(study: dict[str, Any]) -> dict[str, Any]:
    """NCT05182034's next version, derived from the real record: both titles reworded."""
    new = copy.deepcopy(study)
    ident = new["protocolSection"]["identificationModule"]
    ident["briefTitle"] = "Allogeneic progenitor injections for gonarthrosis"
    ident["officialTitle"] = "A Phase II Trial of SMUP-IA-01 Injections for Gonarthrosis"
    new["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"] = {
        "date": dt.date.today().isoformat(), "type": "ACTUAL"}
    return new


def test_the_index_follows_a_changed_record_and_a_deleted_citation(engine: Engine) -> None:
    load(engine)
    assert study_ids(engine, "gonarthrosis") == []
    assert "NCT05182034" in study_ids(engine, "SMUP")
    assert study_ids(engine, '"evaluate efficacy and safety of smup"') == ["NCT05182034"]
    real = load_json(FIXTURES / "ctgov_full" / "NCT05182034.json")
    with engine.begin() as conn:
        result = upsert_studies(conn, study_records([_reworded(real)])[-1:])
    assert result.changed == 1
    assert study_ids(engine, "gonarthrosis") == ["NCT05182034"]
    assert study_ids(engine, '"evaluate efficacy and safety of smup"') == []  # old titles
    assert study_ids(engine, "SMUP") == ["NCT05182034"]  # still in its official title
    with engine.connect() as conn:
        count = conn.execute(text(f"SELECT COUNT(*) FROM {index.STUDY_FTS}")).scalar_one()
        studies = conn.execute(text("SELECT COUNT(*) FROM study")).scalar_one()
    assert count == studies  # one index row per study, the old one replaced

    # PMID 12091962 is found by words of its title; the DeleteCitation takes it out.
    before = paper_ids(engine, "aids OR correctional OR aspirin")
    assert "12091962" in before
    with engine.begin() as conn:
        deleted = upsert_publications(conn, paper_records("crafted_efetch_delete_citation.xml"))
    assert deleted.changed >= 1
    assert paper_ids(engine, "correctional") == []
    assert paper_ids(engine, "correctional", deleted=True) == []  # not indexed at all
    assert set(paper_ids(engine, "aids OR correctional OR aspirin")) == set(before) - {
        "12091962"}


def test_classify_writes_the_index_again(engine: Engine, tmp_path: Path) -> None:
    """An index fallen out of step (its rows lost) is whole again after ``tracker
    classify``, row for row what the upsert wrote."""
    from tracker.config import load_settings
    from tracker.relabel import relabel_all

    load(engine)
    with engine.connect() as conn:
        key = "rowid" if engine.dialect.name == "sqlite" else "id"
        cols = ", ".join(index.STUDY_FIELDS) if engine.dialect.name == "sqlite" else "document"
        before = conn.execute(text(
            f"SELECT {key}, {cols} FROM study_fts ORDER BY {key}")).all()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM study_fts"))
        conn.execute(text("DELETE FROM publication_fts"))
    assert study_ids(engine, "mesenchymal") == []
    url = engine.url.render_as_string(hide_password=False)
    relabel_all(engine, load_settings({"db": url}))
    assert set(study_ids(engine, "mesenchymal")) == STUDY_QUERIES["mesenchymal"]
    assert paper_ids(engine, "correctional") == ["12091962"]
    with engine.connect() as conn:
        after = conn.execute(text(f"SELECT {key}, {cols} FROM study_fts ORDER BY {key}")).all()
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


@pytest.mark.parametrize(("query", "problem"), [
    ('"unbalanced', "a double quote is not closed"),
    ("NOT knee", "NOT only leaves out"),
    ("knee OR", "OR needs something"),
    ("(knee", "is not closed"),
    ("knee)", "has no '('"),
    ("AND knee", "AND needs something"),
    ("&&", "no word to search for"),
])
def test_a_query_that_cannot_be_read_says_how_to_write_one(query: str, problem: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_query(query)
    message = str(err.value)
    assert problem in message and '"a phrase"' in message and "\n" not in message
    assert err.value.exit_code == 2


def test_queries_are_written_for_each_engine() -> None:
    q = parse_query('"Wharton\'s jelly" (knee OR hip) NOT canine chondro*')
    assert q.fts5() == ('("wharton s jelly" AND ("knee" OR "hip") AND "chondro"*) '
                        'NOT "canine"')
    assert q.tsquery() == ("(('wharton' <-> 's' <-> 'jelly') & ('knee' | 'hip') & !'canine' "
                           "& 'chondro':*)")
    assert parse_query("Crème MSC-derived").fts5() == '"creme" AND "msc derived"'
    # An index row and a query are tokenised alike: accents, case, punctuation.
    assert index.tokens("Crème brûlée, MSC-derived (2/3)") == [
        "creme", "brulee", "msc", "derived", "2", "3"]
    assert index.index_text("plain ASCII text") == "plain ASCII text"
    assert index.tsvector_literal(("Knee knee", "hip"), "AD") == "'knee':1A,2A 'hip':103"


def test_export_reads_the_views_on_either_engine(engine: Engine, tmp_path: Path) -> None:
    """``tracker export``'s files from the views of SQLite and PostgreSQL alike: lists as
    lists, booleans as booleans, times ISO UTC."""
    import json

    from tracker.export import export

    load(engine)
    with engine.connect() as conn:
        written = dict(export(conn, "jsonl", tmp_path))
    assert written["studies.jsonl"] == 16 and written["papers.jsonl"] == 9
    studies = {s["registry_id"]: s for s in map(json.loads, (
        tmp_path / "studies.jsonl").read_text().splitlines())}
    oa = studies["NCT05160831"]
    assert oa["condition_groups"] == ["osteoarthritis"] and oa["msc_relevant"] is True
    assert oa["first_posted"] == "2021-12-16" and oa["first_seen_at"].endswith("Z")
    assert "raw" not in oa and "rules_fingerprint" not in oa
    papers = [json.loads(line) for line in (tmp_path / "papers.jsonl").read_text().splitlines()]
    assert all(isinstance(p["trial_ids"], list) for p in papers)
    labels = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert {json.loads(line)["kind"] for line in labels} == {"study"}  # no paper is MSC
    links = [json.loads(line) for line in (tmp_path / "links.jsonl").read_text().splitlines()]
    assert any(link["registry_id"] == "NCT02552212" and link["link_type"] == "result"
               for link in links)
