"""Readers while a writer writes: how often a read fails, and how long it waits (SQLite WAL).

    python benchmarks/bench_readers.py                 # 2,000 studies in pages of 100
    python benchmarks/bench_readers.py -n 5000 --readers 4

A real ``tracker update`` (the console script, a separate process) loads ``-n`` studies cloned
from the recorded CT.gov records (tests/fixtures/ctgov) from the local replay server, one
transaction per page; meanwhile ``--readers`` threads of this process each open their own
connection and run the ``tracker studies`` query (``tracker.reports.query_studies``) and the
``tracker report`` query in a loop until the update ends. Printed: reads done, reads that
failed (the bar is 0: WAL lets readers read the last committed state while the writer
writes, and the busy timeout covers the moments SQLite checkpoints), and read latency
percentiles beside the same reads on an idle database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from replay_server import ReplayServer
from test_crash import many_studies

from db.engine import make_engine
from tests.conftest import ctgov_studies
from tracker.reports import build_report, make_filter, query_studies

TRACKER = Path(sys.executable).parent / "tracker"


def _reader(url: str, stop: threading.Event, times: list[float], errors: list[str]) -> None:
    engine = make_engine(url)
    flt = make_filter(include_irrelevant=True)
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            with engine.connect() as conn:
                query_studies(conn, flt)
                build_report(conn, flt)
        except Exception as exc:  # noqa: BLE001 - every failure is the measurement
            errors.append(f"{type(exc).__name__}: {exc}")
        times.append(time.perf_counter() - t0)
    engine.dispose()


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="studies the update loads")
    ap.add_argument("--page", type=int, default=100, help="studies per page (one transaction)")
    ap.add_argument("--readers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-readers-"))
    db = tmp / "readers.sqlite"
    url = f"sqlite:///{db}"
    studies = many_studies(ctgov_studies(), args.n)
    with ReplayServer(ctgov_studies=studies) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env.update(TRACKER_DB=str(db), TRACKER_CTGOV_URL=srv.ctgov_url,
                   TRACKER_CTGOV_PAGE_SIZE=str(args.page), TRACKER_CTGOV_RATE_PER_SECOND="20",
                   TRACKER_PUBMED_ENABLED="false", TRACKER_EUROPEPMC_ENABLED="false",
                   XDG_CONFIG_HOME=str(tmp / "cfg"))
        subprocess.run([str(TRACKER), "db", "upgrade"], env=env, check=True,
                       capture_output=True, timeout=120)
        stop = threading.Event()
        busy: list[float] = []
        errors: list[str] = []
        threads = [threading.Thread(target=_reader, args=(url, stop, busy, errors))
                   for _ in range(args.readers)]
        writer = subprocess.Popen([str(TRACKER), "update", "--source", "ctgov", "--no-progress"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        for t in threads:
            t.start()
        try:
            out, err = writer.communicate(timeout=1800)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            if writer.poll() is None:
                writer.kill()
        if writer.returncode != 0:
            print(f"the update failed: {err.strip()}")
            return 1
    idle: list[float] = []
    idle_errors: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=_reader, args=(url, stop, idle, idle_errors))
    t.start()
    time.sleep(5)
    stop.set()
    t.join(timeout=60)
    print(f"update: {out.strip()}")
    print(f"readers: {args.readers} threads, {len(busy)} reads during the update, "
          f"{len(errors)} failed" + (f" (first: {errors[0]})" if errors else ""))
    for name, values in (("during the update", busy), ("idle database", idle)):
        print(f"  {name:18} p50 {_pct(values, 0.5):7.1f} ms  p95 {_pct(values, 0.95):7.1f} ms"
              f"  max {max(values) * 1000:7.1f} ms  mean {statistics.mean(values) * 1000:.1f} ms")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
