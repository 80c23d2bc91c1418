"""Request builders, paging and parser tests for the EU CTIS source, on crafted fixtures.

No real CTIS response could be found: every fixture in tests/fixtures/ctis is crafted from the
documented shapes (see its README). The tests call the source through a fake HTTP layer that
answers ``post(source, url, json=...)`` and ``get(source, url)``, the calls the source makes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from sources.base import FETCH_IDS, Window
from sources.ctis import (
    CTIS,
    PHASE_CODES,
    SEARCH_CAP,
    STATUS_CODES,
    SUMMARY_KEY,
    ctis_phase,
    ctis_status,
    make_item,
    parse_date,
    parse_search,
    parse_trial,
    retrieve_path,
    search_body,
)
from tracker.config import CtisSettings, load_settings
from tracker.errors import FetchError, IncompleteError, ParseError
from tracker.http import Http, make_client

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ctis"
URL = "https://euclinicaltrials.eu/ctis-public-api"
A, B, C = "2024-512345-27-00", "2023-509876-14-00", "2025-520111-40-00"
TODAY = dt.date(2025, 10, 1)


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def retrieved(ct: str) -> dict[str, Any]:
    return orjson.loads(raw(f"crafted_retrieve_{ct}.json"))


def summaries() -> dict[str, dict[str, Any]]:
    pages = [orjson.loads(raw(f"crafted_search_page{n}.json"))["data"] for n in (1, 2)]
    return {s["ctNumber"]: s for page in pages for s in page}


def merged(ct: str) -> dict[str, Any]:
    """A retrieve record as fetch stores it: with its search summary."""
    return {**retrieved(ct), SUMMARY_KEY: summaries()[ct]}


def settings(page_size: int = 2) -> CtisSettings:
    return CtisSettings(URL, "mesenchymal", 1.0, page_size=page_size)


PAGES = {1: raw("crafted_search_page1.json"), 2: raw("crafted_search_page2.json")}
TRAP = raw("crafted_search_page0_trap.json")
RECORDS = {ct: raw(f"crafted_retrieve_{ct}.json") for ct in (A, B, C)}


class FakeHttp:
    """Answers the source's calls from the fixtures and records every request: search pages
    by their 1-based number (page 0 gets the documented trap answer), a ``number`` search with
    that trial's summary, retrieve paths with the record (404 for an unknown number)."""

    def __init__(self, pages: dict[int, bytes] | None = None,
                 records: dict[str, bytes] | None = None,
                 search: Callable[[dict[str, Any]], bytes] | None = None) -> None:
        self.pages = PAGES if pages is None else pages
        self.records = RECORDS if records is None else records
        self.search = search
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []

    def post(self, source: str, url: str, json: Any = None) -> Any:
        assert source == "ctis" and url == URL + "/search"
        self.posts.append(json)
        if self.search is not None:
            return SimpleNamespace(content=self.search(json))
        number = json["searchCriteria"].get("number")
        if number:
            data = [s for s in summaries().values() if s["ctNumber"] == number]
            page = {"pagination": {"totalRecords": len(data), "currentPage": 1,
                                   "totalPages": 1, "nextPage": False}, "data": data}
            return SimpleNamespace(content=orjson.dumps(page))
        page = json["pagination"]["page"]
        return SimpleNamespace(content=TRAP if page == 0 else self.pages[page])

    def get(self, source: str, url: str, params: Any = None) -> Any:
        assert source == "ctis"
        self.gets.append(url)
        ct = url.rsplit("/", 1)[-1]
        if ct not in self.records:
            raise FetchError(f"ctis: HTTP 404 from {url}", status_code=404)
        return SimpleNamespace(content=self.records[ct])

    @property
    def pages_asked(self) -> list[int]:
        return [p["pagination"]["page"] for p in self.posts]


def run(source: CTIS, http: FakeHttp, since: dt.date | None = None) -> list[Any]:
    return list(source.fetch(http, Window(since, TODAY)))


# ------------------------------------------------------------------ requests ----------------


def test_search_body_is_the_documented_body() -> None:
    assert search_body("mesenchymal", 1, 100) == {
        "pagination": {"page": 1, "size": 100},
        "sort": {"property": "decisionDate", "direction": "DESC"},
        "searchCriteria": {"containAll": "mesenchymal", "containAny": None, "containNot": None},
    }
    assert search_body("x", 3, 500)["pagination"] == {"page": 3, "size": 100}
    assert search_body("x", 2, 0)["pagination"] == {"page": 2, "size": 1}
    lookup = search_body(A, 1, 10, criterion="number")["searchCriteria"]
    assert lookup == {"containAll": None, "containAny": None, "containNot": None, "number": A}


