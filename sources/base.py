"""The one small interface every source implements.

A source knows how to ask its API for a window of records (``fetch``, a generator of pages that
does the I/O) and how to turn one raw record into a normalised record (``parse``, pure). It knows
nothing of the database; ``tracker.pipeline`` joins the two.

The whole contract is :class:`Source` (typed); :class:`BaseSource` gives every optional part a
declared default, and a source says what more it can do in ``capabilities`` (the pipeline reads
that set, it never probes for attributes). The shared readers of response bodies are here too:
:func:`parse_json` and :func:`parse_xml` (no entities, no DTD, no network) raise one
:class:`~tracker.errors.ParseError` wording for every source.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
from lxml import etree

from db.records import PublicationRecord, StudyRecord
from tracker.errors import IncompleteError, ParseError


@dataclass(frozen=True)
class Window:
    """The slice of a source a run asks for: records updated on or after ``since`` (None = all)."""

    since: dt.date | None
    until: dt.date

    @property
    def full(self) -> bool:
        """True when the run re-pulls everything."""
        return self.since is None


@dataclass
class Page:
    """One response's worth of raw records.

    ``total`` is the count the source announced for the whole window, when it announced one
    (CT.gov sends it on the first page only); ``items`` are raw records for ``parse``.
    """

    items: list[Any]
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceCount:
    """What a source announces for a window before anything is fetched (``--dry-run``):
    ``records`` as the API counts them, and the ``requests`` a real run will need for them
    (paging and, for PubMed, the search calls), at the configured page size."""

    records: int
    requests: int
    note: str = ""


def pages_for(records: int, page_size: int) -> int:
    """Requests needed to page through ``records`` at ``page_size`` (at least one)."""
    return max(1, -(-max(0, records) // max(1, page_size)))


# What a source may declare in ``capabilities`` beyond the required contract:
FETCH_IDS = "fetch_ids"      # fetch_ids(http, ids): records by id (the quarantine's re-fetch)
FINGERPRINT = "fingerprint"  # fingerprint(item): (id, hash) before parsing (skip unchanged)
LARGE_PAGES = "large_pages"  # pages of many MB: give memory back to the system after each
FILE_IMPORT = "file_import"  # read from export files (records_of_file), never fetched
CAPABILITIES = frozenset({FETCH_IDS, FINGERPRINT, LARGE_PAGES, FILE_IMPORT})


class Source(Protocol):
    """Everything the pipeline, the dry run, ``tracker classify`` and the history ask of a
    source. ``name`` is the source (how records are fetched); ``registry`` is the registry
    its records belong to (the same for a registry's own API; a multi-registry source such as
    an ICTRP export says so per record)."""

    name: str
    kind: str  # "study" or "publication"
    registry: str
    capabilities: frozenset[str]
    batch_size: int  # records stored per batch (a transaction holds a page)
    retry_statuses: frozenset[int]  # the API's own throttling statuses, retried

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """Yield the pages of ``window``; raise FetchError/ParseError when the API fails."""
        ...

    def parse(self, item: Any) -> StudyRecord | PublicationRecord:
        """Normalise one raw record; raise ParseError when it lacks what a record needs."""
        ...

    def record_id(self, item: Any) -> str | None:
        """The source's own id for a raw record, if it can be read (for quarantine rows)."""
        ...

    def item_bytes(self, item: Any) -> bytes:
        """The raw record as bytes (stored beside the record and in the quarantine)."""
        ...

    def item_from_bytes(self, raw: bytes) -> Any:
        """The raw record again from ``item_bytes`` (a quarantined record retried by
        ``tracker classify``)."""
        ...

    def count(self, http: Any, window: Window) -> SourceCount:
        """How many records ``window`` holds, in one cheap request (CT.gov ``countTotal`` on
        a one-study page, esearch ``rettype=count``, Europe PMC ``hitCount``), and the
        requests a run needs."""
        ...

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        """Records by their source ids (capability ``fetch_ids``)."""
        ...

    def fingerprint(self, item: Any) -> tuple[str, str] | None:
        """(source id, content hash) of a raw record before parsing (``fingerprint``)."""
        ...

    @staticmethod
    def parse_raw(raw: bytes) -> StudyRecord | PublicationRecord:
        """Normalise a stored raw record (``item_bytes`` of an earlier run) again."""
        ...

    @classmethod
    def from_settings(cls, settings: Any) -> Source:
        """The source as ``tracker update`` builds it from the run's settings."""
        ...


class BaseSource:
    """Declared defaults for the optional parts of :class:`Source`: a source subclasses it,
    sets ``name``, ``kind`` and ``registry``, implements the required methods and lists what
    more it offers in ``capabilities``."""

    name: ClassVar[str]
    kind: ClassVar[str]
    registry: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    batch_size: ClassVar[int] = 200
    # HTTP statuses this source's API throttles with, beyond 429/500/502/503/504: retried
    # with backoff like them (EU CTIS answers 403 when it throttles, API_NOTES 6.4).
    retry_statuses: ClassVar[frozenset[int]] = frozenset()

    @classmethod
    def from_settings(cls, settings: Any) -> BaseSource:
        """The source as ``tracker update`` builds it from the run's settings."""
        return cls(settings.source(cls.name))  # type: ignore[call-arg]

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        raise NotImplementedError(f"{self.name} cannot fetch records by id")

    def fingerprint(self, item: Any) -> tuple[str, str] | None:
        return None

    def has(self, capability: str) -> bool:
        """True when the source declares ``capability`` (one of CAPABILITIES)."""
        return capability in self.capabilities


def not_json(what: str, body: bytes, detail: object,
             error: type[ParseError] = ParseError) -> ParseError:
    """The one wording of "this body is not JSON": what, why, how it starts, what to do."""
    head = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
    return error(f"{what} is not JSON ({' '.join(str(detail).split())}); it starts {head!r}. "
                 "The API or a proxy sent an error page or a cut body; run again later")


