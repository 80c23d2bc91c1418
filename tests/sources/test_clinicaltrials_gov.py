"""Parser and request tests for the ClinicalTrials.gov v2 source, on every recorded study."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import orjson
import pytest
from conftest import FIXTURES, ctgov_studies, load_json

from sources.base import Window
from sources.clinicaltrials_gov import ClinicalTrialsGov, build_params, parse_page, parse_study
from tracker.config import load_settings
from tracker.errors import ParseError
from tracker.http import Http, make_client

STUDIES = ctgov_studies()
IDS = [s["protocolSection"]["identificationModule"]["nctId"] for s in STUDIES]


@pytest.mark.parametrize("study", STUDIES, ids=IDS)
def test_every_recorded_study_parses(study: dict[str, Any]) -> None:
    rec = parse_study(study)
    ident = study["protocolSection"]["identificationModule"]
    assert rec.registry == "ctgov"
    assert rec.registry_id == ident["nctId"]
    assert rec.title and "\\" not in rec.title
    assert rec.url == f"https://clinicaltrials.gov/study/{ident['nctId']}"
    assert rec.conditions == study["protocolSection"]["conditionsModule"]["conditions"] or all(
        "\\" not in c for c in rec.conditions)
    assert rec.first_posted is not None and rec.last_update_posted is not None
    assert rec.last_update_posted >= rec.first_posted
    assert rec.has_results is study["hasResults"]
    assert orjson.loads(rec.raw) == study  # raw kept losslessly
    assert len(rec.content_hash) == 32


def _by_id(nct: str) -> dict[str, Any]:
    return STUDIES[IDS.index(nct)]


@pytest.mark.parametrize(
    ("nct", "phase", "status", "study_type"),
    [
        ("NCT00763412", "NOT_APPLICABLE", "COMPLETED", "INTERVENTIONAL"),
        ("NCT02210780", "PHASE2", "COMPLETED", "INTERVENTIONAL"),
        ("NCT02552212", "PHASE3", "COMPLETED", "INTERVENTIONAL"),
        ("NCT03475563", "NOT_APPLICABLE", "UNKNOWN", "OBSERVATIONAL"),
        ("NCT04431453", "PHASE2_3", "COMPLETED", "INTERVENTIONAL"),
        ("NCT04523987", "PHASE1", "RECRUITING", "INTERVENTIONAL"),
        ("NCT02513394", "PHASE3", "ACTIVE_NOT_RECRUITING", "INTERVENTIONAL"),
    ],
)
def test_canonical_phase_and_status(nct: str, phase: str, status: str, study_type: str) -> None:
    rec = parse_study(_by_id(nct))
    assert (rec.phase, rec.status, rec.study_type) == (phase, status, study_type)


def test_partial_start_date_is_kept_partial() -> None:
    rec = parse_study(_by_id("NCT00763412"))
    assert rec.start_date == "2006-11"


def test_observational_study_without_phases() -> None:
    study = _by_id("NCT03475563")
    assert "phases" not in study["protocolSection"]["designModule"]
    rec = parse_study(study)
    assert rec.phase == "NOT_APPLICABLE" and rec.phase_raw is None
    assert [r.type for r in rec.references] == ["RESULT", "RESULT", "RESULT"]
    assert all(r.pmid for r in rec.references)


def test_markdown_escapes_are_removed() -> None:
    raw_text = orjson.dumps(_by_id("NCT02210780")).decode()
    assert "\\\\>" in raw_text or "\\\\<" in raw_text
    rec = parse_study(_by_id("NCT02210780"))
    assert rec.eligibility and "\\>" not in rec.eligibility and "\\<" not in rec.eligibility
    assert ">" in rec.eligibility or "<" in rec.eligibility


def test_references_secondary_ids_and_mesh() -> None:
    rec = parse_study(_by_id("NCT02513394"))
    eudract = [s for s in rec.secondary_ids if s.type == "EUDRACT_NUMBER"]
    assert eudract and eudract[0].value.count("-") == 2
    assert {r.type for r in rec.references} == {"DERIVED"}
    assert all(r.pmid and r.pmid.isdigit() for r in rec.references)
    assert any(m.kind == "condition" and not m.ancestor for m in rec.mesh)
    assert any(m.ancestor for m in rec.mesh)
    refs = parse_study(_by_id("NCT04431453")).references
    assert len(refs) == 4 and all(r.pmid is None for r in refs)  # BACKGROUND refs without pmid


def test_missing_modules_do_not_crash() -> None:
    study = orjson.loads(orjson.dumps(_by_id("NCT04523987")))
    for module in ("statusModule", "designModule", "conditionsModule", "armsInterventionsModule",
                   "referencesModule", "descriptionModule"):
        study["protocolSection"].pop(module, None)
    study.pop("derivedSection", None)
    rec = parse_study(study)
    assert rec.registry_id == "NCT04523987"
    assert (rec.phase, rec.status, rec.conditions, rec.mesh) == ("NOT_APPLICABLE", "UNKNOWN", [], [])


def test_unknown_enum_values_map_to_other_and_unknown() -> None:
    study = orjson.loads(orjson.dumps(_by_id("NCT04523987")))
    study["protocolSection"]["statusModule"]["overallStatus"] = "AVAILABLE"
    study["protocolSection"]["designModule"]["phases"] = ["PHASE5"]
    rec = parse_study(study)
    assert (rec.status, rec.status_raw) == ("OTHER", "AVAILABLE")
    assert (rec.phase, rec.phase_raw) == ("UNKNOWN", "PHASE5")


def test_study_without_id_is_rejected() -> None:
    study = orjson.loads(orjson.dumps(_by_id("NCT04523987")))
    del study["protocolSection"]["identificationModule"]["nctId"]
    with pytest.raises(ParseError, match="nctId"):
        parse_study(study)


def test_parse_page_reads_token_and_total() -> None:
    body = (FIXTURES / "ctgov" / "studies_page_with_nextPageToken.json").read_bytes()
    studies, total, token = parse_page(body)
    assert len(studies) == 1 and total is None and token == "NF0g5JE"
    body = (FIXTURES / "ctgov" / "studies_page_last_NCT06388018.json").read_bytes()
    assert parse_page(body)[2] is None


@pytest.mark.parametrize("body", [b"<html><body>Service Unavailable</body></html>",
                                  b'{"studies": [', b'{"error": "x"}'])
def test_parse_page_rejects_non_pages(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_page(body)


def test_build_params_windows_and_tokens() -> None:
    w = Window(since=dt.date(2025, 1, 2), until=dt.date(2025, 1, 9))
    first = build_params("mesenchymal", w, page_size=5000)
    assert first["pageSize"] == "1000"
    assert first["filter.advanced"] == "AREA[LastUpdatePostDate]RANGE[2025-01-02,MAX]"
    nxt = build_params("mesenchymal", w, page_size=5000, page_token="abc")
    assert {k: v for k, v in nxt.items() if k != "pageToken"} == first
    assert "filter.advanced" not in build_params("q", Window(None, dt.date(2025, 1, 9)))


def test_fetch_follows_tokens_with_identical_params() -> None:
    pages = [
        load_json(FIXTURES / "ctgov" / "studies_page_with_nextPageToken.json"),
        load_json(FIXTURES / "ctgov" / "studies_page_last_NCT06388018.json"),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[len(seen) - 1])

    settings = load_settings({"db": "unused.sqlite"}, env={})
    with make_client(settings, transport=httpx.MockTransport(handler)) as client:
        src = ClinicalTrialsGov(settings.source("ctgov"))
        got = list(src.fetch(Http(client, settings), Window(None, dt.date(2025, 1, 1))))
    assert [len(p.items) for p in got] == [1, 1]
    assert seen[1].url.params["pageToken"] == "NF0g5JE"
    first = dict(seen[0].url.params)
    second = dict(seen[1].url.params)
    second.pop("pageToken")
    assert first == second
    assert seen[0].headers["User-Agent"].startswith("msc-trial-tracker/")


def test_fetch_ids_reads_single_studies_and_skips_unknown_ids() -> None:
    """Quarantined studies are fetched again one by one (/studies/{nctId}); an id the registry
    does not know (404, the text CT.gov sends for it) is skipped, a bad id never requested."""
    known = (FIXTURES / "ctgov" / "study_NCT00763412.json").read_bytes()  # a real response
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/NCT00763412"):
            return httpx.Response(200, content=known)
        return httpx.Response(404, text="Study NCT09999999 not found")

    settings = load_settings({"db": "unused.sqlite"}, env={})
    with make_client(settings, transport=httpx.MockTransport(handler)) as client:
        src = ClinicalTrialsGov(settings.source("ctgov"))
        pages = list(src.fetch_ids(Http(client, settings),
                                   ["NCT09999999", "sha:abc", "NCT00763412"]))
    assert [p.path.rsplit("/", 1)[-1] for p in map(httpx.URL, seen)] == [
        "NCT09999999", "NCT00763412"]
    assert [[i.nct_id for i in p.items] for p in pages] == [["NCT00763412"]]
    record = src.parse(pages[0].items[0])
    assert record.registry_id == "NCT00763412" and record.title
    assert record.raw == orjson.dumps(orjson.loads(known))  # compact, like a page's items


def _wrong(value: Any) -> list[Any]:
    """Values of the wrong type for a field holding ``value`` (derived from it)."""
    return [orjson.dumps(value).decode(), [value], 20190514, None, True]


PATHS = [  # (where, key): modules, structs and scalars of the protocol and derived sections
    *((("protocolSection",), m) for m in (
        "statusModule", "designModule", "conditionsModule", "armsInterventionsModule",
        "descriptionModule", "eligibilityModule", "sponsorCollaboratorsModule",
        "referencesModule", "outcomesModule", "contactsLocationsModule")),
    (("protocolSection", "statusModule"), "startDateStruct"),
    (("protocolSection", "statusModule"), "overallStatus"),
    (("protocolSection", "designModule"), "enrollmentInfo"),
    (("protocolSection", "designModule"), "phases"),
    (("protocolSection", "armsInterventionsModule"), "interventions"),
    (("protocolSection", "armsInterventionsModule"), "armGroups"),
    (("protocolSection", "referencesModule"), "references"),
    (("protocolSection", "sponsorCollaboratorsModule"), "leadSponsor"),
    (("protocolSection", "identificationModule"), "secondaryIdInfos"),
    ((), "derivedSection"),
]


@pytest.mark.parametrize(("where", "key"), PATHS, ids=[".".join((*w, k)) for w, k in PATHS])
def test_a_field_of_the_wrong_type_reads_as_absent(where: tuple[str, ...], key: str) -> None:
    """Derived from real studies: each module, struct or list replaced by a string, a list, a
    number, null or a boolean. The study still parses (what it holds of the right type), as
    when the field is missing, and every value of the record has the type it promises."""
    tried = 0
    for study in STUDIES:
        node = study
        for part in where:
            node = node.get(part) or {}
        if key not in node:
            continue
        tried += 1
        for value in _wrong(node[key]):
            changed = orjson.loads(orjson.dumps(study))
            target = changed
            for part in where:
                target = target[part]
            target[key] = value
            rec = parse_study(changed)
            assert rec.registry_id == study["protocolSection"]["identificationModule"]["nctId"]
            for name in ("study_type", "status_raw", "enrollment_type", "sponsor",
                         "sponsor_class", "start_date", "why_stopped", "phase_raw"):
                assert isinstance(getattr(rec, name), str | None), (name, getattr(rec, name))
            assert rec.enrollment is None or type(rec.enrollment) is int
            assert all(isinstance(c, str) for c in rec.conditions + rec.countries)
            assert all(isinstance(i.name, str) and isinstance(i.type, str | None)
                       for i in rec.interventions)
            assert all(isinstance(r.pmid, str | None) for r in rec.references)
            assert all(isinstance(s.value, str) for s in rec.secondary_ids)
    assert tried, "no recorded study has this field"
