"""``tracker schedule``: a foreground APScheduler 3 process that runs the update on a cron schedule.

One job, id ``nightly-update``, on ``settings.schedule`` (a crontab line, default ``30 2 * * *``,
in the machine's local time zone). Its job store is the ``apscheduler_jobs`` table in the
tracker's own database, so the next run time survives restarts. The job is configured with

* ``coalesce=True``: however many runs were missed, the job runs once to catch up;
* ``max_instances=1`` (and a one-thread executor): runs never overlap inside the scheduler; the
  update lock (``tracker.lock``) keeps it off a database another process is updating;
* ``misfire_grace_time`` (default: no limit): a run that is late - because the machine slept
  through 02:30, or the scheduler was not running - still runs once when it can.

Two details make "a machine that slept through 02:30 runs once when it wakes" true:

* APScheduler sleeps on a monotonic clock, which on Linux stops while the machine is
  suspended; ``TrackerScheduler`` therefore wakes at least every ``max_sleep`` seconds to look at
  the wall clock again.
* ``add_job(replace_existing=True)`` would recompute the next run time on every start and so
  forget a run missed while the scheduler was down; ``build_scheduler`` keeps the stored next run
  time when the stored job has the same trigger.

Stopping: SIGINT or SIGTERM asks the running update (if any) to stop after the page it is
storing; that page is committed, the run is recorded as failed ("interrupted before the window
was complete"), the watermark does not move, so the next run repeats the window. Then
``shutdown(wait=True)`` waits for that and the process exits with status 0.

The job row holds the database location (``db``, as a URL); if that is a PostgreSQL URL with a
password, the password is stored in the row too - prefer PGPASSWORD or ~/.pgpass.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine

from tracker.config import Settings, load_settings
from tracker.errors import ConfigError, TrackerError, one_line, redact, register_secret

log = logging.getLogger(__name__)

JOB_ID = "nightly-update"
JOBS_TABLE = "apscheduler_jobs"
MAX_SLEEP = 60.0  # seconds between wall-clock checks (see module docstring)
SCHEDULED_UPDATE_REF = "tracker.scheduler:scheduled_update"

EventFn = Callable[[str], None]


# ---------------------------------------------------------------- cron ----------------------

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 = 7 = Sunday
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def local_timezone() -> dt.tzinfo:
    """The machine's time zone (tzlocal, as APScheduler itself uses)."""
    from tzlocal import get_localzone

    return get_localzone()


def cron_trigger(expr: str, timezone: dt.tzinfo | None = None) -> CronTrigger:
    """A CronTrigger for a standard five-field crontab line (or @daily etc.), in local time.

    Weekday numbers follow crontab (0 and 7 = Sunday), not APScheduler 3's own numbering
    (0 = Monday; its ``from_crontab`` passes numbers through unchanged, see APScheduler issue
    #286). Raises ConfigError for anything that is not a valid crontab line, and when both
    day-of-month and day-of-week are restricted (cron runs on either, APScheduler on both).
    """
    line = _MACROS.get(expr.strip().lower(), expr)
    fields = line.split()
    hint = "use five fields, minute hour day month weekday, e.g. schedule = \"30 2 * * *\""
    if len(fields) != 5:
        raise ConfigError(f"schedule {expr!r} is not a cron expression: {len(fields)} fields; {hint}")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ConfigError(f"schedule {expr!r} restricts both day of month and day of week; cron "
                          "and APScheduler disagree on what that means, so restrict only one")
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=_crontab_weekdays(weekday),
                           timezone=timezone or local_timezone())
    except ValueError as exc:
        raise ConfigError(f"schedule {expr!r} is not a valid cron expression ({exc}); {hint}") \
            from None


