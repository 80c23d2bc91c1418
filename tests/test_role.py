"""The MSC role (tracker/role.py): what is administered decides, read from where the text sits.

Real records come from the full-record evaluation set (whole ClinicalTrials.gov records,
tracker/evalsets/msc_full_eval.jsonl, parsed by the CT.gov parser). The kinds of record the
issue names that the set does not hold are derived from a real record with
``dataclasses.replace``: only the fields named in each case are changed (crafted, with the
wording such registrations use), everything else is the real record.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import pytest

from db.records import Arm, Intervention, StudyRecord
from tracker.classify import classify_study, load_rules
from tracker.evaluation import FULL_EVAL_PATH, load_eval_rows, row_to_record


@cache
def rules():
    return load_rules()


@cache
def _records() -> dict[str, StudyRecord]:
    return {r["id"]: row_to_record(r) for r in load_eval_rows(FULL_EVAL_PATH)}


def real(nct: str) -> StudyRecord:
    return _records()[nct]


def role_of(rec: StudyRecord) -> tuple[str, str]:
    lab = classify_study(rec, rules())
    assert lab.msc_relevant == (lab.role in ("therapy", "laboratory"))
    return lab.role, lab.reason


# ---------------------------------------------------------------- real records ---------------

@pytest.mark.parametrize("nct, role, why", [
    ("NCT05160831", "therapy", "intervention"),          # UC-MSC intra-articular, knee OA
    ("NCT05182034", "therapy", "product dictionary"),    # SMUP-IA-01 (Medipost)
    ("NCT05176366", "therapy", "product dictionary"),    # ExoFlo, BM-MSC vesicles
    ("NCT05043181", "therapy", "description"),           # "LDLR mRNA exosomes" made by MSCs
    ("NCT05167188", "laboratory", "mesenchymal"),        # marrow MSCs of GvHD patients studied
    ("NCT05191381", "laboratory", "exosomes"),           # MSC exosomes incubated ex vivo only
    ("NCT03994172", "mention", "mesenchymal"),           # teriparatide; MSCs in the background
    ("NCT04657406", "mention", "reference"),             # amniotic-fluid vesicles; MSCs cited
])
def test_real_records(nct: str, role: str, why: str) -> None:
    got, reason = role_of(real(nct))
    assert got == role, reason
    assert why in reason.lower() or why in reason, reason


def test_bone_marrow_aspirate_concentrate_is_minimally_manipulated_therapy() -> None:
    lab = classify_study(real("NCT05193877"), rules())
    assert (lab.role, lab.minimally_manipulated) == ("therapy", True)
    assert lab.cell_sources == ["bone_marrow"] and lab.origins == ["autologous"]
    assert any(e.label == "minimally_manipulated" for e in lab.evidence)


def test_cultured_msc_is_not_minimally_manipulated() -> None:
    lab = classify_study(real("NCT05160831"), rules())
    assert (lab.role, lab.minimally_manipulated) == ("therapy", False)


def test_engineered_cell_trials_are_none() -> None:
    nones = [r for r in load_eval_rows(FULL_EVAL_PATH) if r["labels"]["role"] == "none"]
    wrong = [r["id"] for r in nones if role_of(row_to_record(r))[0] in ("therapy", "laboratory")]
    assert len(nones) >= 100 and len(wrong) <= 1, wrong


# ------------------------------------------------- the kinds, derived from real ones --

MSC_TRIAL = "NCT05160831"   # UC-MSC for knee osteoarthritis (interventional)
OTHER_TRIAL = "NCT03994172"  # teriparatide + cinacalcet for osteoporosis (interventional)


def _given(rec: StudyRecord, *ivs: Intervention, arms: list[Arm] | None = None,
           **fields) -> StudyRecord:
    arms = arms if arms is not None else [Arm(label="Treatment", type="EXPERIMENTAL",
                                              interventions=[f"X: {iv.name}" for iv in ivs])]
    return dataclasses.replace(rec, interventions=list(ivs), arms=arms, **fields)


def test_platelet_product_whose_description_mentions_mscs_is_a_mention() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention(
        "BIOLOGICAL", "Platelet-rich plasma", "Leukocyte-poor PRP, 4 ml intra-articular. "
        "Platelet growth factors are thought to stimulate resident mesenchymal stem cells."),
        title="Platelet-Rich Plasma for Knee Osteoarthritis", official_title=None)
    assert role_of(rec)[0] == "mention"


def test_circulating_mscs_as_a_biomarker_are_endogenous() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("DRUG", "Teriparatide"),
                 title="Circulating Mesenchymal Stem Cells as a Biomarker of Bone Formation",
                 official_title=None)
    assert role_of(rec)[0] == "endogenous"


def test_mobilising_the_patients_own_mscs_is_endogenous() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("DRUG", "G-CSF"),
                 title="Mobilization of Mesenchymal Stem Cells by G-CSF in Knee Cartilage "
                       "Defects", official_title=None)
    assert role_of(rec)[0] == "endogenous"


def test_microfracture_releasing_marrow_mscs_is_endogenous() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("PROCEDURE", "Arthroscopic microfracture"),
                 title="Microfracture to Release Bone Marrow Mesenchymal Stem Cells Into "
                       "Chondral Defects", official_title=None)
    assert role_of(rec)[0] == "endogenous"


def test_mononuclear_cells_with_an_msc_keyword_are_a_mention() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("BIOLOGICAL", "Bone marrow mononuclear cells"),
                 keywords=["Mesenchymal Stromal Cells", "cell therapy"],
                 title="Bone Marrow Mononuclear Cells in Critical Limb Ischemia",
                 official_title=None)
    assert role_of(rec)[0] == "mention"


def test_cord_blood_expanded_on_an_msc_feeder_layer_is_manufacturing() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention(
        "BIOLOGICAL", "Ex vivo expanded cord blood", "Cord blood units expanded on a "
        "mesenchymal stromal cell feeder layer for 14 days, then infused."),
        title="Transplantation of Ex Vivo Expanded Cord Blood in Leukemia",
        official_title="Cord Blood Expanded With Mesenchymal Stromal Cell Feeder Layer")
    assert role_of(rec)[0] == "manufacturing"


def test_msc_markers_stained_on_leftover_tissue_are_a_mention() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("OTHER", "Tissue sampling"),
                 brief_summary="Leftover synovial tissue is stained for mesenchymal stem cell "
                               "markers CD73, CD90 and CD105.",
                 detailed_description=None, title="Synovial Tissue in Knee Arthroplasty",
                 official_title=None)
    assert role_of(rec)[0] == "mention"


def test_msc_named_as_an_alternative_in_the_background_is_a_mention() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("DRUG", "Hyaluronic acid"),
                 brief_summary="Mesenchymal stem cells have been proposed as an alternative; "
                               "this trial compares two hyaluronic acid injections.",
                 title="Hyaluronic Acid Injection in Knee Osteoarthritis", official_title=None)
    assert role_of(rec)[0] == "mention"


def test_observational_study_of_msc_recipients_is_laboratory() -> None:
    rec = dataclasses.replace(real(MSC_TRIAL), study_type="OBSERVATIONAL",
                              title="Gut Microbiome of Patients Who Received Mesenchymal Stem "
                                    "Cells", official_title=None)
    assert role_of(rec)[0] == "laboratory"


def test_negated_msc_in_a_placebo_arm_gives_nothing() -> None:
    rec = _given(real(OTHER_TRIAL), Intervention("DRUG", "Saline"),
                 arms=[Arm("Placebo", "PLACEBO_COMPARATOR", "Saline without mesenchymal stem "
                                                           "cells", ["Drug: Saline"])],
                 title="Saline Injection in Knee Pain", official_title=None,
                 brief_summary=None, detailed_description=None, keywords=[])
    assert role_of(rec)[0] in ("mention", "none")


def test_vague_cell_product_explained_by_the_summary_is_therapy() -> None:
    rec = _given(real(MSC_TRIAL), Intervention("BIOLOGICAL", "Stem cell injection"),
                 title="Stem Cell Injection for Knee Pain", official_title=None,
                 brief_summary="Patients receive umbilical cord mesenchymal stem cells "
                               "intra-articularly.", detailed_description=None)
    got, reason = role_of(rec)
    assert got == "therapy" and "summary" in reason, reason


def test_intervention_name_is_not_negated() -> None:
    rec = _given(real(MSC_TRIAL), Intervention(
        "GENETIC", "surgical treatment of non union with mesenchymal stem cells"),
        title="Nonunion of Long Bone Fracture", official_title=None)
    assert role_of(rec)[0] == "therapy"


# ------------------------------------------------------------------------------ papers -------

@cache
def _paper():
    from pathlib import Path

    from sources.pubmed import parse_efetch

    path = Path(__file__).parent / "fixtures" / "pubmed" / "efetch_pubmed_20412080.xml"
    return next(r for r in parse_efetch(path.read_bytes()) if not r.deleted)


def paper(title: str, abstract: str, types: tuple[str, ...] = ("Journal Article",)):
    """The real PubMed record 20412080 with its title, abstract and publication types
    replaced (crafted wording; MeSH and keywords dropped so that they decide nothing)."""
    return dataclasses.replace(_paper(), title=title, abstract=abstract,
                               publication_types=list(types), mesh=[], keywords=[])


@pytest.mark.parametrize("title, abstract, types, role", [
    ("Intra-articular mesenchymal stem cells in a rat model of osteoarthritis",
     ("Rats received an intra-articular injection of 1x10^6 bone marrow mesenchymal stem cells "
     "or saline. Cartilage repair was scored at 8 weeks."), ("Journal Article",), "therapy"),
    ("Hypoxia and the secretome of mesenchymal stromal cells",
     ("Mesenchymal stromal cells were isolated from bone marrow and cultured in vitro under "
     "hypoxia; proliferation and differentiation were measured."), ("Journal Article",),
     "laboratory"),
    ("Mesenchymal stem cells for knee osteoarthritis: a systematic review",
     "We reviewed trials of mesenchymal stem cells for knee osteoarthritis.",
     ("Journal Article", "Systematic Review"), "therapy"),
    ("Umbilical cord mesenchymal stem cells in knee osteoarthritis: a phase 2 trial",
     "Patients were randomised to umbilical cord mesenchymal stem cells or hyaluronic acid.",
     ("Clinical Trial, Phase II", "Randomized Controlled Trial"), "therapy"),
    ("Platelet-rich plasma in tennis elbow",
     "Platelet-rich plasma was injected. Growth factors may act on mesenchymal stem cells.",
     ("Journal Article",), "mention"),
    ("Exercise and tendon healing",
     "Tendon healing after eccentric exercise was followed for a year.", ("Journal Article",),
     "none"),
])
def test_paper_roles(title: str, abstract: str, types: tuple[str, ...], role: str) -> None:
    from tracker.classify import classify_publication

    lab = classify_publication(paper(title, abstract, types), rules())
    assert lab.role == role, lab.reason
    assert lab.msc_relevant == (role in ("therapy", "laboratory"))


# ---------------------------------------------------------------- the whole-record probe -----

def test_the_probe_never_skips_a_record_the_full_reading_would_not_call_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``rules.msc_probe`` lets a record that can name no MSC term skip the field-by-field
    reading. On every study of the shipped evaluation sets and the recorded responses, the
    verdict with the probe equals the verdict of the full reading."""
    from sources.clinicaltrials_gov import parse_study
    from tests.conftest import ctgov_studies
    from tracker import role
    from tracker.evaluation import DEFAULT_EVAL_PATH, REGISTRIES_EVAL_PATH

    records = [r for path in (FULL_EVAL_PATH, DEFAULT_EVAL_PATH, REGISTRIES_EVAL_PATH)
               for r in map(row_to_record, load_eval_rows(path)) if isinstance(r, StudyRecord)]
    records += [parse_study(s) for s in ctgov_studies()]
    probed = [role.study_role(r, rules()) for r in records]
    skipped = sum(not role._can_name_msc(rules(), r) for r in records)
    monkeypatch.setattr(role, "_can_name_msc", lambda _rules, _rec: True)
    full = [role.study_role(r, rules()) for r in records]
    assert [(v.role, v.reason) for v in probed] == [(v.role, v.reason) for v in full]
    assert len(records) > 400
    assert 0 < skipped < len(records)  # the probe ruled some records out, and not all
