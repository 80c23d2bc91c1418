"""Parser and import tests for the WHO ICTRP XML export, on the real 95-trial export.

Every expected value below was read off ``tests/fixtures/ictrp/ictrp_export_95_trials.xml``.
Variants of the file (BOM, CRLF, truncated, ...) are made here from the real bytes; their
names start with ``crafted_`` (see the fixture folder's README).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import FIXTURES
from lxml import etree

from db.records import SecondaryId, StudyRecord
from sources.base import FILE_IMPORT, Page, Window
from sources.ictrp import (
    ICTRP,
    REGISTRY_OF,
    ictrp_phase,
    ictrp_status,
    parse_trial,
    read_export,
    registry_of,
    trial_key,
)
from tracker.errors import ConfigError, ParseError
from tracker.taxonomy import PHASES, STATUSES
from tracker.trial_ids import REGISTRIES

EXPORT = FIXTURES / "ictrp" / "ictrp_export_95_trials.xml"
BODY = EXPORT.read_bytes()
TRIALS = read_export(BODY)
RECORDS = {tid: parse_trial(raw) for tid, raw in TRIALS}
ROOT = etree.fromstring(BODY)


def _raw_values(tag: str) -> list[str]:
    """Every trial's ``tag`` text as the file holds it (stripped), for counts from the file."""
    return [(t.findtext(tag) or "").strip() for t in ROOT.iter("Trial")]


def _trial_element(trial_id: str) -> etree._Element:
    for t in ROOT.iter("Trial"):
        if (t.findtext("TrialID") or "").strip() == trial_id:
            return t
    raise KeyError(trial_id)


# --------------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------------
def test_every_trial_of_the_file_is_read() -> None:
    in_file = BODY.count(b"<Trial>")
    assert len(TRIALS) == in_file == len(_raw_values("TrialID")) == 95
    assert [tid for tid, _ in TRIALS] == _raw_values("TrialID")  # file order, stripped
    assert len(set(RECORDS)) == 95
    assert all(raw.startswith(b"<Trial>") and raw.endswith(b"</Trial>") for _, raw in TRIALS)


def test_per_registry_counts() -> None:
    by_registry = Counter(r.registry for r in RECORDS.values())
    assert by_registry == {"ctgov": 47, "euctr": 28, "jprn": 9, "drks": 6, "ntr": 2,
                           "ctis": 1, "chictr": 1, "cris": 1}
    # the file's own Source_Register counts say the same
    assert Counter(_raw_values("Source_Register")) == {
        "ClinicalTrials.gov": 47, "EU Clinical Trials Register": 28, "JPRN": 9,
        "German Clinical Trials Register": 6, "NL-OMON": 2,
        "Clinical Trials Information System": 1, "ChiCTR": 1, "CRIS": 1}
    jprn = Counter(re.match(r"[A-Za-z]+", r.registry_id).group()  # type: ignore[union-attr]
                   for r in RECORDS.values() if r.registry == "jprn")
    assert jprn == {"jRCT": 4, "jRCTs": 2, "UMIN": 3}
    assert all(r.registry in REGISTRIES and r.registry != "ictrp" for r in RECORDS.values())
    assert {r.source for r in RECORDS.values()} == {"ictrp"}


def test_source_register_and_trial_id_agree_on_every_trial() -> None:
    for t in ROOT.iter("Trial"):
        tid = (t.findtext("TrialID") or "").strip()
        register = (t.findtext("Source_Register") or "").strip()
        assert registry_of(register) == registry_of(tid) == RECORDS[tid].registry, tid


def test_registry_of_register_names_and_prefixes() -> None:
    assert {registry_of(k) for k in REGISTRY_OF} <= set(REGISTRIES)
    assert registry_of("JPRN-jRCTs031210288") == "jprn"
    assert registry_of("JPRN-UMIN000027045") == "jprn"
    assert registry_of("EUCTR2021-000037-14-ES") == "euctr"
    assert registry_of("KCT0000379") == "cris"
    assert registry_of("german clinical trials register") == "drks"
    assert registry_of("Nowhere Registry") is None
    assert registry_of("") is None and registry_of(None) is None