def _crontab_weekdays(field: str) -> str:
    """Translate a crontab weekday field to an explicit list of APScheduler weekday names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        base, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"step must be positive in {part!r}")
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            lo, hi = _weekday(first), _weekday(last)
        else:
            lo = _weekday(base)
            hi = 7 if slash else lo  # "1/2" means 1-7/2 in crontab
        if lo > hi:
            raise ValueError(f"weekday range {base!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(token: str) -> int:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    if token[:3] in _WEEKDAYS and len(token) == 3:
        return _WEEKDAYS.index(token)
    raise ValueError(f"unknown weekday {token!r} (0-7 or sun..sat)")


# ---------------------------------------------------------------- scheduler ------------------


class TrackerScheduler(BackgroundScheduler):
    """A BackgroundScheduler that re-reads the wall clock at least every ``max_sleep`` seconds.

    APScheduler 3 sleeps on a monotonic clock, which stands still while the machine is
    suspended; without the cap a run due during a suspend would wait out the whole pre-suspend
    sleep after waking.
    """

    def __init__(self, *, max_sleep: float = MAX_SLEEP, **options: Any) -> None:
        self.max_sleep = max_sleep
        super().__init__(**options)

    def _process_jobs(self) -> float:
        wait = super()._process_jobs()
        return self.max_sleep if wait is None else min(wait, self.max_sleep)


def build_scheduler(
    settings: Settings,
    engine: Engine,
    job: Callable[..., Any] | str = SCHEDULED_UPDATE_REF,
    *,
    job_kwargs: Mapping[str, Any] | None = None,
    trigger: BaseTrigger | None = None,
    misfire_grace_time: int | None = None,
    max_sleep: float = MAX_SLEEP,
) -> TrackerScheduler:
    """A scheduler (not started) holding the update job, its store in ``engine``'s database.

    ``job`` must be importable by reference (a module-level function or a "module:name"
    string), because the job store pickles the job; its keyword arguments default to the
    settings' database and config file, which ``scheduled_update`` takes. ``trigger`` replaces
    the cron trigger built from ``settings.schedule`` (tests use a near-future one).
    ``misfire_grace_time`` is in seconds; None runs a late job however late it is (once,
    thanks to coalescing). Raises ConfigError for an invalid ``settings.schedule``.
    """
    tz = local_timezone()
    if trigger is None:
        trigger = cron_trigger(settings.schedule, tz)
    if job_kwargs is None:
        # db_url, not db: a relative SQLite path would depend on the working directory.
        job_kwargs = {"db": settings.db_url, "config": settings.config_file}
    store = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)
    scheduler = TrackerScheduler(
        max_sleep=max_sleep,
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": misfire_grace_time},
        timezone=tz,
    )
    extra: dict[str, Any] = {}
    stored = _stored_job_state(engine)
    if stored and stored.get("next_run_time") and repr(stored.get("trigger")) == repr(trigger):
        # Same schedule as last time: keep the stored next run time, so a run missed while
        # the scheduler was down still happens (once) on start.
        extra["next_run_time"] = stored["next_run_time"]
    scheduler.add_job(job, trigger, id=JOB_ID, name="tracker update", kwargs=dict(job_kwargs),
                      replace_existing=True, **extra)
    return scheduler


def _stored_job_state(engine: Engine) -> dict[str, Any] | None:
    """The pickled state of the stored update job, or None if there is none (or it is unreadable)."""
    if not inspect(engine).has_table(JOBS_TABLE):
        return None
    table = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE).jobs_t
    with engine.connect() as conn:
        blob = conn.execute(select(table.c.job_state).where(table.c.id == JOB_ID)).scalar()
    if blob is None:
        return None
    try:
        state = pickle.loads(blob)  # our own row in our own database
    except Exception:  # noqa: BLE001 - an old, unloadable job is simply replaced
        log.warning("the stored scheduler job could not be read; it will be replaced")
        return None
    return state if isinstance(state, dict) else None


def next_run_time(settings: Settings, engine: Engine) -> dt.datetime | None:
    """When the scheduler will next run the update (local time), read from its job store.

    None when no scheduler has ever stored the job in this database. The time may lie in the
    past when no scheduler is running; it then runs as soon as one starts. Does not start a
    scheduler or create its table. ``settings`` is unused today (the store is authoritative).
    """
    del settings
    if not inspect(engine).has_table(JOBS_TABLE):
        return None
    table = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE).jobs_t
    with engine.connect() as conn:
        stamp = conn.execute(
            select(table.c.next_run_time).where(table.c.id == JOB_ID)
        ).scalar()
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp, dt.UTC).astimezone(local_timezone())


# ---------------------------------------------------------------- the job -------------------

# Set when the process was asked to stop; the running update checks it after each page. A
# module-level flag because the job is called by reference from the job store and cannot be
# handed an object.
_stop_requested = threading.Event()


class StopRequested(KeyboardInterrupt):
    """Raised inside a scheduled update after a page, when the scheduler is stopping.

    A KeyboardInterrupt so the pipeline records the run as interrupted, exactly as for Ctrl-C.
    """


def request_stop() -> None:
    """Ask a running scheduled update to stop after the page it is storing."""
    _stop_requested.set()


def _stop_checker(source: str) -> Callable[[int, int | None], None]:
    if _stop_requested.is_set():
        raise StopRequested(f"stopped before {source}")

    def check(done: int, total: int | None) -> None:
        if _stop_requested.is_set():
            raise StopRequested(f"stopped after a page of {source}")

    return check


def scheduled_update(*, db: str, config: str | None = None) -> list[str]:
    """The scheduler's job: ``tracker update`` for every enabled source, under the update lock.

    Loads settings afresh (so config edits apply to the next run), with ``db`` in place of the
    configured database and ``config`` as the config file. Returns the summary lines. A
    TrackerError (another update holds the lock, a bad config, a failed migration) is logged and
    returned as an ``error:`` line; the run log holds each source's failure. Never raises a
    TrackerError, so the scheduler keeps running.
    """
    from db.engine import make_engine
    from db.migrate import ensure_schema
    from tracker.lock import update_lock
    from tracker.update import run_update

    try:
        env = dict(os.environ)
        if config:
            env["TRACKER_CONFIG"] = config
        settings = load_settings({"db": db}, env=env)
        register_secret(settings.pubmed_api_key)
        try:
            engine = make_engine(settings.db_url)
        except ValueError as exc:
            raise ConfigError(f"scheduled update: {exc}") from None
        try:
            with update_lock(engine, wait=settings.lock_wait):
                ensure_schema(engine)
                summaries = run_update(settings, engine, progress=_stop_checker)
        finally:
            engine.dispose()
    except TrackerError as exc:
        log.error("scheduled update failed: %s", one_line(str(exc)))
        return [f"error: {one_line(str(exc))}"]
    except StopRequested:
        log.warning("scheduled update stopped: the scheduler is shutting down")
        return ["stopped: the scheduler is shutting down; the next run repeats the window"]
    lines = [s.line() for s in summaries]
    lines += [f"error: {s.error}" for s in summaries if s.error]
    for line in lines:
        log.info("%s", line)
    return lines


# ---------------------------------------------------------------- foreground run ------------


def describe_event(event: JobEvent) -> str | None:
    """A one-line, human-readable account of a job event (None for events not worth a line)."""
    when = _local(getattr(event, "scheduled_run_time", None))
    if isinstance(event, JobSubmissionEvent):
        return f"update started (due {_local(event.scheduled_run_times[-1])})"
    if not isinstance(event, JobExecutionEvent):
        return None
    if event.code == EVENT_JOB_EXECUTED:
        lines = event.retval if isinstance(event.retval, list) else []
        return "update finished" + "".join(f"\n  {line}" for line in lines)
    if event.code == EVENT_JOB_ERROR:
        return (f"update crashed (due {when}): {redact(repr(event.exception))}; see the log "
                "for the traceback")
    if event.code == EVENT_JOB_MISSED:
        return f"update due {when} skipped: it was later than the misfire grace time"
    if event.code == EVENT_JOB_MAX_INSTANCES:
        return f"update due {when} skipped: the previous one is still running"
    return None


def _local(value: dt.datetime | None) -> str:
    if value is None:
        return "?"
    return value.astimezone(local_timezone()).strftime("%Y-%m-%d %H:%M:%S %Z")


@contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (and ask a running update to stop) instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        request_stop()
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_scheduler(
    settings: Settings,
    *,
    engine: Engine | None = None,
    on_event: EventFn | None = None,
    stop: threading.Event | None = None,
    misfire_grace_time: int | None = None,
) -> None:
    """Run the scheduler in the foreground until SIGINT/SIGTERM (or ``stop`` is set).

    Holds the database's scheduler lock for its lifetime (a second ``tracker schedule`` on the
    same database gets LockedError). On a stop signal the running update, if any, finishes
    the page it is storing and stops (``shutdown(wait=True)`` waits for exactly that); then
    this returns normally. ``on_event`` receives one human-readable line per event (start,
    each run, stop); only the CLI should print them. Raises ConfigError for a bad schedule,
    LockedError when another scheduler runs, StorageError for a database it cannot open.
    """
    from db.engine import make_engine
    from db.migrate import ensure_schema
    from tracker.lock import scheduler_lock

    emit = on_event or (lambda line: None)
    stop = stop or threading.Event()
    _stop_requested.clear()
    own_engine = engine is None
    if engine is None:
        try:
            engine = make_engine(settings.db_url)
        except ValueError as exc:
            raise ConfigError(f"db: {exc}") from None
    try:
        with scheduler_lock(engine), _signals_set(stop):
            ensure_schema(engine)
            scheduler = build_scheduler(settings, engine, misfire_grace_time=misfire_grace_time)

            def listener(event: JobEvent) -> None:
                line = describe_event(event)
                if line:
                    nxt = next_run_time(settings, engine)
                    emit(redact(line if event.code == EVENT_JOB_SUBMITTED
                                else f"{line}\nnext update at {_local(nxt)}"))

            scheduler.add_listener(listener, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED
                                   | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
            scheduler.start()
            try:
                emit(f"scheduler running: {settings.schedule!r} ({local_timezone()}); next "
                     f"update at {_local(next_run_time(settings, engine))}; "
                     "Ctrl-C or SIGTERM stops it")
                while not stop.wait(1.0):  # a timeout keeps signal handling prompt
                    pass
                emit("stopping: a running update stops after its current page")
            finally:
                request_stop()
                scheduler.shutdown(wait=True)
            emit("scheduler stopped")
    finally:
        _stop_requested.clear()
        if own_engine:
            engine.dispose()


__all__ = [
    "JOBS_TABLE",
    "JOB_ID",
    "StopRequested",
    "TrackerScheduler",
    "build_scheduler",
    "cron_trigger",
    "describe_event",
    "next_run_time",
    "request_stop",
    "run_scheduler",
    "scheduled_update",
]
