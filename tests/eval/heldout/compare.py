"""Compare the hand-labelled held-out set with the classifier.

Run: .venv/bin/python tests/eval/heldout/compare.py   (writes RESULT.txt beside this file)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "eval"))

from build_eval_set import csv_records

from tracker.classify import classify_study, load_rules
from tracker.evaluation import row_to_record

FAMILIES = ("condition_groups", "cell_sources", "origins", "products")


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def main() -> None:
    gold = {}
    for line in (HERE / "heldout_labels.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            gold[d["id"]] = d
    rows = {r["id"]: r for r in csv_records(ROOT / "tests" / "fixtures", set(gold))}
    assert set(rows) == set(gold), set(gold) - set(rows)
    rules = load_rules()
    pred = {i: classify_study(row_to_record(rows[i]), rules) for i in gold}

    out: list[str] = []
    w = out.append
    w(f"Held-out check: {len(gold)} CT.gov classic-CSV records not in msc_eval.jsonl "
      "(random.Random(20261124).sample), labelled by hand before comparison.\n")

    # relevance
    tp = sum(gold[i]["msc_relevant"] and pred[i].msc_relevant for i in gold)
    fp = sum((not gold[i]["msc_relevant"]) and pred[i].msc_relevant for i in gold)
    fn = sum(gold[i]["msc_relevant"] and not pred[i].msc_relevant for i in gold)
    tn = len(gold) - tp - fp - fn
    p, r, f = prf(tp, fp, fn)
    w(f"relevance: TP={tp} FP={fp} FN={fn} TN={tn}  P={p:.3f} R={r:.3f} F1={f:.3f}")

    # label families: micro over all records' label sets (non-relevant = empty sets)
    for fam in FAMILIES:
        tp = fp = fn = 0
        for i in gold:
            g = set(gold[i][fam]) if gold[i]["msc_relevant"] else set()
            c = set(getattr(pred[i], fam)) if pred[i].msc_relevant else set()
            tp += len(g & c); fp += len(c - g); fn += len(g - c)
        p, r, f = prf(tp, fp, fn)
        w(f"{fam:17s}: TP={tp} FP={fp} FN={fn}  micro P={p:.3f} R={r:.3f} F1={f:.3f}")
    # same, restricted to records both sides call relevant
    w("\n(restricted to records both sides call relevant)")
    both = [i for i in gold if gold[i]["msc_relevant"] and pred[i].msc_relevant]
    for fam in FAMILIES:
        tp = fp = fn = 0
        exact = 0
        for i in both:
            g, c = set(gold[i][fam]), set(getattr(pred[i], fam))
            tp += len(g & c); fp += len(c - g); fn += len(g - c); exact += g == c
        p, r, f = prf(tp, fp, fn)
        w(f"{fam:17s}: n={len(both)} exact={exact}  micro P={p:.3f} R={r:.3f} F1={f:.3f}")

    w("\nDisagreements (id | field | mine | classifier | classifier evidence)")
    ndis = 0
    for i, g in gold.items():
        c = pred[i]
        diffs = []
        if g["msc_relevant"] != c.msc_relevant:
            diffs.append(("msc_relevant", g["msc_relevant"], c.msc_relevant, "relevance"))
        if g["msc_relevant"] or c.msc_relevant:
            fam_ev = {"condition_groups": "condition_group", "cell_sources": "cell_source",
                      "origins": "origin", "products": "product"}
            for fam in FAMILIES:
                gv = sorted(g[fam]) if g["msc_relevant"] else []
                cv = sorted(getattr(c, fam)) if c.msc_relevant else []
                if gv != cv:
                    diffs.append((fam, gv, cv, fam_ev[fam]))
        if not diffs:
            continue
        ndis += 1
        r = rows[i]
        w(f"\n{i}: {r['title']}")
        w(f"   conditions={r['conditions']} interventions={[x.get('name') for x in r['interventions']]}")
        w(f"   classifier reason: {c.reason}")
        if g.get("note"):
            w(f"   my note: {g['note']}")
        for fam, gv, cv, evfam in diffs:
            ev = [f"{e.label}<-{e.field}:'{e.matched}'" for e in c.evidence if e.family == evfam]
            w(f"   {fam}: mine={gv} classifier={cv}  evidence={ev}")
    w(f"\n{ndis} of {len(gold)} records have at least one disagreement.")
    text = "\n".join(out) + "\n"
    (HERE / "RESULT.txt").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
