"""Parser, request and windowing tests for the ISRCTN source, on the recorded (trimmed) responses.

Every value asserted below was read in the XML of ``tests/fixtures/isrctn/`` (see its README:
real responses, trimmed by their original author). Variants a test needs are derived from those
files in the code here and named ``crafted_*``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FIXTURES
from lxml import etree
from sqlalchemy import select
from sqlalchemy.engine import Engine

from db.models import SourceState, Study
from db.records import SecondaryId
from sources.base import FETCH_IDS, Window
from sources.isrctn import (
    FULL_LOAD_START,
    ISRCTN,
    NS,
    RawTrial,
    count_params,
    derive_status,
    isrctn_phase,
    item_from_bytes,
    parse_page,
    parse_trial,
    search_params,
    split_windows,
    trial_path,
    window_bounds,
)
from tracker.config import Settings, load_settings
from tracker.errors import IncompleteError, ParseError
from tracker.http import Http, make_client
from tracker.pipeline import ResultSet, check_complete, run_source

DIR = FIXTURES / "isrctn"
SEARCH = DIR / "isrctn_query_mecfs_3of11_trimmed.xml"
PACE = DIR / "isrctn_trial_ISRCTN54285094_pace_trimmed.xml"
CPMS_NCT = DIR / "isrctn_trial_ISRCTN62918594_results_trimmed.xml"
GEFAPIXANT = DIR / "isrctn_trial_ISRCTN38597726_trimmed.xml"
FILES = [SEARCH, PACE, CPMS_NCT, GEFAPIXANT]
D = dt.date


def _items(path: Path) -> list[RawTrial]:
    return parse_page(path.read_bytes())[0]


ALL_ITEMS = [(path.name, item) for path in FILES for item in _items(path)]


def _trial(rid: str) -> Any:
    for _name, item in ALL_ITEMS:
        if item.isrctn_id == rid:
            return parse_trial(item.raw)
    raise AssertionError(rid)


# ------------------------------------------------------------------------ responses ----------


@pytest.mark.parametrize(("path", "total", "ids"), [
    (SEARCH, 11, ["ISRCTN15375673", "ISRCTN16025168", "ISRCTN16132141"]),
    (PACE, 1, ["ISRCTN54285094"]),
    (CPMS_NCT, 1, ["ISRCTN62918594"]),
    (GEFAPIXANT, 1, ["ISRCTN38597726"]),
], ids=lambda v: v.name if isinstance(v, Path) else None)
def test_parse_page_reads_total_and_each_trials_own_bytes(path: Path, total: int,
                                                          ids: list[str]) -> None:
    items, got_total = parse_page(path.read_bytes())
    assert got_total == total
    assert [i.isrctn_id for i in items] == ids
    for item in items:
        # each item is its fullTrial alone, in the registry's namespace, parseable by itself
        assert item.raw.startswith(b'<fullTrial xmlns="http://www.67bricks.com/isrctn">')
        assert item.raw.endswith(b"</fullTrial>")
        assert item.raw.count(b"<fullTrial") == 1
        assert b"<isrctn dateAssigned=" in item.raw


@pytest.mark.parametrize(("name", "item"), ALL_ITEMS,
                         ids=[i.isrctn_id or "?" for _n, i in ALL_ITEMS])
def test_every_recorded_trial_parses(name: str, item: RawTrial) -> None:
    rec = parse_trial(item.raw)
    digits = item.isrctn_id.removeprefix("ISRCTN") if item.isrctn_id else ""
    assert rec.registry == "isrctn" and rec.registry_id == item.isrctn_id
    assert re.fullmatch(r"ISRCTN\d{8}", rec.registry_id)
    assert rec.url == f"https://www.isrctn.com/ISRCTN{digits}"
    assert rec.title and rec.official_title
    assert rec.raw == item.raw and len(rec.content_hash) == 32
    assert rec.last_update_posted is not None and rec.first_posted is not None
    assert rec.countries and rec.conditions and rec.interventions and rec.eligibility
    assert rec.status in {"NOT_YET_RECRUITING", "RECRUITING", "ACTIVE_NOT_RECRUITING",
                          "COMPLETED"}
    assert rec.sponsor and rec.primary_outcomes
    # parse(element) and parse(bytes) agree
    assert parse_trial(etree.fromstring(item.raw)) == rec


EXPECTED = [
    # id, study_type, phase, phase_raw, status, enrollment, enrollment_type, start, end, updated
    ("ISRCTN15375673", "OBSERVATIONAL", "NOT_APPLICABLE", None, "RECRUITING", 3060, "ESTIMATED",
     "2026-05-01", "2028-12-31", D(2026, 5, 26)),
    ("ISRCTN16025168", "INTERVENTIONAL", "UNKNOWN", None, "NOT_YET_RECRUITING", 210,
     "ESTIMATED", "2026-09-01", "2028-08-31", D(2026, 4, 10)),
    ("ISRCTN16132141", "OBSERVATIONAL", "NOT_APPLICABLE", None, "ACTIVE_NOT_RECRUITING", 49,
     "ACTUAL", "2024-09-23", "2025-12-31", D(2025, 11, 18)),
    ("ISRCTN54285094", "INTERVENTIONAL", "NOT_APPLICABLE", "Not Applicable", "COMPLETED", 600,
     "ESTIMATED", "2004-06-14", "2011-07-01", D(2015, 11, 3)),
    ("ISRCTN62918594", "INTERVENTIONAL", "PHASE1_2", "Phase I/II", "COMPLETED", 25, "ACTUAL",
     "2021-10-07", "2025-09-10", D(2026, 9, 30)),
    ("ISRCTN38597726", "INTERVENTIONAL", "NOT_APPLICABLE", "Not Applicable",
     "NOT_YET_RECRUITING", 34, "ESTIMATED", "2026-11-02", "2028-01-05", D(2026, 8, 4)),
]


@pytest.mark.parametrize(("rid", "study_type", "phase", "phase_raw", "status", "enrollment",
                          "enrollment_type", "start", "end", "updated"), EXPECTED,
                         ids=[e[0] for e in EXPECTED])
def test_design_phase_status_enrollment_and_dates(
        rid: str, study_type: str, phase: str, phase_raw: str | None, status: str,
        enrollment: int, enrollment_type: str, start: str, end: str, updated: dt.date) -> None:
    rec = _trial(rid)
    assert (rec.study_type, rec.phase, rec.phase_raw) == (study_type, phase, phase_raw)
    assert rec.status == status
    assert (rec.enrollment, rec.enrollment_type) == (enrollment, enrollment_type)
    assert (rec.start_date, rec.completion_date, rec.last_update_posted) == (start, end, updated)


def test_status_is_derived_from_dates_as_of_the_last_update() -> None:
    # ISRCTN16132141: recruitment ended 2025-10-27, overall end 2025-12-31, updated 2025-11-18
    rec = _trial("ISRCTN16132141")
    assert rec.status == "ACTIVE_NOT_RECRUITING"
    assert rec.status_raw == ("recruitmentStart=2024-09-23; recruitmentEnd=2025-10-27; "
                              "overallEndDate=2025-12-31; lastUpdated=2025-11-18")
    # ISRCTN38597726: recruitment starts 2026-11-02, after its update of 2026-08-04
    assert _trial("ISRCTN38597726").status == "NOT_YET_RECRUITING"


def test_titles_acronyms_and_missing_value_texts() -> None:
    pace = _trial("ISRCTN54285094")
    assert pace.title.startswith("A randomised controlled trial of adaptive pacing")
    assert pace.acronym == ("PACE: Pacing, Activity, and Cognitive behaviour therapy: a "
                            "randomised Evaluation")
    assert pace.brief_summary is None  # "Not provided at time of registration"
    coaching = _trial("ISRCTN16025168")
    assert coaching.acronym is None  # <acronym />
    # "Plain English summary of protocol not provided at time of registration"
    assert coaching.brief_summary is None
    assert _trial("ISRCTN16132141").acronym == "OxLac"
    hmbd = _trial("ISRCTN62918594")
    assert hmbd.title == "A Phase I/IIa trial of HMBD-001 in advanced HER3-positive solid tumours"
    assert hmbd.official_title and hmbd.official_title.startswith(
        "A Cancer Research UK Phase I/IIa open-label")


def test_secondary_ids_of_a_record_with_nct_eudract_ctis_and_iras() -> None:
    rec = _trial("ISRCTN62918594")
    assert rec.secondary_ids == [
        SecondaryId("2020-005891-36", "EudraCT"),
        SecondaryId("NCT05057013", "NCT"),
        SecondaryId("298897", "IRAS"),
        SecondaryId("2020-005891-36", "CTIS"),
        SecondaryId("49816", "CPMS"),
        SecondaryId("CRUKD/22/002", "Protocol serial number"),
    ]


def test_secondary_numbers_typed_by_an_organisation_and_legacy_serial_numbers() -> None:
    assert _trial("ISRCTN16025168").secondary_ids == [
        SecondaryId("GA N° 101095654", "Other",
                    "EU Horizon Europe Research and Innovation Programme"),
        SecondaryId("THCS2025-404", "Other",
                    "Latvian Council of Science (Latvijas Zinātnes Padome)"),
    ]
    assert _trial("ISRCTN54285094").secondary_ids == [
        SecondaryId("G0200434", "Protocol serial number")]
    # empty <eudraCTNumber />, <clinicalTrialsGovNumber />, <secondaryNumbers />
    assert _trial("ISRCTN38597726").secondary_ids == []


def test_conditions_keywords_countries_and_sponsor() -> None:
    hmbd = _trial("ISRCTN62918594")
    # one <description> listing a condition a line
    assert hmbd.conditions[:3] == ["Bladder Cancer", "Triple Negative Breast Cancer",
                                   "Castration-resistant Prostate Cancer (metastatic)"]
    assert len(hmbd.conditions) == 10 and hmbd.keywords == ["Cancer"]
    assert (hmbd.sponsor, hmbd.sponsor_class) == ("Cancer Research UK", "Charity")
    assert hmbd.countries == ["United Kingdom", "England"]
    pace = _trial("ISRCTN54285094")
    assert pace.conditions == ["Symptoms and general pathology"]
    assert pace.keywords == ["Mental and Behavioural Disorders", "Chronic fatigue syndrome (CFS)"]
    assert (pace.sponsor, pace.sponsor_class) == ("Queen Mary University of London (UK)",
                                                  "University/education")
    coaching = _trial("ISRCTN16025168")
    assert coaching.countries == ["Canada", "France", "Italy", "Latvia"]
    # four sponsors: the first the trial's parties list; its <sponsorType /> is empty
    assert (coaching.sponsor, coaching.sponsor_class) == ("Université Paris-Est Créteil", None)
    assert _trial("ISRCTN16132141").sponsor == "University of Oxford"


def test_interventions_named_by_drug_or_by_their_description() -> None:
    (hmbd,) = _trial("ISRCTN62918594").interventions
    assert (hmbd.type, hmbd.name) == ("Drug", "HMBD-001")
    assert hmbd.description and hmbd.description.startswith("This is an open label")
    (gefapixant,) = _trial("ISRCTN38597726").interventions
    assert (gefapixant.type, gefapixant.name) == ("Drug", "Gefapixant")
    (pace,) = _trial("ISRCTN54285094").interventions
    assert pace.type == "Other"  # no drugNames: the first line of the description
    assert pace.name == ("PACE is a multicentre randomised controlled trial. The group "
                         "assignment is parallel group.")
    (long_line,) = _trial("ISRCTN15375673").interventions
    assert long_line.name.endswith(" ...") and len(long_line.name) <= 204


def test_outcomes_summaries_eligibility_and_text_entities() -> None:
    assert _trial("ISRCTN38597726").primary_outcomes == [
        "Hypoxic ventilatory response (HVR) at rest"]
    pace = _trial("ISRCTN54285094")  # legacy: <primaryOutcomes /> empty, text in primaryOutcome
    assert len(pace.primary_outcomes) == 1
    assert pace.primary_outcomes[0].startswith("1. Is APT and SSMC more effective")
    assert pace.detailed_description and pace.detailed_description.startswith(
        "1. Are cognitive behaviour theraphy (CBT)")
    assert "Study design: Multicentre randomised controlled trial" in pace.detailed_description
    gef = _trial("ISRCTN38597726")
    assert gef.eligibility and gef.eligibility.startswith("Inclusion criteria:\n1. 18-75 years old")
    assert "\n\nExclusion criteria:\n1. Body mass index ≥35 kg/m²" in gef.eligibility
    assert "(Hb <100 g/dl)" in gef.eligibility  # &lt; decoded


def test_results_and_references() -> None:
    pace = _trial("ISRCTN54285094")
    assert pace.has_results is True  # publicationStage Results
    assert [(r.pmid, r.type) for r in pace.references] == [
        ("21334061", "RESULT"), ("23363640", "RESULT"), ("23967878", "RESULT")]
    hmbd = _trial("ISRCTN62918594")
    assert hmbd.has_results is True
    assert [r.citation for r in hmbd.references] == [
        "2023 Abstract results in https://doi.org/10.1016/j.annonc.2023.09.1873 (added 30/09/2026)",
        "2023 Abstract results in https://doi.org/10.1016/j.annonc.2023.09.1874 (added 30/09/2026)",
    ]
    assert _trial("ISRCTN38597726").has_results is False
    assert _trial("ISRCTN38597726").references == []


def test_first_posted_is_the_date_the_number_was_assigned() -> None:
    assert _trial("ISRCTN54285094").first_posted == D(2003, 5, 22)
    assert _trial("ISRCTN16132141").first_posted == D(2025, 11, 21)


@pytest.mark.parametrize(("name", "item"), ALL_ITEMS,
                         ids=[i.isrctn_id or "?" for _n, i in ALL_ITEMS])
def test_round_trip_parse_raw_of_item_bytes(name: str, item: RawTrial) -> None:
    src = ISRCTN(_settings().source("isrctn"))
    assert ISRCTN.parse_raw(src.item_bytes(item)) == src.parse(item)
    assert src.record_id(item) == src.parse(item).registry_id
    assert src.item_from_bytes(src.item_bytes(item)) == item


def test_a_single_trial_response_parses_as_its_trial() -> None:
    body = CPMS_NCT.read_bytes()
    assert parse_trial(body) == parse_trial(_items(CPMS_NCT)[0].raw)


# ------------------------------------------------------------------- phase and status -------


@pytest.mark.parametrize(("phases", "canonical"), [
    (["Phase I"], "PHASE1"),
    (["Phase I/II"], "PHASE1_2"),
    (["Phase II"], "PHASE2"),
    (["Phase II/III"], "PHASE2_3"),
    (["Phase III"], "PHASE3"),
    (["Phase III/IV"], "PHASE3"),
    (["Phase IV"], "PHASE4"),
    (["Not Applicable"], "NOT_APPLICABLE"),
    (["Not Specified"], "UNKNOWN"),
    (["Phase I", "Phase II"], "PHASE1_2"),  # two interventions
    (["Phase II", "Phase III"], "PHASE2_3"),
    (["Phase I", "Phase III"], "PHASE3"),  # no canonical combination: the highest
    (["Phase I/II", "Phase III"], "PHASE3"),
    (["Not Applicable", "Phase II"], "PHASE2"),
    (["Not Applicable", "Not Specified"], "UNKNOWN"),
    ([" phase  ii "], "PHASE2"),
    (["Phase 0"], "UNKNOWN"),
    ([], "UNKNOWN"),
    ([None, ""], "UNKNOWN"),
])
def test_isrctn_phase(phases: list[str | None], canonical: str) -> None:
    assert isrctn_phase(phases) == canonical


def test_no_phase_of_an_observational_study_is_not_applicable() -> None:
    assert isrctn_phase([], observational=True) == "NOT_APPLICABLE"
    assert isrctn_phase(["Not Specified"], observational=True) == "UNKNOWN"


ASOF = D(2026, 1, 1)


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"override": "Stopped"}, "TERMINATED"),
    ({"override": "Suspended"}, "SUSPENDED"),
    ({"override": "Withdrawn"}, "WITHDRAWN"),
    ({"override": "Something new"}, "OTHER"),
    ({"start_override": "Anticipated", "recruitment_start": D(2020, 1, 1)}, "NOT_YET_RECRUITING"),
    ({"overall_end": ASOF}, "COMPLETED"),
    ({"recruitment_start": D(2026, 1, 2)}, "NOT_YET_RECRUITING"),
    ({"recruitment_start": ASOF, "recruitment_end": D(2026, 6, 1)}, "RECRUITING"),
    ({"recruitment_start": D(2025, 1, 1), "recruitment_end": ASOF}, "ACTIVE_NOT_RECRUITING"),
    ({"recruitment_start": D(2025, 1, 1)}, "UNKNOWN"),
    ({}, "UNKNOWN"),
    ({"recruitment_start": D(2025, 1, 1), "as_of": None}, "UNKNOWN"),
])
def test_derive_status(kwargs: dict[str, Any], status: str) -> None:
    args: dict[str, Any] = {"override": None, "start_override": None, "recruitment_start": None,
                            "recruitment_end": None, "overall_end": None, "as_of": ASOF}
    assert derive_status(**{**args, **kwargs}) == status


def test_a_status_override_wins_over_the_dates() -> None:
    # crafted: the real ISRCTN62918594 record with <recruitmentStatusOverride>Stopped</...>
    crafted_stopped = CPMS_NCT.read_bytes().replace(
        b"<recruitmentStatusOverride />",
        b"<recruitmentStatusOverride>Stopped</recruitmentStatusOverride>")
    assert crafted_stopped != CPMS_NCT.read_bytes()
    rec = parse_trial(crafted_stopped)
    assert rec.status == "TERMINATED"
    assert rec.status_raw and rec.status_raw.startswith("recruitmentStatusOverride=Stopped; ")


def test_several_interventions_take_the_highest_phase_and_keep_each_raw_phase() -> None:
    # crafted: ISRCTN62918594 with its one intervention repeated as a "Phase III" comparator
    body = CPMS_NCT.read_bytes()
    start, end = body.index(b"<intervention>"), body.index(b"</intervention>") + 15
    second = body[start:end].replace(b"Phase I/II", b"Phase III").replace(b"HMBD-001",
                                                                          b"Comparator")
    crafted_two = body[:end] + second + body[end:]
    rec = parse_trial(crafted_two)
    assert [iv.name for iv in rec.interventions] == ["HMBD-001", "Comparator"]
    assert (rec.phase, rec.phase_raw) == ("PHASE3", "Phase I/II|Phase III")


# ----------------------------------------------------------------------------- requests -----


def test_search_params_q_string() -> None:
    params = search_params('"mesenchymal stem" OR "stromal vascular fraction"', D(2025, 1, 1),
                           D(2025, 1, 5), 100)
    assert params == {
        "q": '("mesenchymal stem" OR "stromal vascular fraction") AND lastEdited GE '
             "2025-01-01T00:00:00.000Z AND lastEdited LT 2025-01-05T00:00:00.000Z",
        "limit": "100",
    }
    assert count_params("x", D(2025, 1, 1), D(2025, 1, 2)) == {
        "q": "(x) AND lastEdited GE 2025-01-01T00:00:00.000Z AND lastEdited LT "
             "2025-01-02T00:00:00.000Z",
        "limit": "0",
    }
    with pytest.raises(ValueError, match="empty lastEdited range"):
        search_params("x", D(2025, 1, 2), D(2025, 1, 2), 1)
    with pytest.raises(ValueError, match="limit"):
        search_params("x", D(2025, 1, 1), D(2025, 1, 2), -1)


def test_trial_path() -> None:
    assert trial_path("ISRCTN62918594") == "trial/62918594/format/default"
    assert trial_path("62918594") == "trial/62918594/format/default"
    for bad in ("NCT05057013", "ISRCTN1234567", "sha:abc", ""):
        with pytest.raises(ValueError):
            trial_path(bad)


def test_window_bounds_are_half_open_and_include_the_last_day() -> None:
    assert window_bounds(Window(D(2025, 1, 1), D(2025, 1, 4))) == (D(2025, 1, 1), D(2025, 1, 5))
    assert window_bounds(Window(None, D(2025, 1, 4))) == (FULL_LOAD_START, D(2025, 1, 5))
    assert FULL_LOAD_START == D(2000, 1, 1)
    assert window_bounds(Window(D(2025, 1, 6), D(2025, 1, 4))) is None
    assert window_bounds(Window(D(2025, 1, 4), D(2025, 1, 4))) == (D(2025, 1, 4), D(2025, 1, 5))


def _counter(per_day: dict[dt.date, int]) -> tuple[Callable[[dt.date, dt.date], int],
                                                    list[tuple[dt.date, dt.date]]]:
    asked: list[tuple[dt.date, dt.date]] = []

    def count(lo: dt.date, hi: dt.date) -> int:
        asked.append((lo, hi))
        return sum(n for day, n in per_day.items() if lo <= day < hi)

    return count, asked


def test_a_window_that_fits_is_counted_once() -> None:
    count, asked = _counter({D(2025, 1, 2): 3})
    assert list(split_windows(D(2025, 1, 1), D(2025, 1, 9), count, 3)) == [
        (D(2025, 1, 1), D(2025, 1, 9), 3)]
    assert asked == [(D(2025, 1, 1), D(2025, 1, 9))]


def test_a_window_over_the_limit_is_split_in_halves_until_each_fits() -> None:
    # 8 days: 2 + 1 records in the first half, 2 in the second; 2 records per request at most
    count, asked = _counter({D(2025, 1, 1): 2, D(2025, 1, 4): 1, D(2025, 1, 7): 2})
    got = list(split_windows(D(2025, 1, 1), D(2025, 1, 9), count, 2))
    assert asked == [
        (D(2025, 1, 1), D(2025, 1, 9)),  # 5: split
        (D(2025, 1, 1), D(2025, 1, 5)),  # 3: split
        (D(2025, 1, 1), D(2025, 1, 3)),  # 2: fits
        (D(2025, 1, 3), D(2025, 1, 5)),  # 1: fits
        (D(2025, 1, 5), D(2025, 1, 9)),  # 2: fits
    ]
    assert got == [(D(2025, 1, 1), D(2025, 1, 3), 2), (D(2025, 1, 3), D(2025, 1, 5), 1),
                   (D(2025, 1, 5), D(2025, 1, 9), 2)]


def test_a_single_day_over_the_limit_is_kept_whole() -> None:
    count, asked = _counter({D(2025, 1, 2): 7})
    got = list(split_windows(D(2025, 1, 1), D(2025, 1, 4), count, 5))
    assert asked == [(D(2025, 1, 1), D(2025, 1, 4)), (D(2025, 1, 1), D(2025, 1, 2)),
                     (D(2025, 1, 2), D(2025, 1, 4)), (D(2025, 1, 2), D(2025, 1, 3)),
                     (D(2025, 1, 3), D(2025, 1, 4))]
    assert got == [(D(2025, 1, 1), D(2025, 1, 2), 0), (D(2025, 1, 2), D(2025, 1, 3), 7),
                   (D(2025, 1, 3), D(2025, 1, 4), 0)]


def test_the_ranges_cover_the_window_without_gaps_or_overlaps() -> None:
    per_day = {D(2000, 1, 1) + dt.timedelta(days=i * 37): i % 5 + 1 for i in range(300)}
    count, _asked = _counter(per_day)
    lo, hi = FULL_LOAD_START, D(2031, 1, 1)
    got = list(split_windows(lo, hi, count, 4))
    assert got[0][0] == lo and got[-1][1] == hi
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got))
    assert sum(n for _lo, _hi, n in got) == sum(per_day.values())
    assert all(n <= 4 or b - a == dt.timedelta(days=1) for a, b, n in got)


# -------------------------------------------------------------------- bad bodies ------------


def test_a_body_that_is_not_xml_is_one_parse_error_line() -> None:
    with pytest.raises(ParseError) as exc:
        parse_page(b"Service Temporarily Unavailable\n<p>try later")
    assert "isrctn: response is not well-formed XML" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_truncated_body_is_one_parse_error_line() -> None:
    body = SEARCH.read_bytes()
    with pytest.raises(ParseError) as exc:
        parse_page(body[: len(body) // 2])
    assert "not well-formed XML" in str(exc.value) and "\n" not in str(exc.value)
    item = _items(CPMS_NCT)[0]
    with pytest.raises(ParseError) as exc:
        parse_trial(item.raw[:-20])
    assert "isrctn: a trial record is not well-formed XML" in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("body", [b"", b"  \n", b"<html><body>Bad gateway</body></html>"])
def test_empty_and_foreign_documents_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        parse_page(body)
    assert "\n" not in str(exc.value)


def test_a_response_without_a_numeric_total_is_a_parse_error() -> None:
    # crafted: the real single-trial response with its totalCount made a word, then removed
    body = PACE.read_bytes()
    for crafted_total in (body.replace(b'totalCount="1"', b'totalCount="one"'),
                          body.replace(b' totalCount="1"', b"")):
        assert crafted_total != body
        with pytest.raises(ParseError, match="no numeric totalCount"):
            parse_page(crafted_total)


def test_a_record_without_its_id_is_a_parse_error() -> None:
    # crafted: ISRCTN62918594 without its <isrctn> element
    body = _items(CPMS_NCT)[0].raw
    crafted_no_id = re.sub(rb"<isrctn [^>]*>62918594</isrctn>", b"", body)
    assert crafted_no_id != body
    assert item_from_bytes(crafted_no_id).isrctn_id is None
    with pytest.raises(ParseError, match="has no ISRCTN number"):
        parse_trial(crafted_no_id)
    # crafted: the number is not 8 digits
    crafted_bad_id = body.replace(b">62918594</isrctn>", b">6291859x</isrctn>")
    with pytest.raises(ParseError, match="has no ISRCTN number"):
        parse_trial(crafted_bad_id)


def test_a_record_without_a_title_is_a_parse_error() -> None:
    # crafted: ISRCTN38597726 with both titles emptied
    body = _items(GEFAPIXANT)[0].raw
    crafted_untitled = re.sub(rb"<(title|scientificTitle)>[^<]*</\1>", rb"<\1/>", body)
    with pytest.raises(ParseError, match="ISRCTN38597726 has no title"):
        parse_trial(crafted_untitled)


def test_a_record_that_is_no_full_trial_is_a_parse_error() -> None:
    for crafted in (b"<trial/>", f'<allTrials xmlns="{NS}" totalCount="0"/>'.encode()):
        with pytest.raises(ParseError):
            parse_trial(crafted)
    with pytest.raises(ParseError, match="not XML"):
        parse_trial(12345)


def _mutations(raw: bytes) -> list[tuple[str, bytes]]:
    """crafted: for every element of a real trial, the record without it, and the record with
    it of the wrong type (its content replaced by a number, or a text element given a child)."""
    root = etree.fromstring(raw)
    out = []
    for index, el in enumerate(root.iter()):
        if el is root:
            continue
        name = etree.QName(el).localname
        for how in ("removed", "number", "nested"):
            copy = etree.fromstring(raw)
            target = list(copy.iter())[index]
            if how == "removed":
                target.getparent().remove(target)
            elif how == "number":
                for child in list(target):
                    target.remove(child)
                target.text = "12345"
                target.attrib.clear()
            else:
                etree.SubElement(target, f"{{{NS}}}unexpected").text = "x"
            out.append((f"{name}:{how}", etree.tostring(copy)))
    return out


@pytest.mark.parametrize(("name", "item"), ALL_ITEMS,
                         ids=[i.isrctn_id or "?" for _n, i in ALL_ITEMS])
def test_missing_or_wrong_typed_parts_never_raise_anything_but_parse_error(
        name: str, item: RawTrial) -> None:
    outcomes = {"parsed": 0, "rejected": 0}
    for what, crafted in _mutations(item.raw):
        try:
            rec = parse_trial(crafted)
        except ParseError as exc:
            assert "\n" not in str(exc), what
            outcomes["rejected"] += 1
        else:
            assert rec.registry_id == item.isrctn_id, what
            outcomes["parsed"] += 1
    # only the parts that key a record (trial, number, titles) reject it
    assert outcomes["parsed"] > 10 * outcomes["rejected"] > 0


def test_wrong_typed_values_read_as_absent() -> None:
    # crafted: ISRCTN62918594 with words where numbers and dates belong
    body = _items(CPMS_NCT)[0].raw
    crafted = (body.replace(b"<targetEnrolment>81<", b"<targetEnrolment>eighty-one<")
               .replace(b"<totalFinalEnrolment>25<", b"<totalFinalEnrolment>n/a<")
               .replace(b"<recruitmentStart>2021-10-07T00:00:00.000Z<",
                        b"<recruitmentStart>soon<")
               .replace(b'lastUpdated="2026-09-30T14:08:37.63458888Z"',
                        b'lastUpdated="2026-02-31T00:00:00Z"'))
    rec = parse_trial(crafted)
    assert (rec.enrollment, rec.enrollment_type) == (None, None)
    assert rec.start_date is None and rec.last_update_posted is None
    assert rec.status == "UNKNOWN"  # nothing to compare the dates with
    assert rec.completion_date == "2025-09-10"


def test_output_links_become_references() -> None:
    # crafted: PACE with an <outputs> block as dl_isrctn's model of the API describes it
    body = _items(PACE)[0].raw
    crafted_outputs = body.replace(b"<parties>", (
        b'<outputs><output id="o1" outputType="resultsarticle" artefactType="LinkedArtefact">'
        b'<externalLink url="https://pubmed.ncbi.nlm.nih.gov/25438097/"/>'
        b"<description>results</description></output></outputs><parties>"))
    rec = parse_trial(crafted_outputs)
    assert ("25438097", "RESULT") in [(r.pmid, r.type) for r in rec.references]


# ------------------------------------------------------------------- the source -------------


def _settings(**env: str) -> Settings:
    return load_settings({"db": "unused.sqlite"},
                         env={"TRACKER_ISRCTN_RATE_PER_SECOND": "100", **env})


def crafted_count_body(total: int) -> bytes:
    """crafted: a ``limit=0`` answer, derived from the recorded search response by removing
    its trials and setting its ``totalCount`` (what the API sends for a count)."""
    root = etree.fromstring(SEARCH.read_bytes())
    for full in list(root):
        root.remove(full)
    root.text = None
    root.set("totalCount", str(total))
    return etree.tostring(root)


_RANGE = re.compile(r"lastEdited GE (\d{4}-\d{2}-\d{2})T\S+ AND lastEdited LT "
                    r"(\d{4}-\d{2}-\d{2})T")


class Registry:
    """A mock ISRCTN API serving recorded responses: ``edits`` says which recorded response
    holds the trials last edited on which day (with how many the API counts for it)."""

    def __init__(self, edits: dict[dt.date, tuple[Path, int]]) -> None:
        self.edits = edits
        self.seen: list[httpx.Request] = []

    def asked(self) -> list[tuple[str, str, str]]:
        out = []
        for r in self.seen:
            m = _RANGE.search(r.url.params["q"])
            assert m, r.url
            out.append((m.group(1), m.group(2), r.url.params["limit"]))
        return out

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        assert request.url.path == "/api/query/format/default"
        m = _RANGE.search(request.url.params["q"])
        assert m is not None
        lo, hi = D.fromisoformat(m.group(1)), D.fromisoformat(m.group(2))
        days = [day for day in self.edits if lo <= day < hi]
        total = sum(self.edits[day][1] for day in days)
        if request.url.params["limit"] == "0":
            return httpx.Response(200, content=crafted_count_body(total))
        assert len(days) == 1, "the test serves one recorded response per fetched range"
        return httpx.Response(200, content=self.edits[days[0]][0].read_bytes())


def _run_fetch(registry: Registry, window: Window, settings: Settings) -> list[Any]:
    with make_client(settings, transport=httpx.MockTransport(registry)) as client:
        src = ISRCTN.from_settings(settings)
        return list(src.fetch(Http(client, settings), window))


def test_the_source_declares_its_contract() -> None:
    src = ISRCTN.from_settings(_settings())
    assert (src.name, src.kind, src.registry) == ("isrctn", "study", "isrctn")
    assert src.capabilities == frozenset({FETCH_IDS})
    assert src.settings.url == "https://www.isrctn.com/api" and src.settings.page_size == 100


def test_fetch_counts_splits_and_fetches_each_range() -> None:
    registry = Registry({D(2026, 1, 1): (PACE, 1), D(2026, 1, 3): (CPMS_NCT, 1)})
    settings = _settings(TRACKER_ISRCTN_PAGE_SIZE="1")
    pages = _run_fetch(registry, Window(D(2026, 1, 1), D(2026, 1, 4)), settings)
    assert registry.asked() == [
        ("2026-01-01", "2026-01-05", "0"),  # 2 records > 1: split
        ("2026-01-01", "2026-01-03", "0"),
        ("2026-01-01", "2026-01-03", "1"),
        ("2026-01-03", "2026-01-05", "0"),
        ("2026-01-03", "2026-01-05", "1"),
    ]
    assert [(p.total, [i.isrctn_id for i in p.items]) for p in pages] == [
        (1, ["ISRCTN54285094"]), (1, ["ISRCTN62918594"])]
    q = registry.seen[0].url.params["q"]
    assert q.startswith(f"({settings.source('isrctn').query}) AND lastEdited GE ")
    assert registry.seen[0].headers["User-Agent"].startswith("msc-trial-tracker/")


def test_a_full_run_starts_in_2000_and_an_empty_window_asks_nothing() -> None:
    registry = Registry({})
    assert _run_fetch(registry, Window(None, D(2026, 1, 4)), _settings()) == []
    assert registry.asked() == [("2000-01-01", "2026-01-05", "0")]  # 0 records: no fetch
    registry = Registry({})
    assert _run_fetch(registry, Window(D(2026, 1, 5), D(2026, 1, 4)), _settings()) == []
    assert registry.seen == []


def test_a_single_day_over_the_page_size_is_fetched_with_limit_count() -> None:
    registry = Registry({D(2026, 1, 2): (SEARCH, 11)})
    pages = _run_fetch(registry, Window(D(2026, 1, 2), D(2026, 1, 2)),
                       _settings(TRACKER_ISRCTN_PAGE_SIZE="5"))
    assert registry.asked() == [("2026-01-02", "2026-01-03", "0"),
                                ("2026-01-02", "2026-01-03", "11")]
    assert [(p.total, len(p.items)) for p in pages] == [(11, 3)]


def test_a_page_short_of_its_total_is_caught_by_the_completeness_check() -> None:
    """The recorded search response announces 11 trials and holds 3 (trimmed): the page's
    total makes the pipeline's check fail the window."""
    src = ISRCTN.from_settings(_settings())
    items, total = parse_page(SEARCH.read_bytes())
    result = ResultSet(total)
    result.add(src, items)
    with pytest.raises(IncompleteError, match="announced 11 records but sent 3"):
        check_complete(src.name, [result])
    complete = ResultSet(1)
    complete.add(src, _items(PACE))
    check_complete(src.name, [complete])  # a whole single-trial response passes