@pytest.mark.parametrize("page", [0, -1, True, 1.0, "1"])
def test_page_zero_is_never_built(page: Any) -> None:
    with pytest.raises(ValueError, match="1-based"):
        search_body("mesenchymal", page, 100)


def test_retrieve_path() -> None:
    assert retrieve_path(A) == "retrieve/2024-512345-27-00"


# ------------------------------------------------------------------ search answers ----------


def test_parse_search_reads_summaries_total_and_pages() -> None:
    items, total, pages = parse_search(PAGES[1])
    assert [s["ctNumber"] for s in items] == [A, B] and (total, pages) == (3, 2)
    items, total, pages = parse_search(PAGES[2], expected=3)
    assert [s["ctNumber"] for s in items] == [C] and (total, pages) == (3, 2)
    assert items[0]["lastUpdated"] == "20/09/2025"  # DD/MM/YYYY, as documented


def test_a_search_body_that_is_not_json_gives_the_one_not_json_line() -> None:
    body = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    with pytest.raises(ParseError) as err:
        parse_search(body)
    text = str(err.value)
    assert text.startswith("ctis: search response is not JSON (")
    assert "it starts '<html><body><h1>503" in text and text.endswith("run again later")
    assert "\n" not in text


@pytest.mark.parametrize("body", [b"[]", b"null", b'{"data": []}', b'{"pagination": []}',
                                  b'{"pagination": {"totalRecords": "many"}, "data": []}',
                                  b'{"pagination": {"totalRecords": 3}, "data": {"x": 1}}',
                                  b'{"pagination": {"totalRecords": -2}, "data": []}'])
def test_a_search_answer_of_another_shape_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="^ctis: search response"):
        parse_search(body)


def test_the_page_zero_answer_is_incomplete_when_a_count_said_more() -> None:
    assert parse_search(TRAP) == ([], 0, 0)  # alone it reads as an empty query
    with pytest.raises(IncompleteError, match="totalRecords 0 where 3 trials were counted"):
        parse_search(TRAP, expected=3)


def test_a_query_above_the_cap_fails_with_one_line_saying_to_narrow_it() -> None:
    with pytest.raises(IncompleteError) as err:
        parse_search(raw("crafted_search_over_cap.json"), query="stem cell")
    text = str(err.value)
    assert "\n" not in text and "'stem cell' matches 12431 trials" in text
    assert f"{SEARCH_CAP:,}" in text and "narrow the ctis query in config" in text
    http = FakeHttp(pages={1: raw("crafted_search_over_cap.json")})
    with pytest.raises(IncompleteError, match="narrow"):
        run(CTIS(settings(100)), http)
    assert http.pages_asked == [1] and http.gets == []


def test_exactly_the_cap_is_allowed() -> None:
    doc = orjson.loads(PAGES[1])
    doc["pagination"]["totalRecords"] = SEARCH_CAP
    assert parse_search(orjson.dumps(doc))[1] == SEARCH_CAP


# ------------------------------------------------------------------ fetch -------------------


def test_fetch_pages_from_one_and_retrieves_every_trial_of_a_full_window() -> None:
    http = FakeHttp()
    pages = run(CTIS(settings(2)), http)
    assert http.pages_asked == [1, 2]
    assert http.posts == [search_body("mesenchymal", 1, 2), search_body("mesenchymal", 2, 2)]
    assert http.gets == [f"{URL}/retrieve/{ct}" for ct in (A, B, C)]
    assert [p.total for p in pages] == [3]
    assert pages[0].extra == {"search_total": 3}
    items = pages[0].items
    assert [i.ct_number for i in items] == [A, B, C]
    for item in items:
        doc = orjson.loads(item.raw)
        assert doc[SUMMARY_KEY] == summaries()[item.ct_number]
        assert {k: v for k, v in doc.items() if k != SUMMARY_KEY} == retrieved(item.ct_number)


def test_one_page_holds_the_whole_msc_query_at_the_configured_size() -> None:
    one = orjson.loads(PAGES[1])
    one["data"] += orjson.loads(PAGES[2])["data"]
    one["pagination"].update(totalPages=1, nextPage=False)
    http = FakeHttp(pages={1: orjson.dumps(one)})
    pages = run(CTIS.from_settings(load_settings({"db": "unused.sqlite"}, env={})), http)
    assert http.pages_asked == [1] and http.posts[0] == search_body("mesenchymal", 1, 100)
    assert pages[0].total == 3 and len(http.gets) == 3


