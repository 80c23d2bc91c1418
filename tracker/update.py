"""``tracker update``: one update run, in which every chosen source runs once in its own
source run; each is reported, and the update is recorded as a whole (``update_run``)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.engine import Engine

from db.models import FetchRun, UpdateRun
from sources import REGISTRY, fetched, get_source
from tracker.archive import RawArchive
from tracker.classify import load_rules
from tracker.config import Settings
from tracker.errors import ConfigError, one_line
from tracker.http import Http, make_client
from tracker.pipeline import ProgressFn, RunSummary, run_source, settled_heap, utcnow

log = logging.getLogger(__name__)
UPDATE = UpdateRun.__table__
RUN = FetchRun.__table__


def enabled_sources(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """The sources to run: ``names`` if given (validated), else every enabled source."""
    sources = fetched()
    if names:
        unknown = [n for n in names if n not in sources]
        if unknown:
            hint = (f"; {unknown[0]} is read from files: tracker import {unknown[0]} FILE"
                    if unknown[0] in REGISTRY else "")
            raise ConfigError(f"unknown source {unknown[0]!r}; valid sources: "
                              f"{', '.join(sources)}{hint}")
        return list(dict.fromkeys(names))
    return [n for n in sources if settings.source(n).enabled]


def run_update(
    settings: Settings,
    engine: Engine,
    *,
    names: Sequence[str] | None = None,
    full: bool = False,
    since: dt.date | None = None,
    progress: Callable[[str], ProgressFn] | None = None,
    transport: httpx.BaseTransport | None = None,
    save_raw: Path | None = None,
) -> list[RunSummary]:
    """Run each source in turn, all within one update run. A failing source does not stop
    the others.

    Returns one summary per source; failed ones carry ``outcome == "failed"`` and ``error``.
    The update run ends ``ok`` when every source did, ``failed`` when none stored its window
    (or it was interrupted), else ``partial``; it is never left ``running``.
    """
    chosen = enabled_sources(settings, names)
    rules = load_rules(settings.rules)
    summaries: list[RunSummary] = []
    update_id = start_update(engine, chosen, full=full)
    outcome, error = "failed", "stopped before every source had run"
    try:
        with settled_heap(), make_client(settings, transport=transport) as client:

            def run(name: str, db: Any, stop: threading.Event | None = None) -> RunSummary:
                # Each source has its own Http: its own rate limiter and request counts.
                source = get_source(name, settings)
                return run_source(
                    db, source, Http(client, settings, retry_statuses=source.retry_statuses),
                    overlap_days=settings.overlap_days, full=full, since=since,
                    progress=progress(name) if progress else None, rules=rules,
                    update_id=update_id, stop=stop,
                    save_raw=RawArchive(save_raw, name) if save_raw is not None else None,
                )

            if len(chosen) > 1 and settings.concurrent_sources:
                summaries.extend(_side_by_side(engine, chosen, run))
            else:
                for name in chosen:
                    summaries.append(run(name, engine))  # a failure is reported by the caller
        outcome, error = update_outcome(summaries)
    except KeyboardInterrupt:
        outcome, error = _stopped(summaries, "interrupted before every source had run")
        raise
    except Exception as exc:
        outcome, error = _stopped(summaries, one_line(str(exc)) or type(exc).__name__)
        raise
    finally:
        finish_update(engine, update_id, outcome, error)
    return summaries


class _OneWriter:
    """The engine as the sources run side by side see it: every transaction that writes
    (``begin``) waits for the one before it, so one writer commits at a time (SQLite has one
    writer; PostgreSQL gets the same order), while fetching and reading go on in parallel."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self._engine = engine
        self._lock = lock

    @contextlib.contextmanager
    def begin(self) -> Iterator[Any]:
        with self._lock, self._engine.begin() as conn:
            yield conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _side_by_side(engine: Engine, names: Sequence[str],
                  run: Callable[..., RunSummary]) -> list[RunSummary]:
    """Run every source at once, each within its own host's rate limit (one request at a
    time per source: a host that asks for sequential requests gets them), committing
    through one writer. An interrupt stops every source at its next page; each is recorded
    as interrupted and the interrupt goes on. The summaries come back in ``names`` order."""
    writer = _OneWriter(engine, threading.Lock())
    stop = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(names),
                                                 thread_name_prefix="source")
    futures = [pool.submit(run, name, writer, stop) for name in names]
    try:
        while not all(f.done() for f in futures):
            concurrent.futures.wait(futures, timeout=0.2)
    except BaseException:
        stop.set()
        concurrent.futures.wait(futures)
        pool.shutdown()
        raise
    pool.shutdown()
    out = []
    for f in futures:
        exc = f.exception()
        if exc is not None:
            raise exc
        out.append(f.result())
    return out


def update_outcome(summaries: Sequence[RunSummary]) -> tuple[str, str | None]:
    """The outcome of an update from its source runs', and the first error."""
    outcomes = {s.outcome for s in summaries}
    errors = [f"{s.source}: {s.error}" if not s.error.startswith(s.source) else s.error
              for s in summaries if s.error]
    if not summaries or outcomes == {"ok"}:
        return "ok", None
    if outcomes == {"failed"}:
        return "failed", errors[0] if errors else None
    return "partial", errors[0] if errors else None


def _stopped(summaries: Sequence[RunSummary], why: str) -> tuple[str, str]:
    """An update that stopped early: partial if a source stored its window, else failed."""
    done = any(s.outcome in ("ok", "partial") for s in summaries)
    return ("partial" if done else "failed"), why


STALE = ("the run ended without recording how (the process was killed or the machine "
         "stopped); what it stored is kept and the next run repeated its window")


def start_update(engine: Engine, sources: Sequence[str], *, full: bool = False) -> int:
    """Record the start of an update run; its id.

    The caller holds the update lock, so any update or source run still marked running was
    left so by a process that died (SIGKILL, power loss): it is closed as failed first.
    """
    with engine.begin() as conn:
        now = utcnow()
        conn.execute(update(UPDATE).where(UPDATE.c.outcome == "running").values(
            outcome="failed", finished_at=now, error=STALE))
        conn.execute(update(RUN).where(RUN.c.outcome == "running").values(
            outcome="failed", finished_at=now, error=STALE))
        return int(conn.execute(UPDATE.insert().values(
            started_at=utcnow(), outcome="running", sources=list(sources), full=full,
            pid=os.getpid(), host=socket.gethostname(),
        )).inserted_primary_key[0])


def finish_update(engine: Engine, update_id: int, outcome: str, error: str | None) -> None:
    """Record how an update run ended, after grouping the registrations into trials again
    (what the run stored may declare other registrations; db.trials)."""
    from db.trials import regroup

    with engine.begin() as conn:
        try:
            with conn.begin_nested():
                regroup(conn)
        except Exception as exc:  # noqa: BLE001 - the run's own outcome is still recorded
            log.warning("grouping registrations into trials failed: %s", one_line(str(exc)))
        conn.execute(update(UPDATE).where(UPDATE.c.id == update_id).values(
            finished_at=utcnow(), outcome=outcome, error=error))


__all__ = ["enabled_sources", "finish_update", "run_update", "start_update", "update_outcome"]
