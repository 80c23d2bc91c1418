"""Rebuild ``msc_eval.jsonl`` from the shared real-record fixtures and the hand labels.

Usage (from the repository root)::

    .venv/bin/python tests/eval/build_eval_set.py [--fixtures tests/fixtures]

The input fields of every record are copied verbatim from the fixture files (see README.md for
the provenance of each one); the labels come only from ``labels.txt``, written by hand. This
script never runs the classifier. The JSONL it writes is committed, so the tests do not need the
shared fixtures folder.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve().parent
CSV_NAME = "ctgov_msc/ctgov_classic_export_mesenchymal_1265.csv"
V2_FILES = (
    "ctgov/studies_page_last_NCT06388018.json",
    "ctgov/studies_page_with_nextPageToken.json",
    "ctgov/study_NCT00763412.json",
    "ctgov/study_NCT02210780.json",
    "ctgov/study_NCT02513394.json",
    "ctgov/study_NCT02552212.json",
    "ctgov/study_NCT03064438.json",
    "ctgov/study_NCT03475563.json",
    "ctgov/study_NCT03630471.json",
    "ctgov/study_NCT04431453.json",
    "ctgov/study_NCT05594173.json",
)
PUBMED_FILES = (
    "pubmed/efetch_pubmed_20412080.xml",
    "pubmed/efetch_pubmed_22351513.xml",
    "pubmed/efetch_pubmed_23121403.xml",
    "pubmed/efetch_pubmed_biopython_pubmed1.xml",
    "pubmed/efetch_pubmed_biopython_pubmed2.xml",
    "pubmed/efetch_pubmed_biopython_pubmed5.xml",
    "pubmed/efetch_pubmed_biopython_pubmed7.xml",
)
EPMC_FILE = "europepmc/search_cancer_core.json"


def read_labels(path: Path) -> dict[str, dict]:
    labels: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        ref, rel, groups, sources, origins, products, phase, note = line.split("|", 7)

        def split(v: str) -> list[str]:
            return [] if v.strip() == "-" else [x.strip() for x in v.split(",") if x.strip()]

        if ref in labels:
            raise SystemExit(f"duplicate label for {ref}")
        labels[ref] = {
            "msc_relevant": rel.strip() == "1",
            "condition_groups": split(groups),
            "cell_sources": split(sources),
            "origins": split(origins),
            "products": split(products),
            "phase": phase.strip(),
            "note": note.strip(),
        }
    return labels


def _classic_interventions(cell: str) -> list[dict]:
    out = []
    for part in (p.strip() for p in cell.split("|")):
        if not part:
            continue
        typ, sep, name = part.partition(": ")
        if not sep:
            typ, name = None, part
        out.append({"type": typ, "name": name.strip(), "description": None, "other_names": []})
    return out


def csv_records(fixtures: Path, wanted: set[str]) -> list[dict]:
    out = []
    with (fixtures / CSV_NAME).open(encoding="utf-8", newline="") as fh:
        for row_no, row in enumerate(csv.DictReader(fh), start=1):
            nct = row["NCT Number"]
            if nct not in wanted:
                continue
            out.append({
                "id": nct,
                "kind": "study",
                "provenance": {"file": CSV_NAME, "data_row": row_no, "rank": row["Rank"]},
                "registry": "ctgov",
                "registry_id": nct,
                "title": row["Title"],
                "acronym": row["Acronym"] or None,
                "study_type": row["Study Type"] or None,
                "phase_vocab": "ctgov_classic",
                "phase_raw": row["Phases"],
                "status_raw": row["Status"],
                "conditions": [c for c in row["Conditions"].split("|") if c],
                "interventions": _classic_interventions(row["Interventions"]),
                "keywords": [],
                "mesh": [],
                "brief_summary": None,
                "detailed_description": None,
                "eligibility": None,
                "url": row["URL"],
            })
    return out


def v2_records(fixtures: Path) -> list[dict]:
    out = []
    for name in V2_FILES:
        data = json.loads((fixtures / name).read_text(encoding="utf-8"))
        for study in data.get("studies", [data]):
            p = study["protocolSection"]
            ident = p["identificationModule"]
            derived = study.get("derivedSection", {})
            mesh = []
            for kind, module in (("condition", "conditionBrowseModule"),
                                 ("intervention", "interventionBrowseModule")):
                block = derived.get(module, {})
                mesh += [{"kind": kind, "mesh_id": m.get("id"), "term": m.get("term"),
                          "ancestor": False} for m in block.get("meshes", [])]
                mesh += [{"kind": kind, "mesh_id": m.get("id"), "term": m.get("term"),
                          "ancestor": True} for m in block.get("ancestors", [])]
            desc = p.get("descriptionModule", {})
            out.append({
                "id": ident["nctId"],
                "kind": "study",
                "provenance": {"file": name},
                "registry": "ctgov",
                "registry_id": ident["nctId"],
                "title": ident.get("briefTitle"),
                "official_title": ident.get("officialTitle"),
                "acronym": ident.get("acronym"),
                "study_type": p.get("designModule", {}).get("studyType"),
                "phase_vocab": "ctgov_v2",
                "phase_raw": p.get("designModule", {}).get("phases"),
                "status_raw": p["statusModule"].get("overallStatus"),
                "conditions": p.get("conditionsModule", {}).get("conditions", []),
                "keywords": p.get("conditionsModule", {}).get("keywords", []),
                "interventions": [
                    {"type": i.get("type"), "name": i.get("name"),
                     "description": i.get("description"), "other_names": i.get("otherNames", [])}
                    for i in p.get("armsInterventionsModule", {}).get("interventions", [])
                ],
                "mesh": mesh,
                "brief_summary": desc.get("briefSummary"),
                "detailed_description": desc.get("detailedDescription"),
                "eligibility": p.get("eligibilityModule", {}).get("eligibilityCriteria"),
                "url": f"https://clinicaltrials.gov/study/{ident['nctId']}",  # data, not fetched
            })
    return out


def pubmed_records(fixtures: Path) -> list[dict]:
    out = []
    for name in PUBMED_FILES:
        tree = etree.parse(str(fixtures / name))
        for art in tree.iter("PubmedArticle"):
            pmid = art.findtext(".//MedlineCitation/PMID")
            title = "".join(art.find(".//ArticleTitle").itertext())
            abstract = "\n".join("".join(a.itertext()) for a in art.iter("AbstractText")) or None
            mesh = []
            for head in art.iter("MeshHeading"):
                d = head.find("DescriptorName")
                mesh.append({"kind": "heading", "mesh_id": d.get("UI"), "term": d.text,
                             "major": d.get("MajorTopicYN") == "Y"})
            out.append({
                "id": f"pubmed:{pmid}",
                "kind": "publication",
                "provenance": {"file": name, "pmid": pmid},
                "source": "pubmed",
                "source_id": pmid,
                "pmid": pmid,
                "title": title,
                "abstract": abstract,
                "journal": art.findtext(".//Journal/Title"),
                "publication_types": [t.text for t in art.iter("PublicationType")],
                "mesh": mesh,
                "keywords": [k.text for k in art.iter("Keyword") if k.text],
            })
    return out


def epmc_records(fixtures: Path) -> list[dict]:
    data = json.loads((fixtures / EPMC_FILE).read_text(encoding="utf-8"))
    out = []
    for pos, r in enumerate(data["resultList"]["result"]):
        src_id = f"{r['source']}:{r['id']}"
        out.append({
            "id": f"europepmc:{src_id}",
            "kind": "publication",
            "provenance": {"file": EPMC_FILE, "result_index": pos},
            "source": "europepmc",
            "source_id": src_id,
            "pmid": r.get("pmid"),
            "title": r.get("title"),
            "abstract": r.get("abstractText"),
            "journal": (r.get("journalInfo") or {}).get("journal", {}).get("title"),
            "publication_types": (r.get("pubTypeList") or {}).get("pubType", []),
            "mesh": [{"kind": "heading", "mesh_id": None, "term": m.get("descriptorName"),
                      "major": m.get("majorTopic_YN") == "Y"}
                     for m in (r.get("meshHeadingList") or {}).get("meshHeading", [])],
            "keywords": (r.get("keywordList") or {}).get("keyword", []),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fixtures", type=Path, default=HERE.parent / "fixtures")
    ap.add_argument("--out", type=Path, default=HERE.parents[1] / "tracker" / "evalsets" / "msc_eval.jsonl")
    args = ap.parse_args()
    labels = read_labels(HERE / "labels.txt")
    records = csv_records(args.fixtures, {k for k in labels if k.startswith("NCT")})
    records += v2_records(args.fixtures) + pubmed_records(args.fixtures)
    records += epmc_records(args.fixtures)
    seen = set()
    with args.out.open("w", encoding="utf-8") as fh:
        for rec in records:
            if rec["id"] in seen:
                continue
            seen.add(rec["id"])
            if rec["id"] not in labels:
                raise SystemExit(f"no hand label for {rec['id']}")
            rec["labels"] = labels[rec["id"]]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    missing = set(labels) - seen
    if missing:
        raise SystemExit(f"labels without a record: {sorted(missing)}")
    print(f"wrote {len(seen)} records to {args.out}")


if __name__ == "__main__":
    main()
