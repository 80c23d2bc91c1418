"""``tracker update --dry-run``: what an update would load, asked of each source in one request.

For each enabled source it plans the window the real run would ask for (same watermark, same
overlap, same ``--full`` / ``--since``), asks the source only for its count
(``Source.count``: CT.gov ``countTotal`` on a one-study page, esearch ``rettype=count``,
Europe PMC ``hitCount`` on a one-record page) through the one polite HTTP client, and
estimates the run's requests and its time from the configured page sizes and request rates.
Nothing is written: no database is created, no run is recorded, no watermark moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from sources import get_source
from tracker.config import Settings
from tracker.errors import TrackerError, one_line
from tracker.http import Http, make_client
from tracker.pipeline import get_watermark, plan_window, utcnow
from tracker.update import enabled_sources
from tracker.words import duration, plural


@dataclass
class SourcePlan:
    """What one source would do: its window, records, requests and a time estimate."""

    source: str
    since: dt.date | None
    until: dt.date
    records: int | None = None
    requests: int | None = None
    seconds: float | None = None
    rate: float = 1.0
    note: str = ""
    error: str | None = None

    def line(self) -> str:
        """One line for the terminal."""
        window = f"window {self.since.isoformat() if self.since else 'everything'} .. " \
                 f"{self.until.isoformat()}"
        if self.error:
            return f"{self.source}: could not count ({window}): {self.error}"
        assert self.records is not None and self.requests is not None and self.seconds is not None
        line = (f"{self.source}: {plural(self.records, 'record')} ({window}), "
                f"{plural(self.requests, 'request')} at {self.rate:g}/s, "
                f"about {duration(self.seconds)}")
        return line + (f"; {self.note}" if self.note else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"source": self.source, "window_start": self.since.isoformat()
                if self.since else None, "window_end": self.until.isoformat(),
                "records": self.records, "requests": self.requests,
                "seconds": None if self.seconds is None else round(self.seconds, 1),
                "rate_per_second": self.rate, "note": self.note or None, "error": self.error}


def plan_update(
    settings: Settings,
    engine: Engine | None,
    *,
    names: Sequence[str] | None = None,
    full: bool = False,
    since: dt.date | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[SourcePlan]:
    """Ask every chosen source for its count; ``engine`` None means a database not created
    yet (every window is a first load). A source that cannot be counted says why; the
    others are still counted."""
    today = utcnow().date()
    plans = []
    with make_client(settings, transport=transport) as client:
        http = Http(client, settings)
        for name in enabled_sources(settings, names):
            watermark = None
            if engine is not None:
                with engine.connect() as conn:
                    watermark = get_watermark(conn, name)
            window = plan_window(watermark, today=today, overlap_days=settings.overlap_days,
                                 full=full, since=since)
            rate = settings.source(name).rate_per_second
            plan = SourcePlan(name, window.since, window.until, rate=rate)
            try:
                counted = get_source(name, settings).count(http, window)
            except TrackerError as exc:
                plan.error = one_line(str(exc))
            else:
                plan.records, plan.requests, plan.note = (counted.records, counted.requests,
                                                          counted.note)
                # The run waits between requests for the rate limit; parsing and storing
                # overlap with that wait at these rates, so the rate decides the time.
                plan.seconds = counted.requests / rate
            plans.append(plan)
    return plans


def total_line(plans: Sequence[SourcePlan]) -> str:
    """The sum over sources (sources run one after another)."""
    counted = [p for p in plans if p.error is None]
    records = sum(p.records or 0 for p in counted)
    requests = sum(p.requests or 0 for p in counted)
    seconds = sum(p.seconds or 0 for p in counted)
    failed = len(plans) - len(counted)
    tail = f"; {plural(failed, 'source')} could not be counted" if failed else ""
    return (f"total: {plural(records, 'record')}, {plural(requests, 'request')}, about "
            f"{duration(seconds)} (nothing stored: a dry run){tail}")


__all__ = ["SourcePlan", "duration", "plan_update", "total_line"]
