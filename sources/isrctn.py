"""ISRCTN registry API: ``lastEdited`` date windows of the XML search, ``fullTrial`` to StudyRecord.

Contract (shared/docs/API_NOTES.md section 4): the search
``GET {url}/query/format/default?q=..&limit=n`` answers ``<allTrials totalCount="N">``
(namespace ``http://www.67bricks.com/isrctn``) holding up to ``limit`` ``<fullTrial>``
elements; there is no paging or offset, ``limit=0`` gives the count alone, an empty ``q`` is a
400 and a misspelled field name gives 0 records, not an error. A window is therefore asked by
``lastEdited`` (``GE``/``LT`` an ISO datetime) and split by date until each piece holds at most
``page_size`` records (dl_isrctn splits above 100); a single day over the limit is fetched whole
(``limit`` = its count). One trial: ``GET {url}/trial/{digits}/format/default``.

The API has no overall-status field: status is derived from the recruitment dates, the
overrides and the overall end date as they stood at the record's own ``lastUpdated`` (API_NOTES
4.6), so a stored record always parses to the same status. Phases are given per intervention.
Missing values are literal texts ("Nil known", "N/A", "Not provided at time of registration")
and read as absent. ISRCTN numbers are bare digits in the XML; records are keyed ``ISRCTN`` +
digits.

Errors: every malformed body or record raises :class:`~tracker.errors.ParseError` (one line);
fewer records than a window announced is left to the pipeline's completeness check (each
window's page carries its ``totalCount``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from lxml import etree

from db.records import Intervention, Reference, SecondaryId, StudyRecord, content_hash
from sources.base import FETCH_IDS, BaseSource, Page, SourceCount, Window, parse_xml
from tracker.config import SourceSettings
from tracker.errors import FetchError, ParseError, one_line
from tracker.trial_ids import extract_trial_ids

__all__ = [
    "ISRCTN",
    "RawTrial",
    "count_params",
    "derive_status",
    "isrctn_phase",
    "parse_page",
    "parse_trial",
    "search_params",
    "split_windows",
    "trial_path",
    "window_bounds",
]

NAME = "isrctn"
NS = "http://www.67bricks.com/isrctn"
TRIAL_URL = "https://www.isrctn.com/ISRCTN{}"
SEARCH_PATH = "query/format/default"
# The registry opened in 2000 (its first numbers were assigned then): no record was edited
# earlier, so a full run asks from here, split by date like any other window.
FULL_LOAD_START = dt.date(2000, 1, 1)
ONE_DAY = dt.timedelta(days=1)
_NUMBER = re.compile(r"(?:ISRCTN)?\s*(\d{8})", re.IGNORECASE)
_DATE = re.compile(r"\s*(\d{4}-\d{2}-\d{2})")
_PMID = re.compile(r"(?:ncbi\.nlm\.nih\.gov/pubmed/|pubmed\.ncbi\.nlm\.nih\.gov/)(\d{1,9})\b")
_URL = re.compile(r"https?://\S+|\bdoi\.org/\S+|\b10\.\d{4,9}/\S+")
NAME_LIMIT = 200  # an intervention named from its description: the first line, this long at most


# --------------------------------------------------------------------------------------------
# Requests (pure)
# --------------------------------------------------------------------------------------------


def _stamp(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def search_params(query: str, since: dt.date, until: dt.date, limit: int) -> dict[str, str]:
    """Parameters of one search for records last edited on or after ``since`` and before
    ``until`` (a half-open range of days, midnight UTC), at most ``limit`` of them.

    The configured query is parenthesised: it is an OR list, and the date constraints must
    apply to all of it. Raises ValueError for an empty range or a negative limit.
    """
    if until <= since:
        raise ValueError(f"empty lastEdited range: {since} .. {until}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    q = f"({query}) AND lastEdited GE {_stamp(since)} AND lastEdited LT {_stamp(until)}"
    return {"q": q, "limit": str(limit)}


def count_params(query: str, since: dt.date, until: dt.date) -> dict[str, str]:
    """The count request of a range: the same search with ``limit=0`` (only ``totalCount``)."""
    return search_params(query, since, until, 0)


def trial_path(number: str) -> str:
    """The single-trial path for ``ISRCTN12345678`` or ``12345678``: the API wants the digits.

    Raises ValueError for anything that is not an ISRCTN number.
    """
    m = _NUMBER.fullmatch(number.strip())
    if m is None:
        raise ValueError(f"not an ISRCTN number: {number!r}")
    return f"trial/{m.group(1)}/format/default"


def window_bounds(window: Window) -> tuple[dt.date, dt.date] | None:
    """The half-open ``lastEdited`` range of ``window``: from ``since`` (a full run: from
    FULL_LOAD_START) to the day after ``until``, so that today's edits are included. None when
    the window is empty (it starts after it ends)."""
    lo = window.since if window.since is not None else FULL_LOAD_START
    hi = window.until + ONE_DAY
    return (lo, hi) if lo < hi else None


def split_windows(
    lo: dt.date, hi: dt.date, count: Callable[[dt.date, dt.date], int], limit: int
) -> Iterator[tuple[dt.date, dt.date, int]]:
    """(lo, hi, records) for consecutive half-open ranges covering [lo, hi), oldest first, each
    holding at most ``limit`` records, or a single day that holds more.

    ``count(lo, hi)`` says how many records a range holds (one ``limit=0`` request); a range
    over the limit is split in two halves by date and each half is counted again. The API has
    no paging, so this is the only way to keep one response to ``limit`` records.
    """
    records = count(lo, hi)
    if records <= limit or hi - lo <= ONE_DAY:
        yield lo, hi, records
        return
    mid = lo + dt.timedelta(days=(hi - lo).days // 2)
    yield from split_windows(lo, mid, count, limit)
    yield from split_windows(mid, hi, count, limit)


# --------------------------------------------------------------------------------------------
# Responses (pure)
# --------------------------------------------------------------------------------------------


class RawTrial(NamedTuple):
    """One ``fullTrial`` of a response: its id (``ISRCTN`` + digits, when it has one) and the
    element's own bytes (what is stored and hashed: one record's change changes only its hash)."""

    isrctn_id: str | None
    raw: bytes


def _local(el: Any) -> str:
    tag = getattr(el, "tag", None)
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _ns(el: Any) -> str:
    """The namespace prefix ``{...}`` of ``el``'s tag ("" when it has none): children are read
    in their parent's namespace, so a body without the default namespace reads the same."""
    tag = getattr(el, "tag", "")
    return tag[: tag.index("}") + 1] if isinstance(tag, str) and tag.startswith("{") else ""


