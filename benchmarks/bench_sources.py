"""Nightly cost: a whole update (every source side by side) beside its slowest source alone.

    python benchmarks/bench_sources.py                  # 0.25 s a request, small pages
    python benchmarks/bench_sources.py --latency 0.1

The replay server (tests/replay_server.py) answers every request after ``--latency``
seconds, as a distant API does, with the recorded data of each of the six sources (CT.gov
studies, PubMed articles, Europe PMC results, ISRCTN trials, EU CTR protocols and EU CTIS
trials, as their end-to-end tests load them) and each API's real paging; small page sizes
make each source take several requests. The real ``tracker update`` runs as a process:

* each source alone, into a new database (``--source NAME``);
* every source in one update, into a new database (side by side: tracker/update.py).

Bar (issue 13): the whole update takes at most 1.3x the slowest source alone, and no host's
rate is ever exceeded (the most requests the server saw from one source in any second, beside
the source's configured rate).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dbsnapshot import base_env, tracker
from replay_server import (
    ReplayServer,
    clone_study,
    load_europepmc_results,
    load_pubmed_articles,
)

FIX = ROOT / "tests" / "fixtures"
SOURCES = ("ctgov", "pubmed", "europepmc", "isrctn", "euctr", "ctis")
RATES = {"ctgov": 4.0, "pubmed": 3.0, "europepmc": 4.0, "isrctn": 2.0, "euctr": 4.0,
         "ctis": 4.0}
# Page sizes that make each source take several requests (EU CTR's pages are always 20).
PAGES = {"ctgov": 3, "pubmed": 2, "europepmc": 4, "isrctn": 8, "ctis": 2}


def server_data() -> dict:
    import json

    import test_e2e_ctis
    import test_e2e_euctr
    import test_e2e_isrctn

    studies = []
    for path in sorted((FIX / "ctgov").glob("study_NCT*.json")):
        studies.append(json.loads(path.read_text(encoding="utf-8")))
    studies += [clone_study(studies[i % len(studies)], f"NCT0{8000000 + i:07d}", "2024-01-02")
                for i in range(10)]
    return {"ctgov_studies": studies,
            "pubmed_articles": load_pubmed_articles(FIX / "pubmed"),
            "europepmc_results": load_europepmc_results(
                FIX / "europepmc" / "search_cancer_core.json"),
            "isrctn_trials": test_e2e_isrctn.trials(), "euctr_trials": test_e2e_euctr.trials(),
            "ctis_trials": test_e2e_ctis.trials()}


def run(srv: ReplayServer, db: Path, args: list[str]) -> float:
    env = base_env(TRACKER_DB=str(db), TRACKER_CONTACT_EMAIL="bench@example.org",
                   TRACKER_TIMEOUT="30", **srv.source_env,
                   **{f"TRACKER_{s.upper()}_RATE_PER_SECOND": str(RATES[s]) for s in SOURCES},
                   **{f"TRACKER_{s.upper()}_PAGE_SIZE": str(n) for s, n in PAGES.items()})
    start = time.monotonic()
    res = tracker(["update", *args], env, timeout=600)
    took = time.monotonic() - start
    if res.returncode != 0:
        raise SystemExit(f"tracker update {' '.join(args)} failed: {res.stderr}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.25, help="seconds per answer")
    args = ap.parse_args()
    data = server_data()
    alone: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in SOURCES:
            with ReplayServer(**data, latency=args.latency) as srv:
                alone[src] = run(srv, Path(tmp) / f"{src}.sqlite", ["--source", src])
                asked = len(srv.requests_for(src))
            print(f"  {src:<10} alone  {alone[src]:6.2f} s  ({asked} requests)")
        with ReplayServer(**data, latency=args.latency) as srv:
            whole = run(srv, Path(tmp) / "all.sqlite", [])
            peaks = {s: srv.max_requests_in_window(s, 1.0) for s in SOURCES}
    slowest = max(alone.values())
    ratio = whole / slowest
    print(f"  whole update   {whole:6.2f} s  = {ratio:.2f}x the slowest source alone "
          f"({max(alone, key=alone.get)}, {slowest:.2f} s); one after another would be "
          f"{sum(alone.values()):.2f} s")
    over = {s: (peaks[s], RATES[s]) for s in SOURCES if peaks[s] > RATES[s] + 1e-9}
    for s in SOURCES:
        print(f"  {s:<10} most requests in any second: {peaks[s]} (rate {RATES[s]:g}/s)")
    ok = ratio <= 1.3 and not over
    print("BARS MET" if ok else "BARS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
