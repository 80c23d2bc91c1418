"""ClinicalTrials.gov API v2: token-paged ``/studies`` JSON to StudyRecord.

Contract (shared/docs/API_NOTES.md section 1): ``pageSize`` is capped at 1000; ``nextPageToken``
is absent on the last page and only valid with exactly the same parameters; ``totalCount`` comes
on the first page only and only with ``countTotal=true``; a page may hold no studies; dates are
day-granular, start/completion dates may be partial ("2006-11"); observational studies have no
``phases``; text fields are markdown with backslash escapes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import simdjson

from db.records import Arm, Intervention, Mesh, Reference, SecondaryId, StudyRecord, content_hash
from sources.base import (
    FETCH_IDS,
    FINGERPRINT,
    LARGE_PAGES,
    BaseSource,
    Page,
    SourceCount,
    Window,
    follow_cursor,
    not_json,
    pages_for,
)
from tracker.config import SourceSettings
from tracker.errors import FetchError, ParseError
from tracker.taxonomy import ctgov_phase, ctgov_status

NAME = "ctgov"
STUDY_URL = "https://clinicaltrials.gov/study/{}"
NCT_RE = re.compile(r"^NCT\d{8}$")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>~|])")


def build_params(
    query: str, window: Window, *, page_size: int = 1000, page_token: str | None = None
) -> dict[str, str]:
    """Query parameters for one ``/studies`` page of ``window``.

    Every page repeats the first page's parameters exactly (a token is only valid with them);
    only ``pageToken`` is added.
    """
    params = {
        "format": "json",
        "query.term": query,
        "pageSize": str(min(max(page_size, 1), 1000)),
        "countTotal": "true",
        "sort": "LastUpdatePostDate:asc",
    }
    if window.since is not None:
        params["filter.advanced"] = (
            f"AREA[LastUpdatePostDate]RANGE[{window.since.isoformat()},MAX]"
        )
    if page_token:
        params["pageToken"] = page_token
    return params


@dataclass(slots=True)
class RawStudy:
    """One study of a page: its NCT id (when it has one) and its compact JSON bytes."""

    nct_id: str | None
    raw: bytes
    content_hash: str | None = None  # filled by ``fingerprint``, reused by ``parse``


def parse_page(body: bytes) -> tuple[list[RawStudy], int | None, str | None]:
    """Split one ``/studies`` response into (studies, totalCount, nextPageToken).

    simdjson splits the page into each study's compact JSON without building Python objects
    for it: a page of 1000 studies with results can be 100 MB of JSON, and only the studies
    that turn out new or changed are ever loaded as dicts (``parse_study``). Raises ParseError
    for a body that is not the documented JSON object (an HTML error page, a truncated body).
    """
    try:
        doc = simdjson.Parser().parse(body)
    except ValueError as exc:
        raise not_json("ctgov: response", body, str(exc).split(":")[0]) from None
    studies = doc.get("studies") if isinstance(doc, simdjson.Object) else None
    if not isinstance(studies, simdjson.Array):
        raise ParseError("ctgov: response has no 'studies' list; the API changed shape")
    total = doc.get("totalCount")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        raise ParseError(f"ctgov: totalCount is not a number: {total!r}")
    token = doc.get("nextPageToken")
    items = [RawStudy(_lazy_nct(study), study.mini) for study in studies]
    del studies, doc
    return items, total, token if isinstance(token, str) and token else None


def parse_one(body: bytes) -> RawStudy:
    """Read a ``/studies/{nctId}`` response (one study) as the same compact item a page gives.

    Raises ParseError for a body that is not a JSON object.
    """
    try:
        doc = simdjson.Parser().parse(body)
    except ValueError as exc:
        raise not_json("ctgov: a single-study response", body, str(exc).split(":")[0]) from None
    if not isinstance(doc, simdjson.Object):
        raise ParseError("ctgov: a single-study response is not a JSON object")
    return RawStudy(_lazy_nct(doc), doc.mini)


def _lazy_nct(study: Any) -> str | None:
    try:
        nct = study["protocolSection"]["identificationModule"]["nctId"]
    except (KeyError, TypeError, IndexError):
        return None
    return nct.strip() if isinstance(nct, str) else None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if "\\" in value:
        value = _MD_ESCAPE.sub(r"\1", value)
    return value.strip() or None


def _date(struct: Any) -> str | None:
    """ISO (possibly partial) date of a CT.gov date struct; None when absent or malformed."""
    if isinstance(struct, dict):
        struct = struct.get("date")
    if not isinstance(struct, str):
        return None
    value = struct.strip()
    if re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", value):
        return value
    return None


def _full_date(struct: Any) -> dt.date | None:
    value = _date(struct)
    if value and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _enum(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _scalar(value: Any) -> str | None:
    """An id given as a string or a number, as stripped text; None for anything else."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if it is an object, else an empty one: a module or struct of the wrong type
    (a string, a list) reads as absent, so one odd record does not stop a run."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def _strings(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    out = []
    for v in values:
        t = _text(v)
        if t:
            out.append(t)
    return out