@pytest.mark.parametrize(
    ("trial_id", "registry", "registry_id"),
    [
        ("NCT06360289", "ctgov", "NCT06360289"),
        ("CTIS2023-507385-11-00", "ctis", "2023-507385-11-00"),
        ("EUCTR2021-000037-14-ES", "euctr", "2021-000037-14"),
        ("EUCTR2021-000037-14-PL", "euctr", "2021-000037-14"),
        ("JPRN-jRCTs031210288", "jprn", "jRCTs031210288"),
        ("JPRN-jRCT2080224769", "jprn", "jRCT2080224769"),
        ("JPRN-UMIN000027045", "jprn", "UMIN000027045"),
        ("DRKS00032447", "drks", "DRKS00032447"),
        ("NL-OMON55279", "ntr", "NL-OMON55279"),
        ("ChiCTR2100050713", "chictr", "ChiCTR2100050713"),
        ("KCT0000379", "cris", "KCT0000379"),
    ],
)
def test_ids_are_canonical(trial_id: str, registry: str, registry_id: str) -> None:
    rec = RECORDS[trial_id]
    assert (rec.registry, rec.registry_id) == (registry, registry_id)
    assert trial_key(trial_id, None) == (registry, registry_id)


def test_id_format_trial_ids_lacks_falls_back_to_the_register() -> None:
    # an old UMIN "C" number (no trial_ids format): the register says jprn, the wrapper goes
    assert trial_key("JPRN-C000000316", "JPRN") == ("jprn", "C000000316")
    assert trial_key("NL8123", "NTR") == ("ntr", "NL8123")  # the old Dutch form, by its register
    assert trial_key("XYZ-123", "Nowhere Registry") is None
    assert trial_key("<br>", "DRKS") is None and trial_key("x" * 80 + "1", "DRKS") is None


# --------------------------------------------------------------------------------------------
# Real values of several records
# --------------------------------------------------------------------------------------------
def test_ctgov_record_values() -> None:
    rec = RECORDS["NCT05071300"]
    assert rec.title == (
        "A Study to Assess the Long-Term Safety and Efficacy of Eplontersen (Formerly Known as "
        "ION-682884, IONIS-TTR-LRx and AKCEA-TTR-LRx) in Patients With Hereditary "
        "Transthyretin-Mediated Amyloid Polyneuropathy")
    assert rec.sponsor == "Ionis Pharmaceuticals, Inc."
    assert (rec.phase, rec.phase_raw) == ("PHASE3", "Phase 3")
    assert (rec.status, rec.status_raw) == ("RECRUITING", "Recruiting")
    assert rec.study_type == "INTERVENTIONAL"
    assert [(iv.type, iv.name) for iv in rec.interventions] == [("DRUG", "Eplontersen")]
    assert rec.conditions == ["Hereditary Transthyretin-Mediated Amyloid Polyneuropathy"]
    assert rec.secondary_ids == [
        SecondaryId("2021-001427-40", "EUDRACT_NUMBER", REGISTRIES["euctr"]),
        SecondaryId("ION-682884-CS13", None)]
    assert rec.enrollment == 140
    assert rec.first_posted == dt.date(2021, 9, 23)
    assert rec.start_date == "2022-01-04"
    assert rec.last_update_posted == dt.date(2023, 10, 16)
    assert rec.url == "https://clinicaltrials.gov/ct2/show/NCT05071300"
    # 28 country names listed twice over in the file: each once, in order
    assert rec.countries[:3] == ["United States", "Argentina", "Australia"]
    assert len(rec.countries) == len(set(rec.countries)) == 14


def test_ctgov_title_is_the_public_title() -> None:
    rec = RECORDS["NCT06360289"]
    assert rec.title.startswith("Observational Study of Neurofilament Light Chain (NfL) as a "
                                "Biomarker in Asymptomatic Carriers")
    assert rec.official_title is not None and rec.official_title.endswith("NeuroFeeL Study")
    assert rec.acronym is None  # <Acronym/>
    assert (rec.phase, rec.phase_raw) == ("NOT_APPLICABLE", None)  # observational, no phase
    assert rec.study_type == "OBSERVATIONAL"
    assert rec.conditions == ["Hereditary Amyloidosis, Transthyretin-Related",
                              "Asymptomatic Carrier State"]
    assert rec.primary_outcomes[0].startswith("NfL Levels in Asymptomatic Carriers")
    assert len(rec.primary_outcomes) == 2
    assert rec.start_date == "2024-04-25"  # "April 25, 2024"
    assert rec.eligibility is not None and rec.eligibility.startswith("Inclusion Criteria:")
    assert "<br>" not in rec.eligibility and "\r" not in rec.eligibility
    assert "eGFR) <45 milliliters" in rec.eligibility


def test_doubly_escaped_entity_is_decoded() -> None:
    assert b"&amp;lt;2" in dict(TRIALS)["NCT05023889"]
    assert "total bilirubin <2 × ULN" in (RECORDS["NCT05023889"].eligibility or "")