def test_the_page_zero_answer_in_the_middle_of_paging_fails_the_window() -> None:
    http = FakeHttp(pages={1: PAGES[1], 2: TRAP})
    with pytest.raises(IncompleteError, match="totalRecords 0 where 3"):
        run(CTIS(settings(2)), http)
    assert 0 not in http.pages_asked and http.gets == []


def test_a_first_page_of_zero_after_a_count_of_more_fails_the_window() -> None:
    source = CTIS(settings(2))
    assert source.count(FakeHttp(), Window(None, TODAY)).records == 3
    http = FakeHttp(pages={1: TRAP})
    with pytest.raises(IncompleteError, match="totalRecords 0 where 3"):
        run(source, http)
    assert http.pages_asked == [1]


def test_an_empty_query_is_an_empty_window() -> None:
    http = FakeHttp(pages={1: TRAP})
    pages = run(CTIS(settings(2)), http)
    assert [(p.items, p.total) for p in pages] == [([], 0)] and http.gets == []


def test_a_search_that_stops_short_of_its_total_fails_the_window() -> None:
    short = orjson.loads(PAGES[2])
    short["data"] = []
    http = FakeHttp(pages={1: PAGES[1], 2: orjson.dumps(short)})
    with pytest.raises(IncompleteError, match="announced 3 trials but its 2 page"):
        run(CTIS(settings(2)), http)
    assert http.gets == []


def test_a_page_repeating_trials_in_place_of_others_fails_the_window() -> None:
    http = FakeHttp(pages={1: PAGES[1], 2: PAGES[1]})
    with pytest.raises(IncompleteError, match="brought 2 distinct"):
        run(CTIS(settings(2)), http)


def test_paging_that_never_ends_is_bounded() -> None:
    endless = orjson.loads(PAGES[1])
    endless["pagination"]["totalPages"] = 99  # more pages than 3 trials can fill
    http = FakeHttp(search=lambda body: orjson.dumps(endless))
    with pytest.raises(IncompleteError, match="paging did not end"):
        run(CTIS(settings(2)), http)
    assert http.pages_asked == [1, 2, 3, 4] and http.gets == []


def test_an_incremental_window_retrieves_only_trials_updated_since_it_started() -> None:
    http = FakeHttp()
    pages = run(CTIS(settings(2)), http, since=dt.date(2025, 5, 14))
    assert http.pages_asked == [1, 2]  # no server-side filter: the whole query is paged
    assert http.gets == [f"{URL}/retrieve/{A}", f"{URL}/retrieve/{C}"]  # B: 02/01/2025
    assert [p.total for p in pages] == [2]


def test_a_summary_whose_last_update_cannot_be_read_is_retrieved() -> None:
    doc = orjson.loads(PAGES[1])
    doc["data"][1]["lastUpdated"] = "sometime in 2025"
    http = FakeHttp(pages={1: orjson.dumps(doc), 2: PAGES[2]})
    run(CTIS(settings(2)), http, since=dt.date(2025, 5, 15))
    assert http.gets == [f"{URL}/retrieve/{B}", f"{URL}/retrieve/{C}"]


def test_a_window_nothing_was_updated_in_announces_zero() -> None:
    http = FakeHttp()
    pages = run(CTIS(settings(2)), http, since=dt.date(2025, 9, 21))
    assert [(p.items, p.total) for p in pages] == [([], 0)] and http.gets == []


def test_a_window_starting_after_it_ends_asks_nothing() -> None:
    http = FakeHttp()
    source = CTIS(settings(2))
    assert list(source.fetch(http, Window(TODAY + dt.timedelta(days=1), TODAY))) == []
    assert source.count(http, Window(TODAY + dt.timedelta(days=1), TODAY)).records == 0
    assert http.posts == [] and http.gets == []


def test_records_are_paged_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sources.ctis.RETRIEVE_BATCH", 2)
    pages = run(CTIS(settings(2)), FakeHttp())
    assert [(len(p.items), p.total) for p in pages] == [(2, 3), (1, None)]


def test_a_retrieve_body_that_is_not_json_gives_the_one_not_json_line() -> None:
    http = FakeHttp(records={**RECORDS, B: b"<html>Forbidden</html>"})
    with pytest.raises(ParseError, match=r"^ctis: the record of 2023-509876-14-00 is not JSON"):
        run(CTIS(settings(2)), http)