def _mesh(module: Any, kind: str) -> list[Mesh]:
    if not isinstance(module, dict):
        return []
    out = [
        Mesh(kind, _enum(m.get("id")), m["term"])
        for m in _list(module.get("meshes"))
        if isinstance(m, dict) and isinstance(m.get("term"), str)
    ]
    out += [
        Mesh(kind, _enum(m.get("id")), m["term"], ancestor=True)
        for m in _list(module.get("ancestors"))
        if isinstance(m, dict) and isinstance(m.get("term"), str)
    ]
    return out


def parse_study(
    study: dict[str, Any] | bytes, raw: bytes | None = None, digest: str | None = None
) -> StudyRecord:
    """Normalise one API v2 study, given as a dict or as its JSON bytes.

    ``raw`` is the study's compact JSON and ``digest`` its content hash, if the caller already
    has them. Only the NCT id and a
    title are required; every other module may be missing. Raises ParseError when the study
    is not JSON or cannot be keyed.
    """
    if isinstance(study, bytes):
        raw = study
        try:
            study = orjson.loads(study)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"ctgov: a study is not valid JSON: {exc}") from None
    if not isinstance(study, dict):
        raise ParseError("ctgov: a study is not a JSON object")
    proto = study.get("protocolSection")
    if not isinstance(proto, dict):
        raise ParseError("ctgov: study has no protocolSection")
    ident = _dict(proto.get("identificationModule"))
    nct = ident.get("nctId")
    if not isinstance(nct, str) or not NCT_RE.match(nct.strip()):
        raise ParseError(f"ctgov: study has no valid nctId ({nct!r})")
    nct = nct.strip()
    title = _text(ident.get("briefTitle")) or _text(ident.get("officialTitle"))
    if not title:
        raise ParseError(f"ctgov: {nct} has no title")

    # A module (or struct) of the wrong type reads as absent: ``_dict``/``_list``.
    status_mod = _dict(proto.get("statusModule"))
    design = _dict(proto.get("designModule"))
    conds = _dict(proto.get("conditionsModule"))
    arms = _dict(proto.get("armsInterventionsModule"))
    desc = _dict(proto.get("descriptionModule"))
    elig = _dict(proto.get("eligibilityModule"))
    sponsors = _dict(proto.get("sponsorCollaboratorsModule"))
    refs_mod = _dict(proto.get("referencesModule"))
    derived = _dict(study.get("derivedSection"))

    phases = design.get("phases")
    phases = [p for p in phases if isinstance(p, str)] if isinstance(phases, list) else None
    status_raw = status_mod.get("overallStatus")
    status_raw = status_raw if isinstance(status_raw, str) else None
    enrollment_info = _dict(design.get("enrollmentInfo"))
    count = enrollment_info.get("count")
    lead = _dict(sponsors.get("leadSponsor"))

    interventions = []
    for iv in _list(arms.get("interventions")):
        if not isinstance(iv, dict):
            continue
        name = _text(iv.get("name"))
        if name:
            interventions.append(
                Intervention(
                    type=_enum(iv.get("type")),
                    name=name,
                    description=_text(iv.get("description")),
                    other_names=_strings(iv.get("otherNames")),
                )
            )

    references = []
    for ref in _list(refs_mod.get("references")):
        if not isinstance(ref, dict):
            continue
        pmid = _scalar(ref.get("pmid"))
        references.append(
            Reference(
                pmid=pmid,
                type=_enum(ref.get("type")),
                citation=_text(ref.get("citation")),
                retraction_pmids=[
                    p for r in _list(ref.get("retractions"))
                    if isinstance(r, dict) and (p := _scalar(r.get("pmid")))
                ],
            )
        )

    secondary = [
        SecondaryId(value=value, type=_enum(s.get("type")), domain=_text(s.get("domain")))
        for s in _list(ident.get("secondaryIdInfos"))
        if isinstance(s, dict) and (value := _scalar(s.get("id")))
    ]

    arm_groups = [
        Arm(label=label, type=_enum(a.get("type")), description=_text(a.get("description")),
            interventions=_strings(a.get("interventionNames")))
        for a in _list(arms.get("armGroups")) if isinstance(a, dict)
        if (label := _text(a.get("label")))
    ]
    primary_outcomes = [
        m for o in _list(_dict(proto.get("outcomesModule")).get("primaryOutcomes"))
        if isinstance(o, dict) and (m := _text(o.get("measure")))
    ]
    countries = list(dict.fromkeys(
        c for loc in _list(_dict(proto.get("contactsLocationsModule")).get("locations"))
        if isinstance(loc, dict) and (c := _text(loc.get("country")))
    ))

    if raw is None:
        raw = orjson.dumps(study)
    return StudyRecord(
        registry=NAME,
        registry_id=nct,
        title=title,
        url=STUDY_URL.format(nct),
        raw=raw,
        content_hash=digest or content_hash(raw),
        official_title=_text(ident.get("officialTitle")),
        acronym=_text(ident.get("acronym")),
        study_type=_enum(design.get("studyType")),
        phase=ctgov_phase(phases),
        phase_raw="|".join(phases) if phases else None,
        status=ctgov_status(status_raw),
        status_raw=status_raw,
        why_stopped=_text(status_mod.get("whyStopped")),
        conditions=_strings(conds.get("conditions")),
        keywords=_strings(conds.get("keywords")),
        mesh=_mesh(derived.get("conditionBrowseModule"), "condition")
        + _mesh(derived.get("interventionBrowseModule"), "intervention"),
        interventions=interventions,
        enrollment=count if isinstance(count, int) and not isinstance(count, bool) else None,
        enrollment_type=_enum(enrollment_info.get("type")),
        sponsor=_text(lead.get("name")),
        sponsor_class=_enum(lead.get("class")),
        first_posted=_full_date(status_mod.get("studyFirstPostDateStruct")),
        last_update_posted=_full_date(status_mod.get("lastUpdatePostDateStruct")),
        start_date=_date(status_mod.get("startDateStruct")),
        primary_completion_date=_date(status_mod.get("primaryCompletionDateStruct")),
        completion_date=_date(status_mod.get("completionDateStruct")),
        has_results=study.get("hasResults") is True,
        results_first_posted=_full_date(status_mod.get("resultsFirstPostDateStruct")),
        arms=arm_groups,
        primary_outcomes=primary_outcomes,
        countries=countries,
        brief_summary=_text(desc.get("briefSummary")),
        detailed_description=_text(desc.get("detailedDescription")),
        eligibility=_text(elig.get("eligibilityCriteria")),
        secondary_ids=secondary,
        references=references,
        aliases=_strings(ident.get("nctIdAliases")),
    )