def test_acronym_and_partial_start_date() -> None:
    assert RECORDS["NCT06365593"].acronym == "PRIMER"
    assert RECORDS["NCT05087953"].start_date == "2022-01"  # "January 2022"


def test_euctr_record_values() -> None:
    rec = RECORDS["EUCTR2021-000037-14-ES"]
    assert rec.registry_id == "2021-000037-14"
    assert rec.title.startswith("A Global Phase 3 Double-Blind, Placebo-Controlled study")
    assert rec.official_title is not None and rec.official_title.endswith(
        "in Mayo Stage IV Subjects with Light Chain (AL) Amyloidosis")  # trailing spaces gone
    assert rec.phase == "PHASE3"
    assert rec.phase_raw is not None and rec.phase_raw.startswith(
        "Human pharmacology (Phase I): no\nTherapeutic exploratory (Phase II): no\n")
    assert (rec.status, rec.status_raw) == ("OTHER", "Authorised")
    assert rec.study_type == "INTERVENTIONAL"
    assert rec.sponsor == "Prothena Biosciences Limited"
    assert rec.conditions[-1] == "Primary amyloidosis"  # the MedDRA Term
    assert rec.keywords == ["Diseases [C] - Blood and lymphatic diseases [C15]"]
    assert rec.primary_outcomes == ["Time to all-cause mortality"]
    assert rec.secondary_ids == [SecondaryId("NEOD001-301"), SecondaryId("146070")]
    assert rec.start_date == "2021-07-01"  # dd/mm/yyyy
    assert rec.url.endswith("eudract_number:2021-000037-14")
    iv = rec.interventions
    assert [(i.name, i.other_names) for i in iv] == [
        ("Birtamimab", ["Humanized IgG1 kappa antiamyloid"])]
    assert iv[0].description is not None
    assert iv[0].description.startswith("Product Name: Birtamimab\nProduct Code: Birtamimab\n")


def test_euctr_copy_naming_another_country_copy_does_not_list_itself() -> None:
    rec = RECORDS["EUCTR2021-000037-14-PL"]  # Secondary_ID "...;2021-000037-14-DK"
    assert [s.value for s in rec.secondary_ids] == ["NEOD001301", "NCT04973137", "146070"]
    assert rec.secondary_ids[1] == SecondaryId("NCT04973137", "REGISTRY", "ClinicalTrials.gov")


def test_ctis_record_values() -> None:
    rec = RECORDS["CTIS2023-507385-11-00"]
    assert (rec.registry, rec.registry_id) == ("ctis", "2023-507385-11-00")
    assert rec.title == "Long-Term Follow-Up of Subjects Treated With NTLA-2001"
    assert rec.phase == "PHASE2_3"  # one-line form, Phase II: yes, Phase III: yes
    assert (rec.status, rec.status_raw) == ("OTHER", "Not Recruiting")
    assert rec.secondary_ids == [
        SecondaryId("U1111-1296-5487", "UTN"),
        SecondaryId("2022-003405-30", "EUDRACT_NUMBER", REGISTRIES["euctr"]),
        SecondaryId("NCT05697861", "REGISTRY", "ClinicalTrials.gov")]
    assert rec.conditions == [
        "Hereditary Transthyretin Amyloidosis with Polyneuropathy (ATTRv-PN)",
        "Transthyretin Amyloidosis-Related Cardiomyopathy (ATTR-CM)",
        "Cardiac amyloidosis", "Hereditary neuropathic amyloidosis"]
    [iv] = rec.interventions
    assert (iv.type, iv.name, iv.other_names) == (None, "NTLA-2001", ["PRD8425756"])
    assert iv.description is not None and "Messenger Rna Encoding Cas9 7mg" in iv.description
    assert rec.countries == ["Sweden", "United Kingdom", "New Zealand"]


def test_jprn_records() -> None:
    rec = RECORDS["JPRN-jRCT2080224769"]
    assert (rec.phase, rec.phase_raw) == ("PHASE3", "3")
    assert [(i.name, i.other_names) for i in rec.interventions] == [
        ("ALN-TTRSC02", ["vutrisiran"]), ("Patisiran Sodium (JAN)", ["Patisiran"])]
    assert [s.value for s in rec.secondary_ids] == ["NCT03759379", "JapicCTI-194846"]
    umin = RECORDS["JPRN-UMIN000027045"]
    assert (umin.phase, umin.phase_raw) == ("UNKNOWN", "Not selected")
    assert umin.start_date == "2016-12-06"  # yyyy/mm/dd
    assert RECORDS["JPRN-UMIN000008396"].phase == "PHASE3"  # "Phase III"
    arms = RECORDS["JPRN-jRCT2071210009"].arms
    assert [(a.label, a.type) for a in arms] == [
        ("ION-682884", "EXPERIMENTAL"), ("Inotersen", "ACTIVE_COMPARATOR")]


