"""The fixed label vocabulary of ``shared/docs/TAXONOMY.md`` and registry-to-canonical maps.

Every registry speaks its own phase and status words; reports speak only the canonical values
below. Each ``*_phase``/``*_status`` function maps one registry's vocabulary and never raises:
an unknown value maps to ``UNKNOWN`` (phase) or ``OTHER`` (status), and the caller keeps the raw
value beside the canonical one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PHASES: tuple[str, ...] = (
    "EARLY_PHASE1",
    "PHASE1",
    "PHASE1_2",
    "PHASE2",
    "PHASE2_3",
    "PHASE3",
    "PHASE4",
    "NOT_APPLICABLE",
    "UNKNOWN",
)

STATUSES: tuple[str, ...] = (
    "NOT_YET_RECRUITING",
    "RECRUITING",
    "ENROLLING_BY_INVITATION",
    "ACTIVE_NOT_RECRUITING",
    "SUSPENDED",
    "TERMINATED",
    "COMPLETED",
    "WITHDRAWN",
    "UNKNOWN",
    "OTHER",
)

# The five chronic-pain indications the project started from come first in every report.
CONDITION_GROUPS: tuple[str, ...] = (
    "osteoarthritis",
    "rheumatoid_arthritis",
    "tendinopathy",
    "disc_degeneration",
    "sports_injury",
    "bone",
    "neurological",
    "cardiovascular",
    "gvhd",
    "respiratory",
    "digestive",
    "autoimmune",
    "metabolic",
    "kidney",
    "skin_wound",
    "other",
)
CHRONIC_PAIN_GROUPS: tuple[str, ...] = CONDITION_GROUPS[:5]

CELL_SOURCES: tuple[str, ...] = (
    "bone_marrow",
    "adipose",
    "umbilical_cord",
    "placenta",
    "dental_pulp",
    "menstrual_blood",
    "ipsc_derived",
    "other",
    "unspecified",
)
ORIGINS: tuple[str, ...] = ("autologous", "allogeneic", "unspecified")
PRODUCTS: tuple[str, ...] = ("cells", "extracellular_vesicles", "secretome", "unspecified")

# ClinicalTrials.gov API v2 ``Phase`` enum -> rank used to combine multi-phase lists.
_CTGOV_PHASE_SETS: dict[frozenset[str], str] = {
    frozenset({"EARLY_PHASE1"}): "EARLY_PHASE1",
    frozenset({"PHASE1"}): "PHASE1",
    frozenset({"EARLY_PHASE1", "PHASE1"}): "PHASE1",
    frozenset({"PHASE1", "PHASE2"}): "PHASE1_2",
    frozenset({"PHASE2"}): "PHASE2",
    frozenset({"PHASE2", "PHASE3"}): "PHASE2_3",
    frozenset({"PHASE3"}): "PHASE3",
    frozenset({"PHASE3", "PHASE4"}): "PHASE3",
    frozenset({"PHASE4"}): "PHASE4",
    frozenset({"NA"}): "NOT_APPLICABLE",
}


def ctgov_phase(phases: Iterable[str] | None) -> str:
    """Map a ClinicalTrials.gov ``designModule.phases`` list to one canonical phase.

    ``["PHASE1", "PHASE2"]`` is ``PHASE1_2``; a missing list (observational studies) is
    ``NOT_APPLICABLE``; an unrecognised combination is ``UNKNOWN``.
    """
    if phases is None:
        return "NOT_APPLICABLE"
    key = frozenset(p.strip().upper() for p in phases if p and p.strip())
    if not key:
        return "NOT_APPLICABLE"
    return _CTGOV_PHASE_SETS.get(key, "UNKNOWN")


# Classic-site CSV (retired 2024) writes phases as "Phase 1|Phase 2", "Early Phase 1", "Not Applicable".
_CLASSIC_PHASE_WORDS = {
    "early phase 1": "EARLY_PHASE1",
    "phase 1": "PHASE1",
    "phase 2": "PHASE2",
    "phase 3": "PHASE3",
    "phase 4": "PHASE4",
    "not applicable": "NA",
}


def ctgov_classic_phase(text: str | None) -> str:
    """Map the retired classic-site CSV ``Phases`` cell ("Phase 1|Phase 2") to a canonical phase."""
    if not text or not text.strip():
        return "NOT_APPLICABLE"
    parts = [p.strip().lower() for p in text.split("|") if p.strip()]
    mapped = [_CLASSIC_PHASE_WORDS.get(p) for p in parts]
    if any(m is None for m in mapped):
        return "UNKNOWN"
    return ctgov_phase([m for m in mapped if m])


_CTGOV_STATUS = {
    "NOT_YET_RECRUITING": "NOT_YET_RECRUITING",
    "RECRUITING": "RECRUITING",
    "ENROLLING_BY_INVITATION": "ENROLLING_BY_INVITATION",
    "ACTIVE_NOT_RECRUITING": "ACTIVE_NOT_RECRUITING",
    "SUSPENDED": "SUSPENDED",
    "TERMINATED": "TERMINATED",
    "COMPLETED": "COMPLETED",
    "WITHDRAWN": "WITHDRAWN",
    "UNKNOWN": "UNKNOWN",
}


def ctgov_status(status: str | None) -> str:
    """Map ClinicalTrials.gov ``overallStatus`` to a canonical status.

    Expanded-access values (AVAILABLE, APPROVED_FOR_MARKETING, ...) and WITHHELD have no
    equivalent and map to ``OTHER``; the raw value is kept by the caller.
    """
    if not status:
        return "UNKNOWN"
    return _CTGOV_STATUS.get(status.strip().upper(), "OTHER")


def ctgov_classic_status(text: str | None) -> str:
    """Map the classic-site CSV ``Status`` cell ("Unknown status", "Active, not recruiting")."""
    if not text:
        return "UNKNOWN"
    key = re.sub(r"[^A-Z]+", "_", text.strip().upper()).strip("_")
    if key == "UNKNOWN_STATUS":
        return "UNKNOWN"
    return ctgov_status(key)


_PUBTYPE_PHASE = {
    "clinical trial, phase i": "PHASE1",
    "clinical trial, phase ii": "PHASE2",
    "clinical trial, phase iii": "PHASE3",
    "clinical trial, phase iv": "PHASE4",
}


def publication_phase(publication_types: Iterable[str]) -> str:
    """Map PubMed publication types ("Clinical Trial, Phase II") to a canonical phase.

    Phase I and II together give ``PHASE1_2`` (and II and III ``PHASE2_3``); a paper with no
    phase publication type is ``UNKNOWN``.
    """
    found = {_PUBTYPE_PHASE[t.strip().lower()] for t in publication_types
             if t and t.strip().lower() in _PUBTYPE_PHASE}
    if not found:
        return "UNKNOWN"
    return _CTGOV_PHASE_SETS.get(frozenset(found), "UNKNOWN")
