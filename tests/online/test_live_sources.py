"""Live smoke tests against the real public APIs. Deselected by default (no network in CI);
run them on a machine with internet access with ``pytest -m network tests/online``."""

from __future__ import annotations

import datetime as dt

import pytest

from sources import get_source
from sources.base import Window
from tracker.config import load_settings
from tracker.http import Http, make_client

pytestmark = pytest.mark.network

WEEK = Window(since=dt.date.today() - dt.timedelta(days=7), until=dt.date.today())


@pytest.mark.parametrize("name", ["ctgov", "pubmed", "europepmc"])
def test_last_week_parses(name: str) -> None:
    """A week of the default MSC query comes back, pages parse, and records normalise."""
    settings = load_settings({"db": "unused.sqlite"})
    source = get_source(name, settings)
    with make_client(settings) as client:
        http = Http(client, settings)
        page = next(iter(source.fetch(http, WEEK)))
    assert page.total is not None and page.total > 0, "the MSC query found nothing this week"
    records = [source.parse(item) for item in page.items[:20]]
    assert records and all(r.title for r in records)
