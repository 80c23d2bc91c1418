"""Run one source: fetch a window, parse, store page by page, keep the run log and watermark.

The watermark is the day the last successful run started. An incremental run asks for records
updated on or after ``watermark - overlap_days``; the overlap makes day-granular registry dates
and late data refreshes harmless, because the upsert skips what is unchanged. Each page is
committed on its own, so a run that dies keeps what it stored; the watermark advances only
after every page of the window is stored and the source sent as many *distinct* records as it
announced (a page that repeats a record in place of another loses that other record: counting
items would not see it).

Nothing one record holds stops a run: a record that cannot be normalised, whatever the
exception, is quarantined and the page goes on; any other unexpected exception fails that
source's run (recorded, with one line) and the other sources still run.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from db.models import FetchRun, SourceState
from db.publications import existing_source_hashes, upsert_publications
from db.quarantine import quarantine_record, release, waiting, waiting_ids
from db.upsert import UpsertResult, existing_hashes, upsert_studies
from sources.base import FETCH_IDS, FINGERPRINT, LARGE_PAGES, Page, Window
from tracker.classify import classify_publication, classify_study
from tracker.errors import ConfigError, IncompleteError, ParseError, TrackerError, one_line

log = logging.getLogger(__name__)

RUN = FetchRun.__table__
STATE = SourceState.__table__


@dataclass
class RunSummary:
    """What one source run did; ``outcome`` is ok, partial or failed."""

    source: str
    run_id: int
    window: Window
    outcome: str = "running"
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None
    requests: int = 0
    retries: int = 0
    rejected_ids: list[str] = field(default_factory=list)
    quarantined_before: int = 0  # records of this source waiting in quarantine at the start

    def line(self) -> str:
        """One-line summary for the terminal and the log."""
        since = self.window.since.isoformat() if self.window.since else "everything"
        counts = (f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
                  f"{self.rejected} failed")
        window = f"window {since} .. {self.window.until.isoformat()}"
        if self.outcome == "failed":
            return f"{self.source}: FAILED, kept {counts} ({window}, watermark not moved)"
        return f"{self.source}: {counts} ({window})"


ProgressFn = Callable[[int, int | None], None]


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """Around a long ingest: what is alive at its start (modules, the compiled rules, the
    ORM's metadata: hundreds of thousands of objects) is frozen out of the cyclic collector's
    reach, and handed back at the end. Each full collection during a run otherwise rescans
    all of it; that was a tenth of a PubMed ingest's time (``benchmarks/bench_pubmed.py``).
    Unfrozen afterwards, so a long-lived process (the scheduler) leaks nothing across runs."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def utcnow() -> dt.datetime:
    """Now, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def get_watermark(conn: Connection, source: str) -> dt.date | None:
    """The source's watermark, or None before its first successful run."""
    return conn.execute(select(STATE.c.watermark).where(STATE.c.source == source)).scalar()


def plan_window(
    watermark: dt.date | None,
    *,
    today: dt.date,
    overlap_days: int,
    full: bool = False,
    since: dt.date | None = None,
) -> Window:
    """The window a run asks for: ``since`` if given, everything if ``full`` or first run."""
    if since is not None:
        return Window(since=since, until=today)
    if full or watermark is None:
        return Window(since=None, until=today)
    # A watermark after today (the clock was ahead when it was set) asks for today only.
    return Window(since=min(watermark - dt.timedelta(days=overlap_days), today), until=today)


def store_records(
    conn: Connection,
    kind: str,
    records: Sequence[Any],
    run_id: int,
    now: dt.datetime,
    stored: dict[tuple[str, str], tuple[Any, ...]] | None = None,
) -> UpsertResult:
    """Store parsed records of a source of ``kind`` in the caller's transaction.

    ``stored`` is what ``existing_hashes`` returned for these keys, when the caller has it.
    """
    if kind == "study":
        return upsert_studies(conn, records, run_id=run_id, now=now, stored=stored)
    if kind == "publication":
        return upsert_publications(conn, records, run_id=run_id, now=now, known=stored)
    raise ValueError(f"no store for records of kind {kind!r}")


# Records checked, parsed and written together: each source's ``batch_size`` (default 200,
# sources.base.BaseSource) bounds memory on pages of large records (CT.gov); a source whose
# records are small asks for more: fewer, larger statements per page.


def _record_key(rec: Any) -> str:
    return rec.registry_id if hasattr(rec, "registry_id") else rec.source_id


def _safe_record_id(source: Any, item: Any) -> str | None:
    try:
        return source.record_id(item)
    except Exception:  # noqa: BLE001 - an id that cannot be read is simply not known
        return None


def _record_error(source: Any, item: Any, exc: Exception) -> ParseError:
    """``exc`` as the ParseError a quarantine row keeps: a ParseError as it is, anything else
    (a wrong-typed field the parser did not expect) with its type, message and the record id."""
    if isinstance(exc, ParseError):
        return exc
    rid = _safe_record_id(source, item)
    what = f"record {rid}" if rid else "a record"
    return ParseError(one_line(f"{source.name}: {what} could not be normalised: "
                               f"{type(exc).__name__}: {exc}")[:500])


def label(records: Sequence[Any], kind: str, rules: Any) -> None:
    """Attach the classifier's labels to each record (``tracker.classify``)."""
    if rules is None:
        return
    classify = classify_study if kind == "study" else classify_publication
    for rec in records:
        if not getattr(rec, "deleted", False):
            rec.labels = classify(rec, rules)
            rec.rules_fingerprint = rules.fingerprint


def ingest_page(
    engine: Engine,
    source: Any,
    page: Page,
    run_id: int,
    summary: RunSummary,
    rules: Any = None,
) -> None:
    """Parse and store one page in one transaction, updating ``summary``'s counts.

    For each batch the stored content hashes are read first, and only records that are new or
    changed are parsed and normalised: an unchanged re-run costs a hash per record. Items are
    dropped from the page as they are used, so a page of large studies never exists twice in
    memory. A record that fails to parse or to classify, with any exception, is counted as
    rejected and quarantined; it does not stop the page.
    """
    items = page.items
    now = utcnow()
    fingerprint = source.fingerprint if FINGERPRINT in source.capabilities else None
    classify = None if rules is None else (
        classify_study if source.kind == "study" else classify_publication)
    with engine.begin() as conn:
        size = source.batch_size
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            items[start : start + size] = [None] * len(batch)
            stored: dict[tuple[str, str], tuple[Any, ...]] = {}
            same: list[str] = []  # keys of records unchanged since stored
            if fingerprint is not None:
                prints = [fingerprint(item) for item in batch]
                keys = [p[0] for p in prints if p]
                lookup = existing_hashes if source.kind == "study" else existing_source_hashes
                found = lookup(conn, source.name, keys)
                # None marks a key looked up and absent, so the upsert does not ask again
                stored = {(source.name, k): found.get(k) for k in keys}
                todo = []
                for item, fp in zip(batch, prints, strict=True):
                    old = stored.get((source.name, fp[0])) if fp else None
                    if old is not None and old[1] == fp[1]:  # type: ignore[index]
                        summary.unchanged += 1
                        same.append(fp[0])  # type: ignore[index]
                    else:
                        todo.append(item)
                batch = todo
            records = []
            for item in batch:
                try:
                    rec = source.parse(item)
                    if classify is not None and not getattr(rec, "deleted", False):
                        rec.labels = classify(rec, rules)
                        rec.rules_fingerprint = rules.fingerprint
                except Exception as exc:  # noqa: BLE001 - one record never stops a page
                    error = _record_error(source, item, exc)
                    summary.rejected += 1
                    rid = _safe_record_id(source, item)
                    key = quarantine_record(conn, source.name, rid, source.item_bytes(item),
                                            str(error), run_id, now)
                    summary.rejected_ids.append(key)
                    log.warning("%s: quarantined record %s: %s", source.name, key, error)
                else:
                    records.append(rec)
            result = store_records(conn, source.kind, records, run_id, now, stored or None)
            if summary.quarantined_before:  # a good copy, new or as stored, releases a bad one
                release(conn, source.name, [*same, *(_record_key(r) for r in records)])
            summary.new += result.new
            summary.changed += result.changed
            summary.unchanged += result.unchanged
        summary.fetched += len(items)
        _save_counts(conn, summary)


@dataclass
class ResultSet:
    """What one result set (a window's pages from one announced total) delivered.

    PubMed announces one total per esearch date window, CT.gov and Europe PMC one per window.
    ``ids`` holds every record id seen; a record whose id cannot be read counts as distinct
    (``unkeyed``), since nothing shows it repeats another.
    """

    announced: int
    received: int = 0
    unkeyed: int = 0
    ids: set[str] = field(default_factory=set)
    repeated: list[str] = field(default_factory=list)

    def add(self, source: Any, items: Sequence[Any]) -> None:
        """Count a page's items (before ``ingest_page`` uses them up)."""
        self.received += len(items)
        ids, record_id = self.ids, source.record_id
        for item in items:
            rid = record_id(item)
            if rid is None:
                self.unkeyed += 1
            elif rid in ids:
                self.repeated.append(rid)
            else:
                ids.add(rid)

    @property
    def distinct(self) -> int:
        """Distinct records received."""
        return len(self.ids) + self.unkeyed


def check_complete(name: str, sets: Sequence[ResultSet]) -> None:
    """Raise IncompleteError when a result set brought fewer distinct records than it announced.

    A shortfall in items says the source stopped early; a shortfall in distinct ids with the
    items all there says a page repeated a record in place of another (CT.gov paging does this
    when records change while a client pages), so that other record never arrived.
    """
    short = [s for s in sets if s.distinct < s.announced]
    if not short:
        return
    announced = sum(s.announced for s in short)
    received = sum(s.received for s in short)
    distinct = sum(s.distinct for s in short)
    repeated = [rid for s in short for rid in s.repeated]
    where = f" in {len(short)} of {len(sets)} result sets" if len(sets) > 1 else ""
    shown = ", ".join(dict.fromkeys(repeated[:3])) + (", ..." if len(repeated) > 3 else "")
    if received < announced:
        detail = (f" ({distinct} distinct, {len(repeated)} repeated: {shown})"
                  if repeated else "")
        what = f"the API announced {announced} records but sent {received}{detail}{where}"
    else:
        what = (f"the API announced {announced} records but sent {distinct} distinct{where}: "
                f"{len(repeated)} repeated ({shown}) in place of others")
    raise IncompleteError(f"{name}: {what}; nothing is lost, the next run repeats this window")


def describe_unexpected(name: str, exc: BaseException) -> str:
    """One line for an exception nobody anticipated (a bug, an answer of a shape no check
    caught): its type and first line, without the SQL text a database error carries."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0][:300] if text else ""
    return one_line(f"{name}: unexpected {type(exc).__name__}{': ' + first if first else ''}; "
                    "nothing is lost, the next run repeats this window (tracker -v update "
                    "shows the traceback)")


def run_source(
    engine: Engine,
    source: Any,
    http: Any,
    *,
    overlap_days: int = 3,
    full: bool = False,
    since: dt.date | None = None,
    today: dt.date | None = None,
    progress: ProgressFn | None = None,
    rules: Any = None,
    update_id: int | None = None,
    stop: Any = None,
    save_raw: Any = None,
) -> RunSummary:
    """Fetch, parse and store one window of ``source``; return what happened.

    ``stop`` (a ``threading.Event``) ends the run as interrupted at the next page when set:
    the update interrupts the sources it runs side by side this way. ``save_raw`` (a
    ``tracker.archive.RawArchive``) keeps every page before it is stored.

    ``update_id`` is the ``update_run`` this source run belongs to (``tracker update``).

    Any exception stops the run: it is recorded in the run log and returned as a summary with
    ``outcome == "failed"`` and a one-line ``error`` (a TrackerError's own message, anything
    else named as unexpected); pages stored before it stay stored and the watermark does not
    move. An interrupt (Ctrl-C, SIGTERM via the scheduler, SystemExit) is recorded the same
    way and re-raised. A ``since`` after ``today`` fails the run at once: nothing is asked.
    """
    started = utcnow()
    today = today or started.date()
    with engine.begin() as conn:
        window = plan_window(
            get_watermark(conn, source.name), today=today, overlap_days=overlap_days,
            full=full, since=since,
        )
        run_id = conn.execute(
            RUN.insert().values(
                update_id=update_id, source=source.name, started_at=started, outcome="running",
                window_start=window.since, window_end=window.until, full=window.full,
            )
        ).inserted_primary_key[0]
    summary = RunSummary(source=source.name, run_id=run_id, window=window)
    stats_before = _http_counts(http)
    announced: int | None = None
    sets: list[ResultSet] = []
    try:
        with engine.connect() as conn:
            summary.quarantined_before = waiting(conn, source.name)
        if window.since is not None and window.since > window.until:
            raise ConfigError(
                f"{source.name}: the window starts {window.since.isoformat()}, after its end "
                f"{window.until.isoformat()} (today); nothing to fetch and the watermark stays. "
                "Give a --since on or before today")
        for page in source.fetch(http, window):
            if page.total is not None:  # one per result set (PubMed: per date window)
                announced = (announced or 0) + page.total
                sets.append(ResultSet(page.total))
            if sets:
                sets[-1].add(source, page.items)
            summary.requests, summary.retries = _http_delta(http, stats_before)
            if save_raw is not None:  # tracker update --save-raw DIR: the page as it came
                save_raw.save(page, source.item_bytes)
            ingest_page(engine, source, page, run_id, summary, rules)
            del page
            if LARGE_PAGES in source.capabilities:
                release_memory()
            if progress:
                progress(summary.fetched, announced)
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
        check_complete(source.name, sets)
        if summary.quarantined_before:
            retry_quarantined(engine, source, http, run_id, summary, rules)
    except TrackerError as exc:
        summary.outcome = "failed"
        summary.error = one_line(str(exc))
        _finish(engine, summary, http, stats_before, advance=False)
        return summary
    except (KeyboardInterrupt, SystemExit):
        summary.outcome = "failed"
        summary.error = "interrupted before the window was complete"
        _finish(engine, summary, http, stats_before, advance=False)
        raise
    except Exception as exc:  # recorded as this source's failure, in one line
        log.info("%s: unexpected error", source.name, exc_info=True)
        summary.outcome = "failed"
        summary.error = describe_unexpected(source.name, exc)
        _finish(engine, summary, http, stats_before, advance=False)
        return summary
    summary.outcome = "partial" if summary.rejected else "ok"
    _finish(engine, summary, http, stats_before, advance=True)
    return summary


def retry_quarantined(
    engine: Engine, source: Any, http: Any, run_id: int, summary: RunSummary, rules: Any = None
) -> None:
    """Ask the source again, by id, for the records waiting in its quarantine.

    A record damaged in transit (or sent broken once) is then stored by the next run, whatever
    its date; one still broken stays quarantined. A failure here does not fail the run (its
    window is stored): it is logged, and the next run asks again.
    """
    if FETCH_IDS not in source.capabilities:
        return
    fetch_ids = source.fetch_ids
    with engine.connect() as conn:
        ids = waiting_ids(conn, source.name)
    if not ids:
        return
    try:
        for page in fetch_ids(http, ids):
            ingest_page(engine, source, page, run_id, summary, rules)
    except Exception as exc:  # noqa: BLE001 - the window is stored; this is logged, retried
        why = one_line(str(exc)) if isinstance(exc, TrackerError) else describe_unexpected(
            source.name, exc)
        log.warning("%s: could not fetch %d quarantined record(s) again (%s); the next run "
                    "tries again", source.name, len(ids), why)


def _load_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_memory() -> None:
    """Hand freed heap memory back to the OS after a page (glibc; a no-op elsewhere).

    A page is parsed into a tape several times its size and then freed; glibc keeps freed
    blocks in its heap, so without this the resident size of a long run creeps up by a page's
    worth and the next page's parse lands on top of it.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _http_counts(http: Any) -> tuple[int, int]:
    stats = getattr(http, "stats", None)
    return (stats.requests, stats.retries) if stats else (0, 0)


def _http_delta(http: Any, before: tuple[int, int]) -> tuple[int, int]:
    now = _http_counts(http)
    return now[0] - before[0], now[1] - before[1]


def _save_counts(conn: Connection, summary: RunSummary) -> None:
    conn.execute(
        update(RUN).where(RUN.c.id == summary.run_id).values(
            fetched=summary.fetched, new=summary.new, changed=summary.changed,
            unchanged=summary.unchanged, rejected=summary.rejected,
            requests=summary.requests, retries=summary.retries,
        )
    )


def _finish(
    engine: Engine, summary: RunSummary, http: Any, before: tuple[int, int], *, advance: bool
) -> None:
    now = utcnow()
    summary.requests, summary.retries = _http_delta(http, before)
    with engine.begin() as conn:
        _save_counts(conn, summary)
        conn.execute(
            update(RUN).where(RUN.c.id == summary.run_id).values(
                finished_at=now, outcome=summary.outcome, error=summary.error,
            )
        )
        if advance:
            # A partial run (some records rejected) still stored the whole window; the
            # rejected records are retried from quarantine, so the watermark may advance.
            values = {"watermark": summary.window.until, "last_success_at": now,
                      "last_run_id": summary.run_id}
            updated = conn.execute(
                update(STATE).where(STATE.c.source == summary.source).values(**values)
            ).rowcount
            if not updated:
                conn.execute(STATE.insert().values(source=summary.source, **values))