def test_chictr_record() -> None:
    rec = RECORDS["ChiCTR2100050713"]
    assert rec.enrollment == 100  # "control group:50;sepsis group:50;"
    assert (rec.phase, rec.phase_raw) == ("NOT_APPLICABLE", "0")  # an observational study
    assert rec.study_type == "OBSERVATIONAL"
    assert rec.first_posted == dt.date(2021, 9, 3)
    assert rec.start_date == "2021-09-20"
    assert rec.primary_outcomes == ["Apolipoprotein A1", "serum amyloid A"]
    assert [a.label for a in rec.arms] == ["control group", "sepsis group"]
    assert rec.interventions == []  # both groups: "No"
    assert rec.eligibility is not None and "aged >=18 years" in rec.eligibility


def test_cris_drks_and_omon_records() -> None:
    cris = RECORDS["KCT0000379"]
    assert (cris.phase, cris.phase_raw) == ("PHASE1_2", "Phase1/Phase2")
    assert cris.conditions == ["Mental and behavioral disorders"]
    assert [(i.type, i.name) for i in cris.interventions] == [
        ("RADIATION", "radiopharmaceutical: SNUBH-NM-333(18F)")]
    drks = RECORDS["DRKS00031084"]
    assert drks.conditions == ["Non-neuropathic heredofamilial amyloidosis"]  # E85.0 dropped
    assert [a.label for a in drks.arms] == ["Group 1", "Group 2"]
    assert drks.secondary_ids == []
    omon = RECORDS["NL-OMON55279"]
    assert (omon.status, omon.status_raw) == ("UNKNOWN", None)
    assert omon.start_date is None
    assert [s.value for s in omon.secondary_ids] == ["2019-001698-10", "NCT04136184",
                                                     "NL73848.000.21"]


def test_results_fields() -> None:
    rec = RECORDS["NCT00294671"]
    assert rec.has_results is True
    assert rec.results_first_posted == dt.date(2017, 3, 17)
    assert [s.value for s in rec.secondary_ids] == ["FD R 002532", "R01NS051306"]
    eu = RECORDS["EUCTR2015-004318-14-DE"]
    assert eu.has_results and eu.completion_date == "2018-03-05"
    assert not RECORDS["NCT06360289"].has_results


# --------------------------------------------------------------------------------------------
# Vocabularies: every phase and status in the file
# --------------------------------------------------------------------------------------------
def test_every_phase_and_status_is_canonical_and_raw_is_verbatim() -> None:
    for t in ROOT.iter("Trial"):
        rec = RECORDS[(t.findtext("TrialID") or "").strip()]
        assert rec.phase in PHASES and rec.status in STATUSES
        assert rec.phase_raw == ((t.findtext("Phase") or "").strip() or None)
        assert rec.status_raw == ((t.findtext("Recruitment_Status") or "").strip() or None)


def test_phase_of_every_vocabulary_in_the_file() -> None:
    seen = {(r.phase_raw, r.study_type == "OBSERVATIONAL"): r.phase for r in RECORDS.values()}
    flat = {(raw and " ".join(raw.split()), obs): p for (raw, obs), p in seen.items()}
    assert flat == {
        (None, True): "NOT_APPLICABLE",
        (None, False): "UNKNOWN",
        ("Phase 3", False): "PHASE3",
        ("N/A", False): "NOT_APPLICABLE",
        ("3", False): "PHASE3",
        ("Phase 2/Phase 3", False): "PHASE2_3",
        ("Phase 4", False): "PHASE4",
        ("Phase 2", False): "PHASE2",
        ("Phase 1", False): "PHASE1",
        ("Not selected", False): "UNKNOWN",
        ("0", True): "NOT_APPLICABLE",
        ("Early Phase 1", False): "EARLY_PHASE1",
        ("Phase III", False): "PHASE3",
        ("Phase1/Phase2", False): "PHASE1_2",
        (("Human pharmacology (Phase I): no Therapeutic exploratory (Phase II): no "
          "Therapeutic confirmatory - (Phase III): yes Therapeutic use (Phase IV): no"),
         False): "PHASE3",
        (("Human pharmacology (Phase I): no Therapeutic exploratory (Phase II): yes "
          "Therapeutic confirmatory - (Phase III): no Therapeutic use (Phase IV): no"),
         False): "PHASE2",
        (("Human pharmacology (Phase I): no Therapeutic exploratory (Phase II): yes "
          "Therapeutic confirmatory - (Phase III): yes Therapeutic use (Phase IV): no"),
         False): "PHASE2_3",
        (("Human pharmacology (Phase I): no Therapeutic exploratory (Phase II): yes "
          "Therapeutic confirmatory - (Phase III): yes Therapeutic use - (Phase IV): no"),
         False): "PHASE2_3",
    }