def test_count_announces_records_and_requests() -> None:
    source = CTIS(settings(2))
    full = source.count(FakeHttp(), Window(None, TODAY))
    assert (full.records, full.requests) == (3, 2 + 3)
    since = source.count(FakeHttp(), Window(dt.date(2025, 5, 1), TODAY))
    assert (since.records, since.requests) == (3, 5) and "no updated-since filter" in since.note
    one = orjson.loads(PAGES[1])
    one["data"] += orjson.loads(PAGES[2])["data"]
    exact = CTIS(settings(100)).count(FakeHttp(pages={1: orjson.dumps(one)}),
                                      Window(dt.date(2025, 5, 1), TODAY))
    assert (exact.records, exact.requests) == (2, 1 + 2) and "2 of 3" in exact.note


def test_fetch_ids_retrieves_known_numbers_with_their_summary() -> None:
    http = FakeHttp()
    source = CTIS(settings(2))
    pages = list(source.fetch_ids(http, ["2024-599999-99-00", "NCT01234567", B]))
    assert http.gets == [f"{URL}/retrieve/2024-599999-99-00", f"{URL}/retrieve/{B}"]
    assert http.posts == [search_body(B, 1, 10, criterion="number")]
    assert [[i.ct_number for i in p.items] for p in pages] == [[B]]
    fetched = {i.ct_number: i for p in run(source, FakeHttp()) for i in p.items}
    assert pages[0].items[0].raw == fetched[B].raw  # the same bytes: the same content hash


def test_source_contract() -> None:
    source = CTIS.from_settings(load_settings({"db": "unused.sqlite"}, env={}))
    assert (source.name, source.kind, source.registry) == ("ctis", "study", "ctis")
    assert source.capabilities == frozenset({FETCH_IDS}) and source.has(FETCH_IDS)
    assert source.settings.url == URL and source.settings.query == "mesenchymal"
    assert source.page_size == 100


def test_the_http_layer_posts_the_search_body_as_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, content=PAGES[1 if len(seen) == 1 else 2])
        return httpx.Response(200, content=RECORDS[request.url.path.rsplit("/", 1)[-1]])

    cfg = load_settings({"db": "unused.sqlite"}, env={})
    with make_client(cfg, transport=httpx.MockTransport(handler)) as client:
        source = CTIS(dataclasses.replace(cfg.source("ctis"), page_size=2))
        pages = list(source.fetch(Http(client, cfg), Window(None, TODAY)))
    posts = [r for r in seen if r.method == "POST"]
    assert [orjson.loads(r.content) for r in posts] == [
        search_body("mesenchymal", 1, 2), search_body("mesenchymal", 2, 2)]
    assert all(r.headers["Content-Type"] == "application/json" for r in posts)
    assert pages[0].total == 3


# ------------------------------------------------------------------ records -----------------


def test_a_full_record() -> None:
    rec = parse_trial(merged(A))
    assert (rec.registry, rec.registry_id) == ("ctis", A)
    assert rec.url == f"https://euclinicaltrials.eu/ctis-public-web/view/{A}"
    assert rec.title == "Stem cell injection for knee osteoarthritis pain"
    assert rec.official_title.startswith("A Phase II, Randomised, Double-Blind")
    assert rec.acronym == "ADMSC-KOA-02" and rec.study_type == "INTERVENTIONAL"
    assert (rec.phase, rec.phase_raw) == ("PHASE2", "4")
    assert (rec.status, rec.status_raw) == ("RECRUITING", "4: Ongoing, recruiting")
    assert rec.sponsor == "Meridian Cell Therapeutics S.L." and rec.sponsor_class == "INDUSTRY"
    assert rec.conditions == ["Symptomatic knee osteoarthritis (Kellgren-Lawrence grade 2-3)"]
    assert rec.keywords == ["Osteoarthritis", "Diseases [C] - Musculoskeletal Diseases [C05]"]
    test, placebo = rec.interventions
    assert (test.type, test.name) == ("BIOLOGICAL", "MCT-ADSC-01")
    assert test.other_names == ["ALLOGENEIC ADIPOSE-DERIVED MESENCHYMAL STROMAL CELLS"]
    assert test.description == ("Test product; Somatic cell therapy medicinal product; "
                                "Suspension for injection; Intra-articular use")
    assert (placebo.type, placebo.name) == ("DRUG", "Placebo")
    assert rec.enrollment == 120  # Spain 90 + Ireland 30 + rest of world 0
    assert rec.countries == ["Spain", "Ireland"]  # trialCountries "Spain:4", "Ireland:2"
    assert rec.primary_outcomes == [
        "Change from baseline in WOMAC pain subscale score at month 12"]
    assert rec.brief_summary.startswith("To evaluate the efficacy")
    assert rec.eligibility.startswith("Inclusion Criteria:\n- Men and women aged 40 to 75")
    assert "\n\nExclusion Criteria:\n- Intra-articular corticosteroid" in rec.eligibility
    assert [(s.value, s.type, s.domain) for s in rec.secondary_ids] == [
        ("NCT06612345", "REGISTRY", "ClinicalTrials.gov")]
    assert rec.has_results is False and rec.why_stopped is None
    assert len(rec.content_hash) == 32 and orjson.loads(rec.raw) == merged(A)


