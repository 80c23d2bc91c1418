"""Select 60 held-out ids: CSV rows whose NCT number appears nowhere in msc_eval.jsonl; fixed seed."""
import csv
import pathlib
import random

root = pathlib.Path(__file__).resolve().parents[3]
evtext = (root/"tracker/evalsets/msc_eval.jsonl").read_text(encoding="utf-8")
raw = (root/"tests/fixtures/ctgov_msc/ctgov_classic_export_mesenchymal_1265.csv").read_text(encoding="utf-8-sig")
rows = list(csv.DictReader(raw.splitlines()))
ids = {r["NCT Number"] for r in rows if r["NCT Number"] not in evtext}
print(len(rows), len(ids))
sel = random.Random(20261124).sample(sorted(ids), 60)
(root/"tests/eval/heldout/selected_ids.txt").write_text("\n".join(sel)+"\n")
