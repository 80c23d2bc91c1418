"""sources.pubmed: request building and parsing of recorded E-utilities responses.

Fixtures live in tests/fixtures/pubmed (see its README): real recorded efetch/esearch bodies,
plus ``crafted_*`` files derived from them for shapes no recording covers.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
import xxhash
from lxml import etree

from db.records import DataBankAccession, Mesh
from sources import pubmed
from sources.pubmed import (
    ESearchResult,
    PubMedParseError,
    PubMedServerError,
    build_efetch_params,
    build_esearch_params,
    parse_efetch,
    parse_esearch_json,
    parse_esearch_xml,
)
from tracker.errors import FetchError, ParseError, TrackerError
from tracker.trial_ids import normalize_accession

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pubmed"
EFETCH_FILES = sorted(p.name for p in FIXTURES.glob("*efetch_*.xml") if "error" not in p.name)
ESEARCH_XML_FILES = sorted(p.name for p in FIXTURES.glob("*esearch_*.xml"))


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def records(name: str) -> dict[str, pubmed.PublicationRecord]:
    return {r.pmid: r for r in parse_efetch(body(name))}  # type: ignore[misc]


# ------------------------------------------------------------------ request building -------


def test_build_esearch_params_posts_a_date_window_to_the_history_server() -> None:
    params = build_esearch_params(
        "mesenchymal stem cells[tiab]",
        mindate=dt.date(2025, 1, 1),
        maxdate=dt.date(2025, 1, 31),
        tool="msc-tracker",
        email="ops@example.org",
    )
    assert params == {
        "db": "pubmed",
        "term": "mesenchymal stem cells[tiab]",
        "usehistory": "y",
        "retmode": "json",
        "datetype": "edat",
        "mindate": "2025/01/01",
        "maxdate": "2025/01/31",
        "retmax": "0",
        "tool": "msc-tracker",
        "email": "ops@example.org",
    }


def test_build_esearch_params_adds_api_key_and_datetype() -> None:
    params = build_esearch_params(
        "msc", mindate=dt.date(2024, 12, 30), maxdate=dt.date(2025, 1, 2), datetype="mdat",
        retmax=20, tool="t", email="e@x.org", api_key="K123",
    )
    assert (params["datetype"], params["retmax"], params["api_key"]) == ("mdat", "20", "K123")


@pytest.mark.parametrize(
    ("mindate", "maxdate", "retmax"),
    [(dt.date(2025, 2, 1), dt.date(2025, 1, 1), 0), (dt.date(2025, 1, 1), dt.date(2025, 1, 1), 10_001)],
)
def test_build_esearch_params_rejects_bad_windows(
    mindate: dt.date, maxdate: dt.date, retmax: int
) -> None:
    with pytest.raises(ValueError):
        build_esearch_params("msc", mindate=mindate, maxdate=maxdate, retmax=retmax, tool="t",
                             email="e")


def test_build_efetch_params_pages_the_history_server_as_xml() -> None:
    params = build_efetch_params("NCID_1_abc", "1", 500, 500, "msc-tracker", "ops@example.org")
    assert params == {
        "db": "pubmed",
        "WebEnv": "NCID_1_abc",
        "query_key": "1",
        "retstart": "500",
        "retmax": "500",
        "retmode": "xml",
        "tool": "msc-tracker",
        "email": "ops@example.org",
    }
    assert build_efetch_params("W", 2, 0, 10, "t", "e", api_key="K")["api_key"] == "K"


def test_build_efetch_id_params_lists_pmids_and_rejects_what_is_not_one() -> None:
    params = pubmed.build_efetch_id_params(["123", "456"], tool="t", email="e", api_key="K")
    assert params == {"db": "pubmed", "id": "123,456", "retmode": "xml", "tool": "t",
                      "email": "e", "api_key": "K"}
    with pytest.raises(ValueError, match="no PMIDs"):
        pubmed.build_efetch_id_params([], tool="t", email="e")
    with pytest.raises(ValueError, match="not PMIDs: sha:ab"):
        pubmed.build_efetch_id_params(["1", "sha:ab"], tool="t", email="e")
    with pytest.raises(ValueError, match="at most 10000"):
        pubmed.build_efetch_id_params(["1"] * 10_001, tool="t", email="e")
    with pytest.raises(ValueError):
        build_efetch_params("W", 1, 0, 0, "t", "e")
    with pytest.raises(ValueError):
        build_efetch_params("W", 1, -1, 10, "t", "e")


# ------------------------------------------------------------------ esearch --------------


@pytest.mark.parametrize(
    ("name", "count", "webenv", "query_key", "n_ids", "first_id"),
    [
        ("crafted_esearch_phrase_not_found.xml", None, None, None, 0, None),
        ("esearch_pubmed_author_webenv.xml", 3,
         "NCID_1_124189605_130.14.22.215_9001_1390058153_2095662266", "1", 3, "19209718"),
        ("esearch_pubmed_biopython_esearch1.xml", 63, None, None, 20, "41282813"),
        ("esearch_pubmed_biopython_esearch3.xml", 2651, None, None, 6, "11121077"),
    ],
)
def test_parse_esearch_xml_every_fixture(
    name: str, count: int | None, webenv: str | None, query_key: str | None, n_ids: int,
    first_id: str | None,
) -> None:
    assert name in ESEARCH_XML_FILES
    if count is None:  # the crafted ErrorList/PhraseNotFound body
        with pytest.raises(PubMedServerError, match="PhraseNotFound: xyzzyqmsc"):
            parse_esearch_xml(body(name))
        return
    result = parse_esearch_xml(body(name))
    assert isinstance(result, ESearchResult)
    assert (result.count, result.webenv, result.query_key) == (count, webenv, query_key)
    assert len(result.ids) == n_ids and result.ids[0] == first_id
    assert result.errors == []


def test_every_esearch_xml_fixture_is_covered() -> None:
    assert len(ESEARCH_XML_FILES) == 4


def test_parse_esearch_json_reads_string_counts() -> None:
    result = parse_esearch_json(body("crafted_esearch_author_webenv.json"))
    assert result == ESearchResult(
        count=3,
        webenv="NCID_1_124189605_130.14.22.215_9001_1390058153_2095662266",
        query_key="1",
        ids=["19209718", "11108480", "6067859"],
        errors=[],
    )
    # same values as the recorded XML form
    xml = parse_esearch_xml(body("esearch_pubmed_author_webenv.xml"))
    assert (xml.count, xml.webenv, xml.query_key, xml.ids) == (
        result.count, result.webenv, result.query_key, result.ids)


def test_parse_esearch_json_error_key_raises_server_error() -> None:
    with pytest.raises(PubMedServerError, match="Invalid query") as info:
        parse_esearch_json(body("crafted_esearch_error.json"))
    assert isinstance(info.value, FetchError) and isinstance(info.value, TrackerError)


def test_parse_esearch_json_errorlist_raises() -> None:
    with pytest.raises(PubMedServerError, match="phrasesnotfound: xyzzyqmsc"):
        parse_esearch_json(body("crafted_esearch_phrase_not_found.json"))


def test_parse_esearch_json_empty_errorlist_is_not_an_error() -> None:
    raw = (b'{"esearchresult":{"count":"0","retmax":"0","retstart":"0","idlist":[],'
           b'"errorlist":{"phrasesnotfound":[],"fieldsnotfound":[]},'
           b'"warninglist":{"outputmessages":["No items found."]}}}')
    result = parse_esearch_json(raw)
    assert (result.count, result.ids, result.errors) == (0, [], ["outputmessages: No items found."])


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", PubMedParseError),
        (b'{"esearchresult": {"count": "1", "idlist": ["1"', PubMedParseError),
        (b'{"header": {}}', PubMedParseError),
        (b'{"esearchresult": {"idlist": []}}', PubMedParseError),
        (b'{"esearchresult": {"count": "many"}}', PubMedParseError),
        (b'{"error":"API rate limit exceeded","api-key":"1.2.3.4","count":"4","limit":"3"}',
         PubMedServerError),
    ],
)
def test_parse_esearch_json_rejects_bad_bodies(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_esearch_json(raw)


def test_parse_esearch_xml_error_element_and_wrong_root() -> None:
    with pytest.raises(PubMedServerError, match="Invalid query"):
        parse_esearch_xml(b"<eSearchResult><ERROR>Invalid query</ERROR></eSearchResult>")
    with pytest.raises(PubMedParseError, match="PubmedArticleSet"):
        parse_esearch_xml(body("efetch_pubmed_20412080.xml"))


# ------------------------------------------------------------------ efetch: every file -----

# pmid -> (title start, doi, pmcid, pub_date, pub_year, mesh count, date_revised, index_date)
EXPECTED = {
    "20412080": ("The human phenotype ontology.", "10.1111/j.1399-0004.2010.01436.x", None,
                 "2010-06", 2010, 7, None, dt.date(2010, 4, 24)),
    "22351513": ("Variation in oil content and fatty acid composition", "10.1002/jsfa.5627",
                 None, "2012-08-30", 2012, 10, dt.date(2013, 11, 21), dt.date(2012, 2, 22)),
    "23121403": ("Low-dose aspirin for preventing recurrent venous thromboembolism.",
                 "10.1056/NEJMoa1210384", None, "2012-11-22", 2012, 13, dt.date(2014, 11, 20),
                 dt.date(2012, 11, 6)),
    "12091962": ("The treatment of AIDS behind the walls", None, None, "1990-03", 1990, 19,
                 dt.date(2007, 11, 15), dt.date(1990, 4, 1)),
    "9997": ("Magnetic studies of Chromatium flavocytochrome C552.",
             "10.1016/0005-2795(76)90109-4", None, "1976-09-28", 1976, 13, dt.date(2019, 6, 9),
             dt.date(1976, 9, 28)),
    "11748933": ("Is cryopreservation a homogeneous process?", "10.1006/cryo.2001.2328", None,
                 "2001-06", 2001, 11, dt.date(2006, 11, 15), dt.date(2001, 12, 26)),
    "11700088": ("Proton MRI of (13)C distribution", "10.1006/jmre.2001.2429", None, "2001-11",
                 2001, 0, dt.date(2003, 10, 31), dt.date(2001, 11, 9)),
    "28775130": ("Occupational pesticide exposure and subclinical hypothyroidism",
                 "10.1136/oemed-2017-104431", "PMC5771820", "2018-02", 2018, 0,
                 dt.date(2018, 4, 25), dt.date(2017, 8, 5)),
    "29963580": ("Development of a pulmonary imaging biomarker pipeline",
                 "10.1117/1.JMI.5.2.026002", "PMC6022861", "2018-04", 2018, 0,
                 dt.date(2018, 11, 14), dt.date(2018, 7, 3)),
}

FILE_PMIDS = {
    "efetch_pubmed_20412080.xml": ["20412080"],
    "efetch_pubmed_22351513.xml": ["22351513"],
    "efetch_pubmed_23121403.xml": ["23121403"],
    "efetch_pubmed_biopython_pubmed1.xml": ["12091962", "9997"],
    "efetch_pubmed_biopython_pubmed2.xml": ["11748933", "11700088"],
    "efetch_pubmed_biopython_pubmed5.xml": ["28775130"],
    "efetch_pubmed_biopython_pubmed7.xml": ["29963580"],
    "crafted_efetch_book_article.xml": ["22351513"],
    "crafted_efetch_delete_citation.xml": ["12091962", "9997"],
    "crafted_efetch_medline_date_databank.xml": ["20412080"],
}


@pytest.mark.parametrize("name", EFETCH_FILES)
def test_split_efetch_raw_is_the_records_own_bytes(name: str) -> None:
    """Each record's raw is its exact slice of the response, and parses to the same record."""
    data = body(name)
    for item in pubmed.split_efetch(data):
        rec = pubmed.parse_item(item)
        assert rec.raw == item.raw and rec.content_hash == item.hash and rec.pmid == item.pmid
        if rec.deleted:  # a deleted PMID: the PMID element itself
            assert item.raw == f'<PMID Version="1">{rec.pmid}</PMID>'.encode()
            continue
        assert item.raw in data and item.raw.startswith(b"<Pubmed")
        assert pubmed.parse_item(pubmed.item_from_bytes(item.raw)) == rec


