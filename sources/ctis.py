"""EU CTIS (Clinical Trials Information System) public API: POST search, GET retrieve.

Contract (shared/docs/API_NOTES.md section 6; the API is undocumented and unversioned, so every
field is read as optional and a field of the wrong type reads as absent):

* ``POST {url}/search`` with a JSON body (:func:`search_body`): ``pagination.page`` is
  **1-based** (``page: 0`` answers HTTP 200 with ``totalRecords: 0`` for every query: the
  page-0 trap, never asked here), ``size`` at most 100, sorted by ``decisionDate``. The answer
  is ``{"pagination": {"totalRecords", "currentPage", "totalPages", "nextPage", ...},
  "data": [summary, ...]}`` (:func:`parse_search`); summary dates are ``DD/MM/YYYY``.
* The search hands out at most **10,000 records per query** (ctrdata issue #59). ctrdata pages
  past it by flipping the sort direction (up to 20,000); the MSC query is a few dozen trials,
  so this module asserts the cap instead: a query above it fails with one line saying to
  narrow it.
* ``GET {url}/retrieve/{ctNumber}`` (:func:`retrieve_path`) gives the full record
  (:func:`parse_trial`): ``ctNumber``, ``ctStatus``/``ctPublicStatusCode`` (status codes of
  API_NOTES 6.3), ``authorizedApplication.authorizedPartI`` (titles, phase, conditions,
  products, sponsors), ``authorizedPartsII`` (per member state), ``events``, ``results``.

Incremental runs: CTIS has **no server-side "updated since" filter**. A run therefore pages the
whole (small) MSC query, compares each summary's ``lastUpdated`` (the version marker of
API_NOTES 0.1) with the window, and retrieves only the trials updated on or after
``window.since`` (all of them for a full run); a summary whose ``lastUpdated`` cannot be read is
retrieved too. The alternative is the RSS feed of the last 7 days
(``GET {url}/rss/updates.rss?search_criteria=<url-encoded JSON criteria>``, item links holding
``EUCT=<ctNumber>``); it is not used because it covers only 7 days (a run missed for longer
would lose changes silently) while re-paging the MSC query costs one or two requests.

Each item stored is the retrieve JSON with the search summary it was listed under added as the
top-level key ``searchSummary`` (as ctrdata merges the search overview into each retrieved
record): the summary carries ``lastUpdated``, ``trialCountries`` ("Ireland:2") and a few fields
the retrieve record may lack; :func:`parse_trial` falls back on it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from db.records import Intervention, SecondaryId, StudyRecord, content_hash
from sources.base import (
    FETCH_IDS,
    BaseSource,
    Page,
    SourceCount,
    Window,
    endless_paging,
    page_limit,
    pages_for,
    parse_json,
)
from tracker.config import SourceSettings
from tracker.countries import normalize_country
from tracker.errors import FetchError, IncompleteError, ParseError
from tracker.trial_ids import extract_trial_ids

NAME = "ctis"
WEB_URL = "https://euclinicaltrials.eu/ctis-public-web/view/{}"
# CTIS trial numbers: YYYY-5NNNNN-NN-NN (the last pair is 00 for the initial application).
CT_NUMBER_RE = re.compile(r"^20\d{2}-5\d{5}-\d{2}-\d{2}$")
MAX_PAGE_SIZE = 100  # the most records one search page holds (API_NOTES 6.2)
SEARCH_CAP = 10_000  # the most records the search hands out for one query (API_NOTES 6.4)
RETRIEVE_BATCH = 25  # retrieved records per Page (about 3 MB: ~120 KB a record)
SUMMARY_KEY = "searchSummary"  # where an item keeps the search summary it was listed under

# API_NOTES 6.3, ``ctStatus`` / ``ctPublicStatusCode``: code -> (label, canonical status).
STATUS_CODES: dict[int, tuple[str, str]] = {
    # Not authorised yet; the trial is pending, as CT.gov's "not yet recruiting" registrations
    # registered before their ethics approval.
    1: ("Under evaluation", "NOT_YET_RECRUITING"),
    2: ("Authorised, recruitment pending", "NOT_YET_RECRUITING"),
    3: ("Authorised, recruiting", "RECRUITING"),
    4: ("Ongoing, recruiting", "RECRUITING"),
    5: ("Ongoing, recruitment ended", "ACTIVE_NOT_RECRUITING"),
    6: ("Temporarily halted", "SUSPENDED"),  # halted, may restart: CT.gov's "suspended"
    7: ("Suspended", "SUSPENDED"),  # a member state's corrective measure (CTR Art. 77)
    # Ended includes early termination; parse_trial makes it TERMINATED when the events show an
    # early termination in every member state concerned (as ctrdata's f.statusRecruitment).
    8: ("Ended (includes early termination)", "COMPLETED"),
    # Expired (not started within two years of authorisation), not authorised, cancelled: the
    # trial ended before any participant was enrolled, CT.gov's "withdrawn".
    9: ("Expired", "WITHDRAWN"),
    10: ("Revoked", "TERMINATED"),  # authorisation withdrawn by the member state: stopped early
    11: ("Not authorised", "WITHDRAWN"),
    12: ("Cancelled", "WITHDRAWN"),
}

# API_NOTES 6.3, ``trialPhaseCode`` / phase labels: code -> (label, canonical phase).
PHASE_CODES: dict[int, tuple[str, str]] = {
    1: ("Human Pharmacology (Phase I) - First administration to humans", "PHASE1"),
    2: ("Human Pharmacology (Phase I) - Bioequivalence Study", "PHASE1"),
    3: ("Human Pharmacology (Phase I) - Other", "PHASE1"),
    4: ("Therapeutic exploratory (Phase II)", "PHASE2"),
    5: ("Therapeutic confirmatory (Phase III)", "PHASE3"),
    6: ("Therapeutic use (Phase IV)", "PHASE4"),
    7: ("Phase I and Phase II (Integrated) - First administration to humans", "PHASE1_2"),
    8: ("Phase I and Phase II (Integrated) - Bioequivalence Study", "PHASE1_2"),
    9: ("Phase I and Phase II (Integrated) - Other", "PHASE1_2"),
    10: ("Phase II and Phase III (Integrated)", "PHASE2_3"),
    # TAXONOMY.md has no PHASE3_4: an integrated phase III/IV trial is confirmatory first, and
    # tracker.taxonomy.ctgov_phase maps CT.gov's ["PHASE3", "PHASE4"] to PHASE3 the same way.
    11: ("Phase III and phase IV (Integrated)", "PHASE3"),
}

# CTIS1 (before 2024-06-17) and drifted labels: label key -> status code.
_STATUS_ALIASES = {"ended": 8}
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_NUMERAL = r"(?:iv|iii|ii|i|[1-4])(?![a-z0-9])"
_PHASE_WORD = re.compile(rf"phase\s*({_NUMERAL}(?:\s*/\s*{_NUMERAL})*)")
_PHASE_SETS = {
    frozenset({1}): "PHASE1", frozenset({2}): "PHASE2", frozenset({3}): "PHASE3",
    frozenset({4}): "PHASE4", frozenset({1, 2}): "PHASE1_2", frozenset({2, 3}): "PHASE2_3",
    frozenset({3, 4}): "PHASE3",
}
_DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?")
# ctrdata f.sponsorType: CTIS sponsor types that are not for profit / for profit.
_NON_COMMERCIAL = ("hospital", "clinic", "patient organisation", "educational", "health care",
                   "university", "academic")
_COMMERCIAL = ("industry", "pharmaceutical", "laboratory", "company")


def _key(text: str) -> str:
    """A label as compared: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]+", "", text.lower())


