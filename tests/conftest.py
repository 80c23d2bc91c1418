"""Shared fixtures: a clean environment, recorded responses, real SQLite files and a real
PostgreSQL server.

The PostgreSQL server is started once per test session from the machine's PostgreSQL binaries
(``.ci/run`` installs them from Debian packages) in a temporary directory, listening on a Unix
socket only. Set ``TRACKER_TEST_PG_URL`` to use an existing server instead.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
sys.path.insert(0, str(TESTS))  # replay_server and helpers import as top-level modules

from db.engine import make_engine
from db.migrate import upgrade

FAULT_TABLE = pytest.StashKey[list[str]]()

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(sock: socket.socket, address: Any) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else str(address)
    return host in ("127.0.0.1", "::1", "localhost") or str(host).startswith("127.")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _allowed(self, address):
        raise OSError(f"tests may not reach the network (tried {address!r}); use the replay server")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _allowed(self, address):
        raise OSError(f"tests may not reach the network (tried {address!r}); use the replay server")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def no_network() -> Iterator[None]:
    """Every test runs with outbound connections limited to loopback and Unix sockets.

    Registry URLs appear in tests only as data (record ``url`` fields) or behind
    httpx.MockTransport; this guard makes any real attempt fail loudly instead.
    """
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the fault-injection table (tests/test_faults.py) at the end of the run."""
    lines = config.stash.get(FAULT_TABLE, None)
    if lines:
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TRACKER_*, NCBI or proxy variables leak in; config and data dirs point at tmp."""
    for key in list(os.environ):
        if key.startswith(("TRACKER_", "NCBI_")) or key.lower() in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy"
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def load_json(path: Path) -> Any:
    """Read a JSON fixture."""
    with path.open("rb") as fh:
        return json.load(fh)


def ctgov_studies() -> list[dict[str, Any]]:
    """Every recorded CT.gov v2 study in tests/fixtures/ctgov, in file-name order."""
    out: list[dict[str, Any]] = []
    for name in sorted(glob.glob(str(FIXTURES / "ctgov" / "*.json"))):
        data = load_json(Path(name))
        out += data.get("studies", [data])
    return out


@pytest.fixture
def studies_json() -> list[dict[str, Any]]:
    """The recorded real CT.gov studies (11)."""
    return ctgov_studies()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A real SQLite file at the current schema."""
    engine = make_engine(f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    upgrade(engine)
    yield engine
    engine.dispose()


# ---------------------------------------------------------------- PostgreSQL ----------------


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server for this test session (started here unless given)."""
    given = os.environ.get("TRACKER_TEST_PG_URL")
    if given:
        yield given
        return
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("PostgreSQL binaries not found: install the 'postgresql' package "
                    "(.ci/run does) or set TRACKER_TEST_PG_URL")
    root = Path(tempfile.mkdtemp(prefix="tracker-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "tracker",
                    "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(root / "log"), "-o",
                    f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off",
                    "start"], check=True, capture_output=True)
    try:
        subprocess.run([*prefix, str(bindir / "createdb"), "-h", str(sock), "-p", str(port),
                        "-U", "tracker", "tracker_test"], check=True, capture_output=True)
        yield f"postgresql+psycopg://tracker@/tracker_test?host={sock}&port={port}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_engine(pg_server: str) -> Iterator[Engine]:
    """A fresh schema in the session's PostgreSQL database (tables dropped afterwards)."""
    from sqlalchemy import text

    engine = make_engine(pg_server)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on a real SQLite file and on a real PostgreSQL server."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def read_line(stream: Any, timeout: float) -> str | None:
    """One line from a child's pipe within ``timeout`` seconds (None at end of file).

    Reads the file descriptor a byte at a time behind ``select``, so nothing past the line is
    consumed (a later ``communicate()`` still gets the rest) and a silent child fails the test
    at the deadline instead of hanging it."""
    import select

    fd = stream.fileno()
    buf = bytearray()
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete line within {timeout:g} s; got {bytes(buf)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        byte = os.read(fd, 1)
        if not byte:
            return buf.decode() if buf else None
        if byte == b"\n":
            return buf.decode()
        buf += byte