@pytest.mark.parametrize(
    ("raw", "observational", "phase"),
    [
        ("0", False, "EARLY_PHASE1"),  # ChiCTR phase 0 of an interventional study
        ("Phase 1/Phase 2", False, "PHASE1_2"),
        ("Phase II/III", False, "PHASE2_3"),
        ("Phase 2a", False, "PHASE2"),
        ("Phase 3/ Phase 4", False, "PHASE3"),
        ("Post Marketing Surveillance", False, "PHASE4"),
        ("Not Applicable", True, "NOT_APPLICABLE"),
        ("Human pharmacology (Phase I): no\nTherapeutic use (Phase IV): no", False, "UNKNOWN"),
        ("Retrospective study", True, "UNKNOWN"),
        ("Phase 1/Phase 3", False, "UNKNOWN"),
    ],
)
def test_phase_words_of_other_registries(raw: str, observational: bool, phase: str) -> None:
    assert ictrp_phase(raw, observational) == phase


def test_status_words() -> None:
    statuses = Counter((r.status_raw, r.status) for r in RECORDS.values())
    assert statuses == {("Not recruiting", "OTHER"): 34, ("Not Recruiting", "OTHER"): 32,
                        ("Recruiting", "RECRUITING"): 18, ("Authorised", "OTHER"): 8,
                        (None, "UNKNOWN"): 2, ("Not Available", "UNKNOWN"): 1}
    assert ictrp_status("Pending") == "NOT_YET_RECRUITING"
    assert ictrp_status("Active, not recruiting") == "ACTIVE_NOT_RECRUITING"
    assert ictrp_status("Completed") == "COMPLETED"
    assert ictrp_status("Something else") == "OTHER"


def test_study_types() -> None:
    assert Counter(r.study_type for r in RECORDS.values()) == {
        "INTERVENTIONAL": 70, "OBSERVATIONAL": 24, "EXPANDED_ACCESS": 1}
    raw = Counter(_raw_values("Study_type"))
    assert raw["Interventional"] + raw["Interventional clinical trial of medicinal product"] + raw[
        "Interventional Study"] == 70


def test_dates_and_enrollment_of_every_record() -> None:
    for tid, rec in RECORDS.items():
        t = _trial_element(tid)
        assert rec.first_posted is not None
        registered = (t.findtext("Date_registration3") or "").strip()
        assert rec.first_posted.strftime("%Y%m%d") == registered
        assert rec.last_update_posted is not None  # every trial has Last_Refreshed_on
        assert rec.start_date is None or re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", rec.start_date)
        size = (t.findtext("Target_size") or "").strip()
        assert rec.enrollment == (int(size) if size.isdigit() else None) or tid == (
            "ChiCTR2100050713")
    assert sum(r.start_date is None for r in RECORDS.values()) == sum(
        not v for v in _raw_values("Date_enrollement"))


# --------------------------------------------------------------------------------------------
# Interventions: what the classifier will read
# --------------------------------------------------------------------------------------------
def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.casefold()))


def test_intervention_text_is_kept_in_the_entries() -> None:
    """Every word of every record's Intervention text is in its entries' descriptions, but for
    ChiCTR's "No" (no intervention) and jRCT control blocks of "-" only."""
    for tid, rec in RECORDS.items():
        text = (_trial_element(tid).findtext("Intervention") or "")
        text = re.sub(r"<\s*/?\s*(?:br|p)\s*/?\s*>", " ", text)
        described = set().union(*(_words(i.description or "") for i in rec.interventions))
        lost = _words(text) - described
        if tid == "ChiCTR2100050713":
            assert lost == {"control", "group", "no", "sepsis"}  # in the arms instead
        elif tid == "JPRN-jRCT2080224174":
            assert lost == {"control"}  # "control material(s)" of "-" only
        else:
            assert not lost, (tid, lost)
        for iv in rec.interventions:
            assert iv.name and iv.name.strip() == iv.name and "<br" not in iv.name


