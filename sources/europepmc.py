"""Europe PMC REST ``/search``: request building and response parsing.

Pure functions only: ``build_*`` produce the query string and the parameters of one page
request, ``parse_search_page`` turns one JSON page into typed records. The contract and its
quirks are in ``shared/docs/API_NOTES.md`` §3.

Errors (each also a ``tracker.errors`` class, so callers may catch either)::

    EuropePMCError(TrackerError)              root of this module's errors
    └── EuropePMCParseError(ParseError)       the body is not a JSON search page (HTML error
                                              page, XML, truncated JSON, no ``resultList``)
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from bs4 import BeautifulSoup

from db.records import Mesh, PublicationRecord, content_hash
from sources.base import BaseSource, parse_json
from tracker.errors import ParseError, TrackerError

__all__ = [
    "EuropePMCError",
    "EuropePMCParseError",
    "SearchPage",
    "build_search_params",
    "build_window_query",
    "parse_search_page",
]

SOURCE = "europepmc"
MAX_PAGE_SIZE = 1000
# Inline tags that must not introduce a space when flattened: "H<sub>2</sub>S" -> "H2S".
_INLINE_TAGS = ("sub", "sup", "i", "b", "em", "strong", "u", "span", "a", "small", "sc")


class EuropePMCError(TrackerError):
    """Root of the errors raised while building or reading Europe PMC calls."""


class EuropePMCParseError(EuropePMCError, ParseError):
    """The response body is not a Europe PMC JSON search page."""


# --------------------------------------------------------------------------------------------
# Request building
# --------------------------------------------------------------------------------------------


def build_search_params(
    query: str, *, cursor: str = "*", page_size: int = MAX_PAGE_SIZE, email: str | None = None
) -> dict[str, str]:
    """Build the parameters of one ``/search`` page (``resultType=core``, JSON).

    Pass the previous page's ``next_cursor`` as ``cursor`` unencoded: httpx encodes it once,
    and a double-encoded cursor silently restarts paging.

    Raises ``ValueError`` when ``page_size`` is outside 1..1000 or ``cursor`` is empty.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {page_size}")
    if not cursor:
        raise ValueError("cursor must be '*' or a previous page's nextCursorMark")
    params = {
        "query": query,
        "resultType": "core",
        "format": "json",
        "cursorMark": cursor,
        "pageSize": str(page_size),
    }
    if email:
        params["email"] = email
    return params


def build_window_query(base_query: str, since: dt.date, until: dt.date) -> str:
    """Restrict ``base_query`` to records first indexed in ``[since, until]`` (inclusive).

    FIRST_IDATE (not FIRST_PDATE) because old papers indexed late must count as new.

    >>> build_window_query("mesenchymal", dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    '(mesenchymal) AND FIRST_IDATE:[2025-01-01 TO 2025-01-31]'

    Raises ``ValueError`` when the window is inverted or the base query is blank.
    """
    if since > until:
        raise ValueError(f"since {since} is after until {until}")
    if not base_query.strip():
        raise ValueError("base_query is empty")
    return f"({base_query}) AND FIRST_IDATE:[{since.isoformat()} TO {until.isoformat()}]"


# --------------------------------------------------------------------------------------------
# Response parsing
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SearchPage:
    """One page of results; ``next_cursor`` is None on the last page."""

    hit_count: int
    next_cursor: str | None
    records: list[PublicationRecord] = field(default_factory=list)


def clean_html(text: str | None) -> str | None:
    """Markup-free text: tags removed (block tags become spaces), entities decoded,
    whitespace collapsed. ``None``/blank -> ``None``."""
    if not text:
        return None
    if "&" in text and "<" not in text:
        # Titles sometimes arrive with their markup escaped ("&lt;i&gt;C. elegans&lt;/i&gt;")
        text = html.unescape(text)
    if "<" in text:
        soup = BeautifulSoup(text, "html.parser")
        for tag in soup.find_all(_INLINE_TAGS):
            tag.unwrap()
        soup.smooth()
        text = soup.get_text(" ")
    return " ".join(text.split()) or None


def _list(block: Any, key: str) -> list[Any]:
    """``{"pubType": [...]}`` -> list; tolerate a missing block or a bare scalar."""
    if not isinstance(block, dict):
        return []
    value = block.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _str(value: Any) -> str | None:
    """A text field's value when it is text; anything else (a number, a list, an object) reads
    as absent, so one odd record cannot stop a run. Absent, not converted: a stored field a
    later copy of the record can still fill (a listing other than PubMed's only fills the
    descriptive fields it finds empty), where a number turned text would stay for good."""
    return value if isinstance(value, str) else None


