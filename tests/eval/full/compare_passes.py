"""Compare the two labellers' passes: agreement per family and every disagreement.

Usage: python tests/eval/full/compare_passes.py   (reads labels_pass{1,2}_part{1,2}.jsonl)
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
FAMILIES = ("role", "minimally_manipulated", "condition_groups", "cell_sources", "origins",
            "products")


def load(n: int) -> dict[str, dict]:
    out = {}
    for part in (1, 2):
        for line in (HERE / f"labels_pass{n}_part{part}.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["id"]] = row
    return out


def norm(v):
    return sorted(v) if isinstance(v, list) else v


a, b = load(1), load(2)
assert set(a) == set(b), set(a) ^ set(b)
print(f"{len(a)} records labelled twice")
for fam in FAMILIES:
    same = sum(norm(a[i][fam]) == norm(b[i][fam]) for i in a)
    print(f"  {fam:<22} agree on {same}/{len(a)} ({same / len(a):.1%})")
rel_same = sum((a[i]["role"] in ("therapy", "laboratory")) == (b[i]["role"] in ("therapy", "laboratory")) for i in a)
print(f"  {'msc_relevant':<22} agree on {rel_same}/{len(a)} ({rel_same / len(a):.1%})")
print("\nDisagreements:")
for i in sorted(a):
    diffs = [f for f in FAMILIES if norm(a[i][f]) != norm(b[i][f])]
    if diffs:
        print(f"{i}: " + "; ".join(f"{f}: {norm(a[i][f])} | {norm(b[i][f])}" for f in diffs))
        print(f"    1: {a[i]['note']}\n    2: {b[i]['note']}")
