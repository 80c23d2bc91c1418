"""The scheduler: fires on time, runs and records the update, coalesces, never overlaps, stops.

Jobs here are real APScheduler jobs stored in the tracker's database; the test jobs are
module-level functions because the SQLAlchemy job store pickles a job by reference.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from conftest import read_line, wait_for
from dbsnapshot import only_sources
from replay_server import ReplayServer
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from db.models import FetchRun, Study
from tracker.config import Settings
from tracker.errors import ConfigError, LockedError
from tracker.lock import update_lock
from tracker.scheduler import (
    JOB_ID,
    JOBS_TABLE,
    build_scheduler,
    cron_trigger,
    next_run_time,
    run_scheduler,
    scheduled_update,
)

ROOT = Path(__file__).parent.parent
RECORD = "tests.test_scheduler:record_call"


def record_call(path: str, sleep: float = 0.0) -> None:
    """Test job: append "start <t>" and "end <t>" lines to ``path`` around ``sleep`` seconds."""
    with open(path, "a") as fh:
        fh.write(f"start {time.monotonic()}\n")
    time.sleep(sleep)
    with open(path, "a") as fh:
        fh.write(f"end {time.monotonic()}\n")


def calls(path: Path) -> list[tuple[float, float | None]]:
    """(start, end) of each recorded call; end is None while a call is running."""
    out: list[tuple[float, float | None]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        kind, stamp = line.split()
        if kind == "start":
            out.append((float(stamp), None))
        else:
            out[-1] = (out[-1][0], float(stamp))
    return out


def settings_for(engine: Engine, **changes: Any) -> Settings:
    return dataclasses.replace(
        Settings(db=engine.url.render_as_string(hide_password=False)), **changes
    )


def soon(seconds: float = 0.3) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


# ---------------------------------------------------------------- cron ----------------------

SUNDAY_NOON = dt.datetime(2024, 6, 2, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("expr", "expected"), [
    ("30 2 * * *", dt.datetime(2024, 6, 3, 2, 30, tzinfo=dt.UTC)),       # the default
    ("0 6 * * 1-5", dt.datetime(2024, 6, 3, 6, 0, tzinfo=dt.UTC)),        # Monday, cron's 1
    ("0 6 * * 0", dt.datetime(2024, 6, 9, 6, 0, tzinfo=dt.UTC)),          # Sunday, cron's 0
    ("0 6 * * 7", dt.datetime(2024, 6, 9, 6, 0, tzinfo=dt.UTC)),          # Sunday, cron's 7
    ("0 13 * * 0,6", dt.datetime(2024, 6, 2, 13, 0, tzinfo=dt.UTC)),      # weekend, today
    ("0 6 * * */2", dt.datetime(2024, 6, 4, 6, 0, tzinfo=dt.UTC)),        # sun,tue,thu,sat
    ("@daily", dt.datetime(2024, 6, 3, 0, 0, tzinfo=dt.UTC)),
    ("15 */6 1 * *", dt.datetime(2024, 7, 1, 0, 15, tzinfo=dt.UTC)),
])
def test_cron_follows_crontab_semantics(expr: str, expected: dt.datetime) -> None:
    trigger = cron_trigger(expr, dt.UTC)
    assert trigger.get_next_fire_time(None, SUNDAY_NOON) == expected


@pytest.mark.parametrize(("expr", "fragment"), [
    ("30 2 * *", "4 fields"),
    ("nightly", "1 fields"),
    ("61 2 * * *", "not a valid cron expression"),
    ("30 2 * * 8", "not a valid cron expression"),
    ("30 2 * * fri-mon", "runs backwards"),
    ("0 0 1 * 1", "restricts both day of month and day of week"),
])
def test_invalid_cron_is_a_config_error(expr: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        cron_trigger(expr)


def test_build_scheduler_rejects_invalid_schedule(sqlite_engine: Engine) -> None:
    with pytest.raises(ConfigError, match=r"schedule '2 \* \* \*'"):
        build_scheduler(settings_for(sqlite_engine, schedule="2 * * *"), sqlite_engine, RECORD)


# ---------------------------------------------------------------- firing --------------------


def test_near_future_trigger_fires_and_the_job_is_stored(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "calls.txt"
    settings = settings_for(engine)
    scheduler = build_scheduler(settings, engine, RECORD, job_kwargs={"path": str(out)},
                                trigger=IntervalTrigger(seconds=1, start_date=soon(0.3)))
    assert next_run_time(settings, engine) is None  # nothing stored before start
    scheduler.start()
    try:
        stored = next_run_time(settings, engine)
        assert stored is not None and stored.tzinfo is not None
        assert wait_for(lambda: len(calls(out)) >= 2, timeout=5)
        # The stored time moved on as the job ran. (Not "later than now": on a loaded machine
        # the next run can fall due before the scheduler thread has stored the one after it.)
        later = next_run_time(settings, engine)
        assert later is not None and later >= stored + dt.timedelta(seconds=1)
    finally:
        scheduler.shutdown(wait=True)
    assert all(end is not None for _, end in calls(out))


def test_the_scheduled_update_runs_and_records_the_run(
    sqlite_engine: Engine, studies_json: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with ReplayServer(ctgov_studies=studies_json) as srv:
        _replay_env(monkeypatch, srv)
        settings = settings_for(sqlite_engine)
        scheduler = build_scheduler(settings, sqlite_engine, trigger=DateTrigger(soon(0.2)))
        job = scheduler.get_job(JOB_ID)
        assert job is not None and job.kwargs == {"db": settings.db_url, "config": None}
        scheduler.start()
        try:
            assert wait_for(lambda: _runs(sqlite_engine, "ok") == 1, timeout=15)
        finally:
            scheduler.shutdown(wait=True)
    assert _count(sqlite_engine, Study) == 11


def test_scheduled_update_logs_a_tracker_error_and_returns(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(sqlite_engine)
    with update_lock(sqlite_engine), caplog.at_level(logging.ERROR, "tracker.scheduler"):
        lines = scheduled_update(db=settings.db)
    assert lines[0].startswith("error: another update is running against ")
    assert "scheduled update failed: another update is running" in caplog.text


# ---------------------------------------------------------------- coalescing ----------------


def _store_overdue_job(engine: Engine, settings: Settings, out: Path, days: int) -> None:
    """Leave the job in the store as a scheduler would that stopped ``days`` nights ago."""
    scheduler = build_scheduler(settings, engine, RECORD, job_kwargs={"path": str(out)})
    scheduler.start(paused=True)
    scheduler.shutdown()
    # Rewrite the row rather than modify_job(): that wakes the paused scheduler's thread,
    # which races shutdown() in APScheduler 3.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    table = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE).jobs_t
    with engine.begin() as conn:
        state = pickle.loads(conn.execute(select(table.c.job_state)).scalar_one())
        state["next_run_time"] = past
        conn.execute(table.update().values(next_run_time=past.timestamp(),
                                           job_state=pickle.dumps(state)))


def test_missed_runs_coalesce_into_one(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "calls.txt"
    settings = settings_for(engine)  # the nightly default: three 02:30s missed below
    _store_overdue_job(engine, settings, out, days=3)
    before = next_run_time(settings, engine)
    assert before is not None and before < dt.datetime.now(dt.UTC) - dt.timedelta(days=2)

    scheduler = build_scheduler(settings, engine, RECORD, job_kwargs={"path": str(out)},
                                misfire_grace_time=4 * 86400)
    scheduler.start()
    try:
        assert wait_for(lambda: len(calls(out)) == 1 and calls(out)[0][1] is not None)
        time.sleep(0.5)  # no second catch-up run follows
        assert len(calls(out)) == 1
        after = next_run_time(settings, engine)
        assert after is not None and after > dt.datetime.now(dt.UTC)  # back on schedule
    finally:
        scheduler.shutdown(wait=True)


def test_a_run_later_than_the_grace_time_is_skipped(sqlite_engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "calls.txt"
    settings = settings_for(sqlite_engine)
    _store_overdue_job(sqlite_engine, settings, out, days=3)
    missed: list[JobExecutionEvent] = []
    scheduler = build_scheduler(settings, sqlite_engine, RECORD, job_kwargs={"path": str(out)},
                                misfire_grace_time=60)
    scheduler.add_listener(missed.append, EVENT_JOB_MISSED)
    scheduler.start()
    try:
        assert wait_for(lambda: len(missed) == 1)  # one event: the missed runs coalesced
    finally:
        scheduler.shutdown(wait=True)
    assert calls(out) == []


def test_a_changed_schedule_does_not_replay_the_old_one(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "calls.txt"
    _store_overdue_job(sqlite_engine, settings_for(sqlite_engine), out, days=3)
    settings = settings_for(sqlite_engine, schedule="0 4 * * *")
    scheduler = build_scheduler(settings, sqlite_engine, RECORD, job_kwargs={"path": str(out)})
    scheduler.start()
    try:
        nxt = next_run_time(settings, sqlite_engine)
        assert nxt is not None and nxt > dt.datetime.now(dt.UTC)
        assert nxt.astimezone(cron_trigger("0 4 * * *").timezone).hour == 4
        time.sleep(0.3)
    finally:
        scheduler.shutdown(wait=True)
    assert calls(out) == []


# ---------------------------------------------------------------- no overlap ----------------


def test_a_slow_job_never_overlaps_itself(sqlite_engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "calls.txt"
    scheduler = build_scheduler(
        settings_for(sqlite_engine), sqlite_engine, RECORD,
        job_kwargs={"path": str(out), "sleep": 0.5},
        trigger=IntervalTrigger(seconds=0.1, start_date=soon(0.1)),
    )
    scheduler.start()
    try:
        assert wait_for(lambda: len([c for c in calls(out) if c[1]]) >= 3, timeout=10)
    finally:
        scheduler.shutdown(wait=True)
    spans = calls(out)
    assert all(end is not None for _, end in spans)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and start >= end  # each run starts after the previous ended


# ---------------------------------------------------------------- foreground process --------

SCHEDULE = """
import sys, threading
from tracker.config import load_settings
from tracker.scheduler import run_scheduler
lock = threading.Lock()  # events come from the scheduler's threads too: whole lines only
def say(line):
    with lock:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