@pytest.mark.parametrize("name", EFETCH_FILES)
def test_record_at_a_time_and_whole_document_parsing_agree(name: str) -> None:
    """The fast path (each record parsed from its own bytes) gives exactly the records the
    general path (the body parsed as one document) gives."""
    data = body(name)
    fast = pubmed._split_by_record(data)
    assert fast is not None, "a plain efetch body takes the record-at-a-time path"
    whole = pubmed._split_whole(data)
    assert [i.record for i in fast if not i.raw.startswith(b"<PMID")] == [None] * len(
        [i for i in fast if not i.raw.startswith(b"<PMID")]), "articles wait to be parsed"
    assert [(i.raw, i.pmid, pubmed.parse_item(i), i.hash) for i in fast] == [
        (i.raw, i.pmid, pubmed.parse_item(i), i.hash) for i in whole]


def _page_of_all_recorded_articles() -> tuple[bytes, list[bytes]]:
    """One efetch page holding every recorded article (built from the real bodies)."""
    articles = [a for n in EFETCH_FILES if n.startswith("efetch_")
                for a in re.findall(rb"<PubmedArticle>.*?</PubmedArticle>", body(n), re.DOTALL)]
    head = body(EFETCH_FILES[-1]).split(b"<PubmedArticleSet>", 1)[0]
    return head + b"<PubmedArticleSet>" + b"\n".join(articles) + b"</PubmedArticleSet>\n", \
        articles


