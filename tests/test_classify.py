"""Unit tests of tracker.classify on real records of the evaluation set (tests/eval/)."""

from __future__ import annotations

import dataclasses
import time
from importlib import resources
from pathlib import Path

import pytest

from db.records import PublicationRecord, StudyRecord
from tracker.classify import (
    Labels,
    RulesError,
    classify_publication,
    classify_study,
    load_rules,
)
from tracker.evaluation import load_eval_rows, row_to_record

RULES_TEXT = (Path(__file__).resolve().parents[1] / "tracker" / "rules" /
              "msc_rules.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def rows():
    return {r["id"]: r for r in load_eval_rows()}


def study(rows, rid: str) -> StudyRecord:
    rec = row_to_record(rows[rid])
    assert isinstance(rec, StudyRecord)
    return rec


def fields_of(labels: Labels, family: str) -> set[str]:
    return {e.field for e in labels.evidence if e.family == family}


def test_packaged_rules_load_with_fingerprint(rules):
    assert len(rules.fingerprint) == 64
    assert rules.condition_groups[:5] == ("osteoarthritis", "rheumatoid_arthritis",
                                          "tendinopathy", "disc_degeneration", "sports_injury")
    assert load_rules().fingerprint == rules.fingerprint


def test_knee_oa_adipose_autologous(rules, rows):
    # NCT03956719: "Treatment of Early Knee Osteoarthritis With Autologous Adipose-derived MSC"
    lab = classify_study(study(rows, "NCT03956719"), rules)
    assert lab.msc_relevant
    assert lab.condition_groups == ["osteoarthritis"]
    assert lab.cell_sources == ["adipose"]
    assert lab.origins == ["autologous"]
    assert lab.products == ["cells"]
    assert lab.phase == "NOT_APPLICABLE"
    assert "condition" in fields_of(lab, "condition_group")
    # what is given decides: the intervention names the MSCs
    assert lab.role == "therapy" and not lab.minimally_manipulated
    assert any(e.family == "relevance" and e.label == "therapy" and e.field == "intervention"
               and "mesenchymal" in e.matched.lower() for e in lab.evidence), lab.evidence


def test_several_groups_and_sources(rules, rows):
    # NCT04461925: placenta- and UC-derived MMSCs for COVID-19 pneumonia
    lab = classify_study(study(rows, "NCT04461925"), rules)
    assert lab.condition_groups == ["respiratory"]
    assert lab.cell_sources == ["umbilical_cord", "placenta"]
    assert lab.origins == ["allogeneic"]
    assert lab.phase == "PHASE1_2"


def test_named_product_sets_public_origin(rules, rows):
    # NCT00826046: Prochymal (remestemcel-L) expanded access for GVHD
    lab = classify_study(study(rows, "NCT00826046"), rules)
    assert lab.msc_relevant
    assert lab.condition_groups == ["gvhd"]
    assert lab.cell_sources == ["bone_marrow"]
    assert lab.origins == ["allogeneic"]


def test_msc_after_hsct_is_relevant_and_not_allogeneic(rules, rows):
    # NCT01763086: MSC for poor graft function after allogeneic HSCT. The MSC intervention
    # outweighs the HSCT exclusion; "allogeneic" belongs to the HSCT, not to the MSCs.
    lab = classify_study(study(rows, "NCT01763086"), rules)
    assert lab.msc_relevant
    assert "outweighs exclusion" in lab.reason
    assert lab.condition_groups == ["gvhd"]
    assert lab.origins == ["unspecified"]


@pytest.mark.parametrize("rid, cue", [
    ("NCT01874665", "gastrointestinal stromal tumor"),   # GIST
    ("NCT04021394", "emt"),                              # epithelial-mesenchymal transition
    ("NCT02048371", "mesenchymal chondrosarcoma"),
    ("NCT06388018", "stromal sarcoma"),                  # API v2, endometrial stromal sarcoma
])
def test_keyword_search_false_positives_are_excluded(rules, rows, rid, cue):
    lab = classify_study(study(rows, rid), rules)
    assert not lab.msc_relevant
    assert lab.reason.startswith("not MSC")
    assert any(e.family == "relevance" and e.label == "exclusion" and cue in e.matched
               for e in lab.evidence)
    assert lab.condition_groups == [] and lab.cell_sources == [] and lab.products == []


def test_exclusion_does_not_win_over_msc_cotransplant(rules, rows):
    # NCT00957931: allo-HCT for RBC disorders WITH co-transplanted MSCs -> relevant, gvhd
    lab = classify_study(study(rows, "NCT00957931"), rules)
    assert lab.msc_relevant and lab.condition_groups == ["gvhd"]


def test_extracellular_vesicle_product(rules, rows):
    # NCT05130983: ExoFlo, allogeneic BM-MSC EVs, Crohn's disease
    lab = classify_study(study(rows, "NCT05130983"), rules)
    assert lab.products == ["extracellular_vesicles"]
    assert lab.cell_sources == ["bone_marrow"]
    assert lab.origins == ["allogeneic"]
    assert lab.condition_groups == ["digestive"]


def test_secretome_and_cells(rules, rows):
    lab = classify_study(study(rows, "NCT04326959"), rules)  # UC-MSC + conditioned medium, keloid
    assert lab.products == ["cells", "secretome"]
    assert lab.condition_groups == ["skin_wound"]
    lab = classify_study(study(rows, "NCT04753476"), rules)  # secretome of hypoxia-MSCs
    assert lab.products == ["secretome"]


def test_eligibility_text_gives_no_condition_group(rules, rows):
    rec = study(rows, "NCT03956719")
    rec = dataclasses.replace(
        rec, eligibility="Exclusion Criteria:\n* rheumatoid arthritis\n* diabetes mellitus",
        brief_summary="Intra-articular injection of autologous adipose MSCs. Exclusion criteria: "
                      "rheumatoid arthritis, psoriasis.")
    lab = classify_study(rec, rules)
    assert lab.condition_groups == ["osteoarthritis"]


def test_negated_condition_in_summary_is_ignored(rules, rows):
    rec = study(rows, "NCT04499105")  # MSC implantation for degenerative disc disease
    rec = dataclasses.replace(
        rec, title="Mesenchymal Stem Cell Implantation", conditions=[],
        brief_summary="Patients with knee osteoarthritis without rheumatoid arthritis receive "
                      "mesenchymal stem cells. Patients with no history of stroke are eligible.")
    lab = classify_study(rec, rules)
    assert lab.condition_groups == ["osteoarthritis"]


def test_v2_record_with_mesh_and_eligibility(rules, rows):
    # NCT02552212 (axSpA, certolizumab): eligibility mentions heart failure; not MSC
    rec = study(rows, "NCT02552212")
    assert rec.mesh and rec.eligibility and "heart failure" in rec.eligibility
    lab = classify_study(rec, rules)
    assert not lab.msc_relevant
    assert lab.phase == "PHASE3"


def test_publication(rules, rows):
    rec = row_to_record(rows["pubmed:23121403"])
    assert isinstance(rec, PublicationRecord)
    lab = classify_publication(rec, rules)
    assert not lab.msc_relevant and lab.phase == "UNKNOWN"
    rec = dataclasses.replace(rec, publication_types=["Clinical Trial, Phase II"],
                              title="Umbilical cord mesenchymal stromal cells in ARDS")
    lab = classify_publication(rec, rules)
    assert lab.msc_relevant and lab.phase == "PHASE2"
    assert lab.condition_groups == ["respiratory"]
    assert lab.cell_sources == ["umbilical_cord"]


def test_custom_rules_file_adds_term_and_group(tmp_path, rules, rows):
    rec = study(rows, "NCT04315025")  # UC-MSC for retinitis pigmentosa
    assert classify_study(rec, rules).condition_groups == ["other"]
    unknown = dataclasses.replace(rec, title="Frobnicel for retinitis pigmentosa",
                                  interventions=[])
    assert not classify_study(unknown, rules).msc_relevant
    text = RULES_TEXT.replace('product_terms = [', 'product_terms = [\n  "frobnicel",')
    text += '\n[condition_groups.eye]\nterms = ["retinitis pigmentosa", "macular*"]\n'
    path = tmp_path / "my_rules.toml"
    path.write_text(text, encoding="utf-8")
    custom = load_rules(path)
    assert custom.fingerprint != rules.fingerprint
    assert custom.condition_groups[-1] == "eye"
    assert classify_study(rec, custom).condition_groups == ["eye"]
    assert classify_study(unknown, custom).msc_relevant


@pytest.mark.parametrize("content, message", [
    ("this is = = not toml", "not valid TOML"),
    ("[meta]\nname='x'\n", r"missing or malformed \[relevance\]"),
    (RULES_TEXT.replace("[cell_sources.menstrual_blood]", "[cell_sources.saliva]"),
     "unknown label"),
    (RULES_TEXT.replace("patterns = [\n", "patterns = [\n  '(unclosed',\n", 1), "bad pattern"),
    (RULES_TEXT + '\n[[named_product]]\nnames = ["x 1"]\ncell_source = "moon"\n',
     "unknown cell_source"),
    (RULES_TEXT.replace('products = "msc_products.toml"', 'products = ""'),
     "products must name a TOML file"),
])
def test_bad_rules_file_raises(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def test_product_dictionary_beside_a_rules_copy_is_read_and_checked(tmp_path, rules):
    """A copied rules file reads the product dictionary beside it (its own edits count, and
    change the fingerprint); a bad entry there is named."""
    (tmp_path / "msc_rules.toml").write_text(RULES_TEXT, encoding="utf-8")
    products = resources.files("tracker.rules").joinpath("msc_products.toml").read_text(
        encoding="utf-8")
    (tmp_path / "msc_products.toml").write_text(
        products + '\n[[product]]\nnames = ["zz cell 9"]\ncell_source = "adipose"\n',
        encoding="utf-8")
    mine = load_rules(tmp_path / "msc_rules.toml")
    assert mine.fingerprint != rules.fingerprint and len(mine.named_info) == len(
        rules.named_info) + 1
    (tmp_path / "msc_products.toml").write_text(
        products + '\n[[product]]\nnames = ["zz"]\norigin = "martian"\n', encoding="utf-8")
    with pytest.raises(RulesError, match=r"product #\d+ of the product dictionary: unknown "
                                         "origin 'martian'"):
        load_rules(tmp_path / "msc_rules.toml")
    (tmp_path / "msc_products.toml").unlink()  # none beside it: the packaged one
    assert len(load_rules(tmp_path / "msc_rules.toml").named_info) == len(rules.named_info)


def test_missing_rules_file_raises(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.toml")


def test_classification_is_fast(rules, rows):
    """A regression guard, in this process's CPU time (time spent waiting for a core on a busy
    machine does not count); the bars themselves are the ingest benchmarks'."""
    recs = [row_to_record(r) for r in rows.values() if r["kind"] == "study"]
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for rec in recs:
            classify_study(rec, rules)
        best = min(best, (time.process_time() - t0) / len(recs))
    assert best < 0.3e-3, f"{best * 1e6:.0f} us of CPU per study"


def test_ascii_fast_path_normalises_exactly_like_the_general_one() -> None:
    """ASCII text goes through bytes.translate; the result must equal str.translate's."""
    from tracker import matching as c

    texts = ["".join(chr(i) for i in range(128)),
             "Bone-marrow MSCs (n=12); patients' knees: improved! Don't stop.\nNext|line",
             "Adipose\u2013derived stromal cells \u2019s caf\u00e9"]
    for text in texts:
        general = text.lower().translate(c._TEXT_TABLE).replace("|", " | ").split()
        assert c.norm_words(text) == general
        assert c.norm_text(text) == " " + " ".join(general) + " "