def test_intervention_entries_name_the_products() -> None:
    names = {tid: [(i.type, i.name, *i.other_names) for i in r.interventions]
             for tid, r in RECORDS.items()}
    assert names["NCT00409175"] == [("DRUG", "Fx-1006A"), ("DRUG", "Placebo")]  # 4x in file
    assert names["EUCTR2019-001698-10-PT"] == [(None, "ION-682884"),
                                               (None, "inotersen", "ISIS 420915")]
    assert names["EUCTR2011-005236-25-SE"] == [(None, "Ursofalk", "URSODESOXYCHOLIC ACID"),
                                               (None, "Doxyferm", "DOXYCYCLINE MONOHYDRATE")]
    assert names["EUCTR2006-002792-41-SE"][0][:2] == (None, "Fx-1006A")
    assert names["NL-OMON31535"] == []  # "<p></p><br>"
    assert names["NCT06365593"] == []  # empty Intervention
    assert len(names["DRKS00021577"]) == 3  # Group 1..3
    types = Counter(i.type for r in RECORDS.values() for i in r.interventions)
    assert set(types) <= {None, "DRUG", "OTHER", "DIAGNOSTIC_TEST", "BIOLOGICAL", "DEVICE",
                          "PROCEDURE", "RADIATION", "BEHAVIORAL", "GENETIC"}


def _crafted(trial_id: str, intervention: str, title: str | None = None) -> bytes:
    """One real trial with its Intervention (and, if given, its Public_title) replaced."""
    element = etree.fromstring(dict(TRIALS)[trial_id])
    element.find("Intervention").text = intervention
    if title is not None:
        element.find("Public_title").text = title
    return etree.tostring(element, encoding="utf-8")


def test_no_fixture_trial_is_msc_and_msc_products_are_read() -> None:
    from tracker.classify import classify_study, load_rules

    rules = load_rules()
    assert not any(classify_study(r, rules).msc_relevant for r in RECORDS.values())
    crafted_msc_euctr = _crafted(
        "EUCTR2019-001698-10-PT",
        "<br>Product Name: Allogeneic bone marrow-derived mesenchymal stromal cells<br>"
        "Product Code: MSC-01<br>Pharmaceutical Form: Suspension for injection<br><br>")
    crafted_msc_chictr = _crafted(
        "ChiCTR2100050713",
        "MSC group:human umbilical cord mesenchymal stem cells;control group:No;")
    for raw in (crafted_msc_euctr, crafted_msc_chictr):
        rec = parse_trial(raw)
        labels = classify_study(rec, rules)
        assert labels.msc_relevant, labels.reason
        assert any("mesenchymal" in i.name for i in rec.interventions)


# --------------------------------------------------------------------------------------------
# Robustness: BOM, CRLF, truncated, not XML, empty
# --------------------------------------------------------------------------------------------
def test_crafted_bom_is_read() -> None:
    crafted_bom = b"\xef\xbb\xbf" + BODY
    assert read_export(crafted_bom) == TRIALS


def test_crafted_crlf_is_read_with_the_same_records() -> None:
    crafted_crlf = BODY.replace(b"\n", b"\r\n")
    assert crafted_crlf.count(b"\r\n") == BODY.count(b"\n")
    trials = read_export(crafted_crlf)
    assert trials == TRIALS  # XML folds line ends: the same bytes, the same hashes
    assert [parse_trial(raw) for _, raw in trials] == list(RECORDS.values())
    assert read_export(b"\xef\xbb\xbf" + crafted_crlf) == TRIALS