def _child(el: Any, *path: str) -> Any:
    """The first element at ``path`` below ``el`` (each step a local name), or None."""
    for name in path:
        if el is None:
            return None
        el = el.find(_ns(el) + name)
    return el


def _children(el: Any, name: str) -> list[Any]:
    return [] if el is None else list(el.iterchildren(_ns(el) + name))


def _serialise(el: Any) -> bytes:
    # The element with the namespace declaration it needs, without the whitespace after it.
    return etree.tostring(el, encoding="utf-8", xml_declaration=False, with_tail=False)


def _id_of(full: Any) -> str | None:
    number = _child(full, "trial", "isrctn")
    if number is None:
        return None
    m = _NUMBER.fullmatch("".join(number.itertext()).strip())
    return "ISRCTN" + m.group(1) if m else None


def parse_page(body: bytes) -> tuple[list[RawTrial], int]:
    """Split one search (or single-trial) response into (trials, totalCount).

    ``totalCount`` is what the API counts for the query, which may exceed the trials sent (the
    ``limit``); the caller passes it on as the page's total so that the pipeline fails a window
    that brought fewer records than announced. Raises ParseError for a body that is empty, not
    XML, cut short, not an ``allTrials`` document or without a numeric ``totalCount``.
    """
    root = parse_xml(body, f"{NAME}: response")
    if _local(root) != "allTrials":
        raise ParseError(f"{NAME}: response is <{_local(root) or '?'}>, not the <allTrials> list "
                         "the API sends; the API changed shape or a proxy answered")
    total = _count(root.get("totalCount"))
    if total is None:
        raise ParseError(f"{NAME}: response has no numeric totalCount "
                         f"({root.get('totalCount')!r}); the API changed shape")
    items = [RawTrial(_id_of(full), _serialise(full)) for full in _children(root, "fullTrial")]
    return items, total


