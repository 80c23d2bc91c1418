"""The Atom feed (tracker/feed.py) built from digest data made of real recorded records.

Studies are the real ClinicalTrials.gov v2 records in tests/fixtures/ctgov (parsed by the
tracker's own parser: ids, titles, URLs, first-posted and last-update dates come from them);
papers are the real PubMed efetch records in tests/fixtures/pubmed. Whatever is crafted on
top (a change's old value, a hostile title, a label line) says so where it is made.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path
from typing import Any

import feedparser
import pytest
from conftest import FIXTURES, ctgov_studies
from lxml import etree

from sources.clinicaltrials_gov import parse_study
from sources.pubmed import parse_efetch
from tracker.feed import build_feed, clean_text, entry_id, validate_atom
from tracker.words import phase_words, status_words

ATOM = "{http://www.w3.org/2005/Atom}"
GENERATED_AT = "2026-12-01T08:00:00Z"

# Hostile text, crafted from the real title of NCT04523987 ("A Pilot Study of Ciprofloxacin
# Plus Gemcitabine ..."): an HTML script tag, an OSC 8 terminal hyperlink (ESC ] 8 ;; url
# BEL), a bare BEL, an ampersand and a lone surrogate are inserted around it.
HOSTILE_PREFIX = "<script>alert(1)</script> \x1b]8;;http://x\x07"
HOSTILE_SUFFIX = " \x07& R&D \ud800"


def _study_item(rec: Any, *, why: str, date: dt.date | None, key: str) -> dict[str, Any]:
    snippet = (rec.brief_summary or "")[:240]
    return {
        "kind": "study", "id": rec.registry_id, "url": rec.url, "title": rec.title,
        "snippet": snippet, "labels": "", "phase_label": phase_words(rec.phase),
        "status_label": status_words(rec.status),
        "date": date.isoformat() if date else None, "why": why, "entry_key": key,
    }


def _paper_item(rec: Any, *, why: str, key_suffix: str = "new") -> dict[str, Any]:
    ident = f"PMID:{rec.pmid}"
    return {
        "kind": "paper", "id": ident, "url": rec.url, "title": rec.title,
        "snippet": (rec.abstract or "")[:240], "labels": "", "phase_label": "",
        "status_label": "", "date": rec.index_date.isoformat() if rec.index_date else None,
        "why": why, "entry_key": f"paper:{ident}:{key_suffix}",
    }


def _studies() -> dict[str, Any]:
    return {s.registry_id: s for s in (parse_study(raw) for raw in ctgov_studies())}


def _papers() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted((FIXTURES / "pubmed").glob("efetch_pubmed_*.xml")):
        for rec in parse_efetch(path.read_bytes()):
            out[rec.pmid] = rec
    return out


def _new_trial(rec: Any) -> dict[str, Any]:
    first = rec.first_posted
    return _study_item(rec, why=f"New trial, first posted {first.isoformat()}", date=first,
                       key=f"study:{rec.registry_id}:new")


def digest_data() -> dict[str, Any]:
    """A digest dict of the shape tracker/digest.py builds, from the real records."""
    studies, papers = _studies(), _papers()
    s = studies
    oa_item = _new_trial(s["NCT06388018"])
    # Crafted: the classifier finds no MSC labels in these (non-MSC) records; this label line
    # is added to exercise the categories.
    oa_item["labels"] = "umbilical cord, allogeneic"
    # Crafted change: the record's real current status (ACTIVE_NOT_RECRUITING) and real last
    # update date (2023-06-15); the old value RECRUITING is invented (one record has no past).
    ch = s["NCT02513394"]
    change = _study_item(
        ch, why=f"Status changed: Recruiting \u2192 {status_words(ch.status)} "
                f"(registry update {ch.last_update_posted.isoformat()})",
        date=ch.last_update_posted,
        key=f"change:{ch.registry_id}:status:{ch.last_update_posted.isoformat()}:"
            f"RECRUITING>{ch.status}")
    change.update(change_kind="status", old="RECRUITING", new=ch.status)
    results = _paper_item(papers["23121403"], why="Results paper of a registered trial")
    results["date"] = None  # crafted: no date, so the entry falls back to generated_at
    return {
        "title": "MSC therapy: latest advancements",
        "period": {"since": "2026-11-24", "until": "2026-12-01", "label": "since 2026-11-24"},
        "generated_at": GENERATED_AT,
        "new_trials": [
            {"group": "osteoarthritis", "group_label": "Osteoarthritis", "phase": "PHASE2",
             "phase_label": "Phase 2", "items": [oa_item, _new_trial(s["NCT03064438"])]},
            {"group": "other", "group_label": "Other conditions", "phase": "PHASE3",
             "phase_label": "Phase 3",
             # NCT06388018 again (a study in two groups): one entry only
             "items": [_new_trial(s["NCT02552212"]), _new_trial(s["NCT06388018"])]},
        ],
        "changes": [change],
        "results_papers": [results],
        "papers": [
            {"group": "other", "group_label": "Other conditions",
             "items": [_paper_item(papers["29963580"], why="New paper, indexed 2018-07-03"),
                       _paper_item(papers["28775130"], why="New paper, indexed 2017-08-05")]},
        ],
        "unreported": [_study_item(s["NCT00763412"], why="Completed, no results posted",
                                   date=s["NCT00763412"].last_update_posted,
                                   key="unreported:NCT00763412")],
        "charts": {"ignored": True},
    }


EXPECTED_KEYS = [
    "study:NCT06388018:new", "study:NCT03064438:new", "study:NCT02552212:new",
    "change:NCT02513394:status:2023-06-15:RECRUITING>ACTIVE_NOT_RECRUITING",
    "paper:PMID:23121403:new", "paper:PMID:29963580:new", "paper:PMID:28775130:new",
]


def _tree(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True,
                                                 load_dtd=False))


def _edit(xml: bytes, fn: Any) -> bytes:
    root = _tree(xml)
    fn(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return digest_data()


@pytest.fixture(scope="module")
def xml(data: dict[str, Any]) -> bytes:
    return build_feed(data, feed_url="https://example.org/msc/feed.atom")


def test_feedparser_reads_it_without_complaint(xml: bytes) -> None:
    parsed = feedparser.parse(xml)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "MSC therapy: latest advancements"
    assert parsed.feed.subtitle == "since 2026-11-24"
    assert parsed.feed.author == "MSC trial tracker"
    assert parsed.feed.id == "tag:msc-trial-tracker,2026:feed"
    rels = {link.rel: link.href for link in parsed.feed.links}
    assert rels == {"self": "https://example.org/msc/feed.atom",
                    "alternate": "https://clinicaltrials.gov/"}
    assert parsed.feed.generator == "MSC trial tracker"


def test_one_entry_per_item_in_order_deduplicated_unreported_left_out(xml: bytes) -> None:
    entries = feedparser.parse(xml).entries
    assert len(entries) == len(EXPECTED_KEYS) == 7
    assert [e.id for e in entries] == [entry_id(k) for k in EXPECTED_KEYS]
    assert not any("NCT00763412" in e.id for e in entries)


def test_entry_titles_links_content_and_categories(xml: bytes, data: dict[str, Any]) -> None:
    studies, papers = _studies(), _papers()
    entries = feedparser.parse(xml).entries
    assert entries[0].title == f"New trial: {studies['NCT06388018'].title}"
    assert entries[0].link == "https://clinicaltrials.gov/study/NCT06388018"
    assert [t.term for t in entries[0].tags] == ["Osteoarthritis", "umbilical cord",
                                                  "allogeneic"]
    assert "Phase 2" in entries[0].content[0].value
    assert "Recruiting" in entries[0].content[0].value
    assert "New trial, first posted 2024-04-29" in entries[0].summary
    change = entries[3]
    assert change.title == ("Status changed: Recruiting \u2192 Active, not recruiting: "
                            f"{studies['NCT02513394'].title}")
    assert "status" in [t.term for t in change.tags]
    assert "RECRUITING \u2192 ACTIVE_NOT_RECRUITING" in change.content[0].value
    assert entries[4].title == f"Results paper: {papers['23121403'].title}"
    assert entries[4].link == "https://pubmed.ncbi.nlm.nih.gov/23121403/"
    assert entries[5].title == f"New paper: {papers['29963580'].title}"
    assert entries[5].content[0].type == "text/plain"


def test_ids_are_stable_and_distinct(data: dict[str, Any], xml: bytes) -> None:
    again = build_feed(copy.deepcopy(data), feed_url="https://example.org/msc/feed.atom")
    assert again == xml  # byte-identical, updated stamps included
    ids = [e.findtext(f"{ATOM}id") for e in _tree(xml).iter(f"{ATOM}entry")]
    assert len(set(ids)) == len(ids)
    assert entry_id("study:NCT06388018:new") == entry_id("study:NCT06388018:new")
    assert entry_id("study:NCT06388018:new") != entry_id("study:NCT03064438:new")
    # percent-encoding keeps keys apart that a lossy "safe form" would merge
    assert entry_id("change:X:a>b") != entry_id("change:X:a_b")
    assert entry_id("change:X:a>b") != entry_id("change:X:a%3Eb")
    assert all(i.startswith("tag:msc-trial-tracker,2026:") for i in ids)


def test_updated_comes_from_registry_dates(xml: bytes) -> None:
    root = _tree(xml)
    got = {e.findtext(f"{ATOM}id"): e.findtext(f"{ATOM}updated")
           for e in root.iter(f"{ATOM}entry")}
    expect = {
        "study:NCT06388018:new": "2024-04-29",     # first posted, from the record
        "study:NCT03064438:new": "2017-02-27",
        "study:NCT02552212:new": "2015-09-17",
        EXPECTED_KEYS[3]: "2023-06-15",            # the record's last update posted
        "paper:PMID:29963580:new": "2018-07-03",  # PubMed Entrez date, from the record
        "paper:PMID:28775130:new": "2017-08-05",
    }
    for key, day in expect.items():
        assert got[entry_id(key)] == f"{day}T00:00:00+00:00", key
    assert got[entry_id("paper:PMID:23121403:new")] == "2026-12-01T08:00:00+00:00"
    # the feed's updated is its newest entry's: generated_at here (the dateless paper)
    assert root.findtext(f"{ATOM}updated") == "2026-12-01T08:00:00+00:00"
    parsed = feedparser.parse(xml)
    assert parsed.entries[0].updated_parsed[:3] == (2024, 4, 29)


def test_feed_updated_is_newest_entry_not_now(data: dict[str, Any]) -> None:
    dated = copy.deepcopy(data)
    dated["results_papers"][0]["date"] = "2012-11-06"  # the paper's real Entrez date
    root = _tree(build_feed(dated))
    assert root.findtext(f"{ATOM}updated") == "2024-04-29T00:00:00+00:00"
    rels = [(link.get("rel"), link.get("href")) for link in root.findall(f"{ATOM}link")]
    assert rels == [("alternate", "https://clinicaltrials.gov/")]


def test_validate_atom_accepts_the_feed(xml: bytes) -> None:
    assert validate_atom(xml) == []


def _first_entry(root: etree._Element) -> etree._Element:
    return next(root.iter(f"{ATOM}entry"))


def test_validate_atom_catches_a_missing_entry_id(xml: bytes) -> None:
    def drop_id(root: etree._Element) -> None:
        entry = _first_entry(root)
        entry.remove(entry.find(f"{ATOM}id"))

    problems = validate_atom(_edit(xml, drop_id))
    assert problems == ["entry 1 must have exactly one atom:id (has 0)"]


def test_validate_atom_catches_a_duplicate_id(xml: bytes) -> None:
    def duplicate(root: etree._Element) -> None:
        entries = list(root.iter(f"{ATOM}entry"))
        entries[2].find(f"{ATOM}id").text = entries[0].findtext(f"{ATOM}id")

    problems = validate_atom(_edit(xml, duplicate))
    assert len(problems) == 1 and "repeats entry 1" in problems[0]


@pytest.mark.parametrize("bad", ["2024-04-29", "2024-04-29 00:00:00Z", "2024-04-29T00:00:00",
                                 "2024-02-30T00:00:00Z", "2024-04-29t00:00:00z",
                                 "Mon, 29 Apr 2024 00:00:00 GMT"])
def test_validate_atom_catches_a_non_rfc3339_updated(xml: bytes, bad: str) -> None:
    def set_updated(root: etree._Element) -> None:
        _first_entry(root).find(f"{ATOM}updated").text = bad

    problems = validate_atom(_edit(xml, set_updated))
    assert len(problems) == 1 and problems[0].startswith("entry 1: atom:updated"), problems


def test_validate_atom_catches_more(xml: bytes) -> None:
    def no_feed_author_no_content(root: etree._Element) -> None:
        root.remove(root.find(f"{ATOM}author"))
        entry = list(root.iter(f"{ATOM}entry"))[3]
        entry.remove(entry.find(f"{ATOM}content"))
        entry.remove(entry.find(f"{ATOM}link"))
        entry.find(f"{ATOM}id").text = "not an iri"
        etree.SubElement(entry, f"{ATOM}link", rel="related")
        root.find(f"{ATOM}title").addnext(etree.Element(f"{ATOM}title"))

    problems = validate_atom(_edit(xml, no_feed_author_no_content))
    assert "feed must have exactly one atom:title (has 2)" in problems
    assert "entry 4: atom:id 'not an iri' is not an absolute IRI" in problems
    assert "entry 4: atom:link without href" in problems
    assert "entry 4: no atom:content and no atom:link rel=alternate" in problems
    assert sum("no atom:author" in p for p in problems) == 7
    assert validate_atom(b"<feed")[0].startswith("not well-formed XML")
    assert validate_atom(b"<rss/>") == [
        "the root element is 'rss', not atom:feed ({http://www.w3.org/2005/Atom}feed)"]


def test_validate_atom_does_not_expand_entities(xml: bytes, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET", encoding="utf-8")
    hostile = xml.replace(b"<?xml version='1.0' encoding='UTF-8'?>",
                          b"<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE feed [<!ENTITY x "
                          b"SYSTEM '" + secret.as_uri().encode() + b"'>]>", 1)
    hostile = hostile.replace(b"<id>tag:msc-trial-tracker,2026:feed</id>", b"<id>&x;</id>", 1)
    problems = validate_atom(hostile)
    assert problems == ["feed: atom:id '&x;' is not an absolute IRI"]  # left unexpanded
    assert not any("SECRET" in p for p in problems)


def test_hostile_text_arrives_as_literal_text(data: dict[str, Any]) -> None:
    hostile = copy.deepcopy(data)
    item = hostile["new_trials"][0]["items"][1]
    real = _studies()["NCT04523987"]  # the real record the hostile title is derived from
    item.update(id=real.registry_id, url=real.url, entry_key="study:NCT04523987:new",
                title=HOSTILE_PREFIX + real.title + HOSTILE_SUFFIX,
                snippet="\x1b[31mred\x1b[0m " + (real.brief_summary or "")[:80],
                labels="bone marrow, \x07autologous")
    xml = build_feed(hostile)
    assert b"\x1b" not in xml and b"\x07" not in xml
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", xml)
    assert b"<script>" not in xml and b"&lt;script&gt;" in xml
    assert validate_atom(xml) == []
    parsed = feedparser.parse(xml)
    assert not parsed.bozo, parsed.get("bozo_exception")
    entry = parsed.entries[1]
    # The whole OSC hyperlink sequence goes; the lone surrogate becomes U+FFFD.
    expected = ("New trial: <script>alert(1)</script> " + real.title + " & R&D \ufffd")
    assert entry.title == expected
    assert entry.title_detail.type == "text/plain"
    assert entry.link == real.url
    assert "autologous" in [t.term for t in entry.tags]
    assert "red " in entry.content[0].value and "[31m" not in entry.content[0].value


def test_clean_text() -> None:
    assert clean_text("a\x1b[0mb\x07c\x00d\te\nf\rg") == "abcd\te\nf\ng"
    assert clean_text("x\ud800y\udfffz") == "x\ufffdy\ufffdz"
    assert clean_text("\ud83d\ude00 \ufffe") == "\U0001f600 "  # a pair joined; noncharacter
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a surrogate pair is joined, not lost
    assert clean_text("\x9b31m\x7f\ufffe") == ""  # an 8-bit CSI sequence goes whole
    assert clean_text(None) == "" and clean_text(42) == "42"


def test_empty_digest_is_a_valid_feed_without_entries() -> None:
    empty = {"title": "MSC therapy: latest advancements",
             "period": {"since": None, "until": "2026-12-01", "label": "everything"},
             "generated_at": GENERATED_AT, "new_trials": [], "changes": [],
             "results_papers": [], "papers": [], "unreported": [], "charts": {}}
    xml = build_feed(empty)
    assert validate_atom(xml) == []
    parsed = feedparser.parse(xml)
    assert not parsed.bozo and parsed.entries == []
    assert _tree(xml).findtext(f"{ATOM}updated") == "2026-12-01T08:00:00+00:00"
    assert build_feed(empty) == xml
    assert validate_atom(build_feed({})) == []


def test_item_without_http_url_has_no_link_but_content(data: dict[str, Any]) -> None:
    odd = copy.deepcopy(data)
    odd["papers"][0]["items"][0]["url"] = "javascript:alert(1)"
    odd["papers"][0]["items"][1]["url"] = None
    root = _tree(build_feed(odd))
    entries = list(root.iter(f"{ATOM}entry"))
    for entry in entries[5:]:
        assert entry.find(f"{ATOM}link") is None
        assert entry.find(f"{ATOM}content").text
    assert validate_atom(etree.tostring(root)) == []
    assert b"javascript" not in etree.tostring(root)


def test_bad_feed_arguments_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="feed_url"):
        build_feed(data, feed_url="feed.atom")
    with pytest.raises(ValueError, match="feed_id"):
        build_feed(data, feed_id="not an iri")