@pytest.mark.parametrize(
    "crafted",
    [
        pytest.param(BODY[: len(BODY) // 2], id="crafted_truncated"),
        pytest.param(BODY[: BODY.rindex(b"</Trials_downloaded_from_ICTRP>")],
                     id="crafted_truncated_before_root_end"),
        pytest.param(b"<html><body><h1>503 Service Unavailable</h1></body>", id="crafted_not_xml"),
        pytest.param(b"Trial ID,Title\nNCT0001,x\n", id="crafted_csv"),
        pytest.param(b"", id="crafted_empty_file"),
        pytest.param(b"  \r\n ", id="crafted_blank_file"),
        pytest.param(b"\xef\xbb\xbf", id="crafted_bom_only"),
        pytest.param(b"<?xml version='1.0'?><PubmedArticleSet/>", id="crafted_other_root"),
    ],
)
def test_a_file_that_is_not_a_complete_export_is_one_parse_error(crafted: bytes) -> None:
    with pytest.raises(ParseError) as info:
        read_export(crafted)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ictrp: the file is not a complete ICTRP export")
    assert "tracker import ictrp FILE.xml" in message and "trialsearch.who.int" in message


def test_crafted_empty_export_has_no_trials(tmp_path: Path) -> None:
    crafted_empty_export = (b"<?xml version='1.0' encoding='UTF-8' ?>\n"
                            b"<Trials_downloaded_from_ICTRP>\n</Trials_downloaded_from_ICTRP>\n")
    assert read_export(crafted_empty_export) == []
    path = tmp_path / "crafted_empty_export.xml"
    path.write_bytes(crafted_empty_export)
    pages = list(ICTRP().records_of_file(path))
    assert [(p.items, p.total) for p in pages] == [([], 0)]


@pytest.mark.parametrize(
    ("crafted", "why"),
    [
        (b"<Trial><Public_title>x</Public_title></Trial>", "has no TrialID"),
        (b"<Trial><TrialID>NCT06360289</TrialID></Trial>", "has no title"),
        (b"<Trial><TrialID>XYZ-1</TrialID><Public_title>x</Public_title></Trial>",
         "no registry"),
        (b"<Trial><TrialID>NCT0636", "not well-formed"),
        (b"<Study><TrialID>NCT06360289</TrialID></Study>", "not <Trial>"),
        (b"", "empty"),
    ],
)
def test_a_bad_trial_is_a_parse_error(crafted: bytes, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        parse_trial(crafted)


def test_a_minimal_trial_has_every_missing_part_empty() -> None:
    rec = parse_trial(b"<Trial><TrialID>ACTRN12610000123456</TrialID>"
                      b"<Public_title>T</Public_title></Trial>")
    assert (rec.registry, rec.registry_id, rec.title) == ("anzctr", "ACTRN12610000123456", "T")
    assert rec.url == "https://trialsearch.who.int/Trial2.aspx?TrialID=ACTRN12610000123456"
    assert (rec.phase, rec.status) == ("UNKNOWN", "UNKNOWN")
    for name in ("official_title", "acronym", "study_type", "phase_raw", "status_raw",
                 "enrollment", "sponsor", "first_posted", "last_update_posted", "start_date",
                 "eligibility", "completion_date", "results_first_posted"):
        assert getattr(rec, name) is None, name
    assert rec.conditions == rec.interventions == rec.secondary_ids == rec.countries == []


# --------------------------------------------------------------------------------------------
# Round trip, determinism, the source object
# --------------------------------------------------------------------------------------------
def test_round_trip_parse_raw_of_item_bytes_equals_parse(tmp_path: Path) -> None:
    source = ICTRP()
    for page in source.records_of_file(EXPORT):
        for item in page.items:
            rec = source.parse(item)
            raw = source.item_bytes(item)
            assert rec.raw == raw
            assert ICTRP.parse_raw(raw) == rec
            assert source.record_id(item) == rec.registry_id
            assert source.item_from_bytes(raw) == item


def test_element_and_bytes_give_the_same_record() -> None:
    for element in list(ROOT.iter("Trial"))[:10]:
        rec = parse_trial(element)
        assert parse_trial(rec.raw) == rec


def test_output_is_deterministic() -> None:
    again = read_export(EXPORT.read_bytes())
    assert again == TRIALS
    assert [parse_trial(raw) for _, raw in again] == list(RECORDS.values())
    assert len({r.content_hash for r in RECORDS.values()}) == 95
    pages_a = [dataclasses.astuple(i) for p in ICTRP().records_of_file(EXPORT) for i in p.items]
    pages_b = [dataclasses.astuple(i) for p in ICTRP().records_of_file(EXPORT) for i in p.items]
    assert pages_a == pages_b


def test_crafted_later_export_has_the_same_content_hash() -> None:
    raw = dict(TRIALS)["NCT06360289"]
    crafted_later_export = raw.replace(b"<Export_date>06/09/2024 16:01:13</Export_date>",
                                       b"<Export_date>01/12/2026 09:00:00</Export_date>")
    assert crafted_later_export != raw
    assert parse_trial(crafted_later_export).content_hash == RECORDS["NCT06360289"].content_hash
    refreshed = raw.replace(b"20 May 2024", b"21 May 2024")
    assert parse_trial(refreshed).content_hash != RECORDS["NCT06360289"].content_hash


def test_records_of_file_pages_one_item_per_registration() -> None:
    pages = list(ICTRP(page_size=40).records_of_file(EXPORT))
    assert [len(p.items) for p in pages] == [40, 40, 10]
    assert [p.total for p in pages] == [90, None, None]
    assert pages[0].extra["trials"] == 95
    # the EUCTR member-state copies: the one refreshed last is kept
    assert sorted(pages[0].extra["duplicates"]) == [
        "EUCTR2017-005115-13-ES", "EUCTR2021-000037-14-DK", "EUCTR2021-000037-14-ES",
        "EUCTR2021-000037-14-HU", "EUCTR2021-000037-14-PT"]
    items = [i for p in pages for i in p.items]
    assert len({i.key for i in items}) == 90
    kept = {i.trial_id for i in items}
    assert "EUCTR2021-000037-14-PL" in kept and "EUCTR2017-005115-13-FR" in kept
    assert Counter(i.key[0] for i in items if i.key) == {
        "ctgov": 47, "euctr": 23, "jprn": 9, "drks": 6, "ntr": 2, "ctis": 1, "chictr": 1,
        "cris": 1}
    default = list(ICTRP().records_of_file(EXPORT))
    assert [len(p.items) for p in default] == [90]


def test_source_contract() -> None:
    source = ICTRP.from_settings(None)
    assert (source.name, source.kind, source.registry) == ("ictrp", "study", "ictrp")
    assert source.capabilities == frozenset({FILE_IMPORT})  # never run by `tracker update`
    window = Window(None, dt.date(2026, 1, 1))
    for call in (lambda: source.fetch(None, window), lambda: source.count(None, window)):
        with pytest.raises(ConfigError, match=r"no free API.*tracker import ictrp FILE\.xml"):
            call()


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        list(ICTRP().records_of_file(tmp_path / "missing.xml"))


def test_pages_ingest_into_a_real_database(sqlite_engine: object) -> None:
    """The pipeline stores the pages as they come: 90 registrations, of their own registries,
    read by the ictrp source; a second import of the same file changes nothing."""
    from sqlalchemy import text

    from tracker.pipeline import RunSummary, ingest_page

    source = ICTRP()
    for n in (1, 2):
        summary = RunSummary("ictrp", n, Window(None, dt.date.today()))
        for page in source.records_of_file(EXPORT):
            ingest_page(sqlite_engine, source, Page(list(page.items)), n,  # type: ignore[arg-type]
                        summary)
        assert summary.rejected == 0
        assert (summary.new, summary.unchanged) == ((90, 0) if n == 1 else (0, 90))
    with sqlite_engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(text("SELECT registry, source, count(*) FROM study "
                                 "GROUP BY registry, source ORDER BY registry")).all()
    assert {r[0]: r[2] for r in rows} == {
        "chictr": 1, "cris": 1, "ctgov": 47, "ctis": 1, "drks": 6, "euctr": 23, "jprn": 9,
        "ntr": 2}
    assert {r[1] for r in rows} == {"ictrp"}


def test_records_are_study_records() -> None:
    assert all(isinstance(r, StudyRecord) for r in RECORDS.values())
    assert all(r.raw and len(r.content_hash) == 32 for r in RECORDS.values())


# --------------------------------------------------------------------------------------------
# A large export is streamed
# --------------------------------------------------------------------------------------------
_PAGES_RSS = """
import resource, sys
from sources.ictrp import ICTRP
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(len(p.items) for p in ICTRP(page_size=500).records_of_file(sys.argv[1]))
print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_a_large_export_is_read_in_the_memory_of_a_page(tmp_path: Path) -> None:
    """crafted_large_export: the recorded export's CT.gov trials cloned under new NCT ids to
    ~75 MB (every clone a distinct registration). Read in a fresh process, its pages take
    less memory than a fifth of the file (the whole tree of it would take several times it)."""
    import subprocess
    import sys

    trials = [raw for tid, raw in TRIALS if tid and tid.startswith("NCT")]
    path = tmp_path / "crafted_large_export.xml"
    n = 0
    with path.open("wb") as out:
        out.write(b"<?xml version='1.0' encoding='UTF-8' ?>\n<Trials_downloaded_from_ICTRP>\n")
        while out.tell() < 75_000_000:
            for raw in trials:
                nct = re.search(rb"NCT\d{8}", raw).group(0)  # type: ignore[union-attr]
                out.write(raw.replace(nct, b"NCT9%07d" % n) + b"\n")
                n += 1
        out.write(b"</Trials_downloaded_from_ICTRP>\n")
    size = path.stat().st_size
    res = subprocess.run([sys.executable, "-c", _PAGES_RSS, str(path)], capture_output=True,
                         text=True, timeout=600, check=False, cwd=Path(__file__).parents[2])
    assert res.returncode == 0, res.stderr
    count, grew = map(int, res.stdout.split())
    assert count == n
    assert grew < size / 5, f"peak memory grew {grew / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
