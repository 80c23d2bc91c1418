"""Print the records of the other registries' recorded files for a labeller, as the tracker's
parsers read them (every field a parser fills), one record per id.

Usage: python tests/eval/registries/show_record.py list            # every id
       python tests/eval/registries/show_record.py ID [ID ...]     # those records
It never runs the classifier.
"""
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from sources import euctr, ictrp, isrctn

FIX = ROOT / "tests" / "fixtures"


def records():
    for tid, raw in ictrp.read_export((FIX / "ictrp" / "ictrp_export_95_trials.xml").read_bytes()):
        rec = ictrp.parse_trial(raw)
        yield f"ictrp:{tid}", rec, raw
    for path in sorted((FIX / "isrctn").glob("*.xml")):
        try:
            items, _ = isrctn.parse_page(path.read_bytes())
        except Exception:  # noqa: BLE001 - a single-trial file
            items = []
        if not items:
            continue
        for rid, raw in items:
            yield f"isrctn:{rid}", isrctn.parse_trial(raw), raw
    for rec in euctr.parse_download((FIX / "euctr" / "euctr_full_trial_details_download.txt")
                                    .read_bytes()):
        yield f"euctr:{rec.registry_id}", rec, rec.raw
    for path in sorted((FIX / "euctr").glob("euctr_trial_*.html")):
        rec = euctr.record_from_trial_pages([path.read_bytes()])
        yield f"euctr:{rec.registry_id}:{path.stem}", rec, rec.raw


def show(rec) -> None:
    d = dataclasses.asdict(rec)
    for k in ("raw", "content_hash", "labels", "rules_fingerprint"):
        d.pop(k, None)
    for k, v in d.items():
        if v not in (None, "", [], {}):
            text = str(v)
            print(f"{k}: {text[:3000]}")
    print()


if __name__ == "__main__":
    recs = {rid: rec for rid, rec, _ in records()}
    if sys.argv[1:] == ["list"]:
        print("\n".join(recs))
    else:
        for rid in sys.argv[1:]:
            print(f"== {rid}")
            show(recs[rid])
