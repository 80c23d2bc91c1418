"""EU Clinical Trials Register source: request builders, the search page, the per-country
protocol text and HTML pages, one record per EudraCT number, the source class.

Everything runs on the recorded files in ``tests/fixtures/euctr`` (README.md there gives their
provenance). Inputs that no recording holds (a changed layout, an inserted U+2028) are built
here from a recorded file, named ``crafted_*``, each with a comment saying what was edited.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import random
from typing import Any

import httpx
import pytest
from conftest import FIXTURES

from sources.base import FETCH_IDS, Window
from sources.euctr import (
    EUCTR,
    EuctrItem,
    ProtocolLink,
    build_search_params,
    combine_statuses,
    euctr_phase,
    parse_download,
    parse_protocol_text,
    parse_search_page,
    parse_trial_page,
    protocol_url,
    record_from_protocols,
    record_from_text,
    record_from_trial_pages,
    search_url,
    trial_page_url,
)
from tracker.config import load_settings
from tracker.errors import ParseError
from tracker.http import Http, make_client

DIR = FIXTURES / "euctr"
DOWNLOAD = (DIR / "euctr_full_trial_details_download.txt").read_bytes()
SEARCH = (DIR / "euctr_search_query_2015-000590-12.html").read_bytes()
PAGES = {
    "2005-002909-23": (DIR / "euctr_trial_2005-002909-23_PT_2016.html").read_bytes(),
    "2009-016529-32": (DIR / "euctr_trial_2009-016529-32_EE_2016.html").read_bytes(),
    "2011-005852-33": (DIR / "euctr_trial_2011-005852-33_3rd_2016.html").read_bytes(),
    "2015-000590-12": (DIR / "euctr_trial_2015-000590-12_DE.html").read_bytes(),
}
AVB, MASITINIB = "2022-002568-62", "2021-002179-21"  # the two trials of the text download
PROTOCOLS = parse_protocol_text(DOWNLOAD)


def _protocols(eudract: str) -> list[Any]:
    return [p for p in PROTOCOLS if p.eudract == eudract]


def _one_line_error(exc: pytest.ExceptionInfo[ParseError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.startswith("euctr: ")
    return message


# ----------------------------------------------------------------------------- requests ----


def test_request_builders() -> None:
    base = "https://www.clinicaltrialsregister.eu/ctr-search"  # pure builders: never requested
    assert search_url(base + "/") == base + "/search"
    assert build_search_params("mesenchymal", 3) == {"query": "mesenchymal", "page": "3"}
    assert build_search_params("q", 0)["page"] == "1"
    windowed = build_search_params("q", 1, entered_from=dt.date(2015, 1, 1),
                                   entered_to=dt.date(2015, 12, 31))
    assert windowed == {"query": "q", "page": "1", "dateFrom": "2015-01-01",
                        "dateTo": "2015-12-31"}
    assert protocol_url("2015-000590-12", "DE", base) == (
        base + "/rest/download/trial/2015-000590-12/DE")
    assert protocol_url("2011-005852-33", "3rd") == (
        base + "/rest/download/trial/2011-005852-33/3rd")
    assert trial_page_url("2015-000590-12", "DE") == base + "/trial/2015-000590-12/DE"


# -------------------------------------------------------------------------- search page ----


def test_search_page_total_and_results() -> None:
    results, total = parse_search_page(SEARCH)
    assert total == 1  # "Trials with a EudraCT protocol (1)"
    assert results == [("2015-000590-12", [
        ProtocolLink("DE", "Completed", "/ctr-search/trial/2015-000590-12/DE")])]
    eudract, protocols = results[0]  # a (number, protocols) pair
    assert eudract == "2015-000590-12"
    assert [(p.country, p.status) for p in protocols] == [("DE", "Completed")]


def test_search_page_gzip_wire_body_is_the_decoded_page() -> None:
    wire = (DIR / "euctr_search_query_2015-000590-12.html.gz").read_bytes()
    assert gzip.decompress(wire) == SEARCH
    assert parse_search_page(gzip.decompress(wire)) == parse_search_page(SEARCH)
    page = (DIR / "euctr_trial_2015-000590-12_DE.html.gz").read_bytes()
    assert gzip.decompress(page) == PAGES["2015-000590-12"]


def test_search_page_and_trial_page_of_one_trial_agree() -> None:
    (result,), _ = parse_search_page(SEARCH)
    page = parse_trial_page(PAGES[result.eudract], country=result.protocols[0].country)
    assert page.eudract == result.eudract and page.country == "DE"
    assert page.status == result.protocols[0].status == "Completed"


def test_crafted_search_page_without_the_total_says_the_layout_changed() -> None:
    # crafted: the recorded search page with its "Trials with a EudraCT protocol (1)" tab
    # label renamed, as a redesign of the register would do
    crafted_search = SEARCH.replace(b"Trials with a EudraCT protocol (1)", b"Protocols (1)")
    assert crafted_search != SEARCH
    with pytest.raises(ParseError) as exc:
        parse_search_page(crafted_search)
    assert "layout of the search page changed" in _one_line_error(exc)
    assert "Trials with a EudraCT protocol" in str(exc.value)


def test_crafted_search_page_without_result_tables_says_the_layout_changed() -> None:
    # crafted: the recorded page with its result table's class renamed (the total still says 1)
    crafted_search = SEARCH.replace(b'<table class="result">', b'<table class="hit">')
    with pytest.raises(ParseError) as exc:
        parse_search_page(crafted_search)
    assert "layout of the search page changed" in _one_line_error(exc)


def test_crafted_search_result_links_that_are_not_protocols_are_ignored() -> None:
    # crafted: the recorded page with a results link added after the DE protocol link, and a
    # second protocol link (GB) without a status span (both shapes the live register shows)
    crafted_search = SEARCH.replace(
        b'<span class="status">(Completed)</span>',
        b'<span class="status">(Completed)</span>\n<a href="/ctr-search/trial/2015-000590-12/GB">'
        b'GB</a>\n<a href="/ctr-search/trial/2015-000590-12/results">View results</a>', 1)
    assert crafted_search != SEARCH
    (result,), total = parse_search_page(crafted_search)
    assert total == 1
    assert [(p.country, p.status) for p in result.protocols] == [
        ("DE", "Completed"), ("GB", None)]


@pytest.mark.parametrize("body", [b"", b"   ", b"<html><body>Service unavailable</body></html>"])
def test_non_search_pages_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        parse_search_page(body)
    _one_line_error(exc)


# ------------------------------------------------------------------------ protocol text ----


def test_text_download_holds_ten_member_state_records_of_two_trials() -> None:
    assert [(p.eudract, p.country) for p in PROTOCOLS] == [
        (AVB, "ES"), (AVB, "SE"), (AVB, "SE"),
        (MASITINIB, "FR"), (MASITINIB, "ES"), (MASITINIB, "GR"), (MASITINIB, "PL"),
        (MASITINIB, "PL"), (MASITINIB, "PT"), (MASITINIB, "HU")]
    first = PROTOCOLS[0]
    assert first.first_entered == "2023-01-16" and first.status == "Ongoing"
    assert first.authority == "Spain - AEMPS"
    # a value running on over several lines, and a translation kept apart from the English
    assert first.first("D.3.7", "Routes of administration") == "Intracerebral use"
    assert first.get("A.3") == [first.get("A.3")[0]] and first.get("A.3")[0].startswith(
        "A Phase 1/2 Open-Label, Ascending Dose")
    assert any(f.code == "A.3" and f.lang == "es" for f in first.fields)
    # section headings do not run into the field before them
    assert first.first("E.1.1.2") == "Diseases [C] - Nervous System Diseases [C10]"


@pytest.mark.parametrize(("eudract", "phase", "yes"), [
    (AVB, "PHASE1_2", {"E.7.1", "E.7.2"}),     # Phase I and II
    (MASITINIB, "PHASE3", {"E.7.3"}),
])
def test_phase_from_the_e7_lines(eudract: str, phase: str, yes: set[str]) -> None:
    record = record_from_protocols(_protocols(eudract))
    assert record.phase == phase
    lines = record.phase_raw.split("\n")
    assert [line.split(" ", 1)[0] for line in lines] == ["E.7.1", "E.7.2", "E.7.3", "E.7.4"]
    text = DOWNLOAD.decode()
    for line in lines:  # verbatim lines of the download
        assert f"\n{line}\n" in text
        assert line.endswith(": Yes" if line.split(" ", 1)[0] in yes else ": No")
    assert lines[0].startswith("E.7.1 Human pharmacology (Phase I): ")


@pytest.mark.parametrize(("yes", "phase"), [
    ((), "UNKNOWN"), (("E.7.1",), "PHASE1"), (("E.7.1", "E.7.2"), "PHASE1_2"),
    (("E.7.2",), "PHASE2"), (("E.7.2", "E.7.3"), "PHASE2_3"), (("E.7.3",), "PHASE3"),
    (("E.7.3", "E.7.4"), "PHASE3"), (("E.7.4",), "PHASE4"), (("E.7.1", "E.7.3"), "UNKNOWN"),
])
def test_phase_rule(yes: tuple[str, ...], phase: str) -> None:
    flags = {c: ("Yes" if c in yes else "No") for c in ("E.7.1", "E.7.2", "E.7.3", "E.7.4")}
    assert euctr_phase(flags) == phase
    assert euctr_phase({}) == "UNKNOWN"
    assert euctr_phase({"E.7.1": "Information not present in EudraCT"}) == "UNKNOWN"


# ------------------------------------------------ one record per trial, from its states ----


def test_member_state_records_merge_into_one_record_per_trial() -> None:
    records = parse_download(DOWNLOAD)
    assert [r.registry_id for r in records] == [MASITINIB, AVB]
    masitinib, avb = records
    for r in records:
        assert r.registry == "euctr" and r.study_type == "INTERVENTIONAL"
        assert r.url == f"https://www.clinicaltrialsregister.eu/ctr-search/search?query={r.registry_id}"
        assert r.status == "ACTIVE_NOT_RECRUITING"  # every country "Ongoing"
        assert len(r.content_hash) == 32
    assert avb.status_raw == "ES: Ongoing; SE: Ongoing"  # two SE records, one SE status
    assert masitinib.status_raw == (
        "ES: Ongoing; FR: Ongoing; GR: Ongoing; HU: Ongoing; PL: Ongoing; PT: Ongoing")
    assert avb.title.startswith("A Phase 1/2 Open-Label, Ascending Dose, Multicenter Study to "
                                "Evaluate the Safety and Preliminary Efficacy of AVB-101")
    assert avb.sponsor == "AviadoBio Ltd" and avb.sponsor_class == "INDUSTRY"
    assert avb.conditions == ["Frontotemporal Dementia With Progranulin Mutations (FTD-GRN)"]
    assert avb.first_posted == dt.date(2023, 1, 16)  # ES, the first entered
    assert avb.enrollment == 15 and avb.enrollment_type == "ESTIMATED"  # F.4.2.2
    (vector,) = avb.interventions
    assert vector.name == "Recombinant AAV-9 vector expressing the human progranulin protein"
    assert vector.type == "GENETIC" and "AVB-101" in vector.other_names
    assert "gene therapy" in (vector.description or "")
    assert avb.eligibility.startswith("Inclusion criteria:\n1. Male or female, 30 to 75 years")
    assert "\n\nExclusion criteria:\n1. Classification of the mutation" in avb.eligibility
    assert [s.value for s in avb.secondary_ids] == ["AVB-PGRN-001"]
    assert {"Spain", "Sweden", "United States"} <= set(avb.countries)
    # the lead protocol is FR, first entered (2022-03-10): its title and sponsor spelling
    assert masitinib.title.startswith("A multicenter, randomized, double-blind, placebo-"
                                      "controlled, parallel-group phase 3 study to evaluate "
                                      "the safety and efficacy of masitinib")
    assert masitinib.title.endswith("cholinesterase inhibitors, memantine")
    assert masitinib.sponsor == "AB Science"  # ES and PT write "ABScience"
    assert masitinib.first_posted == dt.date(2022, 3, 10)
    assert "Alzheimer's disease" in masitinib.conditions
    assert masitinib.keywords == ["Alzheimer's disease (incl subtypes)", "Alzheimer's disease",
                                  "Early onset Alzheimer's disease"]  # MedDRA terms
    assert [i.name for i in masitinib.interventions] == ["Masitinib"]
    assert masitinib.enrollment == 600


def test_the_same_protocols_in_any_order_give_a_byte_identical_record() -> None:
    for eudract in (AVB, MASITINIB):
        protocols = _protocols(eudract)
        base = record_from_protocols(protocols)
        orders = [list(reversed(protocols))]
        for seed in range(8):
            shuffled = protocols[:]
            random.Random(seed).shuffle(shuffled)
            orders.append(shuffled)
        for order in orders:
            record = record_from_protocols(order)
            assert record == base
            assert record.raw == base.raw and record.content_hash == base.content_hash
            assert record.status_raw == base.status_raw and record.title == base.title
            # the same texts concatenated in this order, as a fetch would download them
            text = "\n\n".join(p.text for p in order).encode()
            assert record_from_text(text, eudract) == base


def test_raw_is_the_deduplicated_protocols_in_country_order() -> None:
    # the download holds two different SE versions of 2022-002568-62 (other strength, other
    # criteria): both are kept, in a stable order; an exact duplicate is kept once
    protocols = _protocols(AVB)
    assert len({p.text for p in protocols}) == 3
    record = record_from_protocols([*protocols, protocols[1]])
    raw = record.raw.decode()
    assert raw.count("Summary\nEudraCT Number: 2022-002568-62") == 3
    assert raw.index("/2022-002568-62/ES/") < raw.index("/2022-002568-62/SE/")
    assert record.status_raw == "ES: Ongoing; SE: Ongoing"
    assert "This file contains full details" not in raw  # the download's preamble


@pytest.mark.parametrize("statuses", list(itertools.permutations(
    [("DE", "Ongoing"), ("ES", "Completed"), ("GB", "GB - no longer in EU/EEA")])))
def test_combined_status_does_not_depend_on_the_order(statuses: Any) -> None:
    assert combine_statuses(statuses) == (
        "ACTIVE_NOT_RECRUITING", "DE: Ongoing; ES: Completed; GB: GB - no longer in EU/EEA")


@pytest.mark.parametrize(("statuses", "status"), [
    ([("DE", "Ongoing"), ("ES", "Completed")], "ACTIVE_NOT_RECRUITING"),
    ([("DE", "Restarted")], "ACTIVE_NOT_RECRUITING"),
    ([("DE", "Completed"), ("ES", "Completed")], "COMPLETED"),
    ([("DE", "Completed"), ("EE", "Prematurely Ended")], "COMPLETED"),
    ([("EE", "Prematurely Ended")], "TERMINATED"),
    ([("DE", "Temporarily Halted"), ("ES", "Completed")], "SUSPENDED"),
    ([("DE", "Suspended by CA")], "SUSPENDED"),
    ([("DE", "Trial now transitioned"), ("ES", "Completed")], "OTHER"),
    ([("GB", "GB - no longer in EU/EEA"), ("ES", "Completed")], "COMPLETED"),
    ([("GB", "GB - no longer in EU/EEA")], "OTHER"),
    ([("DE", "Not Authorised"), ("ES", "Completed")], "COMPLETED"),
    ([("DE", "Not Authorised"), ("ES", "Prohibited by CA")], "WITHDRAWN"),
    ([("DE", "Some future value")], "OTHER"),
    ([("3rd", None)], "UNKNOWN"),
    ([], "UNKNOWN"),
])
def test_status_rule(statuses: list[tuple[str, str | None]], status: str) -> None:
    assert combine_statuses(statuses)[0] == status


def test_status_raw_is_sorted_and_deduplicated() -> None:
    assert combine_statuses([("SE", "Ongoing"), ("ES", "Ongoing"), ("SE", "Ongoing")]) == (
        "ACTIVE_NOT_RECRUITING", "ES: Ongoing; SE: Ongoing")
    assert combine_statuses([("3rd", None)]) == ("UNKNOWN", None)


# --------------------------------------------------------------------------- HTML pages ----


@pytest.mark.parametrize(("eudract", "country", "status", "canonical", "phase", "sponsor"), [
    ("2005-002909-23", "PT", "Completed", "COMPLETED", "PHASE3", "F Hoffmann La-Roche AG"),
    ("2009-016529-32", "EE", "Prematurely Ended", "TERMINATED", "PHASE3", "GW Pharma Ltd"),
    ("2011-005852-33", "3rd", None, "UNKNOWN", "PHASE2", "Novartis Pharma AG"),
    ("2015-000590-12", "DE", "Completed", "COMPLETED", "PHASE3", "Novartis Pharma GmbH"),
])
def test_trial_pages(eudract: str, country: str, status: str | None, canonical: str,
                     phase: str, sponsor: str) -> None:
    protocol = parse_trial_page(PAGES[eudract])
    assert (protocol.eudract, protocol.country, protocol.status) == (eudract, country, status)
    record = record_from_trial_pages([PAGES[eudract]])
    assert record.registry_id == eudract and record.sponsor == sponsor
    assert (record.status, record.phase) == (canonical, phase)
    assert record.status_raw == (f"{country}: {status}" if status else None)
    assert record.phase_raw and record.phase_raw.count("\n") == 3
    assert EUCTR.parse_raw(record.raw) == record  # pages are stored as protocol text


def test_trial_page_values() -> None:
    tocilizumab = record_from_trial_pages([PAGES["2005-002909-23"]])
    assert tocilizumab.title == ("Long-term extension study of safety during treatment with "
                                 "tocilizumab (MRA) in patients completing treatment in MRA "
                                 "core studies.")
    assert tocilizumab.conditions == ["Rheumatoid arthritis"]
    assert tocilizumab.has_results is False  # "Removed from public view", no link
    assert tocilizumab.completion_date == "2013-04-24"
    assert tocilizumab.interventions[0].name == "MRA"
    assert "tocilizumab" in tocilizumab.interventions[0].other_names

    sativex = record_from_trial_pages([PAGES["2009-016529-32"]])
    assert sativex.interventions[0].name == "Sativex" and sativex.countries == ["Estonia"]
    assert sativex.eligibility.startswith(
        "Inclusion criteria:\nFor inclusion in the study patients must fulfill ALL of the "
        "following criteria:\n-Patient has completed the parent study")  # <br> kept as lines

    malaria = record_from_trial_pages([PAGES["2011-005852-33"]])
    assert malaria.has_results is True  # "View results" link
    assert malaria.countries == ["Benin", "Burkina Faso", "Congo", "Nigeria", "Togo"]
    assert malaria.first_posted == dt.date(2016, 4, 11)
    assert malaria.start_date == "2016-04-11"  # outside the EU/EEA: entered in EudraCT
    assert malaria.enrollment == 30

    everolimus = record_from_trial_pages([PAGES["2015-000590-12"]])
    assert everolimus.title.startswith("A 24-month multi-center, open-label, randomized")
    assert everolimus.conditions == ["liver transplantation"]
    assert everolimus.completion_date == "2015-10-05"
    assert everolimus.first_posted == dt.date(2015, 7, 1)
    assert everolimus.secondary_ids[0].value == "CRAD001HDE53"
    assert "Everolimus" in everolimus.interventions[0].other_names


def test_pages_of_different_trials_do_not_merge() -> None:
    with pytest.raises(ParseError) as exc:
        record_from_trial_pages([PAGES["2005-002909-23"], PAGES["2009-016529-32"]])
    assert "2 trials" in _one_line_error(exc)


def test_crafted_trial_page_without_tricell_rows_says_the_layout_changed() -> None:
    # crafted: the recorded DE page with every "tricell" row class renamed
    crafted_page = PAGES["2015-000590-12"].replace(b'class="tricell"', b'class="row"')
    with pytest.raises(ParseError) as exc:
        parse_trial_page(crafted_page)
    assert "layout of the trial page changed" in _one_line_error(exc)


def test_crafted_protocol_text_without_summary_says_the_layout_changed() -> None:
    # crafted: the recorded download with its records' "Summary" heading lines renamed
    crafted_text = DOWNLOAD.replace(b"\nSummary\n", b"\nOverview\n")
    with pytest.raises(ParseError) as exc:
        parse_protocol_text(crafted_text)
    assert "layout of the protocol text changed" in _one_line_error(exc)


def test_crafted_protocol_without_field_lines_says_the_layout_changed() -> None:
    # crafted: the first record of the recorded download cut after its Summary block
    first = PROTOCOLS[0].text
    crafted_text = first[:first.index("\nA. Protocol Information")]
    with pytest.raises(ParseError) as exc:
        parse_protocol_text(crafted_text)
    assert "layout of the protocol text changed" in _one_line_error(exc)


def test_truncated_texts_and_pages_raise_only_parse_errors() -> None:
    """Whatever part is missing, reading gives a record or a ParseError, nothing else."""
    text = PROTOCOLS[3].text
    for cut in range(0, len(text), 613):
        try:
            record_from_text(text[:cut])
        except ParseError:
            pass
    page = PAGES["2009-016529-32"]
    for cut in range(0, len(page), 5003):
        try:
            record_from_trial_pages([page[:cut]])
        except ParseError:
            pass


def test_crafted_line_separators_are_sanitised() -> None:
    # crafted: U+2028 (LINE SEPARATOR) and U+2029 put into the first record's title and
    # inclusion criteria of the recorded download (the register's texts sometimes hold them)
    first = PROTOCOLS[0].text
    crafted_text = first.replace("A Phase 1/2 Open-Label,", "A Phase 1/2\u2028Open-Label,", 1)
    crafted_text = crafted_text.replace("inclusive, at Screening;", "inclusive,\u2029at Screening;")
    assert "\u2028" in crafted_text and "\u2029" in crafted_text
    record = record_from_text(crafted_text.encode())
    assert record.title.startswith("A Phase 1/2 Open-Label, Ascending Dose")
    assert "\u2028" not in record.title and "\u2029" not in (record.eligibility or "")
    assert "30 to 75 years of age, inclusive,\nat Screening;" in record.eligibility


# ------------------------------------------------------------------------------- source ----


def _settings() -> Any:
    # the register's default rate is 0.5/s; the mock transport needs no politeness
    return load_settings({"db": "unused.sqlite"}, env={"TRACKER_EUCTR_RATE_PER_SECOND": "100"})


def _de_protocol_text() -> bytes:
    # The register's text download of 2015-000590-12/DE was not recorded: this is that
    # protocol in the text format as parse_trial_page renders it from the recorded DE page.
    return parse_trial_page(PAGES["2015-000590-12"]).text.encode()


def test_source_declares_its_contract() -> None:
    src = EUCTR.from_settings(_settings())
    assert (src.name, src.kind, src.registry) == ("euctr", "study", "euctr")
    assert src.capabilities == frozenset({FETCH_IDS})
    assert src.settings.url == "https://www.clinicaltrialsregister.eu/ctr-search"


def test_fetch_pages_the_search_and_downloads_each_member_state() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/ctr-search/search"):
            return httpx.Response(200, content=SEARCH)
        if request.url.path.endswith("/rest/download/trial/2015-000590-12/DE"):
            return httpx.Response(200, content=_de_protocol_text())
        return httpx.Response(404, text="not found")

    settings = _settings()
    with make_client(settings, transport=httpx.MockTransport(handler)) as client:
        src = EUCTR(settings.source("euctr"))
        http = Http(client, settings)
        pages = list(src.fetch(http, Window(dt.date(2025, 1, 1), dt.date(2025, 1, 9))))
        counted = src.count(http, Window(None, dt.date(2025, 1, 9)))
    assert [(len(p.items), p.total) for p in pages] == [(1, 1)]
    assert [r.url.path for r in seen[:2]] == [
        "/ctr-search/search", "/ctr-search/rest/download/trial/2015-000590-12/DE"]
    params = dict(seen[0].url.params)
    assert params == {"query": settings.source("euctr").query, "page": "1"}  # no date filter
    item = pages[0].items[0]
    assert src.record_id(item) == "2015-000590-12" and item.countries == ["DE"]
    record = src.parse(item)
    assert record.registry_id == "2015-000590-12" and record.status_raw == "DE: Completed"
    assert record.sponsor == "Novartis Pharma GmbH"
    # round trip: the stored bytes read again give the same record
    assert EUCTR.parse_raw(src.item_bytes(item)) == record
    assert src.parse(src.item_from_bytes(src.item_bytes(item))) == record
    assert EUCTR.parse_raw(record.raw) == record
    assert (counted.records, counted.requests) == (1, 2)  # 1 search page + 1 protocol


def test_fetch_ids_searches_each_number_and_skips_unknown_ones() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path}?{request.url.params.get('query', '')}")
        if request.url.params.get("query") == "2015-000590-12":
            return httpx.Response(200, content=SEARCH)
        if request.url.path.endswith("/2015-000590-12/DE"):
            return httpx.Response(200, content=_de_protocol_text())
        return httpx.Response(404, text="not found")

    settings = _settings()
    with make_client(settings, transport=httpx.MockTransport(handler)) as client:
        src = EUCTR(settings.source("euctr"))
        pages = list(src.fetch_ids(Http(client, settings),
                                   ["2019-999999-99", "NCT00000000", "2015-000590-12"]))
    assert seen == ["/ctr-search/search?2019-999999-99", "/ctr-search/search?2015-000590-12",
                    "/ctr-search/rest/download/trial/2015-000590-12/DE?"]
    assert [[i.eudract for i in p.items] for p in pages] == [["2015-000590-12"]]


def test_round_trip_of_items_built_from_the_download() -> None:
    src = EUCTR(_settings().source("euctr"))
    for eudract in (AVB, MASITINIB):
        item = EuctrItem(eudract, "\n\n".join(p.text for p in _protocols(eudract)).encode())
        record = src.parse(item)
        assert EUCTR.parse_raw(src.item_bytes(item)) == record
        assert src.item_from_bytes(src.item_bytes(item)).eudract == eudract
        assert EUCTR.parse_raw(record.raw) == record


def test_an_item_of_another_trial_is_a_parse_error() -> None:
    src = EUCTR(_settings().source("euctr"))
    item = EuctrItem(AVB, "\n\n".join(p.text for p in _protocols(MASITINIB)).encode())
    with pytest.raises(ParseError) as exc:
        src.parse(item)
    assert MASITINIB in _one_line_error(exc)
    with pytest.raises(ParseError):
        src.parse(EuctrItem(AVB, b""))


# --------------------------------------------------------------------------------------------
# The 7-day feed (crafted_feed_bydates.xml: the documented shape, see the fixtures' README)
# --------------------------------------------------------------------------------------------
def test_the_feed_names_its_trials_by_eudract_number() -> None:
    from sources.euctr import parse_feed

    body = (FIXTURES / "euctr" / "crafted_feed_bydates.xml").read_bytes()
    assert parse_feed(body) == ["2022-002568-62", "2021-002179-21"]
    crafted_empty_feed = body[:body.index(b"<item>")] + b"</channel></rss>"
    assert parse_feed(crafted_empty_feed) == []
    crafted_atom = (b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><link href="https://www.'
                    b'clinicaltrialsregister.eu/ctr-search/search?query=eudract_number:'
                    b'2019-001698-10"/></entry></feed>')
    assert parse_feed(crafted_atom) == ["2019-001698-10"]


@pytest.mark.parametrize("crafted, why", [
    (b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>",
     "not an RSS or Atom feed (its root is <html>"),
    (b"<html><body><p>Service temporarily unavailable<br></body></html>",
     "not well-formed XML"),
    (b"<searchResults><trial/></searchResults>", "its root is <searchResults>"),
    (b"", "is empty"),
])
def test_a_feed_that_is_not_a_feed_is_one_parse_error(crafted: bytes, why: str) -> None:
    from sources.euctr import parse_feed

    with pytest.raises(ParseError) as info:
        parse_feed(crafted)
    assert "\n" not in str(info.value) and str(info.value).startswith("euctr: ")
    assert why in str(info.value)


def test_the_feed_is_read_only_for_a_window_it_covers() -> None:
    from sources.euctr import FEED_DAYS, build_feed_params, feed_covers, feed_url

    today = dt.date(2026, 12, 1)
    assert feed_covers(Window(today - dt.timedelta(days=4), today))  # the nightly window
    assert feed_covers(Window(today - dt.timedelta(days=FEED_DAYS), today))
    assert not feed_covers(Window(today - dt.timedelta(days=FEED_DAYS + 1), today))
    assert not feed_covers(Window(None, today))  # a first or --full run
    assert feed_url("https://x.example/ctr-search/") == \
        "https://x.example/ctr-search/rest/feed/bydates"
    assert build_feed_params('mesenchymal OR "bone marrow"') == {
        "query": 'mesenchymal OR "bone marrow"'}


def test_a_nightly_count_reads_the_feed_in_one_request() -> None:
    seen: list[httpx.Request] = []
    feed = (FIXTURES / "euctr" / "crafted_feed_bydates.xml").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/rest/feed/bydates"):
            return httpx.Response(200, content=feed)
        return httpx.Response(404, text="not found")

    settings = _settings()
    with make_client(settings, transport=httpx.MockTransport(handler)) as client:
        src = EUCTR(settings.source("euctr"))
        counted = src.count(Http(client, settings),
                            Window(dt.date(2025, 1, 5), dt.date(2025, 1, 9)))
    assert [r.url.path for r in seen] == ["/ctr-search/rest/feed/bydates"]
    assert dict(seen[0].url.params) == {"query": settings.source("euctr").query}
    assert counted.records == 2 and "7-day feed" in counted.note