run_scheduler(load_settings({"db": sys.argv[1]}), on_event=say)
say("exited")
"""


def _start_scheduler(db: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", SCHEDULE, db], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> list[str]:
    """Lines of the child's stdout up to one starting with ``prefix``, within ``timeout``."""
    assert proc.stdout is not None
    lines: list[str] = []
    end = time.monotonic() + timeout
    while (line := read_line(proc.stdout, max(end - time.monotonic(), 0.01))) is not None:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    proc.kill()
    raise AssertionError(f"no {prefix!r} line; got {lines}; "
                         f"stderr: {proc.communicate(timeout=30)[1]}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_scheduler_cleanly(
    sqlite_engine: Engine, sig: signal.Signals
) -> None:
    db = str(sqlite_engine.url.database)
    proc = _start_scheduler(db)
    try:
        lines = _read_until(proc, "scheduler running")
        assert "'30 2 * * *'" in lines[-1] and "next update at " in lines[-1]
        # one scheduler per database
        with pytest.raises(LockedError, match="another `tracker schedule` is already running"):
            run_scheduler(settings_for(sqlite_engine))
        t0 = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - t0 < 5
    assert stdout.splitlines()[-2:] == ["scheduler stopped", "exited"]
    assert "Traceback" not in stderr
    assert next_run_time(settings_for(sqlite_engine), sqlite_engine) is not None


