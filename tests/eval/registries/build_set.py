"""Build ``tracker/evalsets/msc_registries_eval.jsonl``: the real ISRCTN, EU CTR and ICTRP
records of tests/fixtures with their hand labels (two passes, labels_pass{1,2}.jsonl).

Usage (from the repository root): ``.venv/bin/python tests/eval/registries/build_set.py``

Each line holds the record's own stored bytes (``raw_record``, as text) and the source whose
parser reads them (``source``), so the evaluation reads them as ``tracker classify`` reads a
stored record. Phase is the canonical phase the registry's own parser reads (mechanical).
Where the passes differ the build stops: decide, and record the decision here. This script
never runs the classifier.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from show_record import records

OUT = ROOT / "tracker" / "evalsets" / "msc_registries_eval.jsonl"
KEYS = ("role", "minimally_manipulated", "condition_groups", "cell_sources", "origins",
        "products")


def load(n: int) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (HERE / f"labels_pass{n}.jsonl")
                                     .read_text(encoding="utf-8").splitlines()) if r}


def main() -> None:
    one, two = load(1), load(2)
    ids = (HERE / "ids.txt").read_text().split()
    assert set(one) == set(two) == set(ids)
    differ = [i for i in ids if any(one[i][k] != two[i][k] for k in KEYS)]
    if differ:
        raise SystemExit(f"the passes differ on {differ}; adjudicate first")
    lines = []
    for rid, rec, raw in records():
        source = rid.split(":", 1)[0]
        lab = one[rid]
        lines.append(json.dumps({
            "id": rid, "kind": "study", "registry": rec.registry, "source": source,
            "registry_id": rec.registry_id,
            "provenance": {"fixtures": f"tests/fixtures/{source}", "read_by": f"sources.{source}"},
            "labels": {"msc_relevant": lab["role"] in ("therapy", "laboratory"),
                       "role": lab["role"], "minimally_manipulated": lab["minimally_manipulated"],
                       "condition_groups": lab["condition_groups"],
                       "cell_sources": lab["cell_sources"], "origins": lab["origins"],
                       "products": lab["products"], "phase": rec.phase, "note": lab["note"]},
            "raw_record": raw.decode("utf-8") if isinstance(raw, bytes) else raw,
        }, ensure_ascii=False))
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} records -> {OUT.relative_to(ROOT)} (both passes agree on all)")


if __name__ == "__main__":
    main()