def _id_part(value: Any) -> str | None:
    """An id (``source``, ``id``, ``pmid``) or year: a non-empty string, or an integer as its
    digits; anything else is None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _mesh(result: dict[str, Any]) -> list[Mesh]:
    out = []
    for heading in _list(result.get("meshHeadingList"), "meshHeading"):
        if not isinstance(heading, dict) or not heading.get("descriptorName"):
            continue
        major = heading.get("majorTopic_YN") == "Y" or any(
            isinstance(q, dict) and q.get("majorTopic_YN") == "Y"
            for q in _list(heading.get("meshQualifierList"), "meshQualifier")
        )
        term = _str(heading["descriptorName"])
        if term:
            out.append(Mesh(kind="heading", mesh_id=None, term=term, major=major))
    return out


def _preprint_of(result: dict[str, Any]) -> str | None:
    """``SRC:id`` of the published version a preprint points to ("Preprint of" link)."""
    for link in _list(result.get("commentCorrectionList"), "commentCorrection"):
        if isinstance(link, dict) and link.get("type") == "Preprint of":
            rid = _id_part(link.get("id"))
            if rid:
                return f"{_id_part(link.get('source')) or 'MED'}:{rid}"
    return None


def _pub_types(result: dict[str, Any]) -> list[str]:
    types = _list(result.get("pubTypeList"), "pubType")
    if not types and isinstance(result.get("pubType"), str):  # resultType=lite: "a; b"
        types = [t.strip() for t in result["pubType"].split(";") if t.strip()]
    return [t for t in map(_str, types) if t]


def _journal(result: dict[str, Any]) -> str | None:
    info = result.get("journalInfo")
    if isinstance(info, dict) and isinstance(info.get("journal"), dict):
        title = _str(info["journal"].get("title"))
        if title:
            return title
    return _str(result.get("journalTitle")) or None  # resultType=lite


def parse_result(result: Any) -> PublicationRecord:
    """Normalise one ``core`` result; raises EuropePMCParseError when it has no source/id.

    A field of the wrong type (a number or a list where text belongs) reads as absent
    (``_str``); an id or a year may also be an integer (``_id_part``)."""
    if not isinstance(result, dict):
        raise EuropePMCParseError(
            f"europepmc: result entry is a {type(result).__name__}, not an object"
        )
    src, rid = _id_part(result.get("source")), _id_part(result.get("id"))
    if not src or not rid:
        raise EuropePMCParseError(f"europepmc: result without source/id: {str(result)[:120]}")
    raw = orjson.dumps(result)
    pub_date = result.get("firstPublicationDate")
    pub_date = pub_date if isinstance(pub_date, str) and pub_date else None
    year = _id_part(result.get("pubYear")) or (pub_date[:4] if pub_date else None)
    authors = result.get("authorString")
    return PublicationRecord(
        source=SOURCE,
        source_id=f"{src}:{rid}",
        title=clean_html(_str(result.get("title"))) or "",
        raw=raw,
        content_hash=content_hash(raw),
        pmid=_id_part(result.get("pmid")),
        pmcid=_str(result.get("pmcid")) or None,
        doi=_str(result.get("doi")) or None,
        abstract=clean_html(_str(result.get("abstractText"))),
        journal=_journal(result),
        pub_date=pub_date,
        pub_year=int(year) if year and year.isdigit() else None,
        publication_types=_pub_types(result),
        mesh=_mesh(result),
        keywords=[k for k in map(_str, _list(result.get("keywordList"), "keyword")) if k],
        # authorString ends with a full stop ("Smith J, Doe A."); drop it to match PubMed's form
        authors=authors.rstrip(". ") or None if isinstance(authors, str) else None,
        is_preprint=src == "PPR",
        preprint_of=_preprint_of(result),
        date_revised=_date(result.get("dateOfRevision")),
        index_date=_date(result.get("firstIndexDate")),
        url=f"https://europepmc.org/article/{src}/{rid}",
    )


def parse_search_page(body: bytes) -> SearchPage:
    """Parse one ``/search?format=json`` page (``core`` or ``lite``) into records.

    See ``parse_search_envelope``; every result is normalised with ``parse_result``.
    """
    hit_count, next_cursor, results = parse_search_envelope(body)
    return SearchPage(hit_count=hit_count, next_cursor=next_cursor,
                      records=[parse_result(r) for r in results])


def parse_search_envelope(body: bytes) -> tuple[int, str | None, list[Any]]:
    """Split one ``/search?format=json`` page into (hitCount, next cursor, raw results).

    ``next_cursor`` is None at the end of results: when ``nextCursorMark`` is missing, when it
    echoes the cursor that was sent (the request echo holds it, URL-encoded), or when the page
    has no results. Europe PMC reports the end each of these ways.

    Raises ``EuropePMCParseError`` when the body is not JSON (HTML error page, XML/DC format,
    truncated download) or has no ``resultList``/``hitCount``.
    """
    doc = parse_json(body, "europepmc: search body", EuropePMCParseError)
    if not isinstance(doc, dict):
        raise EuropePMCParseError(
            f"europepmc: search JSON is a {type(doc).__name__}, not an object"
        )
    result_list = doc.get("resultList")
    if not isinstance(result_list, dict) or not isinstance(result_list.get("result", []), list):
        detail = doc.get("errMsg") or doc.get("error") or ", ".join(sorted(doc)[:8])
        raise EuropePMCParseError(f"europepmc: search JSON has no resultList ({detail})")
    try:
        hit_count = int(doc["hitCount"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EuropePMCParseError(f"europepmc: search JSON has no integer hitCount: {exc}") from exc

    results = result_list.get("result", [])
    next_cursor = doc.get("nextCursorMark") or None
    request = doc.get("request")
    sent = request.get("cursorMark") if isinstance(request, dict) else None
    if not results or (next_cursor and isinstance(sent, str) and unquote(sent) == next_cursor):
        next_cursor = None
    return hit_count, next_cursor, results


class EuropePMC(BaseSource):
    """The Europe PMC source (``europepmc``): cursor-paged search, incremental by FIRST_IDATE."""

    name = SOURCE
    kind = "publication"
    registry = SOURCE
    batch_size = 1000  # records are small: store a whole page in one batch

    @staticmethod
    def parse_raw(raw: bytes) -> PublicationRecord:
        return parse_result(orjson.loads(raw))

    @classmethod
    def from_settings(cls, settings: Any) -> EuropePMC:
        return cls(settings.source(cls.name), email=settings.contact_email)

    def __init__(self, settings: Any, *, email: str | None = None) -> None:
        self.settings = settings
        self.email = email

    def count(self, http: Any, window: Any) -> Any:
        """``hitCount`` of ``window`` from a one-record page (one request)."""
        from sources.base import SourceCount, pages_for

        if window.since is not None and window.since > window.until:
            return SourceCount(0, 0)
        url = self.settings.url.rstrip("/") + "/search"
        query = (build_window_query(self.settings.query, window.since, window.until)
                 if window.since else self.settings.query)
        params = build_search_params(query, page_size=1, email=self.email)
        hit_count, _, _ = parse_search_envelope(http.get(SOURCE, url, params).content)
        return SourceCount(hit_count, pages_for(hit_count, min(self.settings.page_size,
                                                               MAX_PAGE_SIZE)))

    def fetch(self, http: Any, window: Any) -> Iterator[Any]:
        """Yield every page of ``window``; the cursor chain ends as API_NOTES 3.5 describes.

        Paging is bounded by what ``hitCount`` allows (``sources.base.page_limit``): a cursor
        that keeps coming back fresh without the results running out fails the window instead
        of paging forever. A window that starts after it ends is empty: nothing is asked.
        """
        from sources.base import follow_cursor

        if window.since is not None and window.since > window.until:
            return
        url = self.settings.url.rstrip("/") + "/search"
        query = (build_window_query(self.settings.query, window.since, window.until)
                 if window.since else self.settings.query)
        size = min(self.settings.page_size, MAX_PAGE_SIZE)

        def get(cursor: str | None) -> tuple[list[Any], int | None, str | None]:
            params = build_search_params(query, cursor=cursor or "*", page_size=size,
                                         email=self.email)
            hit_count, next_cursor, results = parse_search_envelope(
                http.get(SOURCE, url, params).content)
            return results, hit_count, next_cursor

        yield from follow_cursor(SOURCE, size, get, "*", what="cursor",
                                 error=EuropePMCParseError)

    def parse(self, item: Any) -> PublicationRecord:
        """Normalise one raw result."""
        return parse_result(item)

    def item_bytes(self, item: Any) -> bytes:
        """The raw bytes of an item, for quarantine."""
        return orjson.dumps(item)

    def item_from_bytes(self, raw: bytes) -> Any:
        """Rebuild an item from quarantined bytes."""
        return orjson.loads(raw)

    def record_id(self, item: Any) -> str | None:
        """``SRC:id`` of a raw result, when readable."""
        if isinstance(item, dict):
            src, rid = _id_part(item.get("source")), _id_part(item.get("id"))
            if src and rid:
                return f"{src}:{rid}"
        return None
