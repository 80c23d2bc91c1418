"""sources.europepmc: request building and parsing of recorded /search responses.

Fixtures live in tests/fixtures/europepmc (see its README): real recorded pages, plus one
``crafted_*`` page derived from them for a preprint and the end-of-results cursor echo.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import orjson
import pytest
import xxhash

from db.records import Mesh, PublicationRecord
from sources.europepmc import (
    EuropePMCParseError,
    SearchPage,
    build_search_params,
    build_window_query,
    clean_html,
    parse_search_page,
)
from tracker.errors import ParseError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "europepmc"
TAG = re.compile(r"</?[A-Za-z][^>]*>")
ALL_FILES = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in {".json", ".xml"})


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def page(name: str) -> SearchPage:
    return parse_search_page(body(name))


# ------------------------------------------------------------------ request building -------


def test_build_search_params_first_page() -> None:
    assert build_search_params("mesenchymal") == {
        "query": "mesenchymal",
        "resultType": "core",
        "format": "json",
        "cursorMark": "*",
        "pageSize": "1000",
    }


def test_build_search_params_next_page_keeps_cursor_unencoded() -> None:
    params = build_search_params("q", cursor="AoIIQM+luyg1MTc3NTM5Mw==", page_size=25,
                                 email="ops@example.org")
    assert params["cursorMark"] == "AoIIQM+luyg1MTc3NTM5Mw=="  # httpx encodes it exactly once
    assert (params["pageSize"], params["email"]) == ("25", "ops@example.org")


@pytest.mark.parametrize("size", [0, 1001])
def test_build_search_params_rejects_page_size(size: int) -> None:
    with pytest.raises(ValueError):
        build_search_params("q", page_size=size)


def test_build_window_query_uses_first_index_date() -> None:
    query = build_window_query('"mesenchymal stem cell" OR MSC', dt.date(2025, 1, 1),
                               dt.date(2025, 1, 31))
    assert query == ('("mesenchymal stem cell" OR MSC) AND '
                     "FIRST_IDATE:[2025-01-01 TO 2025-01-31]")
    with pytest.raises(ValueError):
        build_window_query("q", dt.date(2025, 2, 1), dt.date(2025, 1, 1))
    with pytest.raises(ValueError):
        build_window_query("  ", dt.date(2025, 1, 1), dt.date(2025, 1, 1))


# ------------------------------------------------------------------ every fixture --------

# name -> (hitCount, next cursor, number of records) or None when the body must be rejected
EXPECTED = {
    "crafted_search_preprint_last_page.json": (1, None, 1),
    "search_cancer.json": (5059039, "AoIIP4ZawSg1MzEyODI1MA==", 25),
    "search_cancer.xml": None,
    "search_cancer_core.json": (5059039, "AoIIP4ZawSg1MzEyODI1MA==", 25),
    "search_cancer_dc.xml": None,
    "search_cancer_page2.json": (5059039, "AoIIP4lkIig1MzE0NTMwOA==", 5),
    "search_cancer_sorted_cited.json": (5059039, "AoIGAAAAACc5OTk4NTQ2", 25),
    "search_post_cancer.json": (5933343, "AoIIQM+luyg1MTc3NTM5Mw==", 25),
}


def test_every_fixture_is_listed() -> None:
    assert ALL_FILES == sorted(EXPECTED)


@pytest.mark.parametrize("name", ALL_FILES)
def test_parse_search_page_every_fixture(name: str) -> None:
    expected = EXPECTED[name]
    if expected is None:  # format=xml / format=dc bodies are not JSON pages
        with pytest.raises(EuropePMCParseError, match="not JSON") as info:
            parse_search_page(body(name))
        assert isinstance(info.value, ParseError)
        return
    result = page(name)
    assert (result.hit_count, result.next_cursor, len(result.records)) == expected
    source = json.loads(body(name))["resultList"]["result"]
    for rec, original in zip(result.records, source, strict=True):
        assert rec.source == "europepmc"
        assert rec.source_id == f"{original['source']}:{original['id']}"
        assert rec.url == f"https://europepmc.org/article/{original['source']}/{original['id']}"
        assert orjson.loads(rec.raw) == original
        assert rec.content_hash == xxhash.xxh3_128_hexdigest(rec.raw)
        assert rec.pmid == original.get("pmid") and rec.doi == original.get("doi")
        assert rec.pmcid == original.get("pmcid")
        assert rec.title and not TAG.search(rec.title)
        assert rec.pub_year == int(original["pubYear"])
        assert rec.pub_date == original["firstPublicationDate"]
        assert rec.index_date == dt.date.fromisoformat(original["firstIndexDate"])
        assert rec.journal
        assert rec.publication_types
        # no tags left ("p < .001" is text, not markup) and whitespace collapsed
        assert rec.abstract is None or not TAG.search(rec.abstract)
        assert rec.abstract is None or "  " not in rec.abstract
        assert rec.is_preprint == (original["source"] == "PPR")


# ------------------------------------------------------------------ core fields ---------


def by_id(name: str) -> dict[str, PublicationRecord]:
    return {r.source_id: r for r in page(name).records}


def test_core_record_fields() -> None:
    r = page("search_cancer_core.json").records[0]
    assert r.source_id == "MED:39709209" and r.pmid == "39709209"
    assert r.title == ("Abscopal response in a patient with fibrolamellar hepatocellular "
                       "carcinoma following radiotherapy.")
    assert r.doi == "10.1016/s0140-6736(24)02600-x"
    assert r.journal == "Lancet (London, England)"
    assert (r.pub_date, r.pub_year) == ("2025-12-01", 2025)
    assert (r.index_date, r.date_revised) == (dt.date(2024, 12, 22), dt.date(2024, 12, 21))
    assert r.authors == "Schoenfeld JD, Haas-Kogan DA, O'Neill AF"
    assert r.publication_types == ["Journal Article"]
    assert (r.abstract, r.mesh, r.keywords, r.accessions) == (None, [], [], [])
    assert not r.is_preprint and r.preprint_of is None


def test_core_mesh_keywords_and_html_abstract() -> None:
    records = by_id("search_cancer_core.json")
    r = records["MED:40511629"]
    assert r.abstract is not None
    assert r.abstract.startswith(
        "Background Paclitaxel is a potent agent against ovarian cancer. Hydrogen sulfide (H2S)")
    assert " Objectives We aimed" in r.abstract
    assert r.keywords == [
        "Apoptosis", "Paclitaxel", "Ovarian cancer", "Hydrogen sulfide", "Id8 Cells"]
    assert len(r.mesh) == 17
    assert r.mesh[0] == Mesh(kind="heading", mesh_id=None, term="Cell Line, Tumor")
    major = [m.term for m in r.mesh if m.major]
    assert "Ovarian Neoplasms" in major and "Animals" not in major
    flex = records["MED:40468710"]
    assert len(flex.mesh) == 18 and len(flex.keywords) == 6
    with_mesh = [rec for rec in records.values() if rec.mesh]
    assert len(with_mesh) == 13
    with_abstract = [rec for rec in records.values() if rec.abstract]
    assert len(with_abstract) == 21


def test_core_pub_types_mix_jats_and_nlm_values() -> None:
    r = by_id("search_cancer_core.json")["MED:39212676"]
    assert r.publication_types == ["Systematic Review", "review-article", "Journal Article"]
    assert r.pmcid == "PMC12166167"


def test_erratum_link_is_not_a_preprint_link() -> None:
    r = by_id("search_cancer_core.json")["MED:39709208"]
    assert r.preprint_of is None and not r.is_preprint


def test_lite_record_falls_back_to_flat_fields() -> None:
    r = page("search_cancer.json").records[0]
    assert (r.journal, r.publication_types) == ("Lancet", ["journal article"])
    assert r.date_revised is None and r.abstract is None
    multi = page("search_cancer.json").records
    assert any(rec.publication_types == ["review-article", "review", "journal article"]
               for rec in multi)


def test_preprint_record_and_end_of_results_echo() -> None:
    result = page("crafted_search_preprint_last_page.json")
    assert result.next_cursor is None  # nextCursorMark == the cursor that was sent
    (r,) = result.records
    assert (r.source_id, r.is_preprint, r.preprint_of) == ("PPR:PPR000001", True, "MED:40468710")
    assert r.pmid is None and r.publication_types == ["Preprint"]
    assert r.url == "https://europepmc.org/article/PPR/PPR000001"


def test_empty_result_list_ends_paging() -> None:
    raw = (b'{"version":"6.9","hitCount":25,"nextCursorMark":"AoIabc","request":'
           b'{"cursorMark":"AoIxyz"},"resultList":{"result":[]}}')
    assert parse_search_page(raw) == SearchPage(hit_count=25, next_cursor=None, records=[])


def test_missing_next_cursor_ends_paging() -> None:
    doc = json.loads(body("search_post_cancer.json"))
    del doc["nextCursorMark"]
    assert parse_search_page(json.dumps(doc).encode()).next_cursor is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"<html><head><title>503 Service Unavailable</title></head></html>", "not JSON"),
        (b"", "not JSON"),
        (b'{"version":"6.9","hitCount":5059039,"resultList":{"result":[{"id":"1"', "not JSON"),
        (b'{"version":"6.9","hitCount":3}', "no resultList"),
        (b'{"errCode":500,"errMsg":"Internal error"}', "Internal error"),
        (b'{"resultList":{"result":[]}}', "hitCount"),
        (b'{"hitCount":1,"resultList":{"result":[{"title":"no id"}]}}', "source/id"),
        (b'{"hitCount":1,"resultList":{"result":["MED:1"]}}', "not an object"),
        (b"[1, 2]", "not an object"),
    ],
)
def test_bad_bodies_raise_parse_error(raw: bytes, match: str) -> None:
    with pytest.raises(EuropePMCParseError, match=match):
        parse_search_page(raw)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<h4>Background</h4>Hydrogen sulfide (H<sub>2</sub>S) is <i>toxic</i>.",
         "Background Hydrogen sulfide (H2S) is toxic."),
        ("a &amp; b &lt; c", "a & b < c"),
        ("during &lt;i&gt;C. elegans&lt;/i&gt; vulval", "during C. elegans vulval"),
        ("  spaced\n\nout  ", "spaced out"),
        ("<p>One.</p><p>Two.</p>", "One. Two."),
        ("https://example.org/x.pdf", "https://example.org/x.pdf"),  # no bs4 locator warning
        ("", None),
        (None, None),
    ],
)
def test_clean_html(html: str | None, text: str | None) -> None:
    assert clean_html(html) == text


FIELDS = ("title", "abstractText", "journalInfo", "journalTitle", "pmid", "pmcid", "doi",
          "pubYear", "firstPublicationDate", "firstIndexDate", "dateOfRevision",
          "authorString", "pubTypeList", "meshHeadingList", "keywordList",
          "commentCorrectionList")


@pytest.mark.parametrize("field", FIELDS)
def test_a_field_of_the_wrong_type_reads_as_absent(field: str) -> None:
    """Derived from every real core result: one field replaced by a number (a numeric title, a
    numeric date), a list where a string belongs, an object, null or a boolean. The result still
    parses; every text field of the record is text or None."""
    from sources.europepmc import parse_result

    results = orjson.loads(body("search_cancer_core.json"))["resultList"]["result"]
    for result in results:
        for value in (20190514, 3.5, [result.get(field)], {"x": 1}, None, True):
            rec = parse_result({**result, field: value})
            assert rec.source_id == f"{result['source']}:{result['id']}"
            assert isinstance(rec.title, str)
            for name in ("pmid", "pmcid", "doi", "abstract", "journal", "pub_date", "authors",
                         "preprint_of"):
                assert isinstance(getattr(rec, name), str | None), (name, getattr(rec, name))
            assert rec.pub_year is None or type(rec.pub_year) is int
            assert all(isinstance(t, str) for t in rec.publication_types + rec.keywords)
            assert all(isinstance(m.term, str) for m in rec.mesh)
            if field == "title" and not isinstance(value, str):
                assert rec.title == ""


def test_an_id_of_the_wrong_type_is_a_parse_error_or_its_digits() -> None:
    from sources.europepmc import EuropePMC, parse_result

    result = orjson.loads(body("search_cancer_core.json"))["resultList"]["result"][0]
    source = EuropePMC(None)
    for bad in ([result["id"]], {"id": 1}, None, "", True):
        with pytest.raises(EuropePMCParseError, match="without source/id"):
            parse_result({**result, "id": bad})
        assert source.record_id({**result, "id": bad}) is None
    rec = parse_result({**result, "id": int(result["id"]), "pmid": int(result["pmid"])})
    assert rec.source_id == f"MED:{result['id']}" and rec.pmid == result["pmid"]