def test_split_efetch_slices_each_record_of_a_multi_record_page() -> None:
    """A page of several records gives each record exactly its own bytes, in order."""
    page, articles = _page_of_all_recorded_articles()
    items = pubmed.split_efetch(page)
    assert len(items) == len(articles) > 3
    for item, article in zip(items, articles, strict=True):
        assert item.raw == article
        assert pubmed.parse_item(item).pmid == item.pmid


@pytest.mark.parametrize("change", [
    pytest.param((b"<PubmedArticle>", b"<!-- <PubmedArticle> --><PubmedArticle>"), id="comment"),
    pytest.param((b'<?xml version="1.0" ?>', b'<?xml version="1.0" encoding="ISO-8859-1" ?>'),
                 id="latin-1"),
    pytest.param((b"</PubmedArticle>\n<PubmedArticle>", b"</PubmedArticle>\n<X/><PubmedArticle>"),
                 id="other-element"),
])
def test_split_efetch_takes_the_general_path_for_anything_unusual(change) -> None:
    """Derived from the real bodies: a comment with a stray start tag, a declared non-UTF-8
    encoding, an unknown element between records. The record-at-a-time path declines; the
    whole-document path still gives every record, each raw a well-formed element of its own."""
    page, _ = _page_of_all_recorded_articles()
    changed = page.replace(change[0], change[1], 1)
    assert changed != page
    assert pubmed._split_by_record(changed) is None
    items = pubmed.split_efetch(changed)
    assert [i.pmid for i in items] == [i.pmid for i in pubmed.split_efetch(page)]
    for item in items:
        assert etree.fromstring(item.raw).tag == "PubmedArticle"
        assert pubmed.parse_item(item).pmid == item.pmid