def test_dd_mm_yyyy_dates_become_iso() -> None:
    rec = parse_trial(merged(A))
    assert rec.first_posted == dt.date(2024, 11, 25)  # publishDate 25/11/2024
    assert rec.last_update_posted == dt.date(2025, 5, 14)  # summary lastUpdated 14/05/2025
    assert rec.start_date == "2025-02-03"  # startDateEU 03/02/2025 (actual, before estimated)
    assert rec.completion_date == "2027-12-31"  # estimatedGlobalEndDate 31/12/2027
    assert parse_trial(retrieved(A)).last_update_posted is None  # no summary: not known


@pytest.mark.parametrize(("value", "iso"), [
    ("14/05/2025", "2025-05-14"), ("1/2/2025", "2025-02-01"), (" 03/02/2025 ", "2025-02-03"),
    ("2022-09-01", "2022-09-01"), ("2023-06-12T09:30:00", "2023-06-12"),
    ("2023-06-12 09:30:00.0", "2023-06-12"), ("31/02/2025", None), ("05/14/2025", None),
    ("2025/05/14", None), ("14.05.2025", None), ("", None), (None, None), (20250514, None),
    (["14/05/2025"], None),
])
def test_parse_date(value: Any, iso: str | None) -> None:
    assert parse_date(value) == iso


def test_a_transitioned_trial_ended_early_everywhere() -> None:
    rec = parse_trial(merged(B))
    assert (rec.status, rec.status_raw) == ("TERMINATED", "8: Ended (includes early termination)")
    assert rec.why_stopped == "Lack of recruitment"
    assert (rec.phase, rec.phase_raw) == ("PHASE1_2", "Phase I and Phase II (Integrated)- Other")
    assert rec.sponsor == "Nordic Academic Cell Therapy Consortium"  # the primary sponsor
    assert rec.sponsor_class == "OTHER"
    assert [(s.value, s.type, s.domain) for s in rec.secondary_ids] == [
        ("2021-004512-33", "EUDRACT_NUMBER", "EudraCT (transitioned to CTIS)"),
        ("ISRCTN48213377", "REGISTRY", "ISRCTN"),  # "ISRCTN 48213377" in canonical form
        ("U1111-1275-4431", "OTHER", "WHO Universal Trial Number"),
        ("NACT-2021-03", "REGISTRY", "Sponsor protocol register"),
    ]
    (product,) = rec.interventions  # from authorizedPartI.products (no role groups)
    assert (product.type, product.name) == ("BIOLOGICAL", "NACT-UC-MSC")
    assert product.other_names == ["UMBILICAL CORD-DERIVED MESENCHYMAL STROMAL CELLS", "UC-MSC"]
    # ISO dates (and a date-time) are read as well as DD/MM/YYYY:
    assert rec.first_posted == dt.date(2023, 6, 12) and rec.start_date == "2022-09-01"
    assert rec.completion_date == "2024-10-30"  # events.trialGlobalEndDate 30/10/2024
    assert rec.last_update_posted == dt.date(2025, 1, 2)  # the record's own lastUpdated
    assert rec.countries == ["Denmark", "Sweden", "Finland"] and rec.enrollment == 40


def test_ended_without_early_termination_everywhere_is_completed() -> None:
    doc = merged(B)
    doc["events"]["trialEvents"] = doc["events"]["trialEvents"][:1]  # one of three states
    rec = parse_trial(doc)
    assert (rec.status, rec.why_stopped) == ("COMPLETED", None)
    del doc["events"]
    assert parse_trial(doc).status == "COMPLETED"


