"""Print one full record for a labeller: every protocol field except contacts and locations.

Usage: python tests/eval/full/show_record.py NCT05193877 [NCT...]
Reads ``tests/fixtures/ctgov_full_2022/<id>.json`` (copied from shared/fixtures). It prints the
record's own text only; it never runs the classifier.
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parents[3]
FIX = root / "tests/fixtures/ctgov_full_2022"


def show(nct: str) -> None:
    d = json.loads((FIX / f"{nct}.json").read_text(encoding="utf-8"))
    ps = d["protocolSection"]
    out = []

    def put(label, value):
        if value in (None, "", [], {}):
            return
        if isinstance(value, (list, dict)):
            value = json.dumps(value, ensure_ascii=False)
        out.append(f"{label}: {value}")

    ident = ps.get("identificationModule", {})
    put("== ID", ident.get("nctId"))
    put("brief_title", ident.get("briefTitle"))
    put("official_title", ident.get("officialTitle"))
    put("acronym", ident.get("acronym"))
    put("secondary_ids", [s.get("id") for s in ident.get("secondaryIdInfos", [])])
    put("sponsor", ps.get("sponsorCollaboratorsModule", {}).get("leadSponsor", {}).get("name"))
    des = ps.get("designModule", {})
    put("study_type", des.get("studyType"))
    put("phases", des.get("phases"))
    put("design", des.get("designInfo"))
    cond = ps.get("conditionsModule", {})
    put("conditions", cond.get("conditions"))
    put("keywords", cond.get("keywords"))
    der = d.get("derivedSection", {})
    put("condition_mesh", [m.get("term") for m in der.get("conditionBrowseModule", {}).get("meshes", [])])
    put("intervention_mesh", [m.get("term") for m in der.get("interventionBrowseModule", {}).get("meshes", [])])
    arms = ps.get("armsInterventionsModule", {})
    for a in arms.get("armGroups", []):
        put("ARM", f"[{a.get('type')}] {a.get('label')} | {a.get('description', '')} | "
                   f"interventions={a.get('interventionNames')}")
    for i in arms.get("interventions", []):
        put("INTERVENTION", f"[{i.get('type')}] {i.get('name')} | other names={i.get('otherNames')} "
                            f"| {i.get('description', '')}")
    desc = ps.get("descriptionModule", {})
    put("brief_summary", desc.get("briefSummary"))
    put("detailed_description", desc.get("detailedDescription"))
    om = ps.get("outcomesModule", {})
    for k in ("primaryOutcomes", "secondaryOutcomes"):
        for o in om.get(k, []):
            put(k[:-1], f"{o.get('measure')} | {o.get('description', '')[:300]}")
    el = ps.get("eligibilityModule", {})
    put("eligibility (first 1500 chars)", (el.get("eligibilityCriteria") or "")[:1500])
    for r in ps.get("referencesModule", {}).get("references", []):
        put("reference", r.get("citation", "")[:200])
    print("\n".join(out))
    print()


for nct in sys.argv[1:]:
    show(nct)
