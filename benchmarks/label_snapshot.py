"""Labels of every recorded record: which labels a change to the classifier moved (or proves
that a change to its speed moved none).

    python benchmarks/label_snapshot.py --save before.jsonl      # on the old code
    python benchmarks/label_snapshot.py --compare before.jsonl   # on the new code: exit 1 on a diff

``--compare`` prints, per family (relevance, role, condition groups, sources, origins,
products, phase), how many records moved and the commonest moves ("relevance True -> False:
12"), then the first ``--show`` records that differ with every moved field.

The corpus is every record the repository holds: all 1,276 rows of the two ClinicalTrials.gov
classic exports (tests/fixtures/ctgov_msc), every study of the recorded API v2 responses, every
PubMed article of the recorded efetch bodies, every Europe PMC result of the recorded searches,
and the rows of the evaluation sets (tests/eval). For each, the verdict, reason, facet labels,
phase and full evidence are written, so a difference in any of them shows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sources.clinicaltrials_gov import parse_study
from sources.europepmc import parse_result
from sources.pubmed import parse_efetch
from tracker.classify import classify_publication, classify_study, load_rules
from tracker.evaluation import load_eval_rows, row_to_record

FIX = ROOT / "tests" / "fixtures"
EVAL = ROOT / "tests" / "eval"
EVALSETS = ROOT / "tracker" / "evalsets"
FAMILIES = ("relevant", "role", "minimally_manipulated", "groups", "sources", "origins",
            "products", "phase")


def _csv_rows() -> Iterator[tuple[str, Any]]:
    sys.path.insert(0, str(EVAL))
    from build_eval_set import _classic_interventions  # the eval set's own CSV reading

    for path in sorted((FIX / "ctgov_msc").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                nct = row["NCT Number"]
                yield f"csv:{path.name}:{nct}", row_to_record({
                    "kind": "study", "registry": "ctgov", "registry_id": nct,
                    "title": row["Title"], "acronym": row["Acronym"] or None,
                    "study_type": row["Study Type"] or None, "phase_vocab": "ctgov_classic",
                    "phase_raw": row["Phases"], "status_raw": row["Status"],
                    "conditions": [c for c in row["Conditions"].split("|") if c],
                    "interventions": _classic_interventions(row["Interventions"]),
                    "url": row["URL"],
                })


def records() -> Iterator[tuple[str, Any]]:
    """(id, record) for every record of the corpus."""
    yield from _csv_rows()
    for path in sorted((FIX / "ctgov").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for study in data.get("studies", [data]):
            rec = parse_study(study)
            yield f"v2:{path.name}:{rec.registry_id}", rec
    for path in sorted((FIX / "pubmed").glob("*efetch_*.xml")):
        if "error" in path.name:
            continue
        for rec in parse_efetch(path.read_bytes()):
            if not rec.deleted:
                yield f"pubmed:{path.name}:{rec.pmid}", rec
    for path in sorted((FIX / "europepmc").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for i, result in enumerate((data.get("resultList") or {}).get("result", [])):
            yield f"epmc:{path.name}:{i}", parse_result(result)
    for path in sorted((FIX / "ctgov_full_2022").glob("NCT*.json")):  # whole records
        rec = parse_study(json.loads(path.read_text(encoding="utf-8")))
        yield f"full:{path.name}", rec
    for path in (EVALSETS / "msc_eval.jsonl", EVAL / "msc_eval.jsonl",
                 EVAL / "heldout" / "heldout_labels.jsonl"):
        if path.is_file():
            for i, row in enumerate(load_eval_rows(path)):
                if "kind" in row:
                    yield f"eval:{path.name}:{i}", row_to_record(row)


def snapshot() -> tuple[list[dict[str, Any]], float]:
    """Every record's labels, and the seconds classification took."""
    rules = load_rules()
    out = []
    spent = 0.0
    for rid, rec in records():
        classify = classify_study if hasattr(rec, "registry_id") else classify_publication
        t0 = time.perf_counter()
        labels = classify(rec, rules)
        spent += time.perf_counter() - t0
        out.append({
            "id": rid, "relevant": labels.msc_relevant, "reason": labels.reason,
            "role": getattr(labels, "role", None),
            "minimally_manipulated": getattr(labels, "minimally_manipulated", None),
            "groups": labels.condition_groups, "sources": labels.cell_sources,
            "origins": labels.origins, "products": labels.products, "phase": labels.phase,
            "evidence": [[e.family, e.label, e.field, e.matched] for e in labels.evidence],
        })
    return out, spent


def _key(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def main() -> int:
    """Save or compare a snapshot; exit 1 when the comparison finds a difference."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path, help="write the snapshot here")
    group.add_argument("--compare", type=Path, help="compare with a saved snapshot")
    ap.add_argument("--show", type=int, default=20, help="records to list in full (20)")
    args = ap.parse_args()
    snap, spent = snapshot()
    print(f"{len(snap):,} records classified in {spent:.2f} s "
          f"({spent / len(snap) * 1e6:.0f} us/record)")
    if args.save:
        args.save.write_text("".join(json.dumps(r) + "\n" for r in snap), encoding="utf-8")
        print(f"saved to {args.save}")
        return 0
    old = {r["id"]: r for r in map(json.loads, args.compare.read_text().splitlines())}
    new = {r["id"]: r for r in snap}
    diffs = [rid for rid in old.keys() | new.keys() if old.get(rid) != new.get(rid)]
    both = old.keys() & new.keys()
    print(f"{len(new.keys() - old.keys())} records new, {len(old.keys() - new.keys())} gone")
    for fam in FAMILIES:
        moves = Counter((_key(old[r].get(fam)), _key(new[r].get(fam))) for r in both
                        if old[r].get(fam) != new[r].get(fam))
        if moves:
            top = ", ".join(f"{a} -> {b}: {n}" for (a, b), n in moves.most_common(6))
            print(f"  {fam:<22} {sum(moves.values()):>6} moved  ({top})")
    for rid in sorted(diffs)[:args.show]:
        o, n = old.get(rid) or {}, new.get(rid) or {}
        keys = [k for k in (o.keys() | n.keys()) if o.get(k) != n.get(k)]
        print(f"DIFF {rid}: " + "; ".join(f"{k}: {o.get(k)!r} -> {n.get(k)!r}" for k in keys))
    print(f"{len(diffs)} of {len(new):,} records differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