_STATUS_BY_LABEL = {_key(label): code for code, (label, _) in STATUS_CODES.items()}
_STATUS_BY_LABEL.update(_STATUS_ALIASES)
_PHASE_BY_LABEL = {_key(label): code for code, (label, _) in PHASE_CODES.items()}


# ------------------------------------------------------------------ requests ----------------


def search_body(query: str, page: int, size: int = MAX_PAGE_SIZE, *,
                criterion: str = "containAll") -> dict[str, Any]:
    """The JSON body of one ``POST /search`` page (API_NOTES 6.2).

    ``page`` is 1-based: page 0 is the trap that answers ``totalRecords: 0`` for every query,
    so asking for it is a programming error (ValueError). ``size`` is clamped to 1..100.
    ``criterion`` is the ``searchCriteria`` key the query fills (``number`` looks a trial up).
    """
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"CTIS search pages are 1-based; page {page!r} was asked for")
    criteria: dict[str, Any] = {"containAll": None, "containAny": None, "containNot": None}
    criteria[criterion] = query
    return {
        "pagination": {"page": page, "size": min(max(int(size), 1), MAX_PAGE_SIZE)},
        "sort": {"property": "decisionDate", "direction": "DESC"},
        "searchCriteria": criteria,
    }


def retrieve_path(ct_number: str) -> str:
    """The path, under the API's base URL, of one trial's full record."""
    return f"retrieve/{ct_number}"


