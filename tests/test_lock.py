"""The update lock, across real processes, on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_line
from sqlalchemy.engine import Engine

from db.engine import make_engine
from tracker.errors import LockedError
from tracker.lock import lock_path, scheduler_lock, update_lock

ROOT = Path(__file__).parent.parent

# Takes the lock, says "ready", then holds it for argv[2] seconds (or until killed).
HOLDER = """
import sys, time
from db.engine import make_engine
from tracker.lock import update_lock
engine = make_engine(sys.argv[1])
with update_lock(engine):
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


class Holder:
    """Another process holding the update lock."""

    def __init__(self, engine: Engine, hold: float) -> None:
        url = engine.url.render_as_string(hide_password=False)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, url, str(hold)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, 60)
        if (line or "").strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"holder did not start: {line!r} {self.proc.stderr.read()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def holder_factory() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for h in started:
        h.stop()


def hold(started: list[Holder], engine: Engine, seconds: float = 60.0) -> Holder:
    h = Holder(engine, seconds)
    started.append(h)
    return h


def test_second_process_is_refused_with_a_clear_message(
    engine: Engine, holder_factory: list[Holder]
) -> None:
    h = hold(holder_factory, engine)
    t0 = time.monotonic()
    with pytest.raises(LockedError) as info, update_lock(engine):
        pass
    assert time.monotonic() - t0 < 2  # wait=0 refuses at once
    msg = str(info.value)
    assert msg.startswith("another update is running against ")
    assert f"pid {h.pid}, started at " in msg
    assert "--wait SECONDS" in msg and "lock_wait" in msg
    assert "password" not in msg


def test_waiting_acquires_once_the_holder_finishes(
    engine: Engine, holder_factory: list[Holder]
) -> None:
    h = hold(holder_factory, engine, seconds=1.0)
    t0 = time.monotonic()
    with update_lock(engine, wait=20):
        waited = time.monotonic() - t0
        assert h.proc.poll() is not None or h.proc.wait(timeout=5) == 0
    assert 0.3 < waited < 15


def test_waiting_gives_up_after_wait_seconds(
    engine: Engine, holder_factory: list[Holder]
) -> None:
    h = hold(holder_factory, engine)
    t0 = time.monotonic()
    with pytest.raises(LockedError, match=r"after waiting 0\.6 s") as info, \
            update_lock(engine, wait=0.6):
        pass
    assert 0.5 < time.monotonic() - t0 < 3
    assert f"pid {h.pid}" in str(info.value)


def test_a_killed_holder_does_not_block(engine: Engine, holder_factory: list[Holder]) -> None:
    h = hold(holder_factory, engine)
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait(timeout=10)
    t0 = time.monotonic()
    # PostgreSQL ends the dead client's session asynchronously; allow it a moment.
    with update_lock(engine, wait=0 if engine.dialect.name == "sqlite" else 10):
        pass
    assert time.monotonic() - t0 < 5


def test_lock_is_reusable_and_exclusive_within_a_process(engine: Engine) -> None:
    with update_lock(engine), pytest.raises(LockedError), update_lock(engine):
        pass
    with update_lock(engine):  # released on exit, also after a refusal
        pass


def test_update_and_scheduler_locks_are_independent(engine: Engine) -> None:
    refused = pytest.raises(LockedError, match="another `tracker schedule` is already running")
    with scheduler_lock(engine), update_lock(engine), refused, scheduler_lock(engine):
        pass


def test_lock_released_when_the_block_raises(engine: Engine) -> None:
    with pytest.raises(RuntimeError), update_lock(engine):
        raise RuntimeError("boom")
    with update_lock(engine):
        pass


def test_sqlite_lock_file_names_the_holder_while_held(sqlite_engine: Engine) -> None:
    path = lock_path(sqlite_engine)
    assert path == str(sqlite_engine.url.database) + ".lock"
    with update_lock(sqlite_engine):
        info = json.loads(Path(path).read_text())
        assert info["pid"] == os.getpid()
        assert info["started"]
    assert Path(path).read_text() == ""  # no stale holder after release


def test_memory_database_uses_a_process_local_lock() -> None:
    engine = make_engine("sqlite://")
    assert lock_path(engine) is None
    with update_lock(engine), pytest.raises(LockedError, match="this process"), \
            update_lock(engine):
        pass
    with update_lock(engine, wait=0.1):
        pass
    other = make_engine("sqlite://")  # another in-memory database: not blocked
    with update_lock(engine), update_lock(other):
        pass
