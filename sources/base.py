"""The one small interface every source implements.

A source knows how to ask its API for a window of records (``fetch``, a generator of pages that
does the I/O) and how to turn one raw record into a normalised record (``parse``, pure). It knows
nothing of the database; ``tracker.pipeline`` joins the two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from db.records import PublicationRecord, StudyRecord
from tracker.errors import IncompleteError


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


class Source(Protocol):
    """What the pipeline needs of a source module.

    Every source also offers ``count(http, window) -> SourceCount``: one cheap request that
    asks the API how many records the window holds (CT.gov ``countTotal`` on a one-study
    page, esearch ``rettype=count``, Europe PMC ``hitCount`` on a one-record page).
    """

    name: str
    kind: str  # "study" or "publication"

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """Yield the pages of ``window``; raise FetchError/ParseError when the API fails."""
        ...

    # Optional: ``fetch_ids(http, ids) -> Iterator[Page]`` fetches records by their source ids
    # (the pipeline asks again for quarantined records with it at the end of a run).

    def parse(self, item: Any) -> StudyRecord | PublicationRecord:
        """Normalise one raw record; raise ParseError when it lacks what a record needs."""
        ...

    def record_id(self, item: Any) -> str | None:
        """The source's own id for a raw record, if it can be read (for quarantine rows)."""
        ...

    def count(self, http: Any, window: Window) -> SourceCount:
        """How many records ``window`` holds, in one request, and the requests a run needs."""
        ...


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
