"""Labels in plain words, for people: "Phase 2/3", "umbilical cord", "1 study", "3 studies".

Reports, the digest and the feed speak these; JSON and CSV keep the canonical slugs
(TAXONOMY.md) so that scripts can filter on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PHASE_WORDS: dict[str, str] = {
    "EARLY_PHASE1": "Early phase 1",
    "PHASE1": "Phase 1",
    "PHASE1_2": "Phase 1/2",
    "PHASE2": "Phase 2",
    "PHASE2_3": "Phase 2/3",
    "PHASE3": "Phase 3",
    "PHASE4": "Phase 4",
    "NOT_APPLICABLE": "Not applicable",
    "UNKNOWN": "Phase unknown",
}

STATUS_WORDS: dict[str, str] = {
    "NOT_YET_RECRUITING": "Not yet recruiting",
    "RECRUITING": "Recruiting",
    "ENROLLING_BY_INVITATION": "Enrolling by invitation",
    "ACTIVE_NOT_RECRUITING": "Active, not recruiting",
    "SUSPENDED": "Suspended",
    "TERMINATED": "Terminated",
    "COMPLETED": "Completed",
    "WITHDRAWN": "Withdrawn",
    "UNKNOWN": "Status unknown",
    "OTHER": "Other status",
}

GROUP_WORDS: dict[str, str] = {
    "osteoarthritis": "Osteoarthritis",
    "rheumatoid_arthritis": "Rheumatoid arthritis",
    "tendinopathy": "Tendinopathy",
    "disc_degeneration": "Disc degeneration",
    "sports_injury": "Sports injury",
    "bone": "Bone",
    "neurological": "Neurological",
    "cardiovascular": "Cardiovascular",
    "gvhd": "Graft-versus-host disease",
    "respiratory": "Respiratory",
    "digestive": "Digestive and liver",
    "autoimmune": "Autoimmune",
    "metabolic": "Metabolic",
    "kidney": "Kidney",
    "skin_wound": "Skin and wounds",
    "other": "Other conditions",
    "(not classified)": "Not classified",
}

_LABEL_WORDS: dict[str, dict[str, str]] = {
    "cell_source": {
        "bone_marrow": "bone marrow", "adipose": "adipose", "umbilical_cord": "umbilical cord",
        "placenta": "placenta", "dental_pulp": "dental pulp",
        "menstrual_blood": "menstrual blood", "ipsc_derived": "iPSC-derived",
        "other": "other source", "unspecified": "source unspecified",
    },
    "origin": {"autologous": "autologous", "allogeneic": "allogeneic",
               "unspecified": "origin unspecified"},
    "product": {"cells": "cells", "extracellular_vesicles": "extracellular vesicles",
                "secretome": "secretome", "unspecified": "product unspecified"},
}

# Irregular plurals of the nouns reports count.
_PLURALS = {"study": "studies", "registration": "registrations", "entry": "entries",
            "this": "these"}


def plural(n: int, noun: str) -> str:
    """``1 study``, ``2 studies``, ``0 papers``."""
    if n == 1:
        return f"{n:,} {noun}"
    return f"{n:,} {_PLURALS.get(noun, noun + 's')}"


def phase_words(phase: str | None) -> str:
    """``PHASE2_3`` -> ``Phase 2/3``; an unknown code is shown as it is."""
    return PHASE_WORDS.get(phase or "UNKNOWN", phase or "")


def status_words(status: str | None) -> str:
    """``ACTIVE_NOT_RECRUITING`` -> ``Active, not recruiting``."""
    return STATUS_WORDS.get(status or "UNKNOWN", status or "")


def group_words(group: str) -> str:
    """``disc_degeneration`` -> ``Disc degeneration``; a user-defined slug is de-slugged."""
    return GROUP_WORDS.get(group, group.replace("_", " ").capitalize())


def label_words(family: str, slug: str) -> str:
    """One label of a family (cell_source, origin, product, condition_group) in words."""
    if family == "condition_group":
        return group_words(slug).lower() if slug != "gvhd" else "graft-versus-host disease"
    return _LABEL_WORDS.get(family, {}).get(slug, slug.replace("_", " "))


def labels_line(record: Mapping[str, Any], *, skip_unspecified: bool = True) -> str:
    """A record's cell source, origin and product in words, in that order:
    ``umbilical cord, allogeneic, extracellular vesicles``. "Unspecified" labels are left out
    unless ``skip_unspecified`` is False (they say nothing to a reader)."""
    parts: list[str] = []
    for family, key in (("cell_source", "cell_sources"), ("origin", "origins"),
                        ("product", "products")):
        for slug in record.get(key) or ():
            if skip_unspecified and slug == "unspecified":
                continue
            parts.append(label_words(family, slug))
    return ", ".join(dict.fromkeys(parts))


def groups_line(groups: Iterable[str]) -> str:
    """Condition groups in words, comma-separated."""
    return ", ".join(group_words(g) for g in groups)


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def duration(seconds: float) -> str:
    """``40 s``, ``3 min``, ``1 h 20 min``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