class ClinicalTrialsGov(BaseSource):
    """The ClinicalTrials.gov source (``ctgov``)."""

    name = NAME
    kind = "study"
    registry = NAME
    # A page of 1000 studies is tens of MB of JSON and a parse tape several times that:
    # the pipeline hands the freed heap back to the OS after each one (release_memory).
    capabilities = frozenset({FETCH_IDS, FINGERPRINT, LARGE_PAGES})

    @staticmethod
    def parse_raw(raw: bytes) -> StudyRecord:
        return parse_study(raw)

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """Yield every page of ``window``, following ``nextPageToken`` with the same params.

        Paging is bounded by what ``totalCount`` allows (``sources.base.page_limit``): a server
        that keeps sending tokens (for empty pages, say) fails the window instead of paging
        forever. A window that starts after it ends is empty: nothing is asked.
        """
        if window.since is not None and window.since > window.until:
            return
        url = self.settings.url.rstrip("/") + "/studies"
        size = min(max(self.settings.page_size, 1), 1000)

        def get(token: str | None) -> tuple[list[Any], int | None, str | None]:
            params = build_params(self.settings.query, window, page_size=size, page_token=token)
            return parse_page(http.get(NAME, url, params).content)

        yield from follow_cursor(NAME, size, get)

    def count(self, http: Any, window: Window) -> SourceCount:
        """``totalCount`` of ``window`` from a one-study page of NCT ids only (one request)."""
        if window.since is not None and window.since > window.until:
            return SourceCount(0, 0)
        url = self.settings.url.rstrip("/") + "/studies"
        params = {**build_params(self.settings.query, window, page_size=1), "fields": "NCTId"}
        _, total, _ = parse_page(http.get(NAME, url, params).content)
        if total is None:
            raise ParseError("ctgov: the count page has no totalCount; the API changed shape")
        return SourceCount(total, pages_for(total, min(self.settings.page_size, 1000)))

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        """Yield each study of ``ids`` (NCT ids; quarantined records, fetched again) as a page of
        one. An id the registry no longer knows (404) is skipped; it stays quarantined."""
        base = self.settings.url.rstrip("/") + "/studies/"
        for nct in ids:
            if not NCT_RE.match(nct):
                continue
            try:
                body = http.get(NAME, base + nct, {"format": "json"}).content
            except FetchError as exc:
                if exc.status_code != 404:
                    raise
                continue
            yield Page(items=[parse_one(body)])

    def parse(self, item: RawStudy) -> StudyRecord:
        """Normalise one raw study (see ``parse_study``)."""
        return parse_study(item.raw, digest=item.content_hash)

    def record_id(self, item: RawStudy) -> str | None:
        """The NCT id of a raw study."""
        return item.nct_id

    def item_bytes(self, item: RawStudy) -> bytes:
        """The raw bytes of an item, for quarantine."""
        return item.raw

    def item_from_bytes(self, raw: bytes) -> RawStudy:
        """Rebuild an item from quarantined bytes."""
        try:
            doc = simdjson.Parser().parse(raw)
            nct = _lazy_nct(doc)
            del doc
        except ValueError:
            nct = None
        return RawStudy(nct, raw)

    def fingerprint(self, item: RawStudy) -> tuple[str, str] | None:
        """(NCT id, content hash) without parsing, so unchanged studies are skipped cheaply."""
        if item.nct_id is None or not NCT_RE.match(item.nct_id):
            return None
        item.content_hash = content_hash(item.raw)
        return item.nct_id, item.content_hash