# ------------------------------------------------------------------ small readers -----------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None


def _para(value: Any) -> str | None:
    """Free text with its line breaks kept (objectives, criteria)."""
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _scalar(value: Any) -> str | None:
    """An id given as a string or a number, as stripped text."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    """A count or code given as an integer or as digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _ct_number(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if CT_NUMBER_RE.match(value) else None


def parse_date(value: Any) -> str | None:
    """An ISO date from a CTIS date: ``DD/MM/YYYY`` (the search, API_NOTES 6.4), or
    ``YYYY-MM-DD`` with or without a time (seen in retrieve records); None otherwise."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    m = _DMY.fullmatch(value)
    if m:
        day, month, year = (int(g) for g in m.groups())
    else:
        m = _ISO.fullmatch(value)
        if not m:
            return None
        year, month, day = (int(g) for g in m.groups())
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _full_date(value: Any) -> dt.date | None:
    iso = parse_date(value)
    return dt.date.fromisoformat(iso) if iso else None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------ search ------------------


def parse_search(body: bytes, *, expected: int | None = None,
                 query: str | None = None) -> tuple[list[dict[str, Any]], int, int | None]:
    """Split one search answer into (summaries, totalRecords, totalPages).

    Raises ParseError for a body that is not JSON (the one "not JSON" line of
    ``sources.base``) or not the documented object; IncompleteError when ``totalRecords`` is 0
    although ``expected`` (a count announced before: an earlier page, a count, an earlier run)
    said more, which is what the page-0 trap looks like; IncompleteError when the query matches
    more than the 10,000 records the search hands out.
    """
    doc = parse_json(body, "ctis: search response")
    if not isinstance(doc, dict):
        raise ParseError("ctis: search response is not a JSON object; the API changed shape")
    pagination = doc.get("pagination")
    if not isinstance(pagination, dict):
        raise ParseError("ctis: search response has no 'pagination' object; the API changed "
                         "shape")
    total = _int(pagination.get("totalRecords"))
    if total is None:
        raise ParseError(f"ctis: search response's pagination.totalRecords is not a count: "
                         f"{pagination.get('totalRecords')!r:.60}; the API changed shape")
    data = doc.get("data")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ParseError("ctis: search response's 'data' is not a list; the API changed shape")
    if total == 0 and expected:
        raise IncompleteError(
            f"ctis: the search answered totalRecords 0 where {expected} trials were counted "
            "before (the answer CTIS gives to a page 0: its pages are 1-based); nothing is "
            "lost, the next run repeats this window")
    if total > SEARCH_CAP:
        what = f"the query {query!r}" if query is not None else "the query"
        raise IncompleteError(
            f"ctis: {what} matches {total} trials, more than the {SEARCH_CAP:,} the CTIS "
            "search hands out for one query, so the rest could never be fetched: narrow the "
            "ctis query in config")
    return [s for s in data if isinstance(s, dict)], total, _int(pagination.get("totalPages"))


def updated_since(summary: dict[str, Any], since: dt.date | None) -> bool:
    """True when a search summary's ``lastUpdated`` is on or after ``since`` (None: every
    summary), or cannot be read (the trial is retrieved rather than missed)."""
    if since is None:
        return True
    updated = _full_date(summary.get("lastUpdated"))
    return updated is None or updated >= since


# ------------------------------------------------------------------ code lists --------------


def phase_code(value: Any) -> int | None:
    """The 6.3 phase code of a ``trialPhase`` value: a code (int or digits) or a label."""
    code = _int(value)
    if code is not None:
        return code if code in PHASE_CODES else None
    text = _text(value)
    return _PHASE_BY_LABEL.get(_key(text)) if text else None


def ctis_phase(value: Any) -> str:
    """A CTIS ``trialPhase`` (code 1-11, its label, or a drifted or cut label) as a canonical
    phase; UNKNOWN when it names none. Never raises."""
    code = phase_code(value)
    if code is not None:
        return PHASE_CODES[code][1]
    text = _text(value)
    if not text or _int(value) is not None:
        return "UNKNOWN"
    found = frozenset(_ROMAN[n.strip()] for m in _PHASE_WORD.findall(text.lower())
                      for n in m.split("/"))
    return _PHASE_SETS.get(found, "UNKNOWN")


def status_code(value: Any) -> int | None:
    """The 6.3 status code of a ``ctStatus``/``ctPublicStatusCode``: a code or a label."""
    code = _int(value)
    if code is not None:
        return code
    text = _text(value)
    return _STATUS_BY_LABEL.get(_key(text)) if text else None


def ctis_status(value: Any) -> tuple[str, str | None]:
    """(canonical status, status_raw) of a CTIS status value.

    status_raw is "code: label" for a code (the code alone for one the code list lacks) and the
    text verbatim for a label. Unknown values are OTHER, a missing one UNKNOWN. Never raises.
    """
    code = _int(value)
    text = _text(value)
    if code is None and text is None:
        return "UNKNOWN", None
    if code is None:
        code = status_code(text)
        raw = text
    else:
        raw = f"{code}: {STATUS_CODES[code][0]}" if code in STATUS_CODES else str(code)
    if code is None or code not in STATUS_CODES:
        return "OTHER", raw
    return STATUS_CODES[code][1], raw


# ------------------------------------------------------------------ record ------------------


def _early_termination(doc: dict[str, Any], mscs: list[str]) -> tuple[bool, str | None]:
    """(ended early in every member state concerned, the reason given) from ``events``."""
    ended: set[str] = set()
    reason = None
    for i, entry in enumerate(_list(_dict(doc.get("events")).get("trialEvents"))):
        entry = _dict(entry)
        kinds = [_text(_dict(e).get("notificationType")) or "" for e in _list(entry.get("events"))]
        if not any("EARLY_TERMINATION" in k.upper().replace(" ", "_") for k in kinds):
            continue
        ended.add(_text(entry.get("mscName")) or _scalar(entry.get("mscId")) or f"#{i}")
        reason = reason or _text(_dict(entry.get("earlyTerminationReason")).get("name"))
    return bool(ended) and len(ended) >= len(set(mscs)), reason


def _sponsor(part1: dict[str, Any], summary: dict[str, Any]) -> tuple[str | None, str | None]:
    sponsors = [s for s in _list(part1.get("sponsors")) if isinstance(s, dict)]
    lead = next((s for s in sponsors if s.get("primary") is True), sponsors[0] if sponsors else {})
    name = _text(_dict(lead.get("organisation")).get("name")) or _text(summary.get("sponsor"))
    commercial = lead.get("isCommercial")
    if not isinstance(commercial, bool):
        word = (_text(lead.get("commercial")) or "").lower()
        commercial = {"commercial": True, "non-commercial": False}.get(word)
    if commercial is None:
        kind = (_text(summary.get("sponsorType")) or "").lower()
        if any(w in kind for w in _NON_COMMERCIAL):
            commercial = False
        elif any(w in kind for w in _COMMERCIAL):
            commercial = True
    return name, None if commercial is None else ("INDUSTRY" if commercial else "OTHER")


def _product(product: dict[str, Any], role: str | None) -> Intervention | None:
    info = _dict(product.get("productDictionaryInfo"))
    names = [_text(product.get("productName")), _text(info.get("prodName")),
             _text(info.get("activeSubstanceName")),
             _text(info.get("activeSubstanceOtherDescriptiveName")),
             _text(info.get("productOtherName")), _text(info.get("sponsorProductCode"))]
    names += [_text(_dict(s).get("actSubstName")) for s in _list(info.get("productSubstances"))]
    found = [n for n in names if n]
    if not found:
        return None
    name, seen, others = found[0], {found[0].casefold()}, []
    for other in found[1:]:
        if other.casefold() not in seen:
            seen.add(other.casefold())
            others.append(other)
    therapies = [_dict(t) for t in _list(product.get("therapies")) if isinstance(t, dict)]
    atmp = _unique([t for th in therapies if (t := _text(th.get("advancedTherapyType")))])
    form = _text(product.get("pharmaceuticalFormDisplay")) or _text(info.get("pharmForm"))
    routes = [r for r in (_text(x) for x in _list(product.get("routes"))) if r]
    parts = [f"{role} product" if role else None, *atmp, form, ", ".join(routes) or None]
    description = "; ".join(p for p in parts if p) or None
    # Every CTIS product is a medicinal product: an advanced therapy (cells, genes, tissue)
    # is what CT.gov calls BIOLOGICAL, any other a DRUG.
    return Intervention(type="BIOLOGICAL" if therapies else "DRUG", name=name,
                        description=description, other_names=others)


def _interventions(part1: dict[str, Any], summary: dict[str, Any]) -> list[Intervention]:
    out: dict[str, Intervention] = {}
    groups = [_dict(g) for g in _list(part1.get("productRoleGroupInfos"))]
    pairs = [(_dict(p), _text(g.get("productRoleName"))) for g in groups
             for p in _list(g.get("products")) if isinstance(p, dict)]
    pairs += [(p, _text(p.get("mpRoleInTrial"))) for p in _list(part1.get("products"))
              if isinstance(p, dict)]
    for product, role in pairs:
        iv = _product(product, role)
        if iv is not None and iv.name.casefold() not in out:
            out[iv.name.casefold()] = iv
    if not out and (name := _text(summary.get("product"))):
        out[name.casefold()] = Intervention(type=None, name=name)
    return list(out.values())


def _countries(app: dict[str, Any], part1: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    names = [c.split(":", 1)[0] for c in (_text(x) for x in _list(summary.get("trialCountries")))
             if c]
    names += [_text(_dict(m).get("mscName")) or "" for m in _list(app.get("memberStatesConcerned"))]
    names += [_text(_dict(_dict(p).get("mscInfo")).get("mscName")) or ""
              for p in _list(app.get("authorizedPartsII"))]
    names += [_text(_dict(c).get("name")) or "" for c in _list(part1.get("rowCountriesInfo"))]
    return _unique([c for n in names if (c := normalize_country(n))])


def _canonical_id(value: str, registry: str) -> str:
    found = [t.registry_id for t in extract_trial_ids(value) if t.registry == registry]
    return found[0] if found else value


def _secondary_ids(app: dict[str, Any], idents: dict[str, Any],
                   summary: dict[str, Any]) -> list[SecondaryId]:
    out: list[SecondaryId] = []
    eudract = _dict(app.get("eudraCt"))
    info = _dict(summary.get("eudraCtInfo"))
    code = _scalar(eudract.get("eudraCtCode")) or _scalar(info.get("eudraCtCode"))
    if code:
        moved = eudract.get("isTransitioned") is True or info.get("isTransitioned") is True
        out.append(SecondaryId(_canonical_id(code, "euctr"), "EUDRACT_NUMBER",
                               "EudraCT (transitioned to CTIS)" if moved else "EudraCT"))
    numbers = _dict(idents.get("secondaryIdentifyingNumbers"))
    for key, registry, kind, domain in (
        ("nctNumber", "ctgov", "REGISTRY", "ClinicalTrials.gov"),
        ("isrctnNumber", "isrctn", "REGISTRY", "ISRCTN"),
        ("whoUniversalTrialNumber", "", "OTHER", "WHO Universal Trial Number"),
    ):
        value = _scalar(_dict(numbers.get(key)).get("number"))
        if value:
            out.append(SecondaryId(_canonical_id(value, registry) if registry else value,
                                   kind, domain))
    for reg in _list(numbers.get("additionalRegistries")):
        reg = _dict(reg)
        value = _scalar(reg.get("number"))
        if value:
            out.append(SecondaryId(value, "REGISTRY", _text(reg.get("otherRegistryName"))
                                   or _scalar(reg.get("ctRegistryCode"))))
    unique: dict[str, SecondaryId] = {}
    for sid in out:
        unique.setdefault(sid.value, sid)
    return list(unique.values())


def _eligibility(info: dict[str, Any]) -> str | None:
    criteria = _dict(info.get("eligibilityCriteria"))
    blocks = []
    for key, head in (("principalInclusionCriteria", "Inclusion Criteria"),
                      ("principalExclusionCriteria", "Exclusion Criteria")):
        lines = [t for c in _list(criteria.get(key)) if (t := _para(_dict(c).get(key)))]
        if lines:
            blocks.append(f"{head}:\n" + "\n".join(f"- {line}" for line in lines))
    return "\n\n".join(blocks) or None


def _has_results(doc: dict[str, Any], summary: dict[str, Any]) -> bool:
    results = _dict(doc.get("results"))
    return any(bool(v) for v in results.values() if isinstance(v, list | dict)) or (
        parse_date(summary.get("resultsFirstReceived")) is not None)


def parse_trial(trial: dict[str, Any] | bytes, raw: bytes | None = None) -> StudyRecord:
    """Normalise one CTIS retrieve record (a dict or its JSON bytes), with or without the
    ``searchSummary`` it was listed under. Only a valid ``ctNumber`` and a title are required;
    anything else missing or of the wrong type reads as absent. Raises ParseError (nothing
    else) for a record that is not JSON, not an object, or cannot be keyed or titled."""
    if isinstance(trial, bytes | bytearray | memoryview):
        raw = bytes(trial)
        try:
            trial = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"ctis: a trial record is not valid JSON: {exc}") from None
    if not isinstance(trial, dict):
        raise ParseError("ctis: a trial record is not a JSON object")
    try:
        return _parse(trial, raw)
    except ParseError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        ct = _ct_number(trial.get("ctNumber")) or "a trial"
        raise ParseError(f"ctis: {ct} could not be normalised: {type(exc).__name__}: "
                         f"{str(exc)[:200]}") from exc


def _parse(doc: dict[str, Any], raw: bytes | None) -> StudyRecord:
    summary = _dict(doc.get(SUMMARY_KEY))
    app = _dict(doc.get("authorizedApplication"))
    part1 = _dict(app.get("authorizedPartI"))
    details = _dict(part1.get("trialDetails"))
    idents = _dict(details.get("clinicalTrialIdentifiers"))
    info = _dict(details.get("trialInformation"))
    duration = _dict(info.get("trialDuration"))
    events = _dict(doc.get("events"))

    ct = _ct_number(doc.get("ctNumber")) or _ct_number(summary.get("ctNumber"))
    if ct is None:
        raise ParseError(f"ctis: trial record has no valid ctNumber "
                         f"({doc.get('ctNumber')!r:.40})")
    full_title = _text(idents.get("fullTitle")) or _text(summary.get("ctTitle"))
    short_title = _text(idents.get("shortTitle")) or _text(summary.get("shortTitle"))
    title = _text(idents.get("publicTitle")) or full_title or short_title
    if not title:
        raise ParseError(f"ctis: {ct} has no title")

    phase_value = _dict(info.get("trialCategory")).get("trialPhase")
    if _scalar(phase_value) is None:
        phase_value = summary.get("trialPhase")
    phase_raw = _scalar(phase_value)

    for value in (doc.get("ctPublicStatusCode"), doc.get("ctStatus"), summary.get("ctStatus")):
        status, status_raw = ctis_status(value)
        if status_raw is not None:
            break
    mscs = [n for m in _list(app.get("memberStatesConcerned"))
            if (n := _text(_dict(m).get("mscName")))]
    ended_early, why = _early_termination(doc, mscs)
    if status == "COMPLETED" and ended_early:
        status = "TERMINATED"

    conditions_info = _dict(info.get("medicalCondition"))
    conditions = [c for m in _list(conditions_info.get("partIMedicalConditions"))
                  if (c := _text(_dict(m).get("medicalCondition")))]
    conditions += [c for m in _list(part1.get("medicalConditions"))
                   if (c := _text(_dict(m).get("medicalCondition")))]
    if not conditions and (text := _text(summary.get("conditions"))):
        conditions = [text]
    keywords = [t for m in _list(conditions_info.get("meddraConditionTerms"))
                if (t := _text(_dict(m).get("termName")))]
    keywords += [t for a in _list(part1.get("partOneTherapeuticAreas"))
                 if (t := _text(_dict(_dict(a).get("therapeuticArea")).get("name")))]
    keywords += [t for a in _list(part1.get("therapeuticAreas"))
                 if (t := _text(_dict(a).get("name")))]
    keywords += [t for a in _list(summary.get("therapeuticAreas")) if (t := _text(a))]

    counts = [_int(_dict(p).get("recruitmentSubjectCount"))
              for p in _list(app.get("authorizedPartsII"))]
    counts.append(_int(part1.get("rowSubjectCount")))
    known = [c for c in counts if c is not None]
    enrollment = sum(known) if known else _int(summary.get("totalNumberEnrolled"))

    sponsor, sponsor_class = _sponsor(part1, summary)
    objective = _dict(info.get("trialObjective"))
    endpoints = _dict(info.get("endPoint"))
    if raw is None:
        raw = orjson.dumps(doc)
    return StudyRecord(
        registry=NAME,
        registry_id=ct,
        title=title,
        url=WEB_URL.format(ct),
        raw=raw,
        content_hash=content_hash(raw),
        official_title=full_title,
        acronym=short_title if short_title != title else None,
        study_type="INTERVENTIONAL",  # CTIS holds clinical trials of medicinal products only
        phase=ctis_phase(phase_value),
        phase_raw=phase_raw,
        status=status,
        status_raw=status_raw,
        why_stopped=why if status == "TERMINATED" else None,
        conditions=_unique(conditions),
        keywords=_unique(keywords),
        interventions=_interventions(part1, summary),
        enrollment=enrollment,
        sponsor=sponsor,
        sponsor_class=sponsor_class,
        first_posted=_full_date(doc.get("publishDate")),
        last_update_posted=_full_date(doc.get("lastUpdated"))
        or _full_date(summary.get("lastUpdated")),
        start_date=parse_date(doc.get("startDateEU")) or parse_date(summary.get("startDateEU"))
        or parse_date(duration.get("estimatedRecruitmentStartDate")),
        completion_date=parse_date(events.get("trialGlobalEndDate"))
        or parse_date(duration.get("estimatedGlobalEndDate"))
        or parse_date(doc.get("endDateEU")) or parse_date(summary.get("endDate"))
        or parse_date(duration.get("estimatedEndDate")),
        has_results=_has_results(doc, summary),
        results_first_posted=_full_date(summary.get("resultsFirstReceived")),
        primary_outcomes=[e for p in _list(endpoints.get("primaryEndPoints"))
                          if (e := _text(_dict(p).get("endPoint")))],
        countries=_countries(app, part1, summary),
        brief_summary=_para(objective.get("mainObjective")),
        eligibility=_eligibility(info),
        secondary_ids=_secondary_ids(app, idents, summary),
    )


# ------------------------------------------------------------------ source ------------------


@dataclass(slots=True)
class RawTrial:
    """One retrieved trial: its CTIS number (when known) and its compact JSON bytes."""

    ct_number: str | None
    raw: bytes


def make_item(retrieved: Any, summary: dict[str, Any] | None, ct_number: str | None,
              body: bytes) -> RawTrial:
    """The stored item of a retrieve answer: its JSON with the search ``summary`` added as
    ``searchSummary``; a body that is not a JSON object is kept as sent (its parse fails, and
    the quarantine keeps it)."""
    if not isinstance(retrieved, dict):
        return RawTrial(ct_number, body)
    doc = {k: v for k, v in retrieved.items() if k != SUMMARY_KEY}
    if summary is not None:
        doc[SUMMARY_KEY] = summary
    return RawTrial(_ct_number(doc.get("ctNumber")) or ct_number, orjson.dumps(doc))


class CTIS(BaseSource):
    """The EU CTIS source (``ctis``): search by the configured query, retrieve each trial."""

    name = NAME
    kind = "study"
    registry = NAME
    capabilities = frozenset({FETCH_IDS})
    retry_statuses = frozenset({403})  # CTIS throttles with 403/429/503 (API_NOTES 6.4)

    @staticmethod
    def parse_raw(raw: bytes) -> StudyRecord:
        return parse_trial(raw)

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        # The last totalRecords this source saw (a count, an earlier fetch): a later answer of
        # totalRecords 0 is then the page-0 trap or a broken search, not an empty query.
        self.counted: int | None = None

    @property
    def page_size(self) -> int:
        return min(max(self.settings.page_size, 1), MAX_PAGE_SIZE)

    def _base(self) -> str:
        return self.settings.url.rstrip("/")

    def _search(self, http: Any, page: int, expected: int | None,
                size: int | None = None) -> tuple[list[dict[str, Any]], int, int | None]:
        body = search_body(self.settings.query, page, size or self.page_size)
        answer = http.post(NAME, self._base() + "/search", json=body).content
        return parse_search(answer, expected=expected, query=self.settings.query)

    def search_all(self, http: Any) -> tuple[dict[str, dict[str, Any]], int]:
        """Every search summary of the query, by ctNumber, and the announced total.

        Pages 1, 2, ... until the total is reached, a page is empty or the last page
        (``totalPages``) is read; bounded by ``page_limit``. Raises IncompleteError when fewer
        distinct trials arrived than announced.
        """
        found: dict[str, dict[str, Any]] = {}
        page, empty = 1, 0
        items, announced, last = self._search(http, 1, self.counted)
        size = len(items) or self.page_size  # the page size the API really used
        limit = page_limit(announced, min(size, self.page_size))
        while True:
            empty += not items
            for summary in items:
                ct = _ct_number(summary.get("ctNumber"))
                if ct is not None and ct not in found:
                    found[ct] = summary
            final = last if last else pages_for(announced, size)
            if len(found) >= announced or not items or page >= final:
                break
            if page >= limit:
                raise endless_paging(NAME, page, announced, size, empty)
            page += 1
            items, _, last = self._search(http, page, announced)
        if len(found) < announced:
            raise IncompleteError(
                f"ctis: the search announced {announced} trials but its {page} page(s) brought "
                f"{len(found)} distinct trial numbers; nothing is lost, the next run repeats "
                "this window")
        self.counted = announced
        return found, announced

    def _retrieve(self, http: Any, ct: str, summary: dict[str, Any] | None) -> RawTrial:
        body = http.get(NAME, f"{self._base()}/{retrieve_path(ct)}").content
        return make_item(parse_json(body, f"ctis: the record of {ct}"), summary, ct, body)

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """Page the query's search summaries, then retrieve each trial updated on or after
        ``window.since`` (every trial for a full run), in pages of RETRIEVE_BATCH. The first
        page announces how many trials the window holds (``total``). A window that starts
        after it ends is empty: nothing is asked."""
        if window.since is not None and window.since > window.until:
            return
        found, announced = self.search_all(http)
        chosen = [(ct, s) for ct, s in found.items() if updated_since(s, window.since)]
        extra = {"search_total": announced}
        if not chosen:
            yield Page(items=[], total=0, extra=extra)
            return
        for start in range(0, len(chosen), RETRIEVE_BATCH):
            items = [self._retrieve(http, ct, s) for ct, s in chosen[start:start + RETRIEVE_BATCH]]
            yield Page(items=items, total=len(chosen) if start == 0 else None, extra=extra)

    def count(self, http: Any, window: Window) -> SourceCount:
        """The trials ``window`` holds, from the first search page (one request), and the
        requests a run needs: the search pages plus one retrieve per trial. With no
        updated-since filter, an incremental window is counted exactly only when the whole
        query fits on that page; otherwise every trial of the query is the upper bound."""
        if window.since is not None and window.since > window.until:
            return SourceCount(0, 0)
        items, total, _ = self._search(http, 1, None)
        self.counted = total
        searches = pages_for(total, self.page_size)
        if window.since is None:
            return SourceCount(total, searches + total)
        if len(items) >= total:
            n = sum(updated_since(s, window.since) for s in items)
            return SourceCount(n, searches + n, note=f"{n} of {total} trials updated since "
                               f"{window.since.isoformat()} (by the search's lastUpdated)")
        return SourceCount(total, searches + total, note=(
            "CTIS has no updated-since filter: at most every trial of the query; a run pages "
            "the search and retrieves only those updated in the window"))

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        """Yield each trial of ``ids`` (ctNumbers; quarantined records, fetched again) as a page
        of one, with its search summary looked up by number. A number CTIS does not know
        (404) is skipped; it stays quarantined."""
        for ct in ids:
            if _ct_number(ct) is None:
                continue
            try:
                body = http.get(NAME, f"{self._base()}/{retrieve_path(ct)}").content
            except FetchError as exc:
                if exc.status_code != 404:
                    raise
                continue
            query = search_body(ct, 1, 10, criterion="number")
            answer = http.post(NAME, self._base() + "/search", json=query).content
            summaries, _, _ = parse_search(answer)
            summary = next((s for s in summaries if _ct_number(s.get("ctNumber")) == ct), None)
            yield Page(items=[make_item(parse_json(body, f"ctis: the record of {ct}"),
                                        summary, ct, body)])

    def parse(self, item: RawTrial) -> StudyRecord:
        """Normalise one retrieved trial (see ``parse_trial``)."""
        return parse_trial(item.raw)

    def record_id(self, item: RawTrial) -> str | None:
        """The ctNumber of a retrieved trial."""
        return item.ct_number

    def item_bytes(self, item: RawTrial) -> bytes:
        """The raw bytes of an item (stored, and kept by the quarantine)."""
        return item.raw

    def item_from_bytes(self, raw: bytes) -> RawTrial:
        """Rebuild an item from stored or quarantined bytes."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return RawTrial(None, raw)
        doc = _dict(doc)
        ct = _ct_number(doc.get("ctNumber")) or _ct_number(_dict(doc.get(SUMMARY_KEY)).get(
            "ctNumber"))
        return RawTrial(ct, raw)
