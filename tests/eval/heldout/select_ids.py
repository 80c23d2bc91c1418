"""Select 60 held-out ids: CSV rows whose NCT number appears nowhere in msc_eval.jsonl; fixed seed."""
import csv
import pathlib
import random

root = pathlib.Path(__file__).resolve().parents[3]
evtext = open(root/"tests/eval/msc_eval.jsonl", encoding="utf-8").read()
raw = open(root/"tests/fixtures/ctgov_msc/ctgov_classic_export_mesenchymal_1265.csv", encoding="utf-8-sig").read()
rows = list(csv.DictReader(raw.splitlines()))
ids = {r["NCT Number"] for r in rows if r["NCT Number"] not in evtext}
print(len(rows), len(ids))
sel = random.Random(20261124).sample(sorted(ids), 60)
open(root/"tests/eval/heldout/selected_ids.txt","w").write("\n".join(sel)+"\n")