def parse_json(body: bytes, what: str, error: type[ParseError] = ParseError) -> Any:
    """A JSON body, or :func:`not_json`'s error."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise not_json(what, body, exc, error) from None


# One parser for every XML body: no DTD fetch (efetch bodies name an http(s) DTD), no network,
# no entity expansion (XXE / billion laughs), no huge-tree mode. lxml parsers may be shared.
XML_OPTIONS: dict[str, bool] = {
    "resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False,
    "remove_comments": True, "remove_pis": True,
}
XML_PARSER = etree.XMLParser(**XML_OPTIONS)


def iter_xml_children(path: str | os.PathLike[str], what: str, root_tag: str, child_tag: str,
                      error: type[ParseError] = ParseError) -> Iterator[Any]:
    """The ``child_tag`` children of the root of the XML file at ``path``, each as it is
    parsed, with the same hardening as ``XML_PARSER``; each is cleared once the caller moves
    on, so a file of any size takes the memory of one child. Raises ``error`` (one line, with
    how the file starts) when the file is empty, not well-formed to its end, or its root is
    not ``root_tag``, possibly after yielding the children before the fault."""
    root = None
    depth = 0
    try:
        for event, el in etree.iterparse(os.fspath(path), events=("start", "end"),
                                         **XML_OPTIONS):
            if event == "start":
                depth += 1
                if depth == 1:
                    root = el
                    if el.tag != root_tag:
                        raise error(f"{what}: its root element is <{el.tag}>, not <{root_tag}>")
                continue
            depth -= 1
            if depth == 1 and el.tag == child_tag:
                yield el
                el.clear(keep_tail=False)
                while el.getprevious() is not None:
                    del root[0]  # type: ignore[index]
    except etree.XMLSyntaxError as exc:
        with open(path, "rb") as fh:
            head = fh.read(80).decode("utf-8", "replace").strip()
        raise error(f"{what} is {'empty' if not head else 'not well-formed XML'} "
                    f"({' '.join(str(exc).split())}); it starts {head!r}") from None
    if root is None:
        raise error(f"{what} is empty")


def parse_xml(body: bytes, what: str, error: type[ParseError] = ParseError) -> Any:
    """An XML body as an lxml element, parsed safely; ``error`` (a ParseError) when it is
    empty or not well-formed."""
    if not body or body.isspace():  # isspace scans without copying (strip copied the body)
        raise error(f"{what} is empty")
    try:
        return etree.fromstring(body, XML_PARSER)
    except etree.XMLSyntaxError as exc:
        head = body[:80].decode("utf-8", "replace").strip()
        raise error(f"{what} is not well-formed XML ({' '.join(str(exc).split())}); it starts "
                    f"{head!r}") from exc


# Paging bounds. A window holds at most ``ceil(total / page_size)`` pages; a source may send a
# page or two more (records added while paging, an empty page: CT.gov documents both), so the
# bound allows PAGE_MARGIN more. Past it the source keeps handing out next-page tokens or
# cursors for pages that bring nothing new, and paging would never end.
PAGE_MARGIN = 2
# When a source announced no total, the most records one window is assumed to hold: more than
# any source has for one query (CT.gov's whole registry is about 550,000 studies).
NO_TOTAL_RECORDS = 2_000_000


def page_limit(total: int | None, page_size: int) -> int:
    """The most pages a window of ``total`` records (None: not announced) may take."""
    size = max(1, page_size)
    records = NO_TOTAL_RECORDS if total is None else max(0, total)
    return -(-records // size) + PAGE_MARGIN


def follow_cursor(source: str, page_size: int,
                  get: Callable[[str | None], tuple[list[Any], int | None, str | None]],
                  first: str | None = None, *, what: str = "page token",
                  error: type[ParseError] = ParseError) -> Iterator[Page]:
    """Every page of one result set that hands out a next-page token or cursor (CT.gov's
    ``nextPageToken``, Europe PMC's ``cursorMark``): ``get(token)`` fetches and reads one
    page as (items, announced total, next token or None), starting from ``first``.

    The first page announces the total. Paging ends when no next token comes; a token sent
    twice is ``error`` (the API is going round in circles), and more pages than the total
    allows (``page_limit``) is IncompleteError (``endless_paging``), never paging forever."""
    token, seen = first, {first} if first is not None else set()
    pages = empty = 0
    announced: int | None = None
    limit = page_limit(None, page_size)
    while True:
        items, total, token = get(token)
        if pages == 0:
            announced, limit = total, page_limit(total, page_size)
        pages += 1
        empty += not items
        yield Page(items=items, total=total if pages == 1 else None)
        if token is None:
            return
        if token in seen:
            raise error(f"{source}: the API repeated {what} {token!r}; paging stopped, nothing "
                        "is lost, the next run repeats this window")
        if pages >= limit:
            raise endless_paging(source, pages, announced, page_size, empty)
        seen.add(token)


def endless_paging(source: str, pages: int, total: int | None, page_size: int,
                   empty: int) -> IncompleteError:
    """The error for a window whose paging went past ``page_limit``."""
    limit = page_limit(total, page_size)
    if total is None:
        why = f"no total was announced and {limit} pages is the most allowed"
    else:
        why = (f"the {total} records announced fill {-(-total // max(1, page_size))} "
               f"({limit} allowed)")
    blank = f" ({empty} of them empty)" if empty else ""
    return IncompleteError(
        f"{source}: paging did not end: after {pages} pages of {page_size}{blank} the API still "
        f"sent a next page, where {why}; paging stopped, nothing is lost, the next run repeats "
        "this window")