def test_sigterm_during_an_update_stops_after_the_current_page(
    sqlite_engine: Engine, studies_json: list[dict[str, Any]], tmp_path: Path
) -> None:
    """A scheduler started after a missed night catches up at once; SIGTERM during page 2 lets
    page 2 be stored, then the run is recorded as interrupted and the process exits 0."""
    settings = settings_for(sqlite_engine)
    _store_overdue_job(sqlite_engine, settings, tmp_path / "unused.txt", days=1)
    with ReplayServer(ctgov_studies=studies_json, timeout_sleep=1.0) as srv:
        srv.add_fault("ctgov", "timeout", on_request=2)  # page 2 takes a second
        env = _replay_env(None, srv)
        proc = _start_scheduler(str(sqlite_engine.url.database), env)
        try:
            _read_until(proc, "update started")
            assert wait_for(lambda: len(srv.requests_for("ctgov")) >= 2, timeout=10)
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped: the scheduler is shutting down" in stdout
    assert len(srv.requests_for("ctgov")) == 2  # no page after the signal
    assert _count(sqlite_engine, Study) == 8  # pages 1 and 2 (page size 4) are kept
    with sqlite_engine.connect() as conn:
        run = conn.execute(select(FetchRun.__table__)).one()
    assert run.outcome == "failed" and "interrupted" in run.error


# ---------------------------------------------------------------- helpers -------------------


def _replay_env(monkeypatch: pytest.MonkeyPatch | None, srv: ReplayServer) -> dict[str, str]:
    env = {
        "TRACKER_CTGOV_URL": srv.ctgov_url,
        "TRACKER_CTGOV_PAGE_SIZE": "4",  # 11 studies -> 3 pages
        "TRACKER_CTGOV_RATE_PER_SECOND": "100",
        **only_sources("ctgov"),
    }
    if monkeypatch is not None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    return env


def _count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()


def _runs(engine: Engine, outcome: str) -> int:
    table = FetchRun.__table__
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(table).where(table.c.outcome == outcome)
        ).scalar_one()
