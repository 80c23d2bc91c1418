"""Issue 10 at the pipeline's own level (the end-to-end rows are in tests/test_faults.py):
completeness on distinct ids per result set, bounded paging, a window that starts after it
ends, and unexpected exceptions - one record's quarantined, anything else one source's failure
that leaves the other sources running and no run ``running``.

Records are the real recorded ones (tests/fixtures), served by the replay server; the faults
are made here, by construction, and said so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import ctgov_studies
from replay_server import ReplayServer, fixture_dir, load_pubmed_articles
from sqlalchemy import select
from sqlalchemy.engine import Engine

import sources.base
from db.models import FetchRun, Quarantine, SourceState, UpdateRun
from db.upsert import decompress
from sources.base import Page, Window, page_limit
from sources.clinicaltrials_gov import ClinicalTrialsGov
from sources.europepmc import EuropePMC
from sources.pubmed import PubMed
from tracker.config import load_settings
from tracker.errors import IncompleteError
from tracker.http import Http, make_client
from tracker.pipeline import ResultSet, check_complete, describe_unexpected, run_source

TODAY = dt.date(2026, 12, 1)


class Ids:
    """A stand-in source whose items are their own ids (None: an item without one)."""

    name = "test"

    @staticmethod
    def record_id(item: Any) -> str | None:
        return item


def result_set(announced: int, *pages: list[str | None]) -> ResultSet:
    rs = ResultSet(announced)
    for page in pages:
        rs.add(Ids, page)
    return rs


# ------------------------------------------------------------------ distinct ids ----------


def test_complete_when_every_announced_record_came_once_or_more() -> None:
    check_complete("test", [result_set(3, ["a", "b"], ["c"])])
    check_complete("test", [result_set(2, ["a", "b"], ["a"])])  # more than announced: fine
    check_complete("test", [result_set(2, [None, None])])  # no id: nothing shows a repeat
    # PubMed: the same PMID in the edat and the mdat result sets is no gap.
    check_complete("test", [result_set(2, ["a", "b"]), result_set(2, ["a", "b"])])
    check_complete("test", [])  # nothing announced, nothing to check


def test_a_repeat_in_place_of_a_record_fails_the_window() -> None:
    with pytest.raises(IncompleteError) as info:
        check_complete("ctgov", [result_set(4, ["a", "b"], ["c", "a"])])
    assert str(info.value) == (
        "ctgov: the API announced 4 records but sent 3 distinct: 1 repeated (a) in place of "
        "others; nothing is lost, the next run repeats this window")


def test_a_short_window_says_how_many_came_and_how_many_repeated() -> None:
    with pytest.raises(IncompleteError, match=r"^test: the API announced 5 records but sent 2;"):
        check_complete("test", [result_set(5, ["a", "b"])])
    with pytest.raises(IncompleteError,
                       match=r"announced 5 records but sent 3 \(2 distinct, 1 repeated: a\);"):
        check_complete("test", [result_set(5, ["a", "b"], ["a"])])
    many = result_set(6, ["a", "b"], ["a", "b", "a", "b"])
    with pytest.raises(IncompleteError, match=r"4 repeated \(a, b, \.\.\.\) in place of others"):
        check_complete("test", [many])


def test_result_sets_are_checked_one_by_one() -> None:
    # Two date windows: the second one's shortfall is not hidden by the first one's surplus.
    sets = [result_set(2, ["a", "b", "c"]), result_set(2, ["d", "d"])]
    with pytest.raises(IncompleteError, match=r"announced 2 records but sent 1 distinct in 1 of "
                                              r"2 result sets: 1 repeated \(d\)"):
        check_complete("pubmed", sets)


# ------------------------------------------------------------------ bounded paging --------


class Pages:
    """An ``Http`` stand-in answering every GET with the next body of ``bodies``."""

    def __init__(self, bodies: Iterator[bytes]) -> None:
        self.bodies = bodies
        self.asked = 0

    def get(self, source: str, url: str, params: Any = None) -> Any:
        self.asked += 1
        return httpx.Response(200, content=next(self.bodies))

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no request was expected")


def _settings(**source: Any) -> Any:
    return load_settings({"db": "x.sqlite"}, env={}).source("ctgov").__class__(
        url="http://127.0.0.1:9/api", query="q", rate_per_second=100.0, **source)


def test_ctgov_paging_is_bounded_by_total_count() -> None:
    study = ctgov_studies()[0]

    def bodies() -> Iterator[bytes]:
        n = 0
        while True:  # one real study, then empty pages, each with a fresh token
            n += 1
            page: dict[str, Any] = {"studies": [study] if n == 1 else [],
                                    "nextPageToken": f"t{n}"}
            if n == 1:
                page["totalCount"] = 5
            yield orjson.dumps(page)

    http = Pages(bodies())
    source = ClinicalTrialsGov(_settings(page_size=2))
    with pytest.raises(IncompleteError) as info:
        for _ in source.fetch(http, Window(None, TODAY)):
            pass
    assert http.asked == page_limit(5, 2) == 5
    assert str(info.value).startswith(
        "ctgov: paging did not end: after 5 pages of 2 (4 of them empty) the API still sent a "
        "next page, where the 5 records announced fill 3 (5 allowed)")


def test_ctgov_paging_without_a_total_has_a_hard_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.base, "NO_TOTAL_RECORDS", 7)
    tokens = (orjson.dumps({"studies": [], "nextPageToken": f"t{n}"}) for n in range(1000))
    http = Pages(tokens)
    with pytest.raises(IncompleteError, match="no total was announced and 6 pages is the most"):
        list(ClinicalTrialsGov(_settings(page_size=2)).fetch(http, Window(None, TODAY)))
    assert http.asked == 6


def test_europepmc_paging_is_bounded_by_hit_count() -> None:
    result = {"id": "1", "source": "MED", "title": "t"}

    def bodies() -> Iterator[bytes]:
        for n in range(1000):  # the same result for ever, each time with a fresh cursor
            yield orjson.dumps({"hitCount": 3, "nextCursorMark": f"c{n}",
                                "request": {"cursorMark": "x"},
                                "resultList": {"result": [result]}})

    http = Pages(bodies())
    settings = load_settings({"db": "x.sqlite"}, env={}).source("europepmc")
    source = EuropePMC(settings.__class__(**{**settings.__dict__, "page_size": 2}))
    with pytest.raises(IncompleteError, match=r"^europepmc: paging did not end: after 4 pages "
                                              r"of 2 the API still sent a next page"):
        list(source.fetch(http, Window(None, TODAY)))
    assert http.asked == 4


@pytest.mark.parametrize("make", [
    lambda s: ClinicalTrialsGov(s.source("ctgov")),
    lambda s: PubMed(s.source("pubmed")),
    lambda s: EuropePMC(s.source("europepmc")),
], ids=["ctgov", "pubmed", "europepmc"])
def test_a_window_that_starts_after_it_ends_is_empty(make: Any) -> None:
    source = make(load_settings({"db": "x.sqlite"}, env={}))
    http = Pages(iter(()))
    inverted = Window(TODAY + dt.timedelta(days=1), TODAY)
    assert list(source.fetch(http, inverted)) == [] and http.asked == 0


# ------------------------------------------------------------------ whole runs ------------


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(ctgov_studies=ctgov_studies(),
                      pubmed_articles=load_pubmed_articles(fixture_dir("pubmed"))) as srv:
        yield srv
        assert srv.errors == []


def _env_settings(srv: ReplayServer, db: Path) -> Any:
    env = {"TRACKER_CTGOV_URL": srv.ctgov_url, "TRACKER_PUBMED_URL": srv.pubmed_url,
           "TRACKER_CTGOV_RATE_PER_SECOND": "100", "TRACKER_PUBMED_RATE_PER_SECOND": "100",
           "TRACKER_CTGOV_PAGE_SIZE": "4", "TRACKER_TIMEOUT": "5"}
    return load_settings({"db": str(db)}, env=env)


def _runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(FetchRun.__table__).order_by(FetchRun.__table__.c.id)))


def _watermark(engine: Engine, source: str) -> Any:
    t = SourceState.__table__
    with engine.connect() as conn:
        return conn.execute(select(t.c.watermark).where(t.c.source == source)).scalar()


class BrokenOne(ClinicalTrialsGov):
    """Real CT.gov, but normalising one (real) study raises what no parser anticipated."""

    victim = "NCT04523987"

    def parse(self, item: Any) -> Any:
        if item.nct_id == self.victim:
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return super().parse(item)


def test_any_exception_normalising_a_record_quarantines_that_record(
        server: ReplayServer, sqlite_engine: Engine, tmp_path: Path) -> None:
    settings = _env_settings(server, tmp_path / "unused.sqlite")
    with make_client(settings) as client:
        summary = run_source(sqlite_engine, BrokenOne(settings.source("ctgov")),
                             Http(client, settings), today=TODAY)
    assert (summary.outcome, summary.rejected, summary.new) == ("partial", 1, 10)
    assert summary.rejected_ids == [BrokenOne.victim]
    q = Quarantine.__table__
    with sqlite_engine.connect() as conn:
        (row,) = conn.execute(select(q.c.record_key, q.c.error, q.c.raw)).all()
    assert row.record_key == BrokenOne.victim
    assert row.error == (f"ctgov: record {BrokenOne.victim} could not be normalised: TypeError: "
                         "unsupported operand type(s) for +: 'int' and 'str'")
    assert orjson.loads(decompress(row.raw))["protocolSection"]["identificationModule"][
        "nctId"] == BrokenOne.victim
    assert _watermark(sqlite_engine, "ctgov") == TODAY  # the window was stored: it advances


def test_an_exception_classifying_a_record_quarantines_that_record(
        server: ReplayServer, sqlite_engine: Engine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tracker.pipeline
    from tracker.classify import load_rules

    real = tracker.pipeline.classify_study

    def classify(rec: Any, rules: Any) -> Any:
        if rec.registry_id == BrokenOne.victim:
            raise KeyError("condition_groups")
        return real(rec, rules)

    monkeypatch.setattr(tracker.pipeline, "classify_study", classify)
    settings = _env_settings(server, tmp_path / "unused.sqlite")
    with make_client(settings) as client:
        summary = run_source(sqlite_engine, ClinicalTrialsGov(settings.source("ctgov")),
                             Http(client, settings), today=TODAY, rules=load_rules())
    assert (summary.outcome, summary.rejected, summary.new) == ("partial", 1, 10)
    with sqlite_engine.connect() as conn:
        error = conn.execute(select(Quarantine.__table__.c.error)).scalar_one()
    assert error == f"ctgov: record {BrokenOne.victim} could not be normalised: KeyError: " \
                    "'condition_groups'"


class FailsMidWindow(ClinicalTrialsGov):
    """Real CT.gov pages, then an exception nobody anticipated, on the second page."""

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        pages = super().fetch(http, window)
        yield next(pages)
        raise RuntimeError("the page iterator broke\nwith a second line")


def test_an_unexpected_exception_fails_one_source_and_the_others_run(
        server: ReplayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracker.update
    from db.engine import make_engine
    from db.migrate import upgrade

    db = tmp_path / "t.sqlite"
    settings = _env_settings(server, db)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    real = tracker.update.get_source
    monkeypatch.setattr(tracker.update, "get_source", lambda name, s: (
        FailsMidWindow(s.source("ctgov")) if name == "ctgov" else real(name, s)))
    summaries = tracker.update.run_update(settings, engine, names=["ctgov", "pubmed"])
    ctgov, pubmed = summaries
    assert ctgov.outcome == "failed" and pubmed.outcome == "ok"
    assert ctgov.error == (
        "ctgov: unexpected RuntimeError: the page iterator broke; nothing is lost, the next run "
        "repeats this window (tracker -v update shows the traceback)")
    assert ctgov.new == 4  # the first page is kept
    runs = _runs(engine)
    assert [(r.source, r.outcome) for r in runs] == [("ctgov", "failed"), ("pubmed", "ok")]
    assert runs[0].error == ctgov.error and runs[0].finished_at is not None
    assert _watermark(engine, "ctgov") is None and _watermark(engine, "pubmed") is not None
    with engine.connect() as conn:
        update = conn.execute(select(UpdateRun.__table__)).one()
    assert update.outcome == "partial" and update.error == ctgov.error
    engine.dispose()


def test_a_since_after_today_fails_at_once_without_a_request(
        sqlite_engine: Engine, tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing may be asked: {request.url}")

    settings = load_settings({"db": str(tmp_path / "x.sqlite")}, env={})
    http = Http(make_client(settings, transport=httpx.MockTransport(refuse)), settings)
    for source in (ClinicalTrialsGov(settings.source("ctgov")),
                   PubMed(settings.source("pubmed")), EuropePMC(settings.source("europepmc"))):
        summary = run_source(sqlite_engine, source, http, since=dt.date(2099, 1, 1),
                             today=TODAY)
        assert summary.outcome == "failed"
        assert summary.error == (
            f"{source.name}: the window starts 2099-01-01, after its end 2026-12-01 (today); "
            "nothing to fetch and the watermark stays. Give a --since on or before today")
    assert [r.outcome for r in _runs(sqlite_engine)] == ["failed"] * 3
    assert http.stats.requests == 0


def test_a_watermark_after_today_asks_for_today() -> None:
    from tracker.pipeline import plan_window

    window = plan_window(TODAY + dt.timedelta(days=10), today=TODAY, overlap_days=3)
    assert window == Window(TODAY, TODAY)


def test_describe_unexpected_keeps_to_one_line_without_sql() -> None:
    from sqlalchemy.exc import OperationalError

    exc = OperationalError("INSERT INTO study VALUES (?)", ("secret data",),
                           Exception("disk I/O error\nmore"))
    text = describe_unexpected("ctgov", exc)
    assert text.startswith("ctgov: unexpected OperationalError: disk I/O error; nothing is lost")
    assert "INSERT" not in text and "secret data" not in text and "\n" not in text
    assert describe_unexpected("x", ValueError()).startswith("x: unexpected ValueError; ")