def _count(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


# Texts the registry writes where a value is absent (API_NOTES 4.6), compared lower-cased
# with whitespace collapsed and a final full stop dropped.
_MISSING = frozenset({
    "", "-", "n/a", "na", "nil", "nil known", "none", "not applicable", "not available",
    "not known", "not provided", "not provided at time of registration", "unknown",
    "plain english summary not provided at time of registration",
    "plain english summary of protocol not provided at time of registration",
})


def _missing(text: str) -> bool:
    return " ".join(text.split()).lower().rstrip(".") in _MISSING


def _raw(el: Any) -> str | None:
    """An element's text (its children's text included), stripped; None when empty."""
    if el is None:
        return None
    value = "".join(el.itertext()).strip()
    return value or None


def _text(el: Any) -> str | None:
    """Like ``_raw``, with the registry's missing-value texts read as None."""
    value = _raw(el)
    return None if value is None or _missing(value) else value


def _texts(els: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(t for el in els if (t := _text(el))))


def _day(value: str | None) -> dt.date | None:
    """The date of an ISO datetime ("2021-10-07T00:00:00.000Z", nanoseconds and all)."""
    m = _DATE.match(value) if value else None
    if m is None:
        return None
    try:
        return dt.date.fromisoformat(m.group(1))
    except ValueError:
        return None


def _int(el: Any) -> int | None:
    value = _raw(el)
    if value is None or not re.fullmatch(r"\d{1,9}", value):
        return None
    return int(value)


# --------------------------------------------------------------------------------------------
# Phase and status
# --------------------------------------------------------------------------------------------

# ISRCTN phase words (API_NOTES 4.4, from ctrdata's maps) as the numbered phases they span.
# ctrdata also maps a rare "Phase II/IV": it spans no canonical range, so it reads as an unknown
# word (UNKNOWN unless another intervention names a phase) rather than being guessed.
_PHASE_WORDS: dict[str, frozenset[int]] = {
    "phase i": frozenset({1}),
    "phase i/ii": frozenset({1, 2}),
    "phase ii": frozenset({2}),
    "phase ii/iii": frozenset({2, 3}),
    "phase iii": frozenset({3}),
    "phase iii/iv": frozenset({3, 4}),
    "phase iv": frozenset({4}),
}
_PHASE_SETS: dict[frozenset[int], str] = {
    frozenset({1}): "PHASE1",
    frozenset({1, 2}): "PHASE1_2",
    frozenset({2}): "PHASE2",
    frozenset({2, 3}): "PHASE2_3",
    frozenset({3}): "PHASE3",
    # TAXONOMY has no PHASE3_4: a III/IV trial has to meet what a phase III trial does
    # (confirmatory efficacy), and ClinicalTrials.gov's ["PHASE3", "PHASE4"] maps to PHASE3 as
    # well (tracker.taxonomy.ctgov_phase), so the two registries agree.
    frozenset({3, 4}): "PHASE3",
    frozenset({4}): "PHASE4",
}


def isrctn_phase(phases: Iterable[str | None], *, observational: bool = False) -> str:
    """One canonical phase for the per-intervention ``phase`` values of a trial.

    Numbered phases win over "Not Applicable": the phases of all interventions are joined
    (Phase I + Phase II is PHASE1_2, Phase II + Phase III is PHASE2_3, as one "Phase I/II"
    would be), and a combination with no canonical value takes the highest phase. Without a
    numbered phase: "Not Specified" or an unknown word is UNKNOWN, "Not Applicable" is
    NOT_APPLICABLE, and no phase at all is NOT_APPLICABLE for an observational study (as
    ClinicalTrials.gov's missing phases are) and UNKNOWN otherwise. Never raises.
    """
    numbers: set[int] = set()
    unknown = not_applicable = False
    for phase in phases:
        key = " ".join((phase or "").split()).lower()
        if not key:
            continue
        if key in _PHASE_WORDS:
            numbers |= _PHASE_WORDS[key]
        elif key == "not applicable":
            not_applicable = True
        else:  # "Not Specified", or a word outside the documented vocabulary
            unknown = True
    if numbers:
        return _PHASE_SETS.get(frozenset(numbers), f"PHASE{max(numbers)}")
    if unknown:
        return "UNKNOWN"
    if not_applicable or observational:
        return "NOT_APPLICABLE"
    return "UNKNOWN"


# ``recruitmentStatusOverride`` words (dl_isrctn: "Stopped" is a trial ended early, the usual
# other value is "Suspended"); a word not listed is OTHER, kept verbatim in status_raw.
_OVERRIDES = {
    "stopped": "TERMINATED",
    "suspended": "SUSPENDED",
    "withdrawn": "WITHDRAWN",
    "completed": "COMPLETED",
    "not yet recruiting": "NOT_YET_RECRUITING",
    "recruiting": "RECRUITING",
    "no longer recruiting": "ACTIVE_NOT_RECRUITING",
}


def derive_status(
    *,
    override: str | None,
    start_override: str | None,
    recruitment_start: dt.date | None,
    recruitment_end: dt.date | None,
    overall_end: dt.date | None,
    as_of: dt.date | None,
) -> str:
    """The canonical status of an ISRCTN trial, which the API does not send (API_NOTES 4.6).

    In order, as ctrdata's ``f.statusRecruitment`` and dl_isrctn derive it: the registry's
    ``recruitmentStatusOverride``; a ``recruitmentStartStatusOverride`` of "Anticipated" (not
    yet recruiting); then the dates compared with ``as_of`` (the record's last update): the
    overall end passed is COMPLETED, a recruitment start ahead is NOT_YET_RECRUITING, a
    recruitment that started and ended is ACTIVE_NOT_RECRUITING, one that started and has not
    ended is RECRUITING. Anything else (no dates, no ``as_of``) is UNKNOWN. Never raises.
    """
    if override:
        return _OVERRIDES.get(" ".join(override.split()).lower(), "OTHER")
    if start_override and start_override.strip().lower() == "anticipated":
        return "NOT_YET_RECRUITING"
    if as_of is None:
        return "UNKNOWN"
    if overall_end is not None and overall_end <= as_of:
        return "COMPLETED"
    if recruitment_start is None:
        return "UNKNOWN"
    if recruitment_start > as_of:
        return "NOT_YET_RECRUITING"
    if recruitment_end is None:
        return "UNKNOWN"  # started, no end given: whether it still recruits is not said
    return "ACTIVE_NOT_RECRUITING" if recruitment_end <= as_of else "RECRUITING"


# --------------------------------------------------------------------------------------------
# One trial
# --------------------------------------------------------------------------------------------

# Secondary number types, as ``numberType`` writes them, to the label stored; an organisation
# named as the type (a funder's grant number) is stored as type "Other" with it as the domain.
_NUMBER_TYPES = {
    "nct": "NCT", "ctis": "CTIS", "iras": "IRAS", "cpms": "CPMS", "eudract": "EudraCT",
    "isrctn": "ISRCTN", "protocol serial number": "Protocol serial number",
}


def _canonical_id(value: str) -> str:
    """``value`` as trial_ids writes it when the whole value is one registry id (NCT, EudraCT,
    CTIS, ISRCTN...), else verbatim."""
    found = extract_trial_ids(value)
    if len(found) == 1 and found[0].matched.strip() == value.strip():
        return found[0].registry_id
    return value


def _secondary_ids(refs: Any, own_id: str) -> list[SecondaryId]:
    """The trial's other ids: the typed external refs, then each ``secondaryNumber`` with its
    ``numberType``. ``protocolSerialNumber`` is read only for records without secondary
    numbers: newer records split it into typed numbers ("CPMS: 49816, CRUKD/22/002")."""
    out: list[SecondaryId] = []
    seen: set[tuple[str, str | None]] = set()

    def add(value: str | None, kind: str | None, domain: str | None = None) -> None:
        if not value:
            return
        value = _canonical_id(value)
        if value.upper() == own_id or (value, kind) in seen:
            return
        seen.add((value, kind))
        out.append(SecondaryId(value=value, type=kind, domain=domain))

    add(_text(_child(refs, "eudraCTNumber")), "EudraCT")
    add(_text(_child(refs, "clinicalTrialsGovNumber")), "NCT")
    add(_text(_child(refs, "irasNumber")), "IRAS")
    numbers = _children(_child(refs, "secondaryNumbers"), "secondaryNumber")
    for number in numbers:
        value = _text(number) or number.get("canonicalSecondaryNumber")
        declared = " ".join((number.get("numberType") or "").split())
        kind = _NUMBER_TYPES.get(declared.lower())
        if kind is None and declared:
            add(value, "Other", declared)
        else:
            add(value, kind)
    if not numbers:
        add(_text(_child(refs, "protocolSerialNumber")), "Protocol serial number")
    return out


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    if len(line) > NAME_LIMIT:
        line = line[:NAME_LIMIT].rsplit(" ", 1)[0].rstrip(" ,;:") + " ..."
    return line or None


def _interventions(trial: Any) -> tuple[list[Intervention], list[str]]:
    """One Intervention per ``intervention`` element, and the phases as written (each once)."""
    out: list[Intervention] = []
    phases: list[str] = []
    for iv in _children(_child(trial, "interventions"), "intervention"):
        phase = _raw(_child(iv, "phase"))
        if phase and phase not in phases:
            phases.append(phase)
        kind = _text(_child(iv, "interventionType"))
        description = _text(_child(iv, "description"))
        name = _text(_child(iv, "drugNames")) or _first_line(description) or kind
        if name:
            out.append(Intervention(type=kind, name=name, description=description))
    return out, phases


def _sponsor(full: Any) -> tuple[str | None, str | None]:
    """(organisation, sponsorType) of the first sponsor the trial's parties list."""
    sponsors = _children(full, "sponsor")
    by_id = {s.get("id"): s for s in sponsors}
    order = [by_id[i] for el in _children(_child(full, "trial", "parties"), "sponsorId")
             if (i := _raw(el)) in by_id]
    for sponsor in order + sponsors:
        name = _text(_child(sponsor, "organisation"))
        if name:
            return name, _text(_child(sponsor, "sponsorType"))
    return None, None


def _references(trial: Any) -> list[Reference]:
    """Publications the record names: ``publicationDetails`` lines with a PubMed or other link,
    and ``outputs/output`` external links."""
    out: list[Reference] = []
    seen: set[tuple[str | None, str | None]] = set()

    def add(pmid: str | None, kind: str | None, citation: str | None) -> None:
        key = (pmid, None if pmid else citation)
        if key not in seen:
            seen.add(key)
            out.append(Reference(pmid=pmid, type=kind, citation=citation))

    details = _text(_child(trial, "results", "publicationDetails")) or ""
    for line in (s.strip() for s in details.splitlines()):
        m = _PMID.search(line)
        if m or _URL.search(line):
            add(m.group(1) if m else None, "RESULT" if "result" in line.lower() else None, line)
    for output in _children(_child(trial, "outputs"), "output"):
        link = _child(output, "externalLink")
        url = (link if link is not None else output).get("url")
        if not url:
            continue
        m = _PMID.search(url)
        kind = output.get("outputType") or ""
        add(m.group(1) if m else None, "RESULT" if "result" in kind.lower() else None,
            _text(_child(output, "description")) or url)
    return out


def _joined(*parts: tuple[str, str | None]) -> str | None:
    text = "\n\n".join(f"{label}{value}" for label, value in parts if value)
    return text or None


def _read(full: Any, raw: bytes) -> StudyRecord:
    trial = _child(full, "trial")
    if trial is None:
        raise ParseError(f"{NAME}: a fullTrial has no <trial>; it cannot be stored")
    rid = _id_of(full)
    if rid is None:
        raise ParseError(f"{NAME}: a trial record has no ISRCTN number (<trial><isrctn> "
                         "missing or not 8 digits); it cannot be stored")
    desc = _child(trial, "trialDescription")
    design = _child(trial, "trialDesign")
    people = _child(trial, "participants")
    title = _text(_child(desc, "title")) or _text(_child(desc, "scientificTitle"))
    if not title:
        raise ParseError(f"{NAME}: {rid} has no title")

    primary_design = _text(_child(design, "primaryStudyDesign"))
    interventions, phases = _interventions(trial)
    last_updated = _day(trial.get("lastUpdated"))
    start = _day(_raw(_child(people, "recruitmentStart")))
    end = _day(_raw(_child(people, "recruitmentEnd")))
    overall_end = _day(_raw(_child(design, "overallEndDate")))
    override = _text(_child(people, "recruitmentStatusOverride"))
    start_override = _text(_child(people, "recruitmentStartStatusOverride"))
    status_inputs = [("recruitmentStatusOverride", override),
                     ("recruitmentStartStatusOverride", start_override),
                     ("recruitmentStart", start), ("recruitmentEnd", end),
                     ("overallEndDate", overall_end), ("lastUpdated", last_updated)]

    final, target = _int(_child(people, "totalFinalEnrolment")), _int(_child(people,
                                                                              "targetEnrolment"))
    # 0 is what the registry holds before a final number is known (a trial not yet started
    # shows totalFinalEnrolment 0): the target is the estimate until then.
    enrollment, enrollment_type = ((final, "ACTUAL") if final else
                                   (target, "ESTIMATED") if target else (None, None))

    conditions: list[str] = []
    keywords: list[str] = []
    for cond in _children(_child(trial, "conditions"), "condition"):
        # One description often lists several conditions, one a line.
        for line in (_text(_child(cond, "description")) or "").splitlines():
            if (c := line.strip()) and not _missing(c) and c not in conditions:
                conditions.append(c)
        # The registry's own disease classes name the disease, as keywords do elsewhere.
        for cls in ("diseaseClass1", "diseaseClass2"):
            if (k := _text(_child(cond, cls))) and k not in keywords:
                keywords.append(k)

    countries = _texts(_children(_child(people, "recruitmentCountries"), "country")) or _texts(
        _child(c, "country") for c in _children(_child(people, "trialCentres"), "trialCentre"))
    outcomes = [t for om in _children(_child(desc, "primaryOutcomes"), "outcomeMeasure")
                if (t := _text(_child(om, "variable")) or _text(_child(om, "method")))]
    if not outcomes and (legacy := _text(_child(desc, "primaryOutcome"))):
        outcomes = [legacy]  # older records: one free text (its lines are not one outcome each)
    sponsor, sponsor_class = _sponsor(full)
    stage = (_text(_child(trial, "results", "publicationStage")) or "").lower()
    number = _child(trial, "isrctn")

    return StudyRecord(
        registry=NAME,
        registry_id=rid,
        title=title,
        url=TRIAL_URL.format(rid.removeprefix("ISRCTN")),
        raw=raw,
        content_hash=content_hash(raw),
        official_title=_text(_child(desc, "scientificTitle")),
        acronym=_text(_child(desc, "acronym")),
        # CT.gov's words (INTERVENTIONAL, OBSERVATIONAL), so one filter serves both registries.
        study_type="_".join(primary_design.upper().split()) if primary_design else None,
        phase=isrctn_phase(phases, observational=(primary_design or "").lower().startswith(
            "observational")),
        phase_raw="|".join(phases) or None,
        status=derive_status(override=override, start_override=start_override,
                             recruitment_start=start, recruitment_end=end,
                             overall_end=overall_end, as_of=last_updated),
        status_raw="; ".join(f"{k}={v}" for k, v in status_inputs if v is not None) or None,
        conditions=conditions,
        keywords=keywords,
        interventions=interventions,
        enrollment=enrollment,
        enrollment_type=enrollment_type,
        sponsor=sponsor,
        sponsor_class=sponsor_class,
        first_posted=_day(number.get("dateAssigned") if number is not None else None)
        or _day(trial.get("publicIdentifierDateAssigned")),
        last_update_posted=last_updated,
        start_date=start.isoformat() if start else None,
        completion_date=overall_end.isoformat() if overall_end else None,
        has_results=stage == "results" or _text(_child(trial, "results", "basicReport"))
        is not None,
        primary_outcomes=outcomes,
        countries=countries,
        brief_summary=_text(_child(desc, "plainEnglishSummary")),
        detailed_description=_joined(("", _text(_child(desc, "studyHypothesis"))),
                                     ("Study design: ", _text(_child(design, "studyDesign")))),
        eligibility=_joined(("Inclusion criteria:\n", _text(_child(people, "inclusion"))),
                            ("Exclusion criteria:\n", _text(_child(people, "exclusion")))),
        secondary_ids=_secondary_ids(_child(trial, "externalRefs"), rid),
        references=_references(trial),
    )


def parse_trial(trial: Any) -> StudyRecord:
    """Normalise one trial, given as its ``fullTrial`` element or bytes (a single-trial
    response, ``allTrials`` around one ``fullTrial``, is read too).

    Only the ISRCTN number and a title are required; any other part may be missing, empty or
    of an unexpected shape and then reads as absent. Raises ParseError, and nothing else, for
    a record that is not XML or cannot be keyed.
    """
    raw: bytes | None = None
    if isinstance(trial, bytes | bytearray | memoryview):
        raw = bytes(trial)
        trial = parse_xml(raw, f"{NAME}: a trial record")
    if not etree.iselement(trial):
        raise ParseError(f"{NAME}: a trial record is {type(trial).__name__}, not XML")
    if _local(trial) == "allTrials":
        fulls = _children(trial, "fullTrial")
        if len(fulls) != 1:
            raise ParseError(f"{NAME}: a single-trial response holds {len(fulls)} trials")
        trial, raw = fulls[0], None
    if _local(trial) != "fullTrial":
        raise ParseError(f"{NAME}: a trial record is <{_local(trial) or '?'}>, not <fullTrial>")
    if raw is None:
        raw = _serialise(trial)
    try:
        return _read(trial, raw)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # A shape no check above foresaw: still one line, naming the record.
        what = _id_of(trial) or "a record"
        raise ParseError(one_line(f"{NAME}: {what} could not be read: "
                                  f"{type(exc).__name__}: {exc}")[:500]) from None


def item_from_bytes(raw: bytes) -> RawTrial:
    """A stored or quarantined trial's bytes as an item again (its id read if it can be)."""
    try:
        el = parse_xml(raw, f"{NAME}: a trial record")
    except ParseError:
        return RawTrial(None, raw)
    return RawTrial(_id_of(el) if _local(el) == "fullTrial" else None, raw)


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class ISRCTN(BaseSource):
    """The ISRCTN registry source (``isrctn``): ``lastEdited`` windows split to ``page_size``."""

    name = NAME
    kind = "study"
    registry = NAME
    capabilities = frozenset({FETCH_IDS})

    @staticmethod
    def parse_raw(raw: bytes) -> StudyRecord:
        return parse_trial(raw)

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings

    def _url(self, path: str) -> str:
        return f"{self.settings.url.rstrip('/')}/{path}"

    def _count(self, http: Any, lo: dt.date, hi: dt.date) -> int:
        body = http.get(NAME, self._url(SEARCH_PATH),
                        count_params(self.settings.query, lo, hi)).content
        return parse_page(body)[1]

    def windows(self, http: Any, window: Window) -> Iterator[tuple[dt.date, dt.date, int]]:
        """The ranges ``fetch`` asks for (see ``split_windows``), counted as they are planned."""
        bounds = window_bounds(window)
        if bounds is None:
            return
        size = max(1, self.settings.page_size)
        yield from split_windows(*bounds, lambda lo, hi: self._count(http, lo, hi), size)

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """Yield one page per range of ``window``, each with the ``totalCount`` its response
        announced (the pipeline checks that every record announced arrived).

        A range is asked with ``limit`` = the page size (records edited between the count and
        the fetch still fit), a single day over it with ``limit`` = its count. Empty ranges are
        not fetched. A window that starts after it ends asks nothing.
        """
        size = max(1, self.settings.page_size)
        for lo, hi, records in self.windows(http, window):
            if records == 0:
                continue
            params = search_params(self.settings.query, lo, hi, max(records, size))
            items, total = parse_page(http.get(NAME, self._url(SEARCH_PATH), params).content)
            yield Page(items=items, total=total, extra={"since": lo, "before": hi})

    def count(self, http: Any, window: Window) -> SourceCount:
        """Records of ``window`` (one ``limit=0`` request) and the requests a run needs at
        least: a window over the page size is split by date, and each split counts both
        halves before fetching them."""
        bounds = window_bounds(window)
        if bounds is None:
            return SourceCount(0, 0)
        total = self._count(http, *bounds)
        if total == 0:
            return SourceCount(0, 1)
        pieces = -(-total // max(1, self.settings.page_size))
        note = ("" if pieces == 1 else
                f"at least {pieces} date ranges of up to {self.settings.page_size}; more where "
                "edits cluster on a few days")
        # 2 * pieces - 1 counts (a binary split tree) and one fetch per piece.
        return SourceCount(total, 2 * pieces - 1 + pieces, note)

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        """Yield each trial of ``ids`` (``ISRCTN`` + digits; quarantined records, fetched again)
        from the single-trial endpoint, as a page of one. An id the registry does not know
        (404) is skipped and stays quarantined; a value that is no ISRCTN number is not asked."""
        for rid in ids:
            try:
                path = trial_path(rid)
            except ValueError:
                continue
            try:
                body = http.get(NAME, self._url(path)).content
            except FetchError as exc:
                if exc.status_code != 404:
                    raise
                continue
            items, _total = parse_page(body)
            if items:
                yield Page(items=items)

    def parse(self, item: RawTrial) -> StudyRecord:
        """Normalise one raw trial (see ``parse_trial``)."""
        return parse_trial(item.raw)

    def record_id(self, item: RawTrial) -> str | None:
        """The trial's id, ``ISRCTN`` + digits (its registry_id)."""
        return item.isrctn_id

    def item_bytes(self, item: RawTrial) -> bytes:
        """The trial's own ``fullTrial`` bytes (stored beside the record, and in quarantine)."""
        return item.raw

    def item_from_bytes(self, raw: bytes) -> RawTrial:
        """Rebuild an item from stored or quarantined bytes."""
        return item_from_bytes(raw)
