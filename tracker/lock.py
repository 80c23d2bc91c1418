"""One update per database at a time, across processes and machines.

``update_lock(engine)`` is held for the whole of an update, whoever started it (``tracker
update``, the scheduler, cron or systemd). ``scheduler_lock(engine)`` keeps a second
``tracker schedule`` off a database that already has one (APScheduler 3 must not share a job
store between processes).

How each backend locks:

* SQLite file: an exclusive ``flock`` on ``<dbfile>.lock`` next to the database (``.scheduler.lock``
  for the scheduler). The kernel drops the lock when the holder's process ends, however it ends
  (even SIGKILL), so a crash never leaves a stale lock. The holder writes its pid, host and start
  time into the file so the refusal can name it. The file itself is left in place on purpose:
  deleting a lock file races with the next process opening it. Like SQLite itself, this needs a
  local filesystem; flock over NFS is not reliable.
* SQLite ``:memory:``: a process-local lock (such a database is private to the process anyway).
* PostgreSQL: a session-level ``pg_try_advisory_lock`` on a dedicated autocommit connection held
  for the lock's lifetime. Advisory locks are per database, so two databases on one server do not
  block each other; the server releases the lock when the session ends, so a killed holder does
  not block either. The holder's pid/host/start are put in ``application_name`` so the refusal
  can name it (via ``pg_stat_activity``, best effort).

Acquisition never blocks in the database: it tries, and retries every ``POLL_SECONDS`` until
``wait`` seconds have passed, then raises LockedError.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from tracker.errors import ConfigError, LockedError, StorageError

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class _Purpose:
    """What a lock guards: its name, its file suffix and its PostgreSQL advisory key."""

    name: str
    suffix: str
    refusal: Callable[[str, str, float], str]  # (db, holder, waited) -> message

    @property
    def key(self) -> int:
        """A stable signed 64-bit advisory-lock key derived from the purpose's name."""
        digest = hashlib.sha256(f"msc-tracker-{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


def _update_refusal(db: str, holder: str, waited: float) -> str:
    if waited > 0:
        return (f"another update is still running against {db} ({holder}) after waiting "
                f"{waited:g} s; it will finish on its own — wait longer with --wait SECONDS / "
                "lock_wait in config, or try again later")
    return (f"another update is running against {db} ({holder}); it will finish on its own — "
            "wait, or pass --wait SECONDS / set lock_wait in config")


def _scheduler_refusal(db: str, holder: str, waited: float) -> str:
    return (f"another `tracker schedule` is already running against {db} ({holder}); only one "
            "scheduler per database may run — stop that one first")


UPDATE = _Purpose("update", ".lock", _update_refusal)
SCHEDULER = _Purpose("scheduler", ".scheduler.lock", _scheduler_refusal)


@contextmanager
def update_lock(engine: Engine, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the database's update lock for the ``with`` block.

    Waits up to ``wait`` seconds for another holder; raises LockedError naming the holder (pid,
    host, start time) if it is still held then, StorageError if the lock cannot be taken at all
    (e.g. an unwritable folder next to the SQLite file).
    """
    with _db_lock(engine, UPDATE, wait=wait):
        yield


@contextmanager
def scheduler_lock(engine: Engine, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the database's scheduler lock: one ``tracker schedule`` per database.

    Raises LockedError if another scheduler holds it after ``wait`` seconds.
    """
    with _db_lock(engine, SCHEDULER, wait=wait):
        yield


def lock_path(engine: Engine, purpose: _Purpose = UPDATE) -> str | None:
    """The lock file of a SQLite file database, or None (in-memory SQLite, other backends)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + purpose.suffix


def _db_lock(
    engine: Engine, purpose: _Purpose, *, wait: float
) -> AbstractContextManager[None]:
    wait = max(0.0, float(wait))
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return _pg_lock(engine, purpose, wait)
    if dialect == "sqlite":
        path = lock_path(engine, purpose)
        if path is None:
            return _local_lock(engine, purpose, wait)
        return _file_lock(path, engine, purpose, wait)
    raise ConfigError(f"cannot lock a {dialect} database; use SQLite or PostgreSQL")


# ---------------------------------------------------------------- holder description --------


def _holder_record() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _describe(pid: object, host: object, started: object) -> str:
    if pid is None:
        return "holder unknown"
    where = f"pid {pid}"
    if host and not socket.gethostname().startswith(str(host)):  # PG may have cut the name
        where += f" on {host}"
    if started:
        when = str(started).replace("T", " ")
        where += f", started at {when}"
    return where


def _display(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return engine.url.database or ":memory:"
    return engine.url.render_as_string(hide_password=True)


# ---------------------------------------------------------------- SQLite file ---------------


@contextmanager
def _file_lock(path: str, engine: Engine, purpose: _Purpose, wait: float) -> Iterator[None]:
    import fcntl  # POSIX only; the tracker's deployments (cron, systemd) are too

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create the lock file {path}: {exc.strerror}; the folder "
                           "holding the database must be writable") from None
    locked = False
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holder = _read_file_holder(fd)
                    raise LockedError(purpose.refusal(_display(engine), holder, wait)) from None
                time.sleep(min(POLL_SECONDS, remaining))
        data = json.dumps(_holder_record()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        yield
    finally:
        if locked:
            try:
                os.ftruncate(fd, 0)  # no stale holder info for the next reader
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_file_holder(fd: int) -> str:
    """Best effort: the holder may be writing, or may have written nothing yet."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not isinstance(info, dict):
        return "holder unknown"
    return _describe(info.get("pid"), info.get("host"), info.get("started"))


# ---------------------------------------------------------------- in-process ----------------

_local_locks: dict[tuple[str, int], threading.Lock] = {}
_local_guard = threading.Lock()


@contextmanager
def _local_lock(engine: Engine, purpose: _Purpose, wait: float) -> Iterator[None]:
    with _local_guard:
        lock = _local_locks.setdefault((purpose.name, id(engine)), threading.Lock())
    acquired = lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False)
    if not acquired:
        holder = _describe(os.getpid(), None, None) + " (this process)"
        raise LockedError(purpose.refusal(_display(engine), holder, wait))
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------- PostgreSQL ----------------

_APP_NAME = re.compile(r"^msc-tracker (\w+) (\d+) (\S+) ?(.*)$")


@contextmanager
def _pg_lock(engine: Engine, purpose: _Purpose, wait: float) -> Iterator[None]:
    conn = engine.connect()
    # Autocommit: the session lock must not keep a transaction open for hours.
    conn.execution_options(isolation_level="AUTOCOMMIT")
    locked = False
    try:
        deadline = time.monotonic() + wait
        while True:
            if conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": purpose.key}):
                locked = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = _read_pg_holder(conn, purpose)
                raise LockedError(purpose.refusal(_display(engine), holder, wait))
            time.sleep(min(POLL_SECONDS, remaining))
        info = _holder_record()
        # application_name is cut at 63 bytes: host goes last so it is what gets truncated.
        name = f"msc-tracker {purpose.name} {info['pid']} {info['started']} {info['host']}"
        conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": name[:63]})
        yield
    finally:
        _pg_release(conn, purpose, locked)


def _pg_release(conn: Connection, purpose: _Purpose, locked: bool) -> None:
    try:
        if locked:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": purpose.key})
            conn.execute(text("RESET application_name"))
    except SQLAlchemyError:
        # The session is broken (server restarted, network gone): the server has dropped the
        # lock with it. Do not return such a connection to the pool.
        conn.invalidate()
    finally:
        conn.close()


def _read_pg_holder(conn: Connection, purpose: _Purpose) -> str:
    key = purpose.key & 0xFFFFFFFFFFFFFFFF
    try:
        row = conn.execute(
            text(
                "SELECT a.pid, a.application_name, a.backend_start, a.client_hostname, "
                "host(a.client_addr) AS client_addr "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
            ),
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
        ).first()
    except SQLAlchemyError:
        return "holder unknown"
    if row is None:
        return "holder unknown"
    match = _APP_NAME.match(row.application_name or "")
    if match:
        return _describe(match.group(2), match.group(4), match.group(3))
    started = row.backend_start.isoformat(timespec="seconds") if row.backend_start else None
    host = row.client_hostname or row.client_addr
    return f"server backend pid {row.pid}" + (f" from {host}" if host else "") + (
        f", connected at {started.replace('T', ' ')}" if started else "")


__all__ = ["POLL_SECONDS", "lock_path", "scheduler_lock", "update_lock"]