def test_a_sparse_record_falls_back_on_its_search_summary() -> None:
    bare = parse_trial(retrieved(C))
    assert bare.title == "Cell injections into the spinal disc for chronic low back pain"
    assert (bare.status, bare.status_raw) == ("NOT_YET_RECRUITING",
                                              "Authorised, recruitment pending")
    assert (bare.phase, bare.phase_raw) == ("UNKNOWN", None)
    assert bare.countries == [] and bare.sponsor is None and bare.enrollment is None
    rec = parse_trial(merged(C))
    assert (rec.phase, rec.phase_raw) == ("PHASE3", "Therapeutic confirmatory (Phase III)")
    assert rec.official_title.startswith("A Phase III, Randomised, Sham-Controlled")
    assert rec.acronym == "DISC-MPC-3" and rec.sponsor == "Vertebra Regenerative Medicine GmbH"
    assert rec.sponsor_class == "INDUSTRY" and rec.enrollment == 300
    assert rec.conditions == ["Chronic low back pain associated with degenerative disc disease"]
    assert rec.countries == ["Germany", "Poland", "Czechia"]
    assert [(i.type, i.name) for i in rec.interventions] == [(None, "VRM-MPC-02")]
    assert rec.last_update_posted == dt.date(2025, 9, 20)


def test_a_record_keyed_only_by_its_summary() -> None:
    doc = merged(C)
    del doc["ctNumber"]
    assert parse_trial(doc).registry_id == C


# ------------------------------------------------------------------ code lists --------------

# API_NOTES 6.3 -> TAXONOMY.md, written out here so that a change of the module's table shows.
EXPECTED_STATUS = {
    1: "NOT_YET_RECRUITING", 2: "NOT_YET_RECRUITING", 3: "RECRUITING", 4: "RECRUITING",
    5: "ACTIVE_NOT_RECRUITING", 6: "SUSPENDED", 7: "SUSPENDED", 8: "COMPLETED",
    9: "WITHDRAWN", 10: "TERMINATED", 11: "WITHDRAWN", 12: "WITHDRAWN",
}
EXPECTED_PHASE = {
    1: "PHASE1", 2: "PHASE1", 3: "PHASE1", 4: "PHASE2", 5: "PHASE3", 6: "PHASE4",
    7: "PHASE1_2", 8: "PHASE1_2", 9: "PHASE1_2", 10: "PHASE2_3", 11: "PHASE3",
}


def test_the_code_lists_are_complete() -> None:
    assert set(STATUS_CODES) == set(EXPECTED_STATUS) == set(range(1, 13))
    assert set(PHASE_CODES) == set(EXPECTED_PHASE) == set(range(1, 12))


@pytest.mark.parametrize("code", sorted(EXPECTED_STATUS))
def test_every_status_code_is_mapped(code: int) -> None:
    label = STATUS_CODES[code][0]
    expected = EXPECTED_STATUS[code]
    assert ctis_status(code) == (expected, f"{code}: {label}")
    assert ctis_status(str(code)) == (expected, f"{code}: {label}")
    assert ctis_status(label) == (expected, label)
    assert ctis_status(label.upper().replace(", ", ",")) == (expected, label.upper()
                                                             .replace(", ", ","))
    doc = merged(A)
    doc["ctPublicStatusCode"] = code
    doc["ctStatus"] = label  # CTIS1 wrote the label here; the code wins
    rec = parse_trial(doc)
    assert (rec.status, rec.status_raw) == (expected, f"{code}: {label}")


@pytest.mark.parametrize("code", sorted(EXPECTED_PHASE))
def test_every_phase_code_is_mapped(code: int) -> None:
    label = PHASE_CODES[code][0]
    expected = EXPECTED_PHASE[code]
    for value in (code, str(code), label, label.lower(), label.replace(") - ", ")- ")):
        assert ctis_phase(value) == expected, value
    doc = merged(A)
    doc["authorizedApplication"]["authorizedPartI"]["trialDetails"]["trialInformation"][
        "trialCategory"]["trialPhase"] = label
    rec = parse_trial(doc)
    assert (rec.phase, rec.phase_raw) == (expected, label)
    doc["authorizedApplication"]["authorizedPartI"]["trialDetails"]["trialInformation"][
        "trialCategory"]["trialPhase"] = code
    assert (parse_trial(doc).phase, parse_trial(doc).phase_raw) == (expected, str(code))


@pytest.mark.parametrize(("value", "phase"), [
    ("Human Pharmacology (Phase I)…", "PHASE1"),  # a cut label, as API_NOTES quotes one
    ("Therapeutic exploratory (Phase II) ", "PHASE2"), ("Phase 2", "PHASE2"),
    ("Phase II/III", "PHASE2_3"), ("phase 1 / phase 2", "PHASE1_2"),
    ("Not applicable", "UNKNOWN"), (12, "UNKNOWN"), ("0", "UNKNOWN"), ("", "UNKNOWN"),
    (None, "UNKNOWN"), (True, "UNKNOWN"), ([4], "UNKNOWN"), ({"code": 4}, "UNKNOWN"),
])
def test_unknown_and_drifted_phases(value: Any, phase: str) -> None:
    assert ctis_phase(value) == phase


