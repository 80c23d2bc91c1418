"""Full-text search benchmark: a two-term ``--query`` with a label filter on 200,000 papers
and 5,000 studies, in-process and as whole processes, with the index's build time and disk
cost beside the database's size.

    python benchmarks/bench_search.py                 # reuse (or build) bench_reading's database
    python benchmarks/bench_search.py --no-rebuild-index --repeat 3
    python benchmarks/bench_search.py --studies 500 --papers 5000   # a quick look

The database is ``benchmarks/bench_reading.py``'s (clones of the real recorded CT.gov and
PubMed records, built through the update's own parse/label/upsert calls and cached in
benchmarks/out; see its docstring): the upserts fill the index as ``tracker update`` does.
The index is then dropped and built again from the stored records (``db.search.rebuild``,
what migration 0006 does for an existing database), timed; its size is the FTS5 tables'
pages (SQLite's dbstat), beside the file's size.

Queries (the terms occur in the real MSC registrations the paper clones carry, so each
matches thousands of records; ``--condition osteoarthritis`` is the label filter):

* in-process, best of ``--repeat``: ``query_papers`` / ``query_studies`` / ``search_all``
  with the query, the filter and the command's limit, plus rendering (the bar: 200 ms);
* whole processes of the real ``tracker`` entry point (started as bench_reading starts
  them), best wall time (the bar: 1 s).

Exit 1 if a bar is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import bench_reading as reading

IN_PROCESS_BAR_S = 0.200
PROCESS_BAR_S = 1.0
QUERY = "umbilical cartilage"
LABEL = ["--condition", "osteoarthritis"]


def commands() -> list[reading.Command]:
    return [
        reading.Command(f'search "{QUERY}" --condition osteoarthritis',
                        ["search", QUERY, *LABEL], "search.txt"),
        reading.Command(f'papers --query "{QUERY}" --condition osteoarthritis --limit 50',
                        ["papers", "--query", QUERY, *LABEL, "--limit", "50"],
                        "search_papers.txt"),
        reading.Command(f'studies --query "{QUERY}" --condition osteoarthritis',
                        ["studies", "--query", QUERY, *LABEL], "search_studies.txt"),
        reading.Command(f'papers --query "{QUERY}" --condition osteoarthritis -f csv '
                        "(every match)", ["papers", "--query", QUERY, *LABEL, "-f", "csv"],
                        "search_papers_all.csv", reference=True),
        reading.Command("--version", ["--version"], "version.txt", reference=True),
    ]


def rebuild_index(db: Path) -> tuple[float, int | None, tuple[int, int]]:
    """Drop and build the index again; (seconds, bytes on disk, (studies, papers))."""
    from db import search
    from db.engine import make_engine

    engine = make_engine(f"sqlite:///{db}")
    try:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            search.drop_index(conn)
            search.create_index(conn)
            counts = search.rebuild(conn)
            conn.exec_driver_sql(f"INSERT INTO {search.STUDY_FTS}({search.STUDY_FTS}) "
                                 "VALUES ('optimize')")
            conn.exec_driver_sql(f"INSERT INTO {search.PAPER_FTS}({search.PAPER_FTS}) "
                                 "VALUES ('optimize')")
        seconds = time.perf_counter() - t0
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = search.index_bytes(conn)
        return seconds, size, counts
    finally:
        engine.dispose()


def index_size(db: Path) -> int | None:
    from db import search
    from db.engine import make_engine

    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return search.index_bytes(conn)
    finally:
        engine.dispose()


def in_process(db: Path, repeat: int) -> list[dict[str, Any]]:
    """Best-of-``repeat`` times of the query functions and their rendering."""
    from db.engine import make_engine
    from tracker.render import render_papers, render_studies
    from tracker.reports import (
        LIST_COLUMNS,
        PAPER_COLUMNS,
        PaperFilter,
        make_filter,
        query_papers,
        query_studies,
    )
    from tracker.search import render_search, search_all

    engine = make_engine(f"sqlite:///{db}")
    cases = [
        ("search_all + render (limit 20)", lambda c: render_search(search_all(
            c, make_filter(query=QUERY, conditions=["osteoarthritis"], limit=20)), "table")),
        ("query_papers + render (limit 50)", lambda c: render_papers(query_papers(
            c, PaperFilter(labels=make_filter(query=QUERY, conditions=["osteoarthritis"],
                                              limit=50))), "table", PAPER_COLUMNS)),
        ("query_studies + render (every match)", lambda c: render_studies(query_studies(
            c, make_filter(query=QUERY, conditions=["osteoarthritis"])), "table",
            LIST_COLUMNS)),
    ]
    out = []
    try:
        with engine.connect() as conn:
            matched = {
                "papers": len(query_papers(conn, PaperFilter(labels=make_filter(
                    query=QUERY, conditions=["osteoarthritis"])))),
                "papers_any_label": len(query_papers(conn, PaperFilter(labels=make_filter(
                    query=QUERY, include_irrelevant=True)))),
                "studies": len(query_studies(conn, make_filter(
                    query=QUERY, conditions=["osteoarthritis"]))),
            }
            print(f"  matches of {QUERY!r}: {matched['papers_any_label']:,} papers in all, "
                  f"{matched['papers']:,} MSC osteoarthritis papers, {matched['studies']:,} "
                  "MSC osteoarthritis studies")
            for name, fn in cases:
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    fn(conn)
                    times.append(time.perf_counter() - t0)
                best = min(times)
                out.append({"name": name, "best": best, "ok": best < IN_PROCESS_BAR_S})
                print(f"  {name:40s} {best * 1000:7.1f} ms  (runs: "
                      f"{', '.join(f'{t * 1000:.0f}' for t in times)} ms)  "
                      f"{'PASS' if best < IN_PROCESS_BAR_S else 'FAIL'}")
    finally:
        engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=reading.Params.studies)
    ap.add_argument("--papers", type=int, default=reading.Params.papers)
    ap.add_argument("--rebuild", action="store_true", help="build the database again")
    ap.add_argument("--no-rebuild-index", action="store_true",
                    help="do not time a rebuild of the index (report its size only)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (best kept)")
    ap.add_argument("--tracker", metavar="COMMAND",
                    help="run this instead of .venv/bin/tracker")
    args = ap.parse_args()
    p = reading.Params(args.studies, args.papers, built_on=dt.date.today().isoformat())
    t0 = time.perf_counter()
    db, meta = reading.ensure_db(p, args.rebuild)
    ready = time.perf_counter() - t0
    how = (f"reused (schema brought current in {ready:.0f} s)" if meta["reused"]
           else f"built in {meta['seconds']:.0f} s")
    c = meta["counts"]
    print(f"database {db.relative_to(ROOT)}: {how}; {c['study']:,} studies, "
          f"{c['publication']:,} papers")
    if args.no_rebuild_index:
        size = index_size(db)
        print(f"index: {reading._size(size or 0)} on disk")
    else:
        seconds, size, counts = rebuild_index(db)
        print(f"index build (drop, create, fill from {counts[0]:,} studies parsed again and "
              f"{counts[1]:,} papers, optimize): {seconds:.1f} s")
    total = db.stat().st_size
    print(f"index on disk: {reading._size(size or 0)} of a {reading._size(total)} database "
          f"({(size or 0) / total:.1%})")
    print("\nin process:")
    results = in_process(db, args.repeat)
    print("\nwhole processes (best of --repeat):")
    exe = reading.tracker_exe(args.tracker)
    env = reading.clean_env(db)
    failed = [r["name"] for r in results if not r["ok"]]
    for cmd in commands():
        runs = [reading.run_once(exe, cmd, env) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r[0])
        ok = best[0] < PROCESS_BAR_S
        verdict = "(reference)" if cmd.reference else ("PASS" if ok else "FAIL")
        print(f"  tracker {cmd.name:72s} {best[0]:5.2f} s (CPU {best[3]:.2f} s, "
              f"{best[1]:.0f} MB, {reading._size(best[2])})  {verdict}")
        if not cmd.reference and not ok:
            failed.append(cmd.name)
    print("\nBARS MET" if not failed else f"\nBARS MISSED: {'; '.join(failed)}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