def test_a_record_that_is_not_well_formed_fails_alone() -> None:
    """Derived from a real body: one record's end tag damaged. That record's parse raises
    PubMedParseError (the pipeline quarantines it); every other record of the page parses."""
    page, articles = _page_of_all_recorded_articles()
    damaged = page.replace(b"</ArticleTitle>", b"</ArticleTitl>", 1)
    items = pubmed.split_efetch(damaged)
    assert len(items) == len(articles)
    with pytest.raises(PubMedParseError, match="record body is not well-formed XML"):
        pubmed.parse_item(items[0])
    assert items[0].pmid == pubmed.split_efetch(page)[0].pmid  # still known, for quarantine
    assert all(pubmed.parse_item(i).pmid == i.pmid for i in items[1:])


def test_a_body_cut_short_fails_the_page() -> None:
    """Derived from a real body: cut in the middle of a record (a truncated download) - no
    closing tag of the set, so the body as a whole is reported malformed."""
    page, _ = _page_of_all_recorded_articles()
    with pytest.raises(PubMedParseError, match="not well-formed"):
        pubmed.split_efetch(page[: len(page) // 2])


def test_every_efetch_fixture_is_listed() -> None:
    assert EFETCH_FILES == sorted(FILE_PMIDS)


@pytest.mark.parametrize("name", EFETCH_FILES)
def test_parse_efetch_every_fixture_common_contract(name: str) -> None:
    recs = parse_efetch(body(name))
    assert [r.pmid for r in recs] == FILE_PMIDS[name]
    for r in recs:
        assert r.source == "pubmed" and r.source_id == r.pmid
        assert r.url == f"https://pubmed.ncbi.nlm.nih.gov/{r.pmid}/"
        assert r.content_hash == xxhash.xxh3_128_hexdigest(r.raw)
        element = etree.fromstring(r.raw)  # raw is one well-formed element, not the whole set
        assert element.tag in {"PubmedArticle", "PubmedBookArticle", "PMID"}
        assert b"PubmedArticleSet" not in r.raw
        if r.deleted:
            assert r.title == "" and element.tag == "PMID" and element.text == r.pmid
        else:
            assert r.title and r.title == " ".join(r.title.split())
            assert r.pub_year is not None and r.pub_date is not None
            assert r.pub_year == int(r.pub_date[:4])
            assert all(isinstance(m, Mesh) and m.kind == "heading" for m in r.mesh)
    # parsing is deterministic: same bytes, same hashes
    assert [r.content_hash for r in parse_efetch(body(name))] == [r.content_hash for r in recs]


@pytest.mark.parametrize(
    "name", [n for n in EFETCH_FILES if not n.startswith("crafted_")]
)
def test_parse_efetch_real_fixture_fields(name: str) -> None:
    for r in parse_efetch(body(name)):
        title, doi, pmcid, pub_date, year, n_mesh, revised, entrez = EXPECTED[r.pmid]
        assert r.title.startswith(title)
        assert (r.doi, r.pmcid, r.pub_date, r.pub_year) == (doi, pmcid, pub_date, year)
        assert len(r.mesh) == n_mesh
        assert (r.date_revised, r.index_date) == (revised, entrez)
        assert not r.deleted and not r.is_preprint
        assert r.accessions == []


def test_mesh_headings_carry_ui_and_major_flag() -> None:
    r = records("efetch_pubmed_biopython_pubmed1.xml")["12091962"]
    assert r.mesh[0] == Mesh(kind="heading", mesh_id="D015492", term="AIDS Serodiagnosis",
                             major=False)
    assert r.mesh[1] == Mesh(kind="heading", mesh_id="D000163",
                             term="Acquired Immunodeficiency Syndrome", major=True)
    assert r.mesh[-1].term == "United States" and r.mesh[-1].mesh_id == "D014481"
    # a starred qualifier makes the heading a major topic ("Acacia/chemistry*")
    acacia = records("efetch_pubmed_22351513.xml")["22351513"].mesh[0]
    assert (acacia.term, acacia.mesh_id, acacia.major) == ("Acacia", "D000045", True)
    assert sum(m.major for m in records("efetch_pubmed_23121403.xml")["23121403"].mesh) == 3


def test_structured_abstract_keeps_labels_in_order() -> None:
    r = records("efetch_pubmed_23121403.xml")["23121403"]
    assert r.abstract is not None
    assert r.abstract.startswith("BACKGROUND: Patients who have had a first episode of unprovoked")
    positions = [r.abstract.index(f"{label}: ") for label in
                 ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS")]
    assert positions == sorted(positions)
    acacia = records("efetch_pubmed_22351513.xml")["22351513"].abstract
    assert acacia is not None and " RESULTS: Oil content varied between 40 and 102 g kg⁻¹." in acacia
    assert " CONCLUSION: The present study revealed" in acacia
    assert "Copyright" not in acacia  # CopyrightInformation is not abstract text
    five = records("efetch_pubmed_biopython_pubmed5.xml")["28775130"].abstract
    assert five is not None and five.startswith("OBJECTIVES: Animal studies suggest")


def test_unstructured_abstract_has_no_label_and_entities_are_decoded() -> None:
    r = records("efetch_pubmed_biopython_pubmed2.xml")["11748933"]
    assert r.abstract is not None and r.abstract.startswith("This study subdivides")
    assert "(P < 0.001)" in r.abstract and "&lt;" not in r.abstract


def test_season_pub_date_and_missing_abstract() -> None:
    r = records("efetch_pubmed_biopython_pubmed1.xml")["12091962"]
    assert (r.pub_date, r.pub_year) == ("1990-03", 1990)  # <Year>1990</Year><Season>Spring</Season>
    assert r.abstract is None
    assert r.keywords == ["Health Care and Public Health", "Legal Approach"]
    assert r.journal == "Social justice (San Francisco, Calif.)"
    assert r.authors == "Olivero JM"
    assert r.publication_types == ["Journal Article", "Review"]


def test_mathml_in_abstract_is_flattened_to_text() -> None:
    r = records("efetch_pubmed_biopython_pubmed7.xml")["29963580"]
    assert r.abstract is not None
    assert "included: (1) inhaled He 3 / Xe 129 MRI ventilation and apparent diffusion" in r.abstract
    assert "ultrashort echo-time H 1 MRI proton density" in r.abstract
    assert "mml" not in r.abstract and "<" not in r.abstract and "\n" not in r.abstract
    assert r.abstract.endswith("for point-of-care and high-throughput research.")


def test_doi_and_pmcid_come_from_the_article_not_its_references() -> None:
    # pubmed7 has a ReferenceList whose nested ArticleIdLists hold 50 other papers' ids
    r = records("efetch_pubmed_biopython_pubmed7.xml")["29963580"]
    assert (r.doi, r.pmcid) == ("10.1117/1.JMI.5.2.026002", "PMC6022861")
    assert r.keywords[:2] == ["asthma", "chronic obstructive lung disease"]


def test_authors_include_collective_names_and_skip_nothing_valid() -> None:
    aspire = records("efetch_pubmed_23121403.xml")["23121403"]
    assert aspire.authors is not None
    assert aspire.authors.startswith("Brighton TA, Eikelboom JW, Mann K")
    assert aspire.authors.endswith("Simes J, ASPIRE Investigators")
    assert aspire.publication_types == [
        "Journal Article", "Multicenter Study", "Randomized Controlled Trial",
        "Research Support, Non-U.S. Gov't",
    ]
    acacia = records("efetch_pubmed_22351513.xml")["22351513"]
    assert acacia.authors == "Khan R, Srivastava R, Khan MA, Alam P, Abdin MZ, Mahmooduzzafar"
    assert acacia.journal == "Journal of the science of food and agriculture"


def test_raw_is_the_article_alone_and_hashes_differ_per_article() -> None:
    a, b = parse_efetch(body("efetch_pubmed_biopython_pubmed1.xml"))
    assert a.raw.startswith(b"<PubmedArticle>") and a.raw.endswith(b"</PubmedArticle>")
    assert b"9997" not in a.raw.split(b"<PubMedPubDate")[0]
    assert a.content_hash != b.content_hash


# ------------------------------------------------------------------ efetch: crafted -------


def test_delete_citation_becomes_a_deleted_record() -> None:
    recs = parse_efetch(body("crafted_efetch_delete_citation.xml"))
    deleted, kept = recs
    assert (deleted.pmid, deleted.deleted, deleted.title) == ("12091962", True, "")
    assert deleted.raw == b'<PMID Version="1">12091962</PMID>'
    assert deleted.url == "https://pubmed.ncbi.nlm.nih.gov/12091962/"
    assert (kept.pmid, kept.deleted) == ("9997", False)


def test_book_article_becomes_a_record() -> None:
    (r,) = parse_efetch(body("crafted_efetch_book_article.xml"))
    assert r.pmid == "22351513" and not r.deleted
    assert r.title == ("Variation in oil content and fatty acid composition of the seed oil of "
                       "Acacia species collected from the northwest zone of India.")
    assert r.journal == "Journal of the science of food and agriculture"  # the chapter's book
    assert r.pub_date == "2012-06"  # <Season>Summer</Season>
    assert r.doi == "10.1002/jsfa.5627"  # from PubmedBookData/ArticleIdList
    assert r.publication_types == ["Review"] and r.keywords == ["Acacia"]
    assert r.abstract is not None and r.abstract.startswith("BACKGROUND: The oil content")
    assert r.authors is not None and r.authors.startswith("Khan R, Srivastava R")
    assert (r.date_revised, r.index_date) == (dt.date(2013, 11, 21), dt.date(2012, 2, 22))
    assert r.raw.startswith(b"<PubmedBookArticle>")


def test_whole_book_uses_book_title_and_editors() -> None:
    xml = (b"<PubmedArticleSet><PubmedBookArticle><BookDocument><PMID>20301295</PMID>"
           b"<ArticleIdList><ArticleId IdType='bookaccession'>NBK1116</ArticleId></ArticleIdList>"
           b"<Book><Publisher><PublisherName>UW</PublisherName></Publisher>"
           b"<BookTitle>GeneReviews<sup>\xc2\xae</sup></BookTitle>"
           b"<PubDate><Year>1993</Year></PubDate><AuthorList Type='editors'><Author>"
           b"<LastName>Adam</LastName><Initials>MP</Initials></Author></AuthorList></Book>"
           b"</BookDocument></PubmedBookArticle></PubmedArticleSet>")
    (r,) = parse_efetch(xml)
    assert (r.title, r.journal, r.pub_date, r.authors, r.doi) == (
        "GeneReviews®", None, "1993", "Adam MP", None)


def test_medline_date_databank_elocation_doi_and_preprint() -> None:
    (r,) = parse_efetch(body("crafted_efetch_medline_date_databank.xml"))
    assert (r.pub_date, r.pub_year) == ("2010-11", 2010)  # <MedlineDate>2010 Nov-Dec</MedlineDate>
    # ArticleId[@IdType=doi] was removed from this copy, so the ELocationID is the fallback
    assert b'<ArticleId IdType="doi">' not in body("crafted_efetch_medline_date_databank.xml")
    assert r.doi == "10.1111/j.1399-0004.2010.01436.x"
    assert r.accessions == [
        DataBankAccession(bank="ClinicalTrials.gov", accession="NCT01234567"),
        DataBankAccession(bank="GENBANK", accession="AB000001"),
        DataBankAccession(bank="GENBANK", accession="AB000002"),
    ]
    trial_ids = [normalize_accession(a.bank, a.accession) for a in r.accessions]
    assert [t.registry_id if t else None for t in trial_ids] == ["NCT01234567", None, None]
    assert r.is_preprint and r.publication_types[-1] == "Preprint"


def test_invalid_elocation_doi_is_ignored() -> None:
    xml = (b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article>"
           b"<Journal><JournalIssue><PubDate><Year>2020</Year></PubDate></JournalIssue></Journal>"
           b"<ArticleTitle>T</ArticleTitle>"
           b"<ELocationID EIdType='doi' ValidYN='N'>10.1/bad</ELocationID>"
           b"<ELocationID EIdType='pii' ValidYN='Y'>S0001</ELocationID>"
           b"</Article></MedlineCitation></PubmedArticle></PubmedArticleSet>")
    (r,) = parse_efetch(xml)
    assert r.doi is None and r.pub_date == "2020"


@pytest.mark.parametrize(
    ("pub_date_xml", "expected"),
    [
        ("<Year>2019</Year><Month>Nov</Month><Day>5</Day>", "2019-11-05"),
        ("<Year>2019</Year><Month>11</Month><Day>05</Day>", "2019-11-05"),
        ("<Year>2019</Year><Month>sep</Month>", "2019-09"),
        ("<Year>2019</Year><Month>Feb</Month><Day>30</Day>", "2019-02"),
        ("<Year>2019</Year><Season>Winter</Season>", "2019-01"),
        ("<Year>2019</Year><Season>Fall</Season>", "2019-09"),
        ("<Year>2019</Year>", "2019"),
        ("<MedlineDate>2019 Nov-Dec</MedlineDate>", "2019-11"),
        ("<MedlineDate>1998 Dec-1999 Jan</MedlineDate>", "1998-12"),
        ("<MedlineDate>2000 Spring</MedlineDate>", "2000-03"),
        ("<MedlineDate>2010 Jan 5-12</MedlineDate>", "2010-01-05"),
        ("<MedlineDate>2001-2002</MedlineDate>", "2001"),
        ("<MedlineDate>Summer 2001</MedlineDate>", None),
    ],
)
def test_pub_date_forms(pub_date_xml: str, expected: str | None) -> None:
    assert pubmed._pub_date(etree.fromstring(f"<PubDate>{pub_date_xml}</PubDate>")) == expected


# ------------------------------------------------------------------ efetch: failures ------


def test_error_element_in_http_200_body_raises_server_error() -> None:
    with pytest.raises(PubMedServerError, match="Cannot process ID list") as info:
        parse_efetch(body("crafted_efetch_error.xml"))
    assert isinstance(info.value, FetchError)
    inline = (b"<PubmedArticleSet><ERROR>Cannot retrieve history data</ERROR>"
              b"</PubmedArticleSet>")
    with pytest.raises(PubMedServerError, match="history"):
        parse_efetch(inline)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><hr></body></html>",
        b"<html><body><h1>Service unavailable</h1></body></html>",
        b'{"error":"API rate limit exceeded"}',
    ],
)
def test_non_article_set_bodies_raise_parse_error(raw: bytes) -> None:
    with pytest.raises(PubMedParseError) as info:
        parse_efetch(raw)
    assert isinstance(info.value, ParseError)


def test_truncated_download_raises_parse_error() -> None:
    full = body("efetch_pubmed_23121403.xml")
    with pytest.raises(PubMedParseError, match="not well-formed"):
        parse_efetch(full[: len(full) // 2])


def test_esearch_body_is_not_an_efetch_body() -> None:
    with pytest.raises(PubMedParseError, match="<eSearchResult>"):
        parse_efetch(body("esearch_pubmed_biopython_esearch1.xml"))


def test_article_without_pmid_raises() -> None:
    with pytest.raises(PubMedParseError, match="without PMID"):
        parse_efetch(b"<PubmedArticleSet><PubmedArticle><MedlineCitation><Article/>"
                     b"</MedlineCitation></PubmedArticle></PubmedArticleSet>")


# ------------------------------------------------------------------ efetch: safety --------


def _with_internal_subset(name: str, subset: str) -> bytes:
    """A real fixture whose DOCTYPE gains an internal subset (the external DTD id stays)."""
    raw = body(name)
    head, rest = raw.split(b".dtd\">", 1)
    return head + b'.dtd" [' + subset.encode() + b"]>" + rest


def test_xxe_external_entity_is_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-XXE-CONTENT")
    raw = _with_internal_subset(
        "efetch_pubmed_22351513.xml", f'<!ENTITY xxe SYSTEM "file://{secret}">'
    )
    raw = raw.replace(b"<ArticleTitle>Variation", b"<ArticleTitle>&xxe; Variation", 1)
    raw = raw.replace(b'NlmCategory="BACKGROUND">', b'NlmCategory="BACKGROUND">&xxe;', 1)
    assert b"&xxe;" in raw and b"file://" in raw
    (r,) = parse_efetch(raw)
    fields = [r.title, r.abstract, r.journal, r.authors, r.raw.decode()]
    assert not any("TOP-SECRET" in (f or "") for f in fields)
    assert r.title.endswith("northwest zone of India.")


def test_external_dtd_is_not_loaded(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY injected "DTD-WAS-LOADED">')
    raw = body("efetch_pubmed_20412080.xml").replace(
        b"http://www.ncbi.nlm.nih.gov/corehtml/query/DTD/pubmed_130101.dtd",
        f"file://{dtd}".encode(),
    ).replace(b"<ArticleTitle>The human", b"<ArticleTitle>&injected; The human", 1)
    (r,) = parse_efetch(raw)
    assert "DTD-WAS-LOADED" not in r.title and r.title.endswith("The human phenotype ontology.")


def test_entity_expansion_bomb_is_not_expanded() -> None:
    lol = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    lol += [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    raw = _with_internal_subset("efetch_pubmed_20412080.xml", "".join(lol))
    raw = raw.replace(b"<ArticleTitle>The human", b"<ArticleTitle>&lol9; The human", 1)
    start = time.process_time()  # CPU time: a busy machine's waits do not count
    try:
        (r,) = parse_efetch(raw)
    except PubMedParseError as exc:  # libxml2 >= 2.13 refuses the amplification outright
        assert "amplification" in str(exc)
    else:  # older libxml2: kept as an unexpanded reference
        assert len(r.title) < 100 and len(r.raw) < len(raw)
    assert time.process_time() - start < 1.0


def test_a_record_with_an_undeclared_entity_reads_again_from_its_stored_bytes() -> None:
    """Derived from a real body: `` &foo;`` (an entity no DTD declares) at the end of the
    ArticleTitle. Within its page (whose DOCTYPE names an external DTD, never loaded) the record
    parses with the reference kept as text; its own bytes, as stored, parse to the same record,
    so ``tracker classify``, the history and the quarantine can read it again."""
    import dataclasses

    from sources import parse_raw

    raw = body("efetch_pubmed_20412080.xml").replace(
        b"</ArticleTitle>", b" &foo;</ArticleTitle>", 1)
    (item,) = pubmed.split_efetch(raw)
    rec = pubmed.parse_item(item)
    assert rec.title == "The human phenotype ontology. &foo;"
    assert b" &foo;</ArticleTitle>" in rec.raw and rec.raw.startswith(b"<PubmedArticle>")
    assert dataclasses.asdict(parse_raw("pubmed", rec.raw)) == dataclasses.asdict(rec)
    assert pubmed.parse_item(pubmed.item_from_bytes(rec.raw)).title == rec.title
    # Still one parser, with its rules: a record that is broken besides stays broken.
    with pytest.raises(PubMedParseError, match="not well-formed"):
        parse_raw("pubmed", rec.raw.replace(b"</ArticleTitle>", b"</ArticleTitl>", 1))


def test_a_stored_record_with_an_entity_declared_in_its_page_is_not_expanded(
        tmp_path: Path) -> None:
    """Derived from a real body: the page declares ``xxe`` as a local file (internal subset).
    The record's stored bytes keep ``&xxe;``; read again alone it stays an unexpanded reference
    (the internal subset stayed with the page; nothing is read from disk or network)."""
    from sources import parse_raw

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-XXE-CONTENT")
    raw = _with_internal_subset(
        "efetch_pubmed_22351513.xml", f'<!ENTITY xxe SYSTEM "file://{secret}">')
    raw = raw.replace(b"<ArticleTitle>Variation", b"<ArticleTitle>&xxe; Variation", 1)
    (r,) = parse_efetch(raw)
    again = parse_raw("pubmed", r.raw)
    assert "TOP-SECRET" not in again.title and again.title.endswith("northwest zone of India.")