@pytest.mark.parametrize(("value", "status"), [
    (13, ("OTHER", "13")), (0, ("OTHER", "0")),
    ("Trial now transitioned", ("OTHER", "Trial now transitioned")),
    ("Ended", ("COMPLETED", "Ended")), (None, ("UNKNOWN", None)), ("  ", ("UNKNOWN", None)),
    (True, ("UNKNOWN", None)), ([4], ("UNKNOWN", None)),
])
def test_unknown_statuses(value: Any, status: tuple[str, str | None]) -> None:
    assert ctis_status(value) == status


# ------------------------------------------------------------------ bad records -------------


def _wrong(value: Any) -> list[Any]:
    """Values of the wrong type for a field holding ``value`` (derived from it)."""
    return [orjson.dumps(value).decode(), [value], {"value": value}, 20190514, -1, 1.5, None,
            True, ""]


AUTH = ("authorizedApplication",)
PART1 = (*AUTH, "authorizedPartI")
DETAILS = (*PART1, "trialDetails")
IDENTS = (*DETAILS, "clinicalTrialIdentifiers")
INFO = (*DETAILS, "trialInformation")
PATHS: list[tuple[Any, ...]] = [
    ("ctNumber",), ("ctStatus",), ("ctPublicStatusCode",), ("publishDate",), ("startDateEU",),
    ("endDateEU",), ("lastUpdated",), AUTH, ("events",), ("results",), (SUMMARY_KEY,),
    (SUMMARY_KEY, "ctNumber"), (SUMMARY_KEY, "trialCountries"), (SUMMARY_KEY, "trialCountries", 0),
    (SUMMARY_KEY, "lastUpdated"), (SUMMARY_KEY, "totalNumberEnrolled"),
    (SUMMARY_KEY, "eudraCtInfo"),
    (SUMMARY_KEY, "therapeuticAreas"), (SUMMARY_KEY, "trialPhase"), (SUMMARY_KEY, "ctTitle"),
    PART1, (*AUTH, "authorizedPartsII"), (*AUTH, "authorizedPartsII", 0),
    (*AUTH, "authorizedPartsII", 0, "recruitmentSubjectCount"),
    (*AUTH, "authorizedPartsII", 0, "mscInfo"), (*AUTH, "memberStatesConcerned"),
    (*AUTH, "memberStatesConcerned", 0, "mscName"), (*AUTH, "eudraCt"),
    (*AUTH, "eudraCt", "eudraCtCode"), (*AUTH, "eudraCt", "isTransitioned"),
    DETAILS, (*PART1, "sponsors"), (*PART1, "sponsors", 0), (*PART1, "sponsors", 0, "organisation"),
    (*PART1, "sponsors", 0, "isCommercial"), (*PART1, "productRoleGroupInfos"),
    (*PART1, "productRoleGroupInfos", 0), (*PART1, "productRoleGroupInfos", 0, "products"),
    (*PART1, "productRoleGroupInfos", 0, "products", 0),
    (*PART1, "productRoleGroupInfos", 0, "products", 0, "productDictionaryInfo"),
    (*PART1, "productRoleGroupInfos", 0, "products", 0, "therapies"),
    (*PART1, "productRoleGroupInfos", 0, "products", 0, "routes"),
    (*PART1, "products"), (*PART1, "products", 0, "productName"), (*PART1, "rowSubjectCount"),
    (*PART1, "partOneTherapeuticAreas"), IDENTS, INFO, (*IDENTS, "publicTitle"),
    (*IDENTS, "fullTitle"), (*IDENTS, "shortTitle"), (*IDENTS, "secondaryIdentifyingNumbers"),
    (*IDENTS, "secondaryIdentifyingNumbers", "nctNumber"),
    (*IDENTS, "secondaryIdentifyingNumbers", "isrctnNumber", "number"),
    (*IDENTS, "secondaryIdentifyingNumbers", "additionalRegistries"),
    (*INFO, "trialCategory"), (*INFO, "trialCategory", "trialPhase"), (*INFO, "medicalCondition"),
    (*INFO, "medicalCondition", "partIMedicalConditions"),
    (*INFO, "medicalCondition", "partIMedicalConditions", 0),
    (*INFO, "medicalCondition", "meddraConditionTerms"), (*INFO, "trialObjective"),
    (*INFO, "trialObjective", "mainObjective"), (*INFO, "eligibilityCriteria"),
    (*INFO, "eligibilityCriteria", "principalInclusionCriteria"),
    (*INFO, "eligibilityCriteria", "principalInclusionCriteria", 0),
    (*INFO, "endPoint"), (*INFO, "endPoint", "primaryEndPoints"), (*INFO, "trialDuration"),
    (*INFO, "trialDuration", "estimatedRecruitmentStartDate"), ("events", "trialEvents"),
    ("events", "trialEvents", 0), ("events", "trialEvents", 0, "events"),
    ("events", "trialEvents", 0, "earlyTerminationReason"), ("events", "trialGlobalEndDate"),
    ("results", "summaryResults"),
]