def test_count_announces_records_and_the_requests_a_run_needs() -> None:
    for records, page_size, requests in ((0, 100, 1), (80, 100, 2), (250, 100, 8)):
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request, records: int = records,
                    seen: list[httpx.Request] = seen) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, content=crafted_count_body(records))

        settings = _settings(TRACKER_ISRCTN_PAGE_SIZE=str(page_size))
        with make_client(settings, transport=httpx.MockTransport(handler)) as client:
            got = ISRCTN.from_settings(settings).count(Http(client, settings),
                                                      Window(D(2025, 1, 1), D(2025, 1, 31)))
        assert (got.records, got.requests) == (records, requests)
        assert [r.url.params["limit"] for r in seen] == ["0"]
        assert "lastEdited LT 2025-02-01T00:00:00.000Z" in seen[0].url.params["q"]


def test_fetch_ids_reads_single_trials_and_skips_unknown_ids() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/api/trial/62918594/format/default":
            return httpx.Response(200, content=CPMS_NCT.read_bytes())
        return httpx.Response(404, text="Not Found")

    settings = _settings()
    with make_client(settings, transport=httpx.MockTransport(handler)) as client:
        src = ISRCTN.from_settings(settings)
        pages = list(src.fetch_ids(Http(client, settings),
                                   ["ISRCTN99999999", "NCT05057013", "ISRCTN62918594"]))
    assert seen == ["/api/trial/99999999/format/default", "/api/trial/62918594/format/default"]
    assert [[i.isrctn_id for i in p.items] for p in pages] == [["ISRCTN62918594"]]
    assert src.parse(pages[0].items[0]) == _trial("ISRCTN62918594")


