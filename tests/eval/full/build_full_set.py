"""Build ``tracker/evalsets/msc_full_eval.jsonl``: whole ClinicalTrials.gov records and their
hand labels (MSC role included).

Usage (from the repository root): ``.venv/bin/python tests/eval/full/build_full_set.py``

* labels: pass 1 (``labels_pass1_part{1,2}.jsonl``), except where the two passes differ: there
  ``ADJUDICATED`` below decides, and the other pass's label is kept under
  ``labels.second_pass``;
* record: the fixture file ``tests/fixtures/ctgov_full_2022/<id>.json`` unchanged, under
  ``raw_record`` (read by the CT.gov parser, as a stored record is);
* phase: the TAXONOMY value of the record's own ``designModule.phases`` (mechanical).

This script never runs the classifier.
"""
import json
import pathlib

from tracker import taxonomy

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FIX = ROOT / "tests/fixtures/ctgov_full_2022"
OUT = ROOT / "tracker/evalsets/msc_full_eval.jsonl"
RELEVANT = ("therapy", "laboratory")
EMPTY = {"condition_groups": [], "cell_sources": [], "origins": [], "products": [],
         "minimally_manipulated": False}

# Where the passes differed (compare_passes.py), the decision and why.
ADJUDICATED = {
    "NCT04202770": {"role": "mention", **EMPTY, "note":
                    "exosomes from Caesarean amniotic fluid (Kimera); the record never says they "
                    "come from MSCs, which appear only in the background (pass 1: therapy, "
                    "inferred; pass 2: mention). Same reading as Zofin, NCT04657406"},
    "NCT04202783": {"role": "none", **EMPTY, "note":
                    "exosomes 'of neonatal stem cell products' of unstated kind; MSCs are not "
                    "named (pass 1: therapy, inferred; pass 2: none)"},
}

# Both passes inferred an origin the record does not state (cord tissue is a donor's; the
# periodontal exosomes "must be" the patient's own fat). TAXONOMY: "Label what the record
# states ...; where it says nothing, unspecified", the rule the first set follows too. Found by
# checking every relevant label's origin against the record's words (allogen*, autolog*,
# donor*, "patient's own", third party, off the shelf), never by running the classifier.
ORIGIN_NOT_STATED = ("NCT04270006", "NCT05151133", "NCT05155657", "NCT05160831",
                     "NCT05162326")


def load(n: int) -> dict[str, dict]:
    out = {}
    for part in (1, 2):
        for line in (HERE / f"labels_pass{n}_part{part}.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["id"]] = row
    return out


def same(x: dict, y: dict) -> bool:
    keys = ("role", "minimally_manipulated", "condition_groups", "cell_sources", "origins",
            "products")
    return all((sorted(x[k]) if isinstance(x[k], list) else x[k]) ==
               (sorted(y[k]) if isinstance(y[k], list) else y[k]) for k in keys)


def main() -> None:
    one, two = load(1), load(2)
    ids = (HERE / "selected_ids.txt").read_text().split()
    assert set(one) == set(two) == set(ids)
    lines = []
    for nct in ids:
        a, b = one[nct], two[nct]
        label = dict(a)
        if not same(a, b):
            label.update(ADJUDICATED[nct])
            label["second_pass"] = {k: v for k, v in b.items() if k != "id"}
        if nct in ORIGIN_NOT_STATED:
            label["origins"] = ["unspecified"]
            label["note"] += " [origin: not stated by the record, unspecified per TAXONOMY]"
        raw = json.loads((FIX / f"{nct}.json").read_text(encoding="utf-8"))
        phases = raw["protocolSection"].get("designModule", {}).get("phases")
        labels = {
            "msc_relevant": label["role"] in RELEVANT,
            "role": label["role"],
            "minimally_manipulated": bool(label["minimally_manipulated"]),
            "condition_groups": label["condition_groups"],
            "cell_sources": label["cell_sources"],
            "origins": label["origins"],
            "products": label["products"],
            "phase": taxonomy.ctgov_phase(phases),
            "note": label["note"],
        }
        if "second_pass" in label:
            labels["second_pass"] = label["second_pass"]
        lines.append(json.dumps({
            "id": nct, "kind": "study", "registry": "ctgov", "registry_id": nct,
            "provenance": {"file": f"ctgov_full_2022/{nct}.json",
                           "converted": "classic API record (2022-01-20) in v2 shape"},
            "labels": labels, "raw_record": raw,
        }, ensure_ascii=False))
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    roles: dict[str, int] = {}
    for nct in ids:
        r = json.loads(lines[ids.index(nct)])["labels"]["role"]
        roles[r] = roles.get(r, 0) + 1
    print(f"{len(lines)} records -> {OUT.relative_to(ROOT)}; roles {roles}")


if __name__ == "__main__":
    main()