def _has(doc: Any, path: tuple[Any, ...]) -> bool:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or len(doc) <= part:
                return False
        elif not isinstance(doc, dict) or part not in doc:
            return False
        doc = doc[part]
    return True


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def _check_types(rec: Any) -> None:
    for name in ("title", "registry_id", "url"):
        assert isinstance(getattr(rec, name), str) and getattr(rec, name), name
    for name in ("official_title", "acronym", "phase_raw", "status_raw", "why_stopped",
                 "sponsor", "sponsor_class", "start_date", "completion_date", "brief_summary",
                 "eligibility"):
        assert isinstance(getattr(rec, name), str | None), (name, getattr(rec, name))
    for name in ("first_posted", "last_update_posted", "results_first_posted"):
        assert isinstance(getattr(rec, name), dt.date | None), name
    assert rec.enrollment is None or (type(rec.enrollment) is int and rec.enrollment >= 0)
    assert rec.phase in EXPECTED_PHASE.values() or rec.phase == "UNKNOWN"
    assert rec.status in {*EXPECTED_STATUS.values(), "UNKNOWN", "OTHER"}
    assert all(isinstance(c, str) and c for c in rec.conditions + rec.keywords + rec.countries)
    assert all(isinstance(c, str) for c in rec.primary_outcomes)
    assert all(isinstance(i.name, str) and i.name and isinstance(i.type, str | None)
               and all(isinstance(o, str) for o in i.other_names) for i in rec.interventions)
    assert all(isinstance(s.value, str) and s.value for s in rec.secondary_ids)
    assert isinstance(rec.has_results, bool) and isinstance(rec.raw, bytes)


@pytest.mark.parametrize("path", PATHS, ids=[".".join(map(str, p)) for p in PATHS])
def test_a_field_of_the_wrong_type_gives_a_parse_error_or_reads_as_absent(
        path: tuple[Any, ...]) -> None:
    """Derived from the crafted records (with their summaries): each field replaced by a
    string, a list, an object, numbers, null, a boolean and an empty string. The record
    parses, with that field absent and every value of the promised type, or (a field it cannot
    be keyed or titled without) raises ParseError; never another exception."""
    tried = 0
    for ct in (A, B, C):
        doc = merged(ct)
        if not _has(doc, path):
            continue
        node: Any = doc
        for part in path:
            node = node[part]
        tried += 1
        for value in _wrong(node):
            changed = orjson.loads(orjson.dumps(doc))
            _set(changed, path, value)
            for trial in (changed, orjson.dumps(changed)):
                try:
                    rec = parse_trial(trial)
                except ParseError:
                    continue
                assert rec.registry_id == ct
                _check_types(rec)
    assert tried, "no crafted record has this field"


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null", b'"2024-512345-27-00"',
                                  b"{}", b'{"ctNumber": "2024-512345-27-00"}',
                                  b'{"ctNumber": "2024-12345-27", "authorizedApplication": 1}'])
def test_a_record_that_cannot_be_keyed_or_titled_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="^ctis: "):
        CTIS.parse_raw(body)


# ------------------------------------------------------------------ round trip --------------


def test_round_trip_parse_raw_of_item_bytes_equals_parse() -> None:
    source = CTIS(settings(2))
    items = [i for p in run(source, FakeHttp()) for i in p.items]
    bare = [make_item(retrieved(ct), None, None, RECORDS[ct]) for ct in (A, B, C)]
    for item in items + bare:
        rec = source.parse(item)
        assert CTIS.parse_raw(source.item_bytes(item)) == rec
        again = source.item_from_bytes(source.item_bytes(item))
        assert again == item and source.record_id(again) == rec.registry_id
        assert source.parse(again) == rec
    assert source.item_from_bytes(b"<html>").ct_number is None
