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


class Source(Protocol):
    """What the pipeline needs of a source module."""

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
