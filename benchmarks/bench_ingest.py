"""Ingest benchmark: N cloned real CT.gov studies through the same parse-and-store path as
``tracker update``, beside a floor measured on the same bytes in the same run.

    python benchmarks/bench_ingest.py                 # N = 50,000 and 10,000 (about 10 min)
    python benchmarks/bench_ingest.py -n 2000 -n 500  # a quick look

For each N it writes pages of 1000 studies (the API's page size) to a scratch folder, cloning
the 11 recorded real studies of tests/fixtures/ctgov under new NCT ids and dates. Record sizes
vary 100-fold (9 KB to 780 KB); the mix is weighted towards studies without results, as most
MSC registrations are (about one in five records here has results). Then, each in a fresh
process so that peak memory is its own:

* floor:  per study ``json.loads`` of its text plus one ``sqlite3`` INSERT of the raw text,
          committed per page: the least any ingest can do with these bytes;
* load:   ``tracker.pipeline.ingest_page`` into a new database (parse, normalise, classify,
          compress, hash, bulk upsert with child rows), exactly what ``tracker update`` runs
          for each page it receives, inside the same ``tracker.pipeline.settled_heap``;
* rerun:  the same pages again into that database (every record unchanged: hash-skip).

Timings cover processing only: reading a page file stands in for receiving the response body.
Peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ctgov"
OUT = ROOT / "benchmarks" / "out"
PAGE = 1000
# Weight per template: studies without results dominate, as in MSC registrations.
HEAVY_WEIGHT = {"NCT02513394": 0.2, "NCT04431453": 1.0}


def _templates() -> list[tuple[bytes, str, float]]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = orjson.loads(path.read_bytes())
        for study in data.get("studies", [data]):
            nct = study["protocolSection"]["identificationModule"]["nctId"]
            weight = HEAVY_WEIGHT.get(nct, 2.0 if study.get("hasResults") else 10.0)
            out.append((orjson.dumps(study), nct, weight))
    return out


def generate(n: int, folder: Path) -> tuple[int, int]:
    """Write ceil(n/1000) page files of cloned studies; return (studies, bytes of JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    templates = _templates()
    # A deterministic weighted cycle: template i appears round(weight*10) times per cycle.
    cycle = [t for t in templates for _ in range(max(1, round(t[2] * 10)))]
    total_bytes = 0
    for page_no in range((n + PAGE - 1) // PAGE):
        texts = []
        for i in range(page_no * PAGE, min(n, (page_no + 1) * PAGE)):
            raw, nct, _ = cycle[i % len(cycle)]
            new_id = f"NCT9{i:07d}"
            day = 1 + i % 28
            month = 1 + (i // 28) % 12
            text = raw.replace(nct.encode(), new_id.encode())
            text = text.replace(b'"lastUpdatePostDateStruct":{"date":"',
                                f'"lastUpdatePostDateStruct":{{"date":"2025-{month:02d}-{day:02d}","x":"'.encode(), 1)
            texts.append(text)
        body = b'{"studies":[' + b",".join(texts) + b'],"nextPageToken":"t%d"}' % page_no
        (folder / f"page{page_no:04d}.json").write_bytes(body)
        total_bytes += sum(len(t) for t in texts)
    return n, total_bytes


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_floor(folder: Path, db: Path) -> dict[str, float]:
    """json.loads per study + one sqlite3 insert of its raw text, committed per page."""
    from sources.clinicaltrials_gov import parse_page  # only to split pages the same way

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body TEXT)")
    elapsed = 0.0
    for page in sorted(folder.glob("page*.json")):
        body = page.read_bytes()
        studies, _, _ = parse_page(body)
        texts = [s.raw.decode() for s in studies]  # the per-study raw texts
        del studies
        t0 = time.perf_counter()
        for text in texts:
            json.loads(text)
        conn.executemany("INSERT INTO raw (body) VALUES (?)", ((t,) for t in texts))
        conn.commit()
        elapsed += time.perf_counter() - t0
    conn.close()
    return {"seconds": elapsed, "peak_mb": _peak_mb()}


def run_ingest(folder: Path, db: Path) -> dict[str, float]:
    """The update path: ctgov page parse + pipeline.ingest_page into a tracker database."""
    from db.engine import make_engine
    from db.migrate import ensure_schema
    from sources.base import Page, Window
    from sources.clinicaltrials_gov import ClinicalTrialsGov, parse_page
    from tracker.classify import load_rules
    from tracker.config import load_settings
    from tracker.pipeline import RunSummary, ingest_page, release_memory, settled_heap

    settings = load_settings({"db": str(db)}, env={})
    engine = make_engine(settings.db_url)
    ensure_schema(engine)
    source = ClinicalTrialsGov(settings.source("ctgov"))
    rules = load_rules()
    summary = RunSummary("ctgov", run_id=1, window=Window(None, dt.date.today()))
    with settled_heap():  # as tracker update runs its sources
        elapsed = 0.0
        for page in sorted(folder.glob("page*.json")):
            body = page.read_bytes()
            t0 = time.perf_counter()
            studies, _, _ = parse_page(body)
            del body
            ingest_page(engine, source, Page(items=studies), 1, summary, rules)
            del studies
            release_memory()  # as run_source does after each page of a large-page source
            elapsed += time.perf_counter() - t0
    engine.dispose()
    return {"seconds": elapsed, "peak_mb": _peak_mb(), "new": summary.new,
            "unchanged": summary.unchanged, "changed": summary.changed,
            "rejected": summary.rejected}


def _child(mode: str, folder: Path, db: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder), str(db)],
        check=True, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(n: int) -> dict[str, object]:
    """Generate, then measure floor, load and rerun for N studies."""
    folder = OUT / f"pages_{n}"
    shutil.rmtree(folder, ignore_errors=True)
    count, nbytes = generate(n, folder)
    floor_db, db = OUT / f"floor_{n}.sqlite", OUT / f"tracker_{n}.sqlite"
    for p in OUT.glob(f"*_{n}.sqlite*"):
        p.unlink()
    floor = _child("floor", folder, floor_db)
    load = _child("ingest", folder, db)
    rerun = _child("ingest", folder, db)
    assert load["new"] == count and rerun["unchanged"] == count, (load, rerun)
    mb = nbytes / 1e6
    shutil.rmtree(folder, ignore_errors=True)
    for p in OUT.glob(f"*_{n}.sqlite*"):
        p.unlink()
    return {
        "n": count, "mb": mb, "floor": floor, "load": load, "rerun": rerun,
        "load_vs_floor": load["seconds"] / floor["seconds"],
        "rerun_speedup": load["seconds"] / rerun["seconds"],
    }


def report(r: dict) -> str:  # type: ignore[type-arg]
    """Human-readable lines for one N."""
    n, mb = r["n"], r["mb"]
    lines = [f"N = {n:,} studies, {mb:,.0f} MB of JSON (mean {mb * 1e3 / n:.1f} KB/study)"]
    for name in ("floor", "load", "rerun"):
        m = r[name]
        lines.append(
            f"  {name:6s} {m['seconds']:8.2f} s  {n / m['seconds']:9,.0f} studies/s  "
            f"{mb / m['seconds']:7.1f} MB/s  peak {m['peak_mb']:6.0f} MB"
        )
    lines.append(f"  load = {r['load_vs_floor']:.2f}x floor (bar: <= 4x)   "
                 f"rerun is {r['rerun_speedup']:.1f}x faster than load (bar: >= 3x)")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the benchmark for each N, print the figures and check the bars."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, folder, db = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        result = run_floor(folder, db) if mode == "floor" else run_ingest(folder, db)
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, action="append", help="number of studies (repeatable)")
    args = ap.parse_args()
    sizes = args.n or [50_000, 10_000]
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        r = bench(n)
        results.append(r)
        print(report(r), flush=True)
    ok = all(r["load_vs_floor"] <= 4 and r["rerun_speedup"] >= 3
             and r["load"]["peak_mb"] < 300 for r in results)  # type: ignore[index]
    if len(results) > 1:
        peaks = [r["load"]["peak_mb"] for r in results]  # type: ignore[index]
        print(f"peak memory across N: {', '.join(f'{p:.0f} MB' for p in peaks)} "
              f"(should not grow with N)")
    print("BARS MET" if ok else "BARS NOT MET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
