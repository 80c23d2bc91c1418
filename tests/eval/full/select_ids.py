"""Select the full-record evaluation ids from ``shared/fixtures/ctgov_full_2022`` (fixed seed).

Every record whose text names MSCs, stromal cells or stem cells (the records a reviewer must
read closely), plus a seeded sample of the others (exosome diagnostics, iPSC products,
engineered cells: what a keyword search drags in). The choice reads only the raw text, never
the classifier. Writes ``selected_ids.txt``.
"""
import pathlib
import random
import re
import sys

root = pathlib.Path(__file__).resolve().parents[3]
src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared/fixtures/ctgov_full_2022"
close = re.compile(r"mesenchymal|\bMSCs?\b|stromal|stem[ -]cell", re.IGNORECASE)
files = sorted(src.glob("NCT*.json"))
near = [f.stem for f in files if close.search(f.read_text(encoding="utf-8"))]
rest = sorted(f.stem for f in files if f.stem not in set(near))
sel = sorted(near + random.Random(20261201).sample(rest, 63))
(pathlib.Path(__file__).with_name("selected_ids.txt")).write_text("\n".join(sel) + "\n")
print(len(files), "records;", len(near), "name MSC/stromal/stem cells;", len(sel), "selected")