def test_a_run_stores_every_trial_and_moves_the_watermark(sqlite_engine: Engine) -> None:
    registry = Registry({D(2026, 1, 1): (PACE, 1), D(2026, 1, 3): (CPMS_NCT, 1)})
    settings = _settings(TRACKER_ISRCTN_PAGE_SIZE="1")
    with make_client(settings, transport=httpx.MockTransport(registry)) as client:
        summary = run_source(sqlite_engine, ISRCTN.from_settings(settings),
                             Http(client, settings), since=D(2026, 1, 1), today=D(2026, 1, 4))
    assert (summary.outcome, summary.new, summary.rejected) == ("ok", 2, 0), summary.error
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(Study.__table__.c.registry_id, Study.__table__.c.phase,
                                   Study.__table__.c.status)
                            .order_by(Study.__table__.c.registry_id)).all()
        mark = conn.execute(select(SourceState.__table__.c.watermark)).scalar_one()
    assert [tuple(r) for r in rows] == [("ISRCTN54285094", "NOT_APPLICABLE", "COMPLETED"),
                                        ("ISRCTN62918594", "PHASE1_2", "COMPLETED")]
    assert mark == D(2026, 1, 4)


def test_a_run_short_of_the_announced_records_fails_and_keeps_the_watermark(
        sqlite_engine: Engine) -> None:
    registry = Registry({D(2026, 1, 2): (SEARCH, 11)})
    settings = _settings(TRACKER_ISRCTN_PAGE_SIZE="5")
    with make_client(settings, transport=httpx.MockTransport(registry)) as client:
        summary = run_source(sqlite_engine, ISRCTN.from_settings(settings),
                             Http(client, settings), since=D(2026, 1, 2), today=D(2026, 1, 2))
    assert summary.outcome == "failed"
    assert summary.error == ("isrctn: the API announced 11 records but sent 3; nothing is lost, "
                             "the next run repeats this window")
    assert summary.new == 3  # what arrived is stored
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(SourceState.__table__.c.watermark)).scalar() is None
