"""``tracker update``: run every chosen source once, each in its own run, and report each."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import httpx
from sqlalchemy.engine import Engine

from sources import REGISTRY, get_source
from tracker.classify import load_rules
from tracker.config import Settings
from tracker.errors import ConfigError
from tracker.http import Http, make_client
from tracker.pipeline import ProgressFn, RunSummary, run_source

log = logging.getLogger(__name__)


def enabled_sources(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """The sources to run: ``names`` if given (validated), else every enabled source."""
    if names:
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ConfigError(f"unknown source {unknown[0]!r}; valid sources: "
                              f"{', '.join(REGISTRY)}")
        return list(dict.fromkeys(names))
    return [n for n in REGISTRY if settings.source(n).enabled]


def run_update(
    settings: Settings,
    engine: Engine,
    *,
    names: Sequence[str] | None = None,
    full: bool = False,
    since: dt.date | None = None,
    progress: Callable[[str], ProgressFn] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[RunSummary]:
    """Run each source in turn. A failing source does not stop the others.

    Returns one summary per source; failed ones carry ``outcome == "failed"`` and ``error``.
    """
    chosen = enabled_sources(settings, names)
    rules = load_rules(settings.rules)
    summaries: list[RunSummary] = []
    with make_client(settings, transport=transport) as client:
        http = Http(client, settings)
        for name in chosen:
            source = get_source(name, settings)
            summary = run_source(
                engine, source, http, overlap_days=settings.overlap_days, full=full,
                since=since, progress=progress(name) if progress else None, rules=rules,
            )
            summaries.append(summary)  # a failure is reported once, by the caller
    return summaries


__all__ = ["enabled_sources", "run_update"]
